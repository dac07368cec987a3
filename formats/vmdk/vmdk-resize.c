/* vmdk-resize.c - growing VMDK images (`diskkit resize`, the truncate hook).
 * qemu-img cannot resize VMDK at all; images grown here stay valid for
 * qemu, libvmdk and VMware's layout rules.
 *
 * Spec: "Virtual Disk Format 1.1": extent lines of the descriptor, hosted
 * sparse extent header (capacity, gdOffset, rgdOffset), grain directories;
 * the twoGbMaxExtent* subformats split the disk into 2 GiB extent files.
 *
 * What a grow does, in this order (each step is durable before the next,
 * so a crash leaves the old image valid, with extra space at most):
 *  1. New extent files (twoGbMaxExtent* past 2 GiB in the last extent),
 *     complete and flushed, created with O_EXCL next to the descriptor and
 *     named like the existing ones (NAME-f004.vmdk after NAME-f003.vmdk).
 *  2. The last extent grows: a flat file is extended (a sparse host file);
 *     a sparse extent gets zero-filled GTs, GD entries (in the GD slack or
 *     a relocated GD/RGD) and then its new header capacity
 *     (vmdk_sparse_grow). New GD entries always point at allocated GTs:
 *     qemu cannot allocate a GT on write.
 *  3. The descriptor (extent lines, ddb.geometry.cylinders, a new CID):
 *     a separate descriptor file is replaced by write + fsync + rename; an
 *     embedded one is rewritten in its area, and a grow whose descriptor
 *     would not fit that area is refused before step 1.
 * Between 2 and 3 a sparse extent's header capacity exceeds its extent
 * line; readers take the smaller (diskkit) or the header's (qemu) size, and
 * the old data is intact either way.
 *
 * Refused, image unchanged: shrinking, streamOptimized (write-once), ZERO
 * extents, mixed extent types, non-RW extents, flat extents on block
 * devices or sharing a file with another extent, preallocation modes.
 * Known gaps: files left by a crash in step 1 make the next grow fail with
 * EEXIST naming them (they are not removed automatically).
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmdk.h"

struct grow {
    uint64_t total;            /* new virtual size, sectors */
    uint64_t last_sectors;     /* new size of the last extent */
    size_t n_new;              /* new extent files */
    char *lines;               /* their descriptor lines */
    size_t lines_len;
    char **paths;              /* their paths (created: n_made of them) */
    size_t n_made;
    char *desc;                /* new descriptor text */
    size_t desc_len;
};

static void grow_free(struct grow *g, bool unlink_made)
{
    for (size_t i = 0; g->paths && i < g->n_new; i++) {
        if (unlink_made && i < g->n_made)
            unlink(g->paths[i]);
        free(g->paths[i]);
    }
    free(g->paths);
    free(g->lines);
    free(g->desc);
}

/* Checks that IMG has a layout this file can grow. */
static int check_layout(struct dk_image *img, const struct vmdk_state *st)
{
    const struct vmdk_extent *last = &st->ext[st->n_ext - 1];
    for (size_t i = 0; i < st->n_ext; i++) {
        const struct vmdk_extent *e = &st->ext[i];
        if (e->type == VMDK_EXT_SPARSE && e->compressed)
            return dk_set_error(img, -ENOTSUP, "vmdk: streamOptimized images are "
                                "write-once and cannot be resized; convert to another "
                                "subformat first");
        if (e->type == VMDK_EXT_ZERO)
            return dk_set_error(img, -ENOTSUP, "vmdk: cannot resize an image with a ZERO "
                                "extent");
        if (e->type != last->type)
            return dk_set_error(img, -ENOTSUP, "vmdk: cannot resize an image mixing flat "
                                "and sparse extents");
        if (e->access != VMDK_RW)
            return dk_set_error(img, -ENOTSUP, "vmdk: cannot resize an image with "
                                "RDONLY or NOACCESS extents");
        if (i + 1 < st->n_ext && e->name && last->name && !strcmp(e->name, last->name))
            return dk_set_error(img, -ENOTSUP, "vmdk: cannot resize: extent file '%s' "
                                "holds more than one extent", last->name);
    }
    if (last->type == VMDK_EXT_FLAT && last->file->is_blockdev)
        return dk_set_error(img, -ENOTSUP, "vmdk: cannot grow extent '%s': it is a block "
                            "device", last->name);
    /* A monolithic file's embedded descriptor may list no extent. */
    bool own = st->n_ext == 1 && !last->own_file && st->desc.n_ext == 0;
    if (st->desc.text && st->desc.n_ext != st->n_ext && !own)
        return dk_set_error(img, -ENOTSUP, "vmdk: cannot resize: the embedded descriptor "
                            "names %zu extents, the file holds %zu", st->desc.n_ext,
                            st->n_ext);
    if (!st->desc.text && (st->n_ext != 1 || last->own_file))
        return dk_set_error(img, -EINVAL, "vmdk: cannot resize: no descriptor");
    return 0;
}

