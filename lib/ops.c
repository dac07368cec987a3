/* ops.c - whole-image operations dispatched to drivers: create, probe,
 * info, check, snapshots, amend, backing rewrite, measure.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* --------------------------------------------------------------- create */

static int validate_opts(const struct dk_driver *drv, const struct dk_opts *opts,
                         struct dk_error *err)
{
    for (size_t i = 0; i < dk_opts_count(opts); i++) {
        const char *k = dk_opts_key(opts, i), *v = dk_opts_value(opts, i);
        const struct dk_optdesc *d = drv->create_opts;
        while (d && d->name && strcmp(d->name, k))
            d++;
        if (!d || !d->name)
            return dk_error_set(err, -EINVAL, "Invalid parameter '%s' for format %s",
                                k, drv->name);
        uint64_t sz;
        if (d->type == DK_OPT_SIZE && dk_parse_size(v, &sz) < 0)
            return dk_error_set(err, -EINVAL, "Parameter '%s' expects a size, got '%s'", k, v);
        if (d->type == DK_OPT_BOOL && dk_parse_bool(v) < 0)
            return dk_error_set(err, -EINVAL, "Parameter '%s' expects 'on' or 'off', got '%s'",
                                k, v);
        if (d->type == DK_OPT_NUMBER) {
            char *end;
            errno = 0;
            (void)strtoull(v, &end, 0);
            if (!*v || *end || errno)
                return dk_error_set(err, -EINVAL, "Parameter '%s' expects a number, got '%s'",
                                    k, v);
        }
    }
    return 0;
}

int dk_create(const struct dk_create_args *a, struct dk_error *err)
{
    const struct dk_driver *drv = dk_driver_find(a->format ? a->format : "raw");
    if (!drv)
        return dk_error_set(err, -EINVAL, "Unknown file format '%s'", a->format);
    if (!drv->create)
        return dk_error_set(err, -ENOTSUP, "Format %s does not support image creation",
                            drv->name);
    int r = validate_opts(drv, a->opts, err);
    if (r < 0)
        return r;

    struct dk_create_ctx ctx = {
        .filename = a->filename, .size = a->size, .opts = a->opts, .flags = a->flags,
        .secret = a->secret, .secret_len = a->secret_len, .err = err,
    };
    const char *bf = dk_opts_get(a->opts, "backing_file");
    if (bf && *bf && !(a->flags & DK_CREATE_NO_BACKING_CHECK)) {
        const char *bfmt = dk_opts_get(a->opts, "backing_fmt");
        if (!bfmt)
            return dk_error_set(err, -EINVAL,
                "backing file '%s' given without its format: add -F FMT "
                "(backing files are never probed)", bf);
        char *path = dk_path_rel(a->filename, bf);
        if (!path)
            return dk_error_set(err, -ENOMEM, "out of memory");
        struct dk_open_opts o = { .format = bfmt, .flags = DK_OPEN_FORCE_SHARE,
                                  .secret = a->secret, .secret_len = a->secret_len };
        struct dk_error sub = { 0 };
        ctx.backing = dk_open(path, &o, &sub);
        free(path);
        if (!ctx.backing)
            return dk_error_set(err, sub.code, "Could not open backing image: %s", sub.msg);
        if (!ctx.size)
            ctx.size = dk_image_size(ctx.backing);
    } else if (bf && *bf && !a->size) {
        return dk_error_set(err, -EINVAL,
            "Image size must be given when the backing file is not opened (-u)");
    }

    struct stat st;
    bool existed = stat(a->filename, &st) == 0;
    r = drv->create(&ctx);
    if (ctx.backing)
        dk_close(ctx.backing);
    if (r < 0) {
        if (!err->code)
            dk_error_set(err, r, "%s: %s", a->filename, strerror(-r));
        /* Leave no half-made image behind (a file or device that was there
         * before is not ours to remove). */
        if (!existed)
            unlink(a->filename);
    }
    return r;
}

int dk_probe(const char *filename, const char **fmt, struct dk_error *err)
{
    struct dk_file *f;
    int r = dk_file_open(&f, filename, false, err);
    if (r < 0)
        return r;
    uint8_t buf[4096];
    r = dk_file_pread_eof0(f, buf, sizeof(buf), 0);
    dk_file_close(f);
    if (r < 0)
        return dk_error_set(err, r, "%s: %s", filename, strerror(-r));
    *fmt = dk_driver_probe(buf, sizeof(buf), filename)->name;
    return 0;
}

/* ----------------------------------------------------------------- info */

