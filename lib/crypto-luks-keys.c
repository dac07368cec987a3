/* crypto-luks-keys.c - LUKS1 key slot management: add a passphrase to a
 * key slot, erase key slots (qemu-img amend -o encrypt.state=...).
 *
 * Spec: "LUKS1 On-Disk Format Specification" (C. Fruhwirth), section 3.1
 * (phdr and key slot entries) and 4.1 (adding a key: PBKDF2 with a fresh
 * salt, AF split, encryption of the split key with the slot key). The
 * rules and messages are qemu 7.2's crypto/block-luks.c amend behaviour:
 * an add needs new-secret and no old-secret, takes the first free slot
 * (or keyslot=N) and refuses an active slot unless forced; an erase takes
 * keyslot=N and/or old-secret and refuses to leave no active slot unless
 * forced.
 *
 * Two phases: dk_luks_change_prepare checks everything and computes the
 * change in memory (the slow PBKDF2 work included), writing nothing, so a
 * refused change leaves the image untouched; dk_luks_change_write then
 * writes it through the caller's pwrite/sync callbacks.
 *
 * Invariants kept on disk at every step (a crash leaves one of the
 * states below, and every passphrase that is not being removed or
 * replaced keeps working):
 *  1. A slot entry marked active always points at complete key material
 *     sealed with that entry's salt and iterations.
 *  2. Key material is only ever overwritten while its entry is inactive.
 * Write order that keeps them (each step ends with a sync):
 *   add to free slot S:  material(S) -> header(S active)
 *   add over active S:   header(S inactive) -> material(S) -> header(S active)
 *   erase slots E:       header(E inactive, salt and iterations zeroed)
 *                        -> random bytes over material(E)
 * States: OLD --(sync)--> [S inactive] --(sync)--> [material] --> NEW.
 * Erasing the header entry first also destroys the slot's salt, without
 * which surviving key material cannot be decrypted; the random overwrite
 * then removes the material itself (one pass: repeated passes mean
 * nothing through a page cache or on flash).
 *
 * Known gaps: the 592-byte phdr is written in one call and assumed not to
 * tear (it spans two 512-byte sectors; slot 6's entry crosses the
 * boundary). Forcing an add over the only active slot loses the image's
 * only key if the machine crashes between the steps, as in qemu.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto-lib.h"
#include "crypto.h"
#include "internal.h"

/* qemu's default encrypt.iter-time for a new key slot. */
#define DEFAULT_ITER_TIME_MS 2000u

struct dk_luks_change {
    struct dk_luks_header old;      /* as on disk before the change */
    struct dk_luks_header hdr;      /* after */
    bool activate;
    int slot;                       /* add: the slot written */
    unsigned mask;                  /* erase: bit i = slot i disabled */
    uint8_t *material;              /* add: sealed key material */
    size_t material_len;            /* key-bytes * stripes, rounded to 512 */
};

static bool is_active(const struct dk_luks_header *h, int i)
{
    return h->slots[i].active == DK_LUKS_SLOT_ACTIVE;
}

static int count_active(const struct dk_luks_header *h)
{
    int n = 0;
    for (int i = 0; i < DK_LUKS_NUM_SLOTS; i++)
        n += is_active(h, i);
    return n;
}

/* Marks slot I erased the way qemu leaves an unused slot. */
static void disable(struct dk_luks_header *h, int i)
{
    h->slots[i].active = DK_LUKS_SLOT_INACTIVE;
    h->slots[i].iterations = 0;
    memset(h->slots[i].salt, 0, DK_LUKS_SALT_LEN);
}

/* ------------------------------------------------------------------ add */

/* Fresh salt, calibrated iterations and sealed material for slot S. */
static int seal_new_slot(struct dk_luks_change *c, const struct dk_luks_amend *a,
                         const uint8_t *mk, struct dk_error *err)
{
    struct dk_luks_slot *k = &c->hdr.slots[c->slot];
    uint64_t per_ms;
    if (dk_osl->RAND_bytes(k->salt, DK_LUKS_SALT_LEN) != 1)
        return dk_error_set(err, -EIO, "LUKS: no random numbers available");
    int r = dk_luks_calibrate(c->hdr.hash, c->hdr.key_bytes, &per_ms);
    if (r)
        return dk_error_set(err, r, "LUKS: cannot run PBKDF2 with hash %s",
                            dk_hash_name(c->hdr.hash));
    k->iterations = dk_luks_clamp_iters(per_ms * (a->has_iter_time ? a->iter_time_ms
                                                                   : DEFAULT_ITER_TIME_MS));
    k->stripes = DK_LUKS_STRIPES;
    k->active = DK_LUKS_SLOT_ACTIVE;
    c->material = malloc(c->material_len);
    if (!c->material)
        return dk_error_set(err, -ENOMEM, "out of memory");
    return dk_luks_slot_seal(&c->hdr, c->slot, mk, a->new_secret, a->new_len,
                             c->material, err);
}

