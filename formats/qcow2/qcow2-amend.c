/* qcow2-amend.c - `diskkit amend` for qcow2: options that change an
 * existing image in place (qemu-img amend), validated together first and
 * then applied in qemu's order.
 *
 * Spec: qemu docs/interop/qcow2.txt (version 2/3 header, compatible
 * feature bit 0 "lazy refcounts", refcount_order, backing file name and
 * format extension, virtual size).
 * Every option, and every precondition of the changes it asks for, is
 * checked before anything is written, so a refused amend leaves the image
 * untouched. Then, as qemu-img amend does:
 *  1. compat=1.1 (upgrade, qcow2-compat.c) - first, other options may
 *     need version 3;
 *  1b. encrypt.* LUKS key slots (qcow2-crypt-amend.c): the new key
 *     material is computed during validation, written here;
 *  2. refcount_bits=N (qcow2-reforder.c), v3 only unless N is 16;
 *  3. lazy_refcounts=on|off: flips the compatible bit (v3 only). Turning
 *     it off first writes every postponed refcount (the flush clears the
 *     dirty bit), then the refcount-before-L2 write ordering applies;
 *  4. backing_file / backing_fmt: rewrites the name and format; a backing
 *     file needs a format (backing files are never probed). qemu-img 7.2
 *     refuses these ("use rebase"); diskkit keeps allowing them;
 *  5. size: resize (shrinking allowed, as qemu-img amend does);
 *  6. compat=0.10 (downgrade, qcow2-compat.c) - last, once the other
 *     options removed what version 2 cannot express.
 * Known gaps: data files and the encryption format and cipher (create
 * options) are refused with a message naming the option.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* The image as the options ask it to be. */
struct plan {
    uint32_t version;         /* 2 or 3 */
    uint32_t order;           /* refcount_order */
    uint64_t size;            /* virtual size */
};

static int refuse(struct dk_image *img, const char *key)
{
    return dk_set_error(img, -ENOTSUP, "qcow2: amending '%s' is not supported", key);
}

static int parse_refcount_bits(struct dk_image *img, const char *v, uint32_t *order)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || *end || !n || n > 64 || (n & (n - 1)))
        return dk_set_error(img, -EINVAL, "Refcount width must be a power of two and may "
                            "not exceed 64 bits");
    *order = (uint32_t)__builtin_ctzll(n);
    return 0;
}

/* Checks one option without changing anything; records its target. */
static int validate(struct dk_image *img, const char *k, const char *v, struct plan *p)
{
    if (!strcmp(k, "lazy_refcounts"))
        return dk_parse_bool(v) < 0
            ? dk_set_error(img, -EINVAL, "Parameter 'lazy_refcounts' expects 'on' or 'off'") : 0;
    if (!strcmp(k, "backing_file") || !strcmp(k, "backing_fmt") || !strcmp(k, "force") ||
        qcow2_crypt_amend_option(k))
        return 0;
    if (!strcmp(k, "size"))
        return dk_parse_size(v, &p->size) < 0 || !p->size
            ? dk_set_error(img, -EINVAL, "Parameter 'size' expects a size, got '%s'", v) : 0;
    if (!strcmp(k, "compat")) {
        if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
            p->version = 3;
        else if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
            p->version = 2;
        else
            return dk_set_error(img, -EINVAL, "Invalid compatibility level: '%s'", v);
        return 0;
    }
    if (!strcmp(k, "refcount_bits"))
        return parse_refcount_bits(img, v, &p->order);
    return refuse(img, k);
}

/* Checks the options against each other and the image (writes nothing
 * but a flush of cached metadata). */
static int validate_plan(struct dk_image *img, const struct dk_opts *opts, const struct plan *p)
{
    struct qcow2_state *s = img->priv;
    const char *lazy = dk_opts_get(opts, "lazy_refcounts");
    if (lazy && dk_parse_bool(lazy) == 1 && p->version < 3)
        return dk_set_error(img, -EINVAL, "Lazy refcounts only supported with "
                            "compatibility level 1.1 and above (use compat=1.1 or greater)");
    if (p->order != s->refcount_order && p->version < 3 && p->order != 4)
        return dk_set_error(img, -EINVAL, "Refcount widths other than 16 bits require "
                            "compatibility level 1.1 or above (use compat=1.1 or greater)");
    int r = 0;
    if (p->version == 3 && !s->v3)
        r = qcow2_upgrade_check(img);
    if (r == 0 && p->order != s->refcount_order)
        r = qcow2_refcount_order_check(img, p->order);
    if (r == 0 && p->version == 2 && s->v3)
        r = qcow2_downgrade_check(img, p->order, p->size);
    return r;
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

void qcow2_amend_progress(struct dk_image *img, uint64_t done, uint64_t total)
{
    struct qcow2_state *s = img->priv;
    const uint64_t unit = 1000000;
    if (!img->progress || !s->amend_steps)
        return;
    uint64_t part = total && done < total ? done * unit / total : unit;
    img->progress(img->progress_opaque, s->amend_step * unit + part, s->amend_steps * unit);
}

/* Applies the validated plan P (and the prepared key slot change KEYS,
 * or NULL) in qemu-img's order. */
static int apply(struct dk_image *img, const struct dk_opts *opts, const struct plan *p,
                 const struct dk_luks_change *keys)
{
    struct qcow2_state *s = img->priv;
    const char *lazy = dk_opts_get(opts, "lazy_refcounts");
    const char *bf = dk_opts_get(opts, "backing_file"), *bfmt = dk_opts_get(opts, "backing_fmt");
    bool up = p->version == 3 && !s->v3, down = p->version == 2 && s->v3;
    bool reorder = p->order != s->refcount_order;
    int r = 0;
    s->amend_step = 0;
    s->amend_steps = up + (keys != NULL) + reorder + down;
    if (up && (r = qcow2_upgrade(img)) == 0)
        s->amend_step++;
    if (r == 0 && keys && (r = qcow2_crypt_amend_apply(img, keys)) == 0)
        s->amend_step++;
    if (r == 0 && reorder && (r = qcow2_refcount_order_change(img, p->order)) == 0)
        s->amend_step++;
    if (r == 0 && lazy)
        r = set_lazy(img, dk_parse_bool(lazy) == 1);
    if (r == 0 && (bf || bfmt))
        r = set_backing(img, bf, bfmt);
    if (r == 0 && p->size != img->size)
        r = qcow2_truncate(img, p->size, NULL, p->size < img->size ? DK_RESIZE_SHRINK : 0);
    if (r == 0 && down)
        r = qcow2_downgrade(img);
    s->amend_steps = 0;
    return r;
}

int qcow2_amend(struct dk_image *img, const struct dk_opts *opts)
{
    struct qcow2_state *s = img->priv;
    struct plan p = { s->v3 ? 3 : 2, s->refcount_order, img->size };
    if (!dk_opts_count(opts))
        return dk_set_error(img, -EINVAL, "no options to amend");
    for (size_t i = 0; i < dk_opts_count(opts); i++) {
        int r = validate(img, dk_opts_key(opts, i), dk_opts_value(opts, i), &p);
        if (r < 0)
            return r;
    }
    struct dk_luks_change *keys = NULL;
    int r = validate_plan(img, opts, &p);
    if (r == 0)
        r = qcow2_crypt_amend_prepare(img, opts, &keys);
    if (r == 0)
        r = apply(img, opts, &p, keys);
    dk_luks_change_free(keys);
    return r;
}
