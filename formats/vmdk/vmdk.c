/* vmdk.c - the VMDK driver: probe, open (monolithic sparse/stream files
 * and text descriptors naming FLAT/VMFS/SPARSE/ZERO extents), close, info,
 * check, and the driver table.
 *
 * Spec: VMware "Virtual Disk Format 1.1". qemu's block/vmdk.c behaviour is
 * matched where it is observable: info JSON (format-specific "vmdk" data),
 * check messages ("points after EOF" -> corruption), the parent CID check
 * (a child whose parentCID differs from its parent's CID fails reads of
 * unallocated data with EINVAL), version 3 uncompressed extents read-only.
 * Resize (grow only) goes beyond qemu, which cannot resize VMDK at all
 * (vmdk-resize.c).
 *
 * Trust policy: extent files are opened with dk_file_open_rel, so they must
 * resolve inside the descriptor's directory unless DK_OPEN_ALLOW_EXTERNAL.
 * Known gaps: VMFSSPARSE (COWD), SESPARSE, VMFSRDM/VMFSRAW extents are
 * refused; RDONLY extents force a read-only open; NOACCESS extents fail
 * reads.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmdk.h"

static int vmdk_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len >= 4 && (dk_le32(buf) == VMDK4_MAGIC || dk_le32(buf) == VMDK3_MAGIC))
        return 100;
    /* A text descriptor: the first non-comment line is version=1|2|3. */
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return 0;
        while (p < nl && (*p == ' ' || *p == '\t'))
            p++;
        if (p < nl && *p != '#' && *p != '\r')
            return (nl - p >= 9 && !memcmp(p, "version=", 8) &&
                    p[8] >= '1' && p[8] <= '3' && (nl - p == 9 || p[9] == '\r')) ? 100 : 0;
        p = nl + 1;
    }
    return 0;
}

int vmdk_parent_check(struct dk_image *img)
{
    struct vmdk_state *st = img->priv;
    if (st->cid_checked || !img->backing)
        return 0;
    if (img->backing->drv != &dk_drv_vmdk)
        return dk_set_error(img, -EINVAL, "vmdk: the parent of a VMDK must be a VMDK");
    const struct vmdk_state *pst = img->backing->priv;
    if (pst->desc.cid != st->desc.parent_cid)
        return dk_set_error(img, -EINVAL,
            "vmdk: parent CID mismatch: this image expects parentCID=%08x but its parent "
            "'%s' has CID=%08x (the parent changed after this child was made)",
            st->desc.parent_cid, img->backing->filename, pst->desc.cid);
    st->cid_checked = true;
    return 0;
}

struct vmdk_extent *vmdk_add_extent(struct dk_image *img, struct vmdk_state *st)
{
    void *n = realloc(st->ext, (st->n_ext + 1) * sizeof(*st->ext));
    if (!n) {
        dk_set_error(img, -ENOMEM, "out of memory");
        return NULL;
    }
    st->ext = n;
    struct vmdk_extent *e = &st->ext[st->n_ext++];
    memset(e, 0, sizeof(*e));
    return e;
}

int vmdk_open_extent(struct dk_image *img, struct vmdk_extent *e,
                     const struct vmdk_desc_extent *x)
{
    e->type = x->type;
    e->access = x->access;
    e->bytes = x->sectors * VMDK_SECTOR;
    e->flat_offset = x->offset * VMDK_SECTOR;
    if (x->access == VMDK_RDONLY && !img->read_only)
        return dk_set_error(img, -EROFS, "vmdk: extent '%s' is RDONLY: open the image "
                            "read-only", x->fname ? x->fname : "");
    if (x->type == VMDK_EXT_ZERO)
        return 0;
    if (!(e->name = strdup(x->fname)))
        return dk_set_error(img, -ENOMEM, "out of memory");
    int r = dk_file_open_rel(img, x->fname, !img->read_only && x->access == VMDK_RW,
                             &e->file);
    if (r < 0)
        return r;
    e->own_file = true;
    if (x->type != VMDK_EXT_SPARSE)
        return 0;
    if ((r = vmdk_sparse_open(img, e)) < 0)
        return r;
    if (e->h.capacity < x->sectors)
        return dk_set_error(img, -EINVAL, "vmdk: extent '%s' has a capacity of %llu "
                            "sectors, less than the %llu the descriptor gives", x->fname,
                            (unsigned long long)e->h.capacity,
                            (unsigned long long)x->sectors);
    return 0;
}