int dk_info(struct dk_image *img, struct dk_info *info)
{
    memset(info, 0, sizeof(*info));
    info->filename = strdup(img->filename);
    info->format = img->drv->name;
    info->virtual_size = img->size;
    info->dirty = -1;
    dk_file_allocated(img->file, &info->actual_size);
    if (img->backing_name && *img->backing_name) {
        info->backing_filename = strdup(img->backing_name);
        info->full_backing_filename = img->backing
            ? strdup(img->backing->filename) : dk_path_rel(img->filename, img->backing_name);
        info->backing_format = dk_strdup0(img->backing_fmt);
    }
    if (!info->filename)
        return dk_set_error(img, -ENOMEM, "out of memory");
    if (!img->drv->info)
        return 0;
    pthread_mutex_lock(&img->lock);
    int r = img->drv->info(img, info);
    pthread_mutex_unlock(&img->lock);
    return r;
}

void dk_snapshots_free(struct dk_snapshot *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        free(s[i].id);
        free(s[i].name);
    }
    free(s);
}

void dk_info_free(struct dk_info *info)
{
    free(info->filename);
    free(info->backing_filename);
    free(info->full_backing_filename);
    free(info->backing_format);
    dk_snapshots_free(info->snapshots, info->nb_snapshots);
    dk_val_free(info->format_specific);
    for (size_t i = 0; info->files && info->files[i]; i++)
        free(info->files[i]);
    free(info->files);
    memset(info, 0, sizeof(*info));
}

/* -------------------------------------------- check, snapshots, amend */

int dk_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
             dk_report_fn report, void *opaque)
{
    memset(res, 0, sizeof(*res));
    if (!img->drv->check)
        return dk_set_error(img, -ENOTSUP, "This image format (%s) does not support checks",
                            img->drv->name);
    if (fix && img->read_only)
        return dk_check_request(img, 0, 0, true);
    pthread_mutex_lock(&img->lock);
    int r = img->drv->check(img, fix, res, report, opaque);
    pthread_mutex_unlock(&img->lock);
    return r;
}

static int no_snapshots(struct dk_image *img)
{
    return dk_set_error(img, -ENOTSUP, "format %s does not support internal snapshots",
                        img->drv->name);
}

int dk_snapshot_list(struct dk_image *img, struct dk_snapshot **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!img->drv->snapshot_list)
        return 0;   /* no snapshots is a valid, empty list */
    pthread_mutex_lock(&img->lock);
    int r = img->drv->snapshot_list(img, out, n);
    pthread_mutex_unlock(&img->lock);
    return r;
}

#define SNAPSHOT_OP(fn, field)                                            \
    int fn(struct dk_image *img, const char *name)                        \
    {                                                                     \
        if (!img->drv->field)                                             \
            return no_snapshots(img);                                     \
        if (img->read_only)                                               \
            return dk_check_request(img, 0, 0, true);                     \
        pthread_mutex_lock(&img->lock);                                   \
        int r = img->drv->field(img, name);                               \
        pthread_mutex_unlock(&img->lock);                                 \
        return r;                                                         \
    }
SNAPSHOT_OP(dk_snapshot_create, snapshot_create)
SNAPSHOT_OP(dk_snapshot_apply, snapshot_apply)
SNAPSHOT_OP(dk_snapshot_delete, snapshot_delete)

int dk_amend_progress(struct dk_image *img, const struct dk_opts *opts,
                      dk_progress_fn progress, void *opaque)
{
    if (!img->drv->amend)
        return dk_set_error(img, -ENOTSUP, "format %s does not support amend", img->drv->name);
    if (img->read_only)
        return dk_check_request(img, 0, 0, true);
    pthread_mutex_lock(&img->lock);
    img->progress = progress;
    img->progress_opaque = opaque;
    int r = img->drv->amend(img, opts);
    img->progress = NULL;
    img->progress_opaque = NULL;
    pthread_mutex_unlock(&img->lock);
    return r;
}

int dk_amend(struct dk_image *img, const struct dk_opts *opts)
{
    return dk_amend_progress(img, opts, NULL, NULL);
}

int dk_set_backing(struct dk_image *img, const char *name, const char *fmt)
{
    if (!img->drv->set_backing)
        return dk_set_error(img, -ENOTSUP, "format %s does not support backing files",
                            img->drv->name);
    if (img->read_only)
        return dk_check_request(img, 0, 0, true);
    pthread_mutex_lock(&img->lock);
    int r = img->drv->set_backing(img, name, fmt);
    pthread_mutex_unlock(&img->lock);
    return r;
}

int dk_measure(const char *format, const struct dk_opts *opts, uint64_t size,
               struct dk_image *src, struct dk_measure *out, struct dk_error *err)
{
    const struct dk_driver *drv = dk_driver_find(format);
    if (!drv)
        return dk_error_set(err, -EINVAL, "Unknown file format '%s'", format);
    if (!drv->measure)
        return dk_error_set(err, -ENOTSUP, "Format driver '%s' does not support measure",
                            format);
    memset(out, 0, sizeof(*out));
    int r = validate_opts(drv, opts, err);
    return r < 0 ? r : drv->measure(opts, size, src, out, err);
}
