/* vmdk-create.c - creating VMDK images of every subformat qemu-img makes:
 * monolithicSparse (default), monolithicFlat, twoGbMaxExtentSparse,
 * twoGbMaxExtentFlat and streamOptimized, with qemu-img's options and
 * descriptor content (geometry, adapter type, hardware and tools version).
 *
 * Spec: "Virtual Disk Format 1.1" sections on the descriptor and hosted
 * sparse extents. Layout of a new sparse extent as qemu-img writes it:
 * header | 20 descriptor sectors | redundant GD | redundant GTs | GD | GTs,
 * grain data after `overHead` (rounded to a grain). Stream files use
 * VMware's layout (vmdk-stream.c).
 * On failure every file created here is removed (the core removes the
 * descriptor/main file itself).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "vmdk.h"

#define DESC_SECTORS  20

const struct dk_optdesc vmdk_create_opts[] = {
    { "size", DK_OPT_SIZE, "Virtual disk size", NULL },
    { "adapter_type", DK_OPT_STRING, "Virtual adapter type, can be one of ide (default), "
      "lsilogic, buslogic or legacyESX", "ide" },
    { "backing_file", DK_OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", DK_OPT_STRING, "Must be 'vmdk' if present", NULL },
    { "compat6", DK_OPT_BOOL, "VMDK version 6 image", "off" },
    { "hwversion", DK_OPT_STRING, "VMDK hardware version", "undefined" },
    { "subformat", DK_OPT_STRING, "VMDK flat extent format, can be one of {monolithicSparse "
      "(default) | monolithicFlat | twoGbMaxExtentSparse | twoGbMaxExtentFlat | "
      "streamOptimized}", "monolithicSparse" },
    { "toolsversion", DK_OPT_STRING, "VMware guest tools version", "2147483647" },
    { "zeroed_grain", DK_OPT_BOOL, "Enable efficient zero writes using the zeroed-grain "
      "GTE feature", "off" },
    { 0 }
};

int vmdk_sparse_create(struct dk_file *f, uint64_t sectors, bool zeroed_grain,
                       const char *desc, struct dk_error *err)
{
    uint64_t ngt = dk_div_round_up(sectors, 512 * 128);
    uint64_t gd_sec = dk_div_round_up(ngt * 4, VMDK_SECTOR), gt_sec = 4;
    struct vmdk_header h = {
        .version = zeroed_grain ? 2 : 1,
        .flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_RGD | (zeroed_grain ? VMDK_FLAG_ZERO_GRAIN : 0),
        .capacity = sectors, .grain_size = 128, .desc_offset = 1, .desc_size = DESC_SECTORS,
        .num_gtes = 512, .rgd_offset = 1 + DESC_SECTORS,
    };
    if (desc && strlen(desc) > DESC_SECTORS * VMDK_SECTOR)
        return dk_error_set(err, -EINVAL, "vmdk: descriptor too long");
    if (ngt > VMDK_MAX_GD_ENTRIES)
        return dk_error_set(err, -EFBIG, "vmdk: image too large");
    h.gd_offset = h.rgd_offset + gd_sec + ngt * gt_sec;
    uint64_t end = h.gd_offset + gd_sec + ngt * gt_sec;
    h.overhead = dk_round_up(end, h.grain_size);
    if (end > UINT32_MAX)
        return dk_error_set(err, -EFBIG, "vmdk: image too large for a sparse extent");
    uint8_t *head = calloc(1 + DESC_SECTORS, VMDK_SECTOR);
    uint8_t *dir = calloc(gd_sec ? gd_sec : 1, VMDK_SECTOR);
    int r = head && dir ? 0 : -ENOMEM;
    if (r == 0) {
        vmdk_header_encode(&h, head);
        if (desc)
            memcpy(head + VMDK_SECTOR, desc, strlen(desc));
        r = dk_file_pwrite(f, head, (1 + DESC_SECTORS) * VMDK_SECTOR, 0);
    }
    for (int copy = 0; r == 0 && copy < 2; copy++) {
        uint64_t at = copy ? h.gd_offset : h.rgd_offset;
        for (uint64_t i = 0; i < ngt; i++)
            dk_put_le32(dir + 4 * i, (uint32_t)(at + gd_sec + i * gt_sec));
        r = dk_file_pwrite(f, dir, gd_sec * VMDK_SECTOR, at * VMDK_SECTOR);
    }
    if (r == 0)
        r = dk_file_truncate(f, h.overhead * VMDK_SECTOR);
    free(head);
    free(dir);
    return r < 0 ? dk_error_set(err, r, "vmdk: %s: %s", f->path, strerror(-r)) : 0;
}

struct create_job {
    const struct dk_create_ctx *c;
    const char *sub;
    bool zeroed;
    uint64_t sectors;
    char **made;               /* extent files created, for cleanup */
    size_t n_made;
    char *lines;               /* extent lines of the descriptor */
    size_t lines_len;
};

