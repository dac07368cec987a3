/* qcow2-amend.c - `diskkit amend` for qcow2: options that change header
 * fields in place (qemu-img amend).
 *
 * Spec: qemu docs/interop/qcow2.txt (compatible feature bit 0 "lazy
 * refcounts", backing file name and format extension, virtual size).
 * Every option is validated before anything is written, so a refused
 * option leaves the image untouched.
 *  - lazy_refcounts=on|off: flips the compatible bit (v3 only). Turning it
 *    off first writes every postponed refcount (the flush clears the dirty
 *    bit), then the refcount-before-L2 write ordering applies again.
 *  - backing_file / backing_fmt: rewrites the name and format; a backing
 *    file needs a format (backing files are never probed).
 *  - size: resize (shrinking allowed, as qemu-img amend does).
 *  - compat, refcount_bits: accepted only with the current value.
 * Known gaps: compat up/downgrades, refcount width changes, data files and
 * encryption key management are refused with a message naming the option.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

static int refuse(struct dk_image *img, const char *key, const char *why)
{
    return dk_set_error(img, -ENOTSUP, "qcow2: amending '%s' is not supported%s", key, why);
}

/* Checks one option without changing anything. */
static int validate(struct dk_image *img, const char *k, const char *v)
{
    struct qcow2_state *s = img->priv;
    uint64_t n;
    if (!strcmp(k, "lazy_refcounts")) {
        int b = dk_parse_bool(v);
        if (b < 0)
            return dk_set_error(img, -EINVAL, "Parameter 'lazy_refcounts' expects 'on' or 'off'");
        if (b && !s->v3)
            return dk_set_error(img, -EINVAL, "Lazy refcounts only supported with "
                                "compatibility level 1.1 and above (use compat=1.1 or greater)");
        return 0;
    }
    if (!strcmp(k, "backing_file") || !strcmp(k, "backing_fmt") || !strcmp(k, "force"))
        return 0;
    if (!strcmp(k, "size"))
        return dk_parse_size(v, &n) < 0 || !n
            ? dk_set_error(img, -EINVAL, "Parameter 'size' expects a size, got '%s'", v) : 0;
    if (!strcmp(k, "compat")) {
        bool v3 = !strcmp(v, "1.1") || !strcmp(v, "v3");
        bool v2 = !strcmp(v, "0.10") || !strcmp(v, "v2");
        if (!v2 && !v3)
            return dk_set_error(img, -EINVAL, "Invalid compatibility level: '%s'", v);
        return v3 == s->v3 ? 0 : refuse(img, k, " (convert the image with -o compat=...)");
    }
    if (!strcmp(k, "refcount_bits"))
        return strtoull(v, NULL, 10) == 1ull << s->refcount_order
            ? 0 : refuse(img, k, " (convert the image with -o refcount_bits=...)");
    return refuse(img, k, "");
}

static int set_lazy(struct dk_image *img, bool on)
{
    struct qcow2_state *s = img->priv;
    if (on == s->lazy)
        return 0;
    int r = qcow2_flush_all(img, true);   /* off: postponed refcounts written */
    if (r < 0)
        return r;
    uint64_t old = s->hdr.compatible;
    s->hdr.compatible = on ? old | QCOW2_COMPAT_LAZY : old & ~QCOW2_COMPAT_LAZY;
    if ((r = qcow2_header_write(img)) == 0 && (r = dk_file_flush(img->file)) < 0)
        dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    if (r < 0) {
        s->hdr.compatible = old;
        return r;
    }
    s->lazy = on;
    qcow2_cache_set_dep(s->l2_cache, on ? NULL : s->rb_cache);
    return 0;
}

static int set_backing(struct dk_image *img, const char *name, const char *fmt)
{
    if (!name)
        name = img->backing_name;
    if (!name || !*name) {
        if (fmt && !img->backing_name)
            return dk_set_error(img, -EINVAL, "backing_fmt given but the image has no "
                                "backing file");
        return qcow2_set_backing(img, NULL, NULL);
    }
    if (!fmt && img->backing_name && !strcmp(name, img->backing_name))
        fmt = img->backing_fmt;
    if (!fmt || !*fmt)
        return dk_set_error(img, -EINVAL, "backing format must be specified with "
                            "backing_fmt=FMT (backing files are never probed)");
    return qcow2_set_backing(img, name, fmt);
}

int qcow2_amend(struct dk_image *img, const struct dk_opts *opts)
{
    if (!dk_opts_count(opts))
        return dk_set_error(img, -EINVAL, "no options to amend");
    for (size_t i = 0; i < dk_opts_count(opts); i++) {
        int r = validate(img, dk_opts_key(opts, i), dk_opts_value(opts, i));
        if (r < 0)
            return r;
    }
    const char *lazy = dk_opts_get(opts, "lazy_refcounts"), *size = dk_opts_get(opts, "size");
    const char *bf = dk_opts_get(opts, "backing_file"), *bfmt = dk_opts_get(opts, "backing_fmt");
    int r = 0;
    if (lazy)
        r = set_lazy(img, dk_parse_bool(lazy) == 1);
    if (r == 0 && (bf || bfmt))
        r = set_backing(img, bf, bfmt);
    uint64_t n;
    if (r == 0 && size && dk_parse_size(size, &n) == 0 && n != img->size)
        r = qcow2_truncate(img, n, NULL, n < img->size ? DK_RESIZE_SHRINK : 0);
    return r;
}