/* Name of new extent K (1-based) after the last one, LAST ("x-f003.vmdk"
 * -> "x-f004.vmdk"); without that pattern, from the descriptor's name as
 * qemu-img create names them (the index counts all extents). */
static char *new_name(const char *last, const char *desc_file, bool flat, size_t n_ext,
                      size_t k)
{
    const char *dash = last && !strchr(last, '/') ? strrchr(last, '-') : NULL;
    char *out;
    if (dash && (dash[1] == 'f' || dash[1] == 's') && isdigit((unsigned char)dash[2])) {
        char *stop;
        unsigned long num = strtoul(dash + 2, &stop, 10);
        int width = (int)(stop - dash - 2);
        if (width <= 6 && (*stop == '.' || *stop == '\0'))
            return asprintf(&out, "%.*s%c%0*lu%s", (int)(dash + 1 - last), last, dash[1],
                            width < 3 ? 3 : width, num + k, stop) < 0 ? NULL : out;
    }
    char suffix[24];
    snprintf(suffix, sizeof(suffix), "-%c%03zu", flat ? 'f' : 's', n_ext + k);
    const char *b = strrchr(desc_file, '/');
    return vmdk_extent_path(b ? b + 1 : desc_file, suffix);
}

static int add_new_line(struct grow *g, const char *type, uint64_t sectors, const char *name)
{
    char *line = NULL;
    int n = !strcmp(type, "FLAT")
          ? asprintf(&line, "RW %" PRIu64 " FLAT \"%s\" 0\n", sectors, name)
          : asprintf(&line, "RW %" PRIu64 " %s \"%s\"\n", sectors, type, name);
    char *p = n < 0 ? NULL : realloc(g->lines, g->lines_len + (size_t)n + 1);
    if (!p) {
        free(line);
        return -ENOMEM;
    }
    memcpy(p + g->lines_len, line, (size_t)n + 1);
    g->lines = p;
    g->lines_len += (size_t)n;
    free(line);
    return 0;
}

/* Splits the new size into the last extent's and new extents' sizes and
 * builds names, lines and the new descriptor text. */
static int plan(struct dk_image *img, const struct vmdk_state *st, uint64_t sectors,
                struct grow *g)
{
    const struct vmdk_extent *last = &st->ext[st->n_ext - 1];
    const char *ct = st->create_type ? st->create_type : "";
    bool split = !strncmp(ct, "twoGbMaxExtent", 14);
    uint64_t cur = last->bytes / VMDK_SECTOR, add = sectors - img->size / VMDK_SECTOR;
    uint64_t room = split && cur < VMDK_SPLIT_SECTORS ? VMDK_SPLIT_SECTORS - cur : 0;
    uint64_t grow = split ? DK_MIN(room, add) : add;
    g->total = sectors;
    g->last_sectors = cur + grow;
    g->n_new = (size_t)dk_div_round_up(add - grow, VMDK_SPLIT_SECTORS);
    if (st->n_ext + g->n_new > VMDK_MAX_EXTENTS)
        return dk_set_error(img, -EFBIG, "vmdk: growing would need more than %d extents",
                            VMDK_MAX_EXTENTS);
    if (g->n_new && !(g->paths = calloc(g->n_new, sizeof(char *))))
        return dk_set_error(img, -ENOMEM, "out of memory");
    /* New extents only for twoGbMaxExtent*, whose descriptor lines match
     * the extents one to one (check_layout). */
    const char *type = g->n_new ? st->desc.ext[st->desc.n_ext - 1].type_name : "";
    uint64_t left = add - grow;
    for (size_t k = 0; k < g->n_new; k++) {
        uint64_t n = DK_MIN(left, VMDK_SPLIT_SECTORS);
        char *name = new_name(last->name, img->filename, last->type == VMDK_EXT_FLAT,
                              st->n_ext, k + 1);
        if (name && strpbrk(name, "\"\r\n")) {   /* cannot be quoted in a descriptor */
            dk_set_error(img, -EINVAL, "vmdk: cannot name a new extent file '%s'", name);
            free(name);
            return -EINVAL;
        }
        int r = name && (g->paths[k] = dk_path_rel(img->filename, name)) ? 0 : -ENOMEM;
        if (r == 0)
            r = add_new_line(g, type, n, name);
        free(name);
        if (r < 0)
            return dk_set_error(img, r, "out of memory");
        left -= n;
    }
    if (!st->desc.text)
        return 0;
    uint32_t cid;
    if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid))
        cid = (uint32_t)dk_now_ns() ^ 0xa5a5a5a5u;
    g->desc = vmdk_desc_grown(&st->desc, cid, g->last_sectors, g->lines, sectors,
                              &g->desc_len);
    if (!g->desc)
        return dk_set_error(img, -ENOMEM, "out of memory");
    if (st->desc_embedded && g->desc_len > st->desc_cap)
        return dk_set_error(img, -ENOSPC, "vmdk: the grown descriptor (%zu bytes) does "
                            "not fit the embedded descriptor area (%llu bytes)",
                            g->desc_len, (unsigned long long)st->desc_cap);
    return 0;
}