/* Opens the extents a descriptor names. */
static int open_desc_extents(struct dk_image *img, struct vmdk_state *st)
{
    if (st->desc.n_ext == 0)
        return dk_set_error(img, -EINVAL, "vmdk: the descriptor names no extents");
    uint64_t start = 0;
    for (size_t i = 0; i < st->desc.n_ext; i++) {
        struct vmdk_extent *e = vmdk_add_extent(img, st);
        if (!e)
            return -ENOMEM;
        e->start = start;
        int r = vmdk_open_extent(img, e, &st->desc.ext[i]);
        if (r < 0)
            return r;
        start += e->bytes;
    }
    img->size = start;
    return 0;
}

static int read_text(struct dk_image *img, uint64_t off, uint64_t len, char **out)
{
    char *t = malloc(len + 1);
    if (!t)
        return dk_set_error(img, -ENOMEM, "out of memory");
    int r = dk_file_pread(img->file, t, len, off);
    if (r < 0) {
        free(t);
        return dk_set_error(img, r, "vmdk: cannot read the descriptor: %s", strerror(-r));
    }
    t[len] = '\0';
    *out = t;
    return 0;
}

static int parse_desc(struct dk_image *img, struct vmdk_state *st, uint64_t off, uint64_t len)
{
    char *t = NULL;
    struct dk_error err = { 0 };
    int r = read_text(img, off, len, &t);
    if (r < 0)
        return r;
    r = vmdk_desc_parse(&st->desc, t, len, &err);
    free(t);
    return r < 0 ? dk_set_error(img, r, "%s", err.msg) : 0;
}

/* A file starting with a hosted sparse header. */
static int open_sparse_file(struct dk_image *img, struct vmdk_state *st, uint64_t fsize)
{
    uint8_t b[VMDK_SECTOR];
    int r = dk_file_pread(img->file, b, sizeof(b), 0);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: cannot read header: %s", strerror(-r));
    struct vmdk_header h;
    vmdk_header_decode(b, &h);
    if (h.capacity == 0 && h.desc_offset) {   /* header only carries a descriptor */
        if (h.desc_offset > fsize / VMDK_SECTOR)
            return dk_set_error(img, -EINVAL, "vmdk: descriptor lies beyond end of file");
        uint64_t len = DK_MIN(fsize - h.desc_offset * VMDK_SECTOR, VMDK_MAX_DESC_BYTES);
        if ((r = parse_desc(img, st, h.desc_offset * VMDK_SECTOR, len)) < 0)
            return r;
        /* A CID update must stay inside the descriptor area the header
         * gives (none given: the update fails rather than overwrite). */
        st->desc_embedded = true;
        st->desc_off = h.desc_offset * VMDK_SECTOR;
        st->desc_cap = DK_MIN(h.desc_size, VMDK_MAX_DESC_BYTES / VMDK_SECTOR) * VMDK_SECTOR;
        st->desc_cap = DK_MIN(st->desc_cap, len);
        return open_desc_extents(img, st);
    }
    struct vmdk_extent *e = vmdk_add_extent(img, st);
    if (!e)
        return -ENOMEM;
    e->type = VMDK_EXT_SPARSE;
    e->access = VMDK_RW;
    e->file = img->file;
    if ((r = vmdk_sparse_open(img, e)) < 0)
        return r;
    e->bytes = e->h.capacity * VMDK_SECTOR;
    img->size = e->bytes;
    st->create_type = strdup(e->compressed ? "streamOptimized" : "monolithicSparse");
    if (!st->create_type)
        return dk_set_error(img, -ENOMEM, "out of memory");
    if (e->h.desc_offset && e->h.desc_size) {
        st->desc_embedded = true;
        st->desc_off = e->h.desc_offset * VMDK_SECTOR;
        st->desc_cap = e->h.desc_size * VMDK_SECTOR;
        if ((r = parse_desc(img, st, st->desc_off, st->desc_cap)) < 0)
            return r;
    }
    return 0;
}

/* Writable stream images: those holding data are not appended to; an
 * empty one gets the writer on its first write (vmdk-io.c). */
static void stream_prepare(struct dk_image *img, struct vmdk_state *st)
{
    for (size_t i = 0; i < st->n_ext; i++) {
        struct vmdk_extent *e = &st->ext[i];
        if (e->type == VMDK_EXT_SPARSE && e->compressed && !img->read_only)
            e->stream_full = !dk_is_zero(e->gd, (size_t)e->gd_entries * 4);
    }
}

