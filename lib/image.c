/* image.c - image handles: open with probing and backing chains, request
 * checks, and guest I/O dispatch with fall-through to the backing chain.
 *
 * Invariants:
 *  1. A chain is opened top-down; each layer's backing is opened read-only
 *     after the layer's driver open succeeded, using only the recorded
 *     backing format (or the caller's -F for the top image): backing files
 *     are never probed (trust policy, INTERFACE.md).
 *  2. Every file in a chain is distinct by (st_dev, st_ino); the chain is at
 *     most DK_MAX_CHAIN deep. Both are checked before any data is read.
 *  3. Locks are taken top-down: a layer's mutex is held while its driver
 *     runs and while it reads its backing (a different handle).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define PROBE_BYTES 4096

struct chain_ctx {
    dev_t dev[DK_MAX_CHAIN + 1];
    ino_t ino[DK_MAX_CHAIN + 1];
    int n;
    int rw_depth;       /* backing layer opened read-write (0: none) */
};

static void image_free(struct dk_image *img)
{
    if (!img)
        return;
    if (img->priv && img->drv && img->drv->close)
        img->drv->close(img);
    if (img->backing)
        image_free(img->backing);
    dk_file_close(img->file);
    free(img->priv);
    free(img->filename);
    free(img->backing_name);
    free(img->backing_fmt);
    dk_image_secrets_free(img);
    pthread_mutex_destroy(&img->lock);
    free(img);
}

static int open_backing(struct dk_image *img, const struct dk_open_opts *o,
                        struct chain_ctx *chain, struct dk_error *err);