/* Step 1: the new extent files, complete and flushed. */
static int make_new_extents(struct dk_image *img, const struct vmdk_extent *last,
                            struct grow *g)
{
    uint64_t left = g->total - (last->start / VMDK_SECTOR + g->last_sectors);
    for (size_t k = 0; k < g->n_new; k++) {
        uint64_t n = DK_MIN(left, VMDK_SPLIT_SECTORS);
        const char *path = g->paths[k];
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return dk_set_error(img, -errno, "vmdk: cannot create extent file %s: %s",
                                path, strerror(errno));
        close(fd);
        g->n_made++;
        struct dk_file *f;
        struct dk_error err = { 0 };
        int r = dk_file_open(&f, path, true, &err);
        if (r < 0)
            return dk_set_error(img, r, "vmdk: %s", err.msg);
        if (last->type == VMDK_EXT_FLAT)
            r = dk_file_truncate(f, n * VMDK_SECTOR);
        else
            r = vmdk_sparse_create(f, n, last->zeroed_grain, NULL, &err);
        if (r == 0)
            r = dk_file_flush(f);
        dk_file_close(f);
        if (r < 0)
            return dk_set_error(img, r, "vmdk: creating extent file %s: %s", path,
                                err.msg[0] ? err.msg : strerror(-r));
        left -= n;
    }
    return 0;
}

/* Step 2: the last extent. */
static int grow_last(struct dk_image *img, struct vmdk_extent *e, uint64_t sectors)
{
    if (e->type == VMDK_EXT_SPARSE)
        return sectors > e->h.capacity ? vmdk_sparse_grow(img, e, sectors) : 0;
    uint64_t need = e->flat_offset + sectors * VMDK_SECTOR, have;
    int r = dk_file_size(e->file, &have);
    if (r == 0 && have < need && (r = dk_file_truncate(e->file, need)) == 0)
        r = dk_file_flush(e->file);
    return r < 0 ? dk_set_error(img, r, "vmdk: %s: extending the flat extent: %s",
                                e->file->path, strerror(-r)) : 0;
}

static int fsync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;
    free(copy);
    if (fd < 0 || fsync(fd) < 0)
        r = -errno;
    if (fd >= 0)
        close(fd);
    return r;
}

/* Writes the new descriptor file next to the old one, flushed and locked
 * like the image; returns its fd (TMP set) or -errno. */