static int new_file(struct create_job *j, const char *path, struct dk_file **f)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return dk_error_set(j->c->err, -errno, "%s: %s", path, strerror(errno));
    close(fd);
    if (strcmp(path, j->c->filename)) {
        char **n = realloc(j->made, (j->n_made + 1) * sizeof(char *));
        char *p = strdup(path);
        if (!n || !p) {
            free(p);
            if (n)
                j->made = n;
            unlink(path);
            return dk_error_set(j->c->err, -ENOMEM, "out of memory");
        }
        j->made = n;
        j->made[j->n_made++] = p;
    }
    return dk_file_open(f, path, true, j->c->err);
}

static int add_line(struct create_job *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int add_line(struct create_job *j, const char *fmt, ...)
{
    char buf[4300];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char *p = n < 0 || (size_t)n >= sizeof(buf) ? NULL
            : realloc(j->lines, j->lines_len + (size_t)n + 1);
    if (!p)
        return dk_error_set(j->c->err, -ENOMEM, "out of memory");
    memcpy(p + j->lines_len, buf, (size_t)n + 1);
    j->lines = p;
    j->lines_len += (size_t)n;
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

char *vmdk_extent_path(const char *filename, const char *suffix)
{
    const char *base = base_name(filename), *dot = strrchr(base, '.');
    size_t stem = dot ? (size_t)(dot - filename) : strlen(filename);
    char *out = NULL;
    if (asprintf(&out, "%.*s%s%s", (int)stem, filename, suffix, dot ? dot : "") < 0)
        return NULL;
    return out;
}

/* Creates the extent files of a non-monolithic subformat. */
static int make_extents(struct create_job *j)
{
    bool flat = strstr(j->sub, "Flat") != NULL, split = !strncmp(j->sub, "twoGb", 5);
    uint64_t left = j->sectors;
    for (unsigned i = 1; left || i == 1; i++) {
        uint64_t n = split ? DK_MIN(left, VMDK_SPLIT_SECTORS) : left;
        char suffix[16];
        if (split)
            snprintf(suffix, sizeof(suffix), "-%c%03u", flat ? 'f' : 's', i);
        char *path = vmdk_extent_path(j->c->filename, split ? suffix : "-flat");
        struct dk_file *f = NULL;
        int r = path ? new_file(j, path, &f) : dk_error_set(j->c->err, -ENOMEM, "oom");
        if (r == 0 && flat && (r = dk_file_truncate(f, n * VMDK_SECTOR)) < 0)
            dk_error_set(j->c->err, r, "%s: %s", path, strerror(-r));
        if (r == 0 && !flat)
            r = vmdk_sparse_create(f, n, j->zeroed, NULL, j->c->err);
        if (r == 0)
            r = flat ? add_line(j, "RW %llu FLAT \"%s\" 0\n", (unsigned long long)n,
                                base_name(path))
                     : add_line(j, "RW %llu SPARSE \"%s\"\n", (unsigned long long)n,
                                base_name(path));
        dk_file_close(f);
        free(path);
        if (r < 0)
            return r;
        left -= n;
        if (!left)
            break;
    }
    return 0;
}

static int write_main(struct create_job *j, const char *desc)
{
    struct dk_file *f;
    int r = new_file(j, j->c->filename, &f);
    if (r < 0)
        return r;
    if (!strcmp(j->sub, "monolithicSparse"))
        r = vmdk_sparse_create(f, j->sectors, j->zeroed, desc, j->c->err);
    else if (!strcmp(j->sub, "streamOptimized"))
        r = vmdk_stream_create(f, j->sectors, desc, j->c->err);
    else if ((r = dk_file_pwrite(f, desc, strlen(desc), 0)) < 0)
        dk_error_set(j->c->err, r, "%s: %s", j->c->filename, strerror(-r));
    dk_file_close(f);
    return r;
}

/* Validates options; fills G (strings borrowed from the options). */
static int read_opts(struct create_job *j, struct vmdk_desc_gen *g)
{
    const struct dk_opts *o = j->c->opts;
    struct dk_error *err = j->c->err;
    static const char *const subs[] = { "monolithicSparse", "monolithicFlat",
        "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized", NULL };
    static const char *const adapters[] = { "ide", "lsilogic", "buslogic", "legacyESX", NULL };
    const char *s = dk_opts_get(o, "subformat"), *a = dk_opts_get(o, "adapter_type");
    j->sub = s ? s : "monolithicSparse";
    g->adapter = a ? a : "ide";
    size_t i;
    for (i = 0; subs[i] && strcmp(subs[i], j->sub); i++)
        ;
    if (!subs[i])
        return dk_error_set(err, -EINVAL, "Unknown subformat: %s", j->sub);
    for (i = 0; adapters[i] && strcmp(adapters[i], g->adapter); i++)
        ;
    if (!adapters[i])
        return dk_error_set(err, -EINVAL, "Unknown adapter type: '%s'", g->adapter);
    const char *hw = dk_opts_get(o, "hwversion"), *c6 = dk_opts_get(o, "compat6");
    bool compat6 = c6 && dk_parse_bool(c6) == 1;
    if (hw && !strcmp(hw, "undefined"))
        hw = NULL;
    if (compat6 && hw)
        return dk_error_set(err, -EINVAL, "compat6 cannot be enabled with hwversion set");
    g->hw_version = compat6 ? "6" : hw ? hw : "4";
    const char *tv = dk_opts_get(o, "toolsversion"), *zg = dk_opts_get(o, "zeroed_grain");
    g->tools_version = tv ? tv : "2147483647";
    j->zeroed = zg && dk_parse_bool(zg) == 1;
    g->create_type = j->sub;
    return 0;
}

static int read_backing(struct create_job *j, struct vmdk_desc_gen *g)
{
    const struct dk_create_ctx *c = j->c;
    const char *bf = dk_opts_get(c->opts, "backing_file");
    const char *bfmt = dk_opts_get(c->opts, "backing_fmt");
    g->parent_cid = UINT32_MAX;
    if (!bf || !*bf)
        return 0;
    if (bfmt && strcmp(bfmt, "vmdk"))
        return dk_error_set(c->err, -EINVAL, "backing_file must be a vmdk image "
                            "(backing_fmt '%s' given)", bfmt);
    if (strstr(j->sub, "Flat"))
        return dk_error_set(c->err, -ENOTSUP, "Flat image can't have backing file");
    if (!c->backing || c->backing->drv != &dk_drv_vmdk)
        return dk_error_set(c->err, -EINVAL, "vmdk: the backing file must be an existing "
                            "VMDK (its CID is recorded in the new image)");
    g->parent_cid = ((const struct vmdk_state *)c->backing->priv)->desc.cid;
    g->parent_hint = bf;
    return 0;
}

int vmdk_create(const struct dk_create_ctx *c)
{
    struct create_job j = { .c = c };
    struct vmdk_desc_gen g = { 0 };
    j.sectors = dk_div_round_up(c->size, VMDK_SECTOR);
    int r = read_opts(&j, &g);
    if (r == 0)
        r = read_backing(&j, &g);
    if (r == 0 && j.sectors > VMDK_MAX_SECTORS)
        r = dk_error_set(c->err, -EFBIG, "vmdk: image size too large");
    if (r < 0)
        return r;
    if (getrandom(&g.cid, sizeof(g.cid), 0) != sizeof(g.cid))
        g.cid = (uint32_t)dk_now_ns();
    g.total_sectors = j.sectors;
    if (!strncmp(j.sub, "monolithicS", 11) || !strcmp(j.sub, "streamOptimized"))
        r = add_line(&j, "RW %llu SPARSE \"%s\"\n", (unsigned long long)j.sectors,
                     base_name(c->filename));
    else
        r = make_extents(&j);
    char *desc = r == 0 ? vmdk_desc_generate(&g, j.lines) : NULL;
    if (r == 0 && !desc)
        r = dk_error_set(c->err, -ENOMEM, "out of memory");
    if (r == 0)
        r = write_main(&j, desc);
    for (size_t i = 0; i < j.n_made; i++) {
        if (r < 0)
            unlink(j.made[i]);
        free(j.made[i]);
    }
    free(j.made);
    free(j.lines);
    free(desc);
    return r;
}