static int vmdk_open(struct dk_image *img)
{
    struct vmdk_state *st = img->priv;
    uint64_t fsize;
    uint8_t b[4] = { 0 };
    int r = dk_file_size(img->file, &fsize);
    if (r == 0)
        r = dk_file_pread_eof0(img->file, b, sizeof(b), 0);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s", strerror(-r));
    if (fsize >= 4 && dk_le32(b) == VMDK3_MAGIC)
        return dk_set_error(img, -ENOTSUP, "vmdk: VMFSSPARSE (COWD) images are not supported");
    if (fsize >= VMDK_SECTOR && dk_le32(b) == VMDK4_MAGIC) {
        r = open_sparse_file(img, st, fsize);
    } else {
        if (fsize > VMDK_MAX_DESC_BYTES)
            return dk_set_error(img, -EFBIG, "vmdk: not a VMDK descriptor (%llu bytes, "
                                "more than %u)", (unsigned long long)fsize,
                                VMDK_MAX_DESC_BYTES);
        r = parse_desc(img, st, 0, fsize);
        if (r == 0)
            r = open_desc_extents(img, st);
    }
    if (r < 0)
        return r;
    if (!st->create_type && st->desc.create_type &&
        !(st->create_type = strdup(st->desc.create_type)))
        return dk_set_error(img, -ENOMEM, "out of memory");
    if (st->desc.parent_hint && st->desc.parent_hint[0]) {
        img->backing_name = strdup(st->desc.parent_hint);
        img->backing_fmt = strdup("vmdk");   /* a VMDK parent is always a VMDK */
        if (!img->backing_name || !img->backing_fmt)
            return dk_set_error(img, -ENOMEM, "out of memory");
    }
    stream_prepare(img, st);
    return 0;
}

static void vmdk_close(struct dk_image *img)
{
    struct vmdk_state *st = img->priv;
    for (size_t i = 0; i < st->n_ext; i++) {
        struct vmdk_extent *e = &st->ext[i];
        vmdk_swriter_free(e);
        vmdk_sparse_close(e);
        free(e->last_buf);
        free(e->name);
        if (e->own_file)
            dk_file_close(e->file);
    }
    free(st->ext);
    free(st->create_type);
    vmdk_desc_free(&st->desc);
}

/* ------------------------------------------------------------------ info */

static int info_extent(struct dk_val *list, const struct vmdk_extent *e, const char *fname)
{
    struct dk_val *o = dk_val_add_obj(list, NULL);
    if (!o)
        return -ENOMEM;
    bool ok = true;
    if (e->type == VMDK_EXT_SPARSE && e->compressed)
        ok = dk_val_add_bool(o, "compressed", 1);
    ok = ok && dk_val_add_uint(o, "virtual-size", e->bytes);
    ok = ok && dk_val_add_str(o, "filename", fname);
    if (e->type == VMDK_EXT_SPARSE)
        ok = ok && dk_val_add_uint(o, "cluster-size", e->grain_bytes);
    const char *fmt = !e->name ? "" : e->type == VMDK_EXT_SPARSE ? "SPARSE"
                    : e->type == VMDK_EXT_ZERO ? "ZERO" : "FLAT";
    ok = ok && dk_val_add_str(o, "format", fmt);
    return ok ? 0 : -ENOMEM;
}

static int vmdk_info(struct dk_image *img, struct dk_info *info)
{
    struct vmdk_state *st = img->priv;
    for (size_t i = 0; i < st->n_ext; i++)
        if (st->ext[i].type == VMDK_EXT_SPARSE && !info->cluster_size)
            info->cluster_size = (uint32_t)st->ext[i].grain_bytes;
    struct dk_val *fs = dk_val_new_obj(), *d, *list;
    info->format_specific = fs;
    info->files = calloc(st->n_ext + 1, sizeof(char *));
    if (!fs || !info->files || !dk_val_add_str(fs, "type", "vmdk") ||
        !(d = dk_val_add_obj(fs, "data")) || !dk_val_add_uint(d, "cid", st->desc.cid) ||
        !dk_val_add_uint(d, "parent-cid", st->desc.parent_cid) ||
        !dk_val_add_str(d, "create-type", st->create_type ? st->create_type : "") ||
        !(list = dk_val_add_list(d, "extents")))
        return dk_set_error(img, -ENOMEM, "out of memory");
    size_t nf = 0;
    for (size_t i = 0; i < st->n_ext; i++) {
        struct vmdk_extent *e = &st->ext[i];
        char *path = e->name ? dk_path_rel(img->filename, e->name) : strdup(img->filename);
        if (!path || info_extent(list, e, e->name ? path : img->filename) < 0) {
            free(path);
            return dk_set_error(img, -ENOMEM, "out of memory");
        }
        uint64_t a;
        if (e->own_file && dk_file_allocated(e->file, &a) == 0)
            info->actual_size += a;
        if (e->own_file)
            info->files[nf++] = path;
        else
            free(path);
    }
    return 0;
}