static int open_layer(struct dk_image **out, const char *filename, const char *format,
                      unsigned flags, const struct dk_open_opts *o, int depth,
                      struct chain_ctx *chain, struct dk_error *err)
{
    bool rw = flags & DK_OPEN_RDWR;
    struct dk_image *img = calloc(1, sizeof(*img));
    if (!img || !(img->filename = strdup(filename))) {
        free(img);
        return dk_error_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_init(&img->lock, NULL);
    img->flags = flags;
    img->depth = depth;
    img->secret = o ? o->secret : NULL;
    img->secret_len = o ? o->secret_len : 0;
    img->snapshot = depth == 0 && o ? o->snapshot : NULL;

    const struct dk_driver *drv = NULL;
    if (format) {
        drv = dk_driver_find(format);
        if (!drv) {
            image_free(img);
            return dk_error_set(err, -EINVAL, "Unknown file format '%s'", format);
        }
    }
    int r = dk_file_open(&img->file, filename, rw, err);
    if (r < 0) {
        image_free(img);
        return r;
    }
    for (int i = 0; i < chain->n; i++) {
        if (chain->dev[i] == img->file->dev && chain->ino[i] == img->file->ino) {
            image_free(img);
            return dk_error_set(err, -ELOOP,
                "%s: backing chain loop: the file is already part of the chain", filename);
        }
    }
    chain->dev[chain->n] = img->file->dev;
    chain->ino[chain->n] = img->file->ino;
    chain->n++;

    if (!drv) {
        uint8_t buf[PROBE_BYTES];
        r = dk_file_pread_eof0(img->file, buf, sizeof(buf), 0);
        if (r < 0) {
            image_free(img);
            return dk_error_set(err, r, "%s: cannot read: %s", filename, strerror(-r));
        }
        drv = dk_driver_probe(buf, sizeof(buf), filename);
        if (drv == &dk_drv_raw)
            img->probed_raw = true;
    }
    img->drv = drv;
    img->read_only = !rw || img->probed_raw;

    if (!(flags & DK_OPEN_NO_LOCK)) {
        r = dk_lock_take(img->file, rw && !img->probed_raw,
                         flags & DK_OPEN_FORCE_SHARE, err);
        if (r < 0) {
            image_free(img);
            return r;
        }
    }
    if (drv->state_size && !(img->priv = calloc(1, drv->state_size))) {
        image_free(img);
        return dk_error_set(err, -ENOMEM, "out of memory");
    }
    r = drv->open(img);
    if (r < 0) {
        dk_error_set(err, r, "%s", dk_image_errmsg(img));
        image_free(img);
        return r;
    }
    if (img->backing_name && img->backing_name[0] && !(flags & DK_OPEN_NO_BACKING)) {
        r = open_backing(img, o, chain, err);
        if (r < 0) {
            image_free(img);
            return r;
        }
    }
    *out = img;
    return 0;
}

static int open_backing(struct dk_image *img, const struct dk_open_opts *o,
                        struct chain_ctx *chain, struct dk_error *err)
{
    const char *fmt = img->backing_fmt;
    if ((!fmt || !*fmt) && img->depth == 0 && o)
        fmt = o->backing_format;
    if (!fmt || !*fmt)
        return dk_error_set(err, -EPERM,
            "%s: backing file '%s' has no recorded format and backing files are "
            "never probed; record it with: diskkit rebase -u -F FMT -b '%s' '%s'",
            img->filename, img->backing_name, img->backing_name, img->filename);
    if (img->depth + 1 >= DK_MAX_CHAIN)
        return dk_error_set(err, -ELOOP, "%s: backing chain deeper than %d images",
                            img->filename, DK_MAX_CHAIN);
    char *path = dk_path_rel(img->filename, img->backing_name);
    if (!path)
        return dk_error_set(err, -ENOMEM, "out of memory");
    unsigned flags = (img->flags & (DK_OPEN_ALLOW_EXTERNAL | DK_OPEN_FORCE_SHARE |
                                    DK_OPEN_NO_LOCK)) | DK_OPEN_BACKING_RO;
    /* commit writes into one backing layer: the first (DK_OPEN_BACKING_RW)
     * or the one dk_open_chain_rw names by depth. */
    if (img->depth + 1 == chain->rw_depth ||
        (img->depth == 0 && (img->flags & DK_OPEN_BACKING_RW)))
        flags = (flags & ~DK_OPEN_BACKING_RO & ~DK_OPEN_FORCE_SHARE) | DK_OPEN_RDWR;
    struct dk_error sub = { 0 };
    int r = open_layer(&img->backing, path, fmt, flags, o, img->depth + 1, chain, &sub);
    if (r < 0) {
        if (!strncmp(sub.msg, path, strlen(path)))
            dk_error_set(err, r, "%s: could not open backing file: %s", img->filename, sub.msg);
        else
            dk_error_set(err, r, "%s: could not open backing file %s: %s",
                         img->filename, path, sub.msg);
    }
    free(path);
    return r;
}

/* dk_open with the backing layer at RW_DEPTH (0: none) opened read-write. */
static struct dk_image *open_chain(const char *filename, const struct dk_open_opts *opts,
                                   int rw_depth, struct dk_error *err)
{
    struct chain_ctx chain = { .n = 0, .rw_depth = rw_depth };
    struct dk_image *img = NULL;
    if (err)
        err->code = 0, err->msg[0] = '\0';
    if (!filename || !*filename) {
        dk_error_set(err, -EINVAL, "no image file name given");
        return NULL;
    }
    unsigned flags = opts ? opts->flags : 0;
    if (rw_depth)
        flags &= ~DK_OPEN_BACKING_RW;
    if (open_layer(&img, filename, opts ? opts->format : NULL, flags, opts, 0, &chain, err) < 0)
        return NULL;
    return img;
}

struct dk_image *dk_open(const char *filename, const struct dk_open_opts *opts,
                         struct dk_error *err)
{
    return open_chain(filename, opts, 0, err);
}

struct dk_image *dk_open_chain_rw(const char *filename, const struct dk_open_opts *opts,
                                  int rw_depth, struct dk_error *err)
{
    if (rw_depth < 1 || rw_depth >= DK_MAX_CHAIN) {
        dk_error_set(err, -EINVAL, "backing layer depth %d out of range", rw_depth);
        return NULL;
    }
    struct dk_image *img = open_chain(filename, opts, rw_depth, err);
    const struct dk_image *l = img;
    for (int d = 0; l && d < rw_depth; d++)
        l = l->backing;
    if (img && !l) {
        dk_error_set(err, -ENOENT, "%s: backing chain has fewer than %d layers below it",
                     filename, rw_depth);
        dk_close(img);
        return NULL;
    }
    return img;
}

int dk_close(struct dk_image *img)
{
    if (!img)
        return 0;
    int r = 0;
    if (!img->read_only && img->drv->flush) {
        pthread_mutex_lock(&img->lock);
        r = img->drv->flush(img);
        pthread_mutex_unlock(&img->lock);
    }
    image_free(img);
    return r;
}

/* ------------------------------------------------------------ accessors */

uint64_t dk_image_size(const struct dk_image *img) { return img->size; }
const char *dk_image_format(const struct dk_image *img) { return img->drv->name; }
const char *dk_image_filename(const struct dk_image *img) { return img->filename; }
int dk_image_read_only(const struct dk_image *img) { return img->read_only; }
struct dk_image *dk_image_backing(const struct dk_image *img) { return img->backing; }

uint32_t dk_image_cluster_size(const struct dk_image *img)
{
    struct dk_info info;
    memset(&info, 0, sizeof(info));
    /* Formats publish their granularity through info; raw is 512. */
    if (img->drv->info && img->drv->info((struct dk_image *)img, &info) == 0 &&
        info.cluster_size) {
        uint32_t c = info.cluster_size;
        dk_info_free(&info);
        return c;
    }
    dk_info_free(&info);
    return 512;
}

/* -------------------------------------------------------------- requests */

int dk_check_request(struct dk_image *img, uint64_t off, uint64_t len, bool write)
{
    if (!dk_range_inside(off, len, img->size))
        return dk_set_error(img, -EINVAL,
            "request at offset %llu length %llu is past the end of the image (%llu bytes)",
            (unsigned long long)off, (unsigned long long)len,
            (unsigned long long)img->size);
    if (write && img->read_only) {
        if (img->probed_raw)
            return dk_set_error(img, -EPERM,
                "image was probed as raw: writes need an explicit -f raw");
        if (img->corrupt)
            return dk_set_error(img, -EROFS,
                "image is marked corrupt; repair it with 'diskkit check -r all'");
        return dk_set_error(img, -EROFS, "image is opened read-only");
    }
    return 0;
}

/* Copies an error from a lower layer up to IMG, keeping its file name. */
static int propagate(struct dk_image *img, struct dk_image *low, int r)
{
    if (low != img)
        dk_set_error(img, r, "%s", dk_image_errmsg(low));
    return r;
}

int dk_read_backing(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    struct dk_image *b = img->backing;
    uint64_t bsize = b ? b->size : 0;
    size_t n = 0;
    if (b && off < bsize) {
        n = (size_t)DK_MIN((uint64_t)len, bsize - off);
        int r = dk_pread(b, buf, n, off);
        if (r < 0)
            return propagate(img, b, r);
    }
    if (n < len)
        memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

/* Layer status with sanity checks on what the driver answered. */
static int layer_status(struct dk_image *img, uint64_t off, uint64_t len, struct dk_extent *ext)
{
    memset(ext, 0, sizeof(*ext));
    int r = img->drv->block_status(img, off, len, ext);
    if (r < 0)
        return r;
    if (ext->length == 0 || ext->length > len)
        return dk_set_error(img, -EIO, "%s: driver returned a bad extent length",
                            img->drv->name);
    ext->offset = off;
    return 0;
}

int dk_pread(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    int r = dk_check_request(img, off, len, false);
    if (r < 0 || len == 0)
        return r;
    uint8_t *p = buf;
    pthread_mutex_lock(&img->lock);
    if ((img->drv->features & DK_DRV_DIRECT_READ) && !img->backing) {
        r = img->drv->read(img, buf, len, off);
        pthread_mutex_unlock(&img->lock);
        return r;
    }
    while (len) {
        struct dk_extent ext;
        r = layer_status(img, off, len, &ext);
        if (r < 0)
            break;
        size_t n = (size_t)ext.length;
        if (ext.flags & DK_BS_ZERO)
            memset(p, 0, n);
        else if (ext.flags & DK_BS_DATA)
            r = img->drv->read(img, p, n, off);
        else
            r = dk_read_backing(img, p, n, off);
        if (r < 0)
            break;
        p += n;
        off += n;
        len -= n;
    }
    pthread_mutex_unlock(&img->lock);
    return r;
}

int dk_pwrite(struct dk_image *img, const void *buf, size_t len, uint64_t off)
{
    int r = dk_check_request(img, off, len, true);
    if (r < 0 || len == 0)
        return r;
    if (!img->drv->write)
        return dk_set_error(img, -ENOTSUP, "format %s is read-only", img->drv->name);
    pthread_mutex_lock(&img->lock);
    r = img->drv->write(img, buf, len, off);
    pthread_mutex_unlock(&img->lock);
    return r;
}

int dk_pwrite_zeroes(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    int r = dk_check_request(img, off, len, true);
    if (r < 0 || len == 0)
        return r;
    if (img->drv->zero) {
        pthread_mutex_lock(&img->lock);
        r = img->drv->zero(img, off, len, flags);
        pthread_mutex_unlock(&img->lock);
        if (r != -ENOTSUP)
            return r;
    }
    static const size_t chunk = 1 << 20;
    void *z = calloc(1, chunk);
    if (!z)
        return dk_set_error(img, -ENOMEM, "out of memory");
    r = 0;   /* the driver's -ENOTSUP: write zeros as data */
    while (len && r >= 0) {
        size_t n = (size_t)DK_MIN((uint64_t)chunk, len);
        r = dk_pwrite(img, z, n, off);
        off += n;
        len -= n;
    }
    free(z);
    return r < 0 ? r : 0;
}

int dk_discard(struct dk_image *img, uint64_t off, uint64_t len)
{
    int r = dk_check_request(img, off, len, true);
    if (r < 0 || len == 0 || !img->drv->discard)
        return r;
    pthread_mutex_lock(&img->lock);
    r = img->drv->discard(img, off, len);
    pthread_mutex_unlock(&img->lock);
    return r;
}

int dk_flush(struct dk_image *img)
{
    if (img->read_only || !img->drv->flush)
        return 0;
    pthread_mutex_lock(&img->lock);
    int r = img->drv->flush(img);
    pthread_mutex_unlock(&img->lock);
    return r;
}

int dk_block_status(struct dk_image *img, uint64_t off, uint64_t len, unsigned how,
                    struct dk_extent *ext)
{
    if (off >= img->size || len == 0)
        return dk_set_error(img, -EINVAL, "block status request past the end of the image");
    len = DK_MIN(len, img->size - off);
    struct dk_image *l = img;
    int depth = 0;
    for (;;) {
        pthread_mutex_lock(&l->lock);
        int r = layer_status(l, off, len, ext);
        pthread_mutex_unlock(&l->lock);
        if (r < 0)
            return propagate(img, l, r);
        ext->depth = depth;
        len = ext->length;
        if (ext->flags || (how & DK_BS_THIS_LAYER))
            return 0;
        if (!l->backing)
            break;
        if (off >= l->backing->size) {
            /* Past the end of the backing file: reads as zeros here. */
            ext->flags = DK_BS_ZERO;
            return 0;
        }
        len = DK_MIN(len, l->backing->size - off);
        l = l->backing;
        depth++;
    }
    ext->flags = DK_BS_ZERO;
    return 0;
}

int dk_resize(struct dk_image *img, uint64_t size, const char *prealloc, unsigned flags)
{
    if (img->read_only)
        return dk_check_request(img, 0, 0, true);
    if (!img->drv->truncate)
        return dk_set_error(img, -ENOTSUP, "format %s does not support resizing",
                            img->drv->name);
    /* qemu-img checks this first, for every format, --shrink or not. */
    if (size < img->size && prealloc && strcmp(prealloc, "off"))
        return dk_set_error(img, -EINVAL, "Preallocation can only be used for growing images");
    if (size < img->size && !(flags & DK_RESIZE_SHRINK))
        return dk_set_error(img, -EPERM,
            "Use the --shrink option to perform a shrink operation.");
    pthread_mutex_lock(&img->lock);
    int r = img->drv->truncate(img, size, prealloc, flags);
    pthread_mutex_unlock(&img->lock);
    return r;
}