static int prepare_add(const uint8_t *area, size_t area_len, const struct dk_luks_amend *a,
                       struct dk_luks_change *c, struct dk_error *err)
{
    const struct dk_luks_header *h = &c->old;
    if (!a->new_secret)
        return dk_error_set(err, -EINVAL, "'new-secret' is required to activate a keyslot");
    if (a->old_secret)
        return dk_error_set(err, -EINVAL,
                            "'old-secret' must not be given when activating keyslots");
    c->slot = -1;
    if (a->has_keyslot) {
        if (a->keyslot < 0 || a->keyslot >= DK_LUKS_NUM_SLOTS)
            return dk_error_set(err, -EINVAL, "Invalid keyslot %u specified, must be "
                                "between 0 and %u", (unsigned)a->keyslot,
                                DK_LUKS_NUM_SLOTS - 1);
        c->slot = a->keyslot;
    }
    for (int i = 0; c->slot < 0 && i < DK_LUKS_NUM_SLOTS; i++)
        if (!is_active(h, i))
            c->slot = i;
    if (c->slot < 0)
        return dk_error_set(err, -ENOSPC, "Can't add a keyslot - all keyslots are in use");
    if (!a->force && is_active(h, c->slot))
        return dk_error_set(err, -EINVAL, "Refusing to overwrite active keyslot %i - "
                            "please erase it first", c->slot);
    if (!a->key)
        return dk_error_set(err, -EACCES, "the passphrase that unlocks the image is needed "
                            "to add a key slot");
    struct dk_luks *l = NULL;
    int r = dk_luks_unlock(area, area_len, a->key, a->key_len, &l, err);
    if (!r)
        r = seal_new_slot(c, a, l->master_key, err);
    dk_luks_free(l);   /* wipes the master key */
    return r;
}

/* ---------------------------------------------------------------- erase */

/* 0 when OLD_SECRET unlocks slot I, 1 when not (or inactive), -errno. */
static int old_matches(const uint8_t *area, const struct dk_luks_header *h, int i,
                       const struct dk_luks_amend *a, struct dk_error *err)
{
    uint8_t mk[DK_LUKS_MAX_KEY_BYTES];
    int r = is_active(h, i) ? dk_luks_slot_try(h, i, area, a->old_secret, a->old_len, mk, err)
                            : 1;
    explicit_bzero(mk, sizeof(mk));
    return r;
}

static int prepare_erase_slot(const uint8_t *area, const struct dk_luks_amend *a,
                              struct dk_luks_change *c, struct dk_error *err)
{
    const struct dk_luks_header *h = &c->old;
    int s = a->keyslot;
    if (s < 0 || s >= DK_LUKS_NUM_SLOTS)
        return dk_error_set(err, -EINVAL, "Invalid keyslot %i specified, must be between "
                            "0 and %i", s, DK_LUKS_NUM_SLOTS - 1);
    if (a->old_secret) {
        int r = old_matches(area, h, s, a, err);
        if (r < 0)
            return r;
        if (r == 1)
            return dk_error_set(err, -EACCES, "Given keyslot %i doesn't contain the given "
                                "old password for erase operation", s);
    }
    /* qemu's message ends with a space. */
    if (!a->force && !is_active(h, s))
        return dk_error_set(err, -EINVAL, "Given keyslot %i is already erased (inactive) ", s);
    if (!a->force && count_active(h) == 1)
        return dk_error_set(err, -EINVAL, "Attempt to erase the only active keyslot %i which "
                            "will erase all the data in the image irreversibly - refusing "
                            "operation", s);
    c->mask = 1u << s;
    return 0;
}

static int prepare_erase(const uint8_t *area, const struct dk_luks_amend *a,
                         struct dk_luks_change *c, struct dk_error *err)
{
    const struct dk_luks_header *h = &c->old;
    if (a->new_secret)
        return dk_error_set(err, -EINVAL, "'new-secret' must not be given when erasing "
                            "keyslots");
    if (a->has_iter_time)
        return dk_error_set(err, -EINVAL, "'iter-time' must not be given when erasing "
                            "keyslots");
    int r = 0;
    if (a->has_keyslot) {
        r = prepare_erase_slot(area, a, c, err);
    } else if (a->old_secret) {
        for (int i = 0; r >= 0 && i < DK_LUKS_NUM_SLOTS; i++)
            if ((r = old_matches(area, h, i, a, err)) == 0)
                c->mask |= 1u << i;
        if (r < 0)
            return r;
        r = 0;
        if (!c->mask)
            return dk_error_set(err, -EACCES, "No keyslots match given (old) password for "
                                "erase operation");
        if (!a->force && __builtin_popcount(c->mask) == count_active(h))
            return dk_error_set(err, -EINVAL, "All the active keyslots match the (old) "
                                "password that was given and erasing them will erase all "
                                "the data in the image irreversibly - refusing operation");
    } else {
        return dk_error_set(err, -EINVAL, "To erase keyslot(s), either explicit keyslot "
                            "index or the password currently contained in them must be "
                            "given");
    }
    for (int i = 0; r >= 0 && i < DK_LUKS_NUM_SLOTS; i++)
        if (c->mask & (1u << i))
            disable(&c->hdr, i);
    return r;
}

