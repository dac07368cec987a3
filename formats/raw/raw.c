/* raw.c - the raw format: guest offset == file offset.
 *
 * Sparse-aware: block status comes from SEEK_DATA/SEEK_HOLE, zeroing punches
 * holes (or BLKZEROOUT on block devices). Preallocation off/falloc/full on
 * create and resize. Raw never has a backing file, so every range is
 * "allocated" in this layer, as qemu reports it.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const struct dk_optdesc raw_opts[] = {
    { "size", DK_OPT_SIZE, "Virtual disk size", NULL },
    { "preallocation", DK_OPT_STRING,
      "Preallocation mode (allowed values: off, falloc, full)", "off" },
    { 0 }
};

static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)buf; (void)len; (void)filename;
    return 1;   /* anything is a raw image, the weakest claim */
}

static int raw_open(struct dk_image *img)
{
    int r = dk_file_size(img->file, &img->size);
    if (r < 0)
        return dk_set_error(img, r, "cannot get size: %s", strerror(-r));
    return 0;
}

static void raw_close(struct dk_image *img) { (void)img; }

static int raw_read(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    /* A file shorter than a block device it was sized for reads zeros. */
    int r = dk_file_pread_eof0(img->file, buf, len, off);
    return r < 0 ? dk_set_error(img, r, "read at %llu: %s", (unsigned long long)off,
                                strerror(-r)) : 0;
}

static int raw_write(struct dk_image *img, const void *buf, size_t len, uint64_t off)
{
    int r = dk_file_pwrite(img->file, buf, len, off);
    return r < 0 ? dk_set_error(img, r, "write at %llu: %s", (unsigned long long)off,
                                strerror(-r)) : 0;
}

static int raw_zero(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    int r = dk_file_zero(img->file, off, len, flags & DK_ZERO_MAY_UNMAP);
    return r < 0 ? dk_set_error(img, r, "zeroing at %llu: %s", (unsigned long long)off,
                                strerror(-r)) : 0;
}

static int raw_discard(struct dk_image *img, uint64_t off, uint64_t len)
{
    return raw_zero(img, off, len, DK_ZERO_MAY_UNMAP);
}

static int raw_flush(struct dk_image *img)
{
    int r = dk_file_flush(img->file);
    return r < 0 ? dk_set_error(img, r, "flush: %s", strerror(-r)) : 0;
}

static int raw_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                            struct dk_extent *ext)
{
    bool data;
    uint64_t run;
    int r = dk_file_extent(img->file, off, len, &data, &run);
    if (r < 0)
        return dk_set_error(img, r, "block status: %s", strerror(-r));
    ext->length = run;
    ext->flags = DK_BS_ALLOCATED | DK_BS_OFFSET_VALID | (data ? DK_BS_DATA : DK_BS_ZERO);
    ext->host_offset = off;
    ext->host_file = img->filename;
    return 0;
}

/* Grows or shrinks FILE to SIZE with the preallocation mode for new bytes. */
static int raw_set_size(struct dk_file *f, uint64_t old, uint64_t size, const char *prealloc)
{
    if (f->is_blockdev)
        return size <= old ? 0 : -ENOSPC;
    int r = dk_file_truncate(f, size);
    if (r < 0 || size <= old || !prealloc || !strcmp(prealloc, "off"))
        return r;
    if (!strcmp(prealloc, "falloc"))
        return dk_file_fallocate(f, old, size - old);
    if (!strcmp(prealloc, "full"))
        return dk_file_prealloc_full(f, old, size - old);
    return -EINVAL;
}

static bool prealloc_valid(const char *p)
{
    return !p || !strcmp(p, "off") || !strcmp(p, "falloc") || !strcmp(p, "full");
}

static int raw_truncate(struct dk_image *img, uint64_t size, const char *prealloc,
                        unsigned flags)
{
    (void)flags;
    if (!prealloc_valid(prealloc))
        return dk_set_error(img, -EINVAL, "Invalid preallocation mode: '%s'", prealloc);
    int r = raw_set_size(img->file, img->size, size, prealloc);
    if (r == -ENOSPC && img->file->is_blockdev)
        return dk_set_error(img, r, "cannot grow a block device");
    if (r < 0)
        return dk_set_error(img, r, "resize: %s", strerror(-r));
    img->size = size;
    return 0;
}

static int raw_create(const struct dk_create_ctx *c)
{
    const char *prealloc = dk_opts_get(c->opts, "preallocation");
    if (!prealloc_valid(prealloc))
        return dk_error_set(c->err, -EINVAL, "Invalid preallocation mode: '%s'", prealloc);
    int fd = open(c->filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return dk_error_set(c->err, -errno, "%s: %s", c->filename, strerror(errno));
    close(fd);
    struct dk_file *f;
    int r = dk_file_open(&f, c->filename, true, c->err);
    if (r < 0)
        return r;
    r = f->is_blockdev ? 0 : dk_file_truncate(f, 0);
    if (r == 0)     /* whole sectors, as qemu-img creates raw files */
        r = raw_set_size(f, 0, dk_round_up(c->size, 512), prealloc);
    if (r < 0)
        dk_error_set(c->err, r, "%s: %s", c->filename, strerror(-r));
    dk_file_close(f);
    return r;
}

/* As qemu-img: a raw file needs its whole virtual size (holes count too),
 * rounded up to whole sectors when measured from --size. */
static int raw_measure(const struct dk_opts *opts, uint64_t size, struct dk_image *src,
                       struct dk_measure *out, struct dk_error *err)
{
    (void)opts; (void)err;
    uint64_t s = src ? dk_image_size(src) : dk_round_up(size, 512);
    out->fully_allocated = s;
    out->required = s;
    return 0;
}

const struct dk_driver dk_drv_raw = {
    .struct_size = sizeof(struct dk_driver),
    .name = "raw",
    .state_size = 0,
    .features = DK_DRV_DIRECT_READ,
    .create_opts = raw_opts,
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .read = raw_read,
    .write = raw_write,
    .zero = raw_zero,
    .discard = raw_discard,
    .flush = raw_flush,
    .block_status = raw_block_status,
    .truncate = raw_truncate,
    .create = raw_create,
    .measure = raw_measure,
};