/* ----------------------------------------------------------------- check */

static void report(dk_report_fn fn, void *opaque, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(dk_report_fn fn, void *opaque, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (fn)
        fn(opaque, line);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct check_ctx {
    struct dk_check_result *res;
    dk_report_fn fn;
    void *opaque;
    uint64_t *offs;
    size_t n, cap;
};

static int check_gt(struct dk_image *img, struct vmdk_extent *e, uint32_t idx,
                    struct check_ctx *c)
{
    uint64_t bytes = (uint64_t)e->h.num_gtes * 4, sec = e->gd[idx];
    if (sec > e->file_size / VMDK_SECTOR || !dk_range_inside(sec * VMDK_SECTOR, bytes,
                                                             e->file_size)) {
        report(c->fn, c->opaque, "ERROR: grain table %u of %s at offset 0x%llx lies "
               "beyond end of file", idx, e->file->path,
               (unsigned long long)sec * VMDK_SECTOR);
        c->res->corruptions++;
        return 0;
    }
    uint32_t *gt = vmdk_sparse_gt(img, e, idx);
    if (!gt)
        return -EIO;
    for (uint32_t j = 0; j < e->h.num_gtes; j++) {
        uint64_t gi = (uint64_t)idx * e->h.num_gtes + j, off = (uint64_t)gt[j] * VMDK_SECTOR;
        if (gt[j] <= VMDK_GTE_ZERO || gi * e->grain_bytes >= e->bytes)
            continue;
        if (off >= e->file_size) {
            report(c->fn, c->opaque, "ERROR: cluster offset for sector %llu points after EOF",
                   (unsigned long long)((e->start + gi * e->grain_bytes) / VMDK_SECTOR));
            c->res->corruptions++;
            continue;
        }
        if (c->n == c->cap) {
            size_t nc = c->cap ? c->cap * 2 : 1024;
            void *p = realloc(c->offs, nc * sizeof(*c->offs));
            if (!p)
                return dk_set_error(img, -ENOMEM, "out of memory");
            c->offs = p, c->cap = nc;
        }
        c->offs[c->n++] = off;
    }
    return 0;
}

static int check_extent(struct dk_image *img, struct vmdk_extent *e, struct check_ctx *c)
{
    c->n = 0;
    for (uint32_t idx = 0; idx < e->gd_entries; idx++) {
        if (e->gd[idx] == 0)
            continue;
        int r = check_gt(img, e, idx, c);
        if (r < 0)
            return r;
    }
    if (c->n > 1)
        qsort(c->offs, c->n, sizeof(*c->offs), cmp_u64);
    /* Raw grains are grain_bytes long; compressed ones at least a sector. */
    uint64_t len = e->compressed ? VMDK_SECTOR : e->grain_bytes;
    for (size_t i = 1; i < c->n; i++) {
        if (c->offs[i] - c->offs[i - 1] < len) {
            report(c->fn, c->opaque, "ERROR: grains at offsets 0x%llx and 0x%llx of %s "
                   "overlap", (unsigned long long)c->offs[i - 1],
                   (unsigned long long)c->offs[i], e->file->path);
            c->res->corruptions++;
        }
    }
    return 0;
}

static int vmdk_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
                      dk_report_fn fn, void *opaque)
{
    struct vmdk_state *st = img->priv;
    struct check_ctx c = { .res = res, .fn = fn, .opaque = opaque };
    int r = 0;
    (void)fix;   /* qemu cannot repair VMDK either */
    for (size_t i = 0; r == 0 && i < st->n_ext; i++)
        if (st->ext[i].type == VMDK_EXT_SPARSE)
            r = check_extent(img, &st->ext[i], &c);
    free(c.offs);
    uint64_t fsize;
    if (dk_file_size(img->file, &fsize) == 0)
        res->image_end_offset = fsize;
    return r;
}

const struct dk_driver dk_drv_vmdk = {
    .struct_size = sizeof(struct dk_driver),
    .name = "vmdk",
    .state_size = sizeof(struct vmdk_state),
    .features = DK_DRV_BACKING | DK_DRV_COMPRESSION,
    .create_opts = vmdk_create_opts,
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .read = vmdk_read,
    .write = vmdk_write,
    .zero = vmdk_zero,
    .flush = vmdk_flush,
    .block_status = vmdk_block_status,
    .truncate = vmdk_truncate,
    .create = vmdk_create,
    .info = vmdk_info,
    .check = vmdk_check,
    .compress = vmdk_compress,
    .write_compressed = vmdk_write_compressed,
};