/* -------------------------------------------------------------- prepare */

int dk_luks_change_prepare(const uint8_t *area, size_t area_len,
                           const struct dk_luks_amend *a, struct dk_luks_change **out,
                           struct dk_error *err)
{
    *out = NULL;
    struct dk_luks_change *c = calloc(1, sizeof(*c));
    if (!c)
        return dk_error_set(err, -ENOMEM, "out of memory");
    int r = dk_luks_load(area, area_len, &c->old, err);   /* loads libcrypto */
    if (!r) {
        c->hdr = c->old;
        c->activate = a->activate;
        c->material_len = (size_t)dk_round_up(dk_luks_material_len(&c->old), DK_SECTOR_SIZE);
        r = a->activate ? prepare_add(area, area_len, a, c, err)
                        : prepare_erase(area, a, c, err);
    }
    if (r) {
        dk_luks_change_free(c);
        return r;
    }
    *out = c;
    return 0;
}

const struct dk_luks_header *dk_luks_change_header(const struct dk_luks_change *c)
{
    return &c->hdr;
}

void dk_luks_change_free(struct dk_luks_change *c)
{
    if (!c)
        return;
    if (c->material)
        explicit_bzero(c->material, c->material_len);
    free(c->material);
    explicit_bzero(c, sizeof(*c));
    free(c);
}

/* ---------------------------------------------------------------- write */

static int put(const struct dk_luks_io *io, const void *buf, size_t len, uint64_t off,
               struct dk_error *err)
{
    int r = io->pwrite(io->opaque, buf, len, off);
    return r < 0 ? dk_error_set(err, r, "LUKS: writing %zu bytes at offset %" PRIu64
                                " of the header area: %s", len, off, strerror(-r)) : 0;
}

static int sync_io(const struct dk_luks_io *io, struct dk_error *err)
{
    int r = io->sync(io->opaque);
    return r < 0 ? dk_error_set(err, r, "LUKS: sync: %s", strerror(-r)) : 0;
}

/* Writes H as the phdr and syncs. */
static int put_header(const struct dk_luks_io *io, const struct dk_luks_header *h,
                      struct dk_error *err)
{
    uint8_t b[DK_LUKS_PHDR_SIZE];
    dk_luks_encode(h, b);
    int r = put(io, b, sizeof(b), 0, err);
    return r ? r : sync_io(io, err);
}

static uint64_t material_off(const struct dk_luks_header *h, int i)
{
    return (uint64_t)h->slots[i].key_offset * DK_SECTOR_SIZE;
}

static int write_add(const struct dk_luks_change *c, const struct dk_luks_io *io,
                     struct dk_error *err)
{
    int r = 0;
    if (is_active(&c->old, c->slot)) {   /* forced: invariant 2 */
        struct dk_luks_header mid = c->old;
        disable(&mid, c->slot);
        r = put_header(io, &mid, err);
    }
    if (!r)
        r = put(io, c->material, c->material_len, material_off(&c->hdr, c->slot), err);
    if (!r)
        r = sync_io(io, err);
    return r ? r : put_header(io, &c->hdr, err);
}

static int write_erase(const struct dk_luks_change *c, const struct dk_luks_io *io,
                       struct dk_error *err)
{
    int r = put_header(io, &c->hdr, err);
    uint8_t *junk = r ? NULL : malloc(c->material_len);
    if (!r && !junk)
        r = dk_error_set(err, -ENOMEM, "out of memory");
    for (int i = 0; !r && i < DK_LUKS_NUM_SLOTS; i++) {
        if (!(c->mask & (1u << i)))
            continue;
        if (dk_osl->RAND_bytes(junk, (int)c->material_len) != 1)
            r = dk_error_set(err, -EIO, "LUKS: no random numbers available");
        else
            r = put(io, junk, c->material_len, material_off(&c->hdr, i), err);
    }
    free(junk);
    return r ? r : sync_io(io, err);
}

int dk_luks_change_write(const struct dk_luks_change *c, const struct dk_luks_io *io,
                         struct dk_error *err)
{
    return c->activate ? write_add(c, io, err) : write_erase(c, io, err);
}