static int write_tmp_desc(struct dk_image *img, const char *real, const struct grow *g,
                          char **tmp)
{
    struct stat sb;
    if (asprintf(tmp, "%s.resize-XXXXXX", real) < 0) {
        *tmp = NULL;
        return -ENOMEM;
    }
    int fd = mkostemp(*tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct dk_file tf = { .fd = fd, .path = *tmp };
    struct dk_error err = { 0 };
    int r = fstat(img->file->fd, &sb) < 0 || fchmod(fd, sb.st_mode & 07777) < 0 ? -errno : 0;
    /* The owner too, where allowed (only root may give files away). */
    if (r == 0 && fchown(fd, sb.st_uid, sb.st_gid) < 0 && errno != EPERM)
        r = -errno;
    if (r == 0)
        r = dk_file_pwrite(&tf, g->desc, g->desc_len, 0);
    if (r == 0)
        r = dk_file_flush(&tf);
    if (r == 0 && !(img->flags & DK_OPEN_NO_LOCK))
        r = dk_lock_take(&tf, true, false, &err);
    if (r < 0) {
        close(fd);
        unlink(*tmp);
        return r;
    }
    return fd;
}

/* Step 3 for a separate descriptor: rename over the old one, then make
 * img->file refer to the new file (its locks come along with the fd). */
static int replace_desc_file(struct dk_image *img, const struct grow *g, bool *committed)
{
    char *real = realpath(img->filename, NULL), *tmp = NULL;
    int fd = real ? write_tmp_desc(img, real, g, &tmp) : -errno, r = 0;
    if (fd >= 0 && rename(tmp, real) < 0) {
        r = -errno;
        close(fd);
        unlink(tmp);
    }
    if (fd >= 0 && r == 0) {
        *committed = true;
        struct stat sb;
        if (dup3(fd, img->file->fd, O_CLOEXEC) < 0 || fstat(img->file->fd, &sb) < 0)
            r = -errno;
        else
            img->file->ino = sb.st_ino, img->file->dev = sb.st_dev;
        close(fd);
        if (r == 0)
            r = fsync_dir(real);
    }
    free(real);
    free(tmp);
    return fd < 0 ? fd : r;
}

static int write_desc(struct dk_image *img, const struct vmdk_state *st,
                      const struct grow *g, bool *committed)
{
    int r;
    if (!g->desc) {
        *committed = true;
        return 0;
    }
    if (st->desc_embedded) {
        char *area = calloc(1, st->desc_cap);
        if (!area)
            return dk_set_error(img, -ENOMEM, "out of memory");
        memcpy(area, g->desc, g->desc_len);
        r = dk_file_pwrite(img->file, area, st->desc_cap, st->desc_off);
        free(area);
        *committed = true;   /* at least partly written: keep the new files */
        if (r == 0)
            r = dk_file_flush(img->file);
    } else {
        r = replace_desc_file(img, g, committed);
    }
    return r < 0 ? dk_set_error(img, r, "vmdk: writing the grown descriptor: %s",
                                strerror(-r)) : 0;
}

/* Brings the handle up to the new layout after the descriptor is written. */
static int adopt(struct dk_image *img, struct vmdk_state *st, struct grow *g)
{
    struct vmdk_extent *last = &st->ext[st->n_ext - 1];
    last->bytes = g->last_sectors * VMDK_SECTOR;
    img->size = last->start + last->bytes;
    st->cid_updated = true;   /* the grow gave it a new CID */
    if (!g->desc)
        return 0;
    struct vmdk_desc nd;
    struct dk_error err = { 0 };
    int r = vmdk_desc_parse(&nd, g->desc, g->desc_len, &err);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: re-reading the grown descriptor: %s", err.msg);
    vmdk_desc_free(&st->desc);
    st->desc = nd;
    for (size_t i = st->n_ext; i < st->desc.n_ext; i++) {
        struct vmdk_extent *e = vmdk_add_extent(img, st);
        if (!e)
            return -ENOMEM;
        e->start = img->size;
        if ((r = vmdk_open_extent(img, e, &st->desc.ext[i])) < 0)
            return r;
        img->size += e->bytes;
    }
    return 0;
}

int vmdk_truncate(struct dk_image *img, uint64_t size, const char *prealloc,
                  unsigned flags)
{
    struct vmdk_state *st = img->priv;
    (void)flags;
    if (prealloc && strcmp(prealloc, "off"))
        return dk_set_error(img, -ENOTSUP, "vmdk: preallocation mode '%s' is not "
                            "supported for resize", prealloc);
    uint64_t sectors = dk_div_round_up(size, VMDK_SECTOR);
    if (sectors * VMDK_SECTOR < img->size)
        return dk_set_error(img, -ENOTSUP, "vmdk: shrinking VMDK images is not supported "
                            "(qemu-img cannot shrink them either)");
    if (sectors * VMDK_SECTOR == img->size)
        return 0;
    if (sectors > VMDK_MAX_SECTORS)
        return dk_set_error(img, -EFBIG, "vmdk: %llu bytes is too large for a VMDK image",
                            (unsigned long long)size);
    struct grow g = { 0 };
    bool committed = false;
    int r = check_layout(img, st);
    if (r == 0)
        r = plan(img, st, sectors, &g);
    if (r == 0)
        r = vmdk_flush(img);
    if (r == 0)
        r = make_new_extents(img, &st->ext[st->n_ext - 1], &g);
    if (r == 0)
        r = grow_last(img, &st->ext[st->n_ext - 1], g.last_sectors);
    if (r == 0)
        r = write_desc(img, st, &g, &committed);
    if (committed && r == 0)
        r = adopt(img, st, &g);
    grow_free(&g, !committed);
    return r;
}
