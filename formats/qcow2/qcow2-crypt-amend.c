/* qcow2-crypt-amend.c - `amend -o encrypt.*` on a LUKS-encrypted qcow2:
 * adds a passphrase to a key slot or erases key slots (qemu-img 7.2
 * amend's encrypt.state, encrypt.keyslot, encrypt.new-secret,
 * encrypt.old-secret and encrypt.iter-time).
 *
 * Spec: qemu docs/interop/qcow2.txt "Full disk encryption header pointer"
 * (the LUKS area this rewrites in place) and lib/crypto-luks-keys.c (the
 * LUKS1 side, its rules, messages and crash-safe write order).
 *
 * As in qemu: the image must be opened with its passphrase (the master key
 * comes from it); options on an image that is not encrypted, or that uses
 * legacy AES, are refused ("Can't amend encryption options - encryption
 * not present", "Only LUKS encryption options can be amended"). Secrets
 * are named by id and looked up among those registered on the handle
 * (dk_image_add_secret). Everything is checked, and the new key material
 * computed, before qcow2-amend.c writes anything.
 *
 * Known gaps: the LUKS area keeps its size and slot layout (qemu never
 * changes them either).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

#define CRYPT_METHOD_LUKS 2u

static const char *const slot_options[] = {
    "encrypt.state", "encrypt.keyslot", "encrypt.new-secret", "encrypt.old-secret",
    "encrypt.iter-time",
};

/* For amend -o help (qemu-img 7.2's texts); encrypt.iter-time is also a
 * creation option. */
const struct dk_optdesc qcow2_amend_opts[] = {
    { "encrypt.keyslot", DK_OPT_NUMBER, "Select a single keyslot to modify explicitly", NULL },
    { "encrypt.new-secret", DK_OPT_STRING,
      "New secret to set in the matching keyslots. Empty string to erase", NULL },
    { "encrypt.old-secret", DK_OPT_STRING, "Select all keyslots that match this password",
      NULL },
    { "encrypt.state", DK_OPT_STRING,
      "Select new state of affected keyslots (active/inactive)", NULL },
    { 0 }
};

bool qcow2_crypt_amend_option(const char *key)
{
    for (size_t i = 0; i < DK_ARRAY_SIZE(slot_options); i++)
        if (!strcmp(key, slot_options[i]))
            return true;
    return false;
}

/* A number option as qemu reads it (base 0, truncated to int like qemu's
 * `int keyslot`); -EINVAL with qemu's message otherwise. */
static int get_num(struct dk_image *img, const char *key, const char *v, int64_t min,
                   int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 0);
    if (!*v || *end || errno || n < min || n > max)
        return dk_set_error(img, -EINVAL, "Parameter '%s' expects a number", key);
    *out = n;
    return 0;
}

/* Fills A from OPTS (secrets resolved by id). */
static int parse(struct dk_image *img, const struct dk_opts *opts, struct dk_luks_amend *a)
{
    const char *state = dk_opts_get(opts, "encrypt.state");
    const char *slot = dk_opts_get(opts, "encrypt.keyslot");
    const char *iter = dk_opts_get(opts, "encrypt.iter-time");
    const char *nid = dk_opts_get(opts, "encrypt.new-secret");
    const char *oid = dk_opts_get(opts, "encrypt.old-secret");
    const char *force = dk_opts_get(opts, "force");
    int64_t n;
    if (slot && get_num(img, "encrypt.keyslot", slot, INT64_MIN, INT64_MAX, &n) < 0)
        return -EINVAL;
    a->has_keyslot = slot != NULL;
    a->keyslot = slot ? (int)(int32_t)(uint32_t)(uint64_t)n : 0;
    if (iter && get_num(img, "encrypt.iter-time", iter, 0, UINT32_MAX, &n) < 0)
        return -EINVAL;
    a->has_iter_time = iter != NULL;
    a->iter_time_ms = iter ? (uint32_t)n : 0;
    if (!state)
        return dk_set_error(img, -EINVAL, "Parameter 'state' is missing");
    if (strcmp(state, "active") && strcmp(state, "inactive"))
        return dk_set_error(img, -EINVAL, "Parameter 'state' does not accept value '%s'",
                            state);
    a->activate = !strcmp(state, "active");
    a->force = force && dk_parse_bool(force) == 1;
    if (nid && dk_image_secret(img, nid, &a->new_secret, &a->new_len) < 0)
        return -ENOENT;
    if (oid && dk_image_secret(img, oid, &a->old_secret, &a->old_len) < 0)
        return -ENOENT;
    a->key = img->secret;
    a->key_len = img->secret_len;
    return 0;
}

int qcow2_crypt_amend_prepare(struct dk_image *img, const struct dk_opts *opts,
                              struct dk_luks_change **out)
{
    struct qcow2_state *s = img->priv;
    bool any = false;
    *out = NULL;
    for (size_t i = 0; i < dk_opts_count(opts); i++)
        any |= qcow2_crypt_amend_option(dk_opts_key(opts, i));
    if (!any)
        return 0;
    if (!s->encrypted)
        return dk_set_error(img, -EINVAL, "Can't amend encryption options - encryption "
                            "not present");
    uint64_t off, len;
    if (s->hdr.crypt_method != CRYPT_METHOD_LUKS || !qcow2_crypt_area(s, &off, &len))
        return dk_set_error(img, -ENOTSUP, "Only LUKS encryption options can be amended");
    if (!qcow2_crypt_has_key(s))
        return dk_set_error(img, -EACCES, "%s", qcow2_no_key_msg);
    struct dk_luks_amend a = { 0 };
    int r = parse(img, opts, &a);
    if (r < 0)
        return r;
    /* qcow2_crypt_open capped LEN at DK_LUKS_MAX_AREA. */
    uint8_t *area = malloc(len);
    if (!area)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    struct dk_error err = { 0 };
    if ((r = dk_file_pread(img->file, area, len, off)) < 0)
        dk_set_error(img, r, "qcow2: reading the crypto header: %s", strerror(-r));
    else if ((r = dk_luks_change_prepare(area, len, &a, out, &err)) < 0)
        dk_set_error(img, r, "%s", err.msg);   /* qemu's words */
    free(area);   /* header and encrypted key material only */
    return r;
}

/* dk_luks_io over the LUKS area of the qcow2 file. */
static int area_pwrite(void *opaque, const void *buf, size_t len, uint64_t off)
{
    struct dk_image *img = opaque;
    uint64_t base, alen;
    if (!qcow2_crypt_area(img->priv, &base, &alen) || !dk_range_inside(off, len, alen))
        return -EINVAL;
    return dk_file_pwrite(img->file, buf, len, base + off);
}

static int area_sync(void *opaque)
{
    struct dk_image *img = opaque;
    return dk_file_flush(img->file);
}

int qcow2_crypt_amend_apply(struct dk_image *img, const struct dk_luks_change *c)
{
    const struct dk_luks_io io = { area_pwrite, area_sync, img };
    struct dk_error err = { 0 };
    int r = dk_luks_change_write(c, &io, &err);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: %s", err.msg);
    qcow2_crypt_set_header(img->priv, dk_luks_change_header(c));
    return 0;
}
