/* crypto-luks.c - LUKS1 header decode/validate/encode, anti-forensic
 * split/merge, unlock with a passphrase and creation of a new area.
 *
 * Spec: "LUKS1 On-Disk Format Specification" (C. Fruhwirth), sections 2.4
 * (AF-splitter, hash diffusion), 3 (phdr and key slot layout), 4 (master
 * key recovery). All phdr integers are big-endian.
 *
 * Layout written by dk_luks_create matches what qemu puts inside qcow2
 * (verified with qemu-img 7.2): phdr at 0, slot i's key material at sector
 * 8 + i * S where S is key-bytes * 4000 rounded up to 4 KiB in sectors,
 * payload-offset = 8 + 8 * S sectors = the area length (qcow2's FDE header
 * extension length). Inactive slots keep their offsets and 4000 stripes.
 *
 * OpenSSL is called through crypto-lib.h's table: af_run and
 * dk_luks_create load it; unlocking loads it in dk_sector_cipher_check
 * before any other call. Secrets are wiped with explicit_bzero.
 *
 * Adding and erasing key slots (amend) is in crypto-luks-keys.c.
 *
 * Known gaps: LUKS2; detached headers.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto-lib.h"
#include "crypto.h"
#include "internal.h"

static const uint8_t luks_magic[DK_LUKS_MAGIC_LEN] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };

/* Sectors before the first key slot, as qemu and cryptsetup align it. */
#define LUKS_HDR_SECTORS  8u
#define LUKS_ALIGN        4096u

/* --------------------------------------------------------- AF split/merge */

/* The spec's diffusion H: every digest-sized chunk j of BUF becomes
 * hash(be32(j) || chunk), the last chunk truncated to what is left. */
static int diffuse(EVP_MD *md, EVP_MD_CTX *ctx, uint8_t *buf, size_t len)
{
    size_t ds = (size_t)dk_osl->EVP_MD_get_size(md);
    uint8_t iv[4], out[EVP_MAX_MD_SIZE];
    for (size_t off = 0, j = 0; off < len; off += ds, j++) {
        size_t n = DK_MIN(ds, len - off);
        dk_put_be32(iv, (uint32_t)j);
        if (!dk_osl->EVP_DigestInit_ex(ctx, md, NULL) ||
            !dk_osl->EVP_DigestUpdate(ctx, iv, 4) ||
            !dk_osl->EVP_DigestUpdate(ctx, buf + off, n) ||
            !dk_osl->EVP_DigestFinal_ex(ctx, out, NULL))
            return -EIO;
        memcpy(buf + off, out, n);
    }
    return 0;
}

static void xor_into(uint8_t *d, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] ^= s[i];
}

/* Runs d = H(d ^ s_i) over the first STRIPES-1 stripes of MATERIAL, then
 * returns in OUT d ^ last stripe. SPLIT first fills those stripes with
 * random bytes and writes OUT (the secret) ^ d into the last stripe. */
static int af_run(enum dk_hash h, uint8_t *material, size_t block, uint32_t stripes,
                  uint8_t *out, const uint8_t *secret)
{
    if (!block || !stripes || block > DK_LUKS_MAX_KEY_BYTES)
        return -EINVAL;
    int r = dk_crypto_lib_load(NULL);
    if (r)
        return r;
    EVP_MD *md = dk_crypto_md_fetch(h);
    EVP_MD_CTX *ctx = dk_osl->EVP_MD_CTX_new();
    uint8_t d[DK_LUKS_MAX_KEY_BYTES] = { 0 };
    r = md && ctx ? 0 : -ENOMEM;
    for (uint32_t i = 0; !r && i + 1 < stripes; i++) {
        uint8_t *s = material + (size_t)i * block;
        if (secret && dk_osl->RAND_bytes(s, (int)block) != 1)
            r = -EIO;
        xor_into(d, s, block);
        if (!r)
            r = diffuse(md, ctx, d, block);
    }
    uint8_t *last = material + (size_t)(stripes - 1) * block;
    if (!r && secret) {
        memcpy(last, secret, block);
        xor_into(last, d, block);
    } else if (!r) {
        memcpy(out, d, block);
        xor_into(out, last, block);
    }
    explicit_bzero(d, sizeof(d));
    dk_osl->EVP_MD_CTX_free(ctx);
    dk_osl->EVP_MD_free(md);
    return r;
}

int dk_luks_af_split(enum dk_hash h, const uint8_t *src, size_t block,
                     uint32_t stripes, uint8_t *material)
{
    return af_run(h, material, block, stripes, NULL, src);
}

int dk_luks_af_merge(enum dk_hash h, const uint8_t *material, size_t block,
                     uint32_t stripes, uint8_t *dst)
{
    return af_run(h, (uint8_t *)material, block, stripes, dst, NULL);
}

/* ------------------------------------------------------ header decoding */

/* Copies a fixed NUL-padded field; false when it has no terminator. */
static bool get_str(char *dst, const uint8_t *src, size_t field)
{
    if (!memchr(src, 0, field))
        return false;
    memcpy(dst, src, field);
    return true;
}

/* cipher-name + key-bytes + cipher-mode ("xts-plain64",
 * "cbc-essiv:sha256", "ecb") -> spec. -ENOTSUP when unknown. */
static int parse_cipher(struct dk_luks_header *h, struct dk_error *err)
{
    struct dk_cipher_spec *s = &h->spec;
    char mode[33], alg[48];
    memcpy(mode, h->cipher_mode, sizeof(mode));
    char *iv = strchr(mode, '-');
    if (iv)
        *iv++ = 0;
    char *ivhash = iv ? strchr(iv, ':') : NULL;
    if (ivhash)
        *ivhash++ = 0;
    memset(s, 0, sizeof(*s));
    s->ivgen = DK_IVGEN_PLAIN64;
    if (dk_cipher_mode_parse(mode, &s->mode) ||
        (iv && dk_ivgen_parse(iv, &s->ivgen)) ||
        (s->ivgen == DK_IVGEN_ESSIV && (!ivhash || dk_hash_parse(ivhash, &s->ivgen_hash))) ||
        (s->ivgen != DK_IVGEN_ESSIV && ivhash) || (!iv && s->mode != DK_CMODE_ECB))
        return dk_error_set(err, -ENOTSUP, "LUKS cipher mode '%s' is not supported",
                            h->cipher_mode);
    uint32_t bits = h->key_bytes * 8 / (s->mode == DK_CMODE_XTS ? 2 : 1);
    snprintf(alg, sizeof(alg), "%s-%u", h->cipher_name, bits);
    if (dk_cipher_alg_parse(alg, &s->alg) ||
        (s->mode == DK_CMODE_XTS && h->key_bytes % 2))
        return dk_error_set(err, -ENOTSUP, "LUKS cipher '%s' with %u key bytes is not "
                            "supported", h->cipher_name, h->key_bytes);
    return 0;
}

static void decode_fields(const uint8_t *b, struct dk_luks_header *h)
{
    h->version = dk_be16(b + 6);
    h->payload_offset = dk_be32(b + 104);
    h->key_bytes = dk_be32(b + 108);
    memcpy(h->mk_digest, b + 112, DK_LUKS_DIGEST_LEN);
    memcpy(h->mk_digest_salt, b + 132, DK_LUKS_SALT_LEN);
    h->mk_digest_iter = dk_be32(b + 164);
    for (int i = 0; i < DK_LUKS_NUM_SLOTS; i++) {
        const uint8_t *s = b + 208 + 48 * i;
        struct dk_luks_slot *k = &h->slots[i];
        k->active = dk_be32(s);
        k->iterations = dk_be32(s + 4);
        memcpy(k->salt, s + 8, DK_LUKS_SALT_LEN);
        k->key_offset = dk_be32(s + 40);
        k->stripes = dk_be32(s + 44);
    }
}

uint64_t dk_luks_material_len(const struct dk_luks_header *h)
{
    return (uint64_t)h->key_bytes * DK_LUKS_STRIPES;
}

/* Key material of slot I: state, iterations, stripes, placement. */
static int validate_slot(const struct dk_luks_header *h, int i, uint64_t end,
                         struct dk_error *err)
{
    const struct dk_luks_slot *k = &h->slots[i];
    uint64_t len = dk_round_up(dk_luks_material_len(h), DK_SECTOR_SIZE);
    uint64_t off = (uint64_t)k->key_offset * DK_SECTOR_SIZE;
    if (k->active != DK_LUKS_SLOT_ACTIVE && k->active != DK_LUKS_SLOT_INACTIVE)
        return dk_error_set(err, -EINVAL, "LUKS key slot %d has invalid state 0x%x",
                            i, k->active);
    if (k->stripes != DK_LUKS_STRIPES)
        return dk_error_set(err, -EINVAL, "LUKS key slot %d has %u stripes, expected %u",
                            i, k->stripes, DK_LUKS_STRIPES);
    if (k->active == DK_LUKS_SLOT_ACTIVE &&
        (k->iterations == 0 || k->iterations > DK_LUKS_MAX_ITERS))
        return dk_error_set(err, -EINVAL, "LUKS key slot %d has %u iterations "
                            "(allowed 1..%u)", i, k->iterations, DK_LUKS_MAX_ITERS);
    if (off < DK_LUKS_PHDR_SIZE)
        return dk_error_set(err, -EINVAL, "LUKS key slot %d overlaps the header", i);
    if (!dk_range_inside(off, len, end))
        return dk_error_set(err, -EINVAL, "LUKS key slot %d material at 0x%" PRIx64
                            " (+%" PRIu64 ") lies outside the %" PRIu64 "-byte area",
                            i, off, len, end);
    for (int j = 0; j < i; j++) {
        uint64_t o2 = (uint64_t)h->slots[j].key_offset * DK_SECTOR_SIZE;
        if (dk_ranges_overlap(off, len, o2, len))
            return dk_error_set(err, -EINVAL, "LUKS key slots %d and %d overlap", j, i);
    }
    return 0;
}

int dk_luks_decode(const uint8_t *b, size_t buf_len, uint64_t area_len,
                   struct dk_luks_header *h, struct dk_error *err)
{
    memset(h, 0, sizeof(*h));
    if (buf_len < DK_LUKS_PHDR_SIZE || area_len < DK_LUKS_PHDR_SIZE)
        return dk_error_set(err, -EINVAL, "LUKS header truncated (%" PRIu64 " bytes)",
                            (uint64_t)DK_MIN(buf_len, area_len));
    if (memcmp(b, luks_magic, DK_LUKS_MAGIC_LEN))
        return dk_error_set(err, -EINVAL, "LUKS header has bad magic");
    decode_fields(b, h);
    if (h->version != 1)
        return dk_error_set(err, -ENOTSUP, "LUKS version %u is not supported (only 1)",
                            h->version);
    if (!get_str(h->cipher_name, b + 8, 32) || !get_str(h->cipher_mode, b + 40, 32) ||
        !get_str(h->hash_spec, b + 72, 32) || !get_str(h->uuid, b + 168, 40))
        return dk_error_set(err, -EINVAL, "LUKS header has an unterminated string");
    if (h->key_bytes == 0 || h->key_bytes > DK_LUKS_MAX_KEY_BYTES)
        return dk_error_set(err, -EINVAL, "LUKS key-bytes %u out of range (1..%u)",
                            h->key_bytes, DK_LUKS_MAX_KEY_BYTES);
    if (h->mk_digest_iter == 0 || h->mk_digest_iter > DK_LUKS_MAX_ITERS)
        return dk_error_set(err, -EINVAL, "LUKS master key digest iterations %u out of "
                            "range (1..%u)", h->mk_digest_iter, DK_LUKS_MAX_ITERS);
    /* Key material must end before the payload when one is declared. */
    uint64_t end = area_len;
    if (h->payload_offset && (uint64_t)h->payload_offset * DK_SECTOR_SIZE < end)
        end = (uint64_t)h->payload_offset * DK_SECTOR_SIZE;
    for (int i = 0; i < DK_LUKS_NUM_SLOTS; i++) {
        int r = validate_slot(h, i, end, err);
        if (r)
            return r;
    }
    if (dk_hash_parse(h->hash_spec, &h->hash))
        return dk_error_set(err, -ENOTSUP, "LUKS hash '%s' is not supported", h->hash_spec);
    return parse_cipher(h, err);
}

void dk_luks_encode(const struct dk_luks_header *h, uint8_t *b)
{
    memset(b, 0, DK_LUKS_PHDR_SIZE);
    memcpy(b, luks_magic, DK_LUKS_MAGIC_LEN);
    dk_put_be16(b + 6, h->version);
    memcpy(b + 8, h->cipher_name, 32);
    memcpy(b + 40, h->cipher_mode, 32);
    memcpy(b + 72, h->hash_spec, 32);
    dk_put_be32(b + 104, h->payload_offset);
    dk_put_be32(b + 108, h->key_bytes);
    memcpy(b + 112, h->mk_digest, DK_LUKS_DIGEST_LEN);
    memcpy(b + 132, h->mk_digest_salt, DK_LUKS_SALT_LEN);
    dk_put_be32(b + 164, h->mk_digest_iter);
    memcpy(b + 168, h->uuid, 40);
    for (int i = 0; i < DK_LUKS_NUM_SLOTS; i++) {
        uint8_t *s = b + 208 + 48 * i;
        const struct dk_luks_slot *k = &h->slots[i];
        dk_put_be32(s, k->active);
        dk_put_be32(s + 4, k->iterations);
        memcpy(s + 8, k->salt, DK_LUKS_SALT_LEN);
        dk_put_be32(s + 40, k->key_offset);
        dk_put_be32(s + 44, k->stripes);
    }
}

/* ------------------------------------------------------------- unlocking */

void dk_luks_free(struct dk_luks *l)
{
    if (!l)
        return;
    dk_sector_cipher_free(l->cipher);
    explicit_bzero(l, sizeof(*l));
    free(l);
}

int dk_luks_slot_try(const struct dk_luks_header *h, int i, const uint8_t *area,
                    const unsigned char *pass, size_t pass_len, uint8_t *mk,
                    struct dk_error *err)
{
    const struct dk_luks_slot *k = &h->slots[i];
    size_t len = (size_t)dk_round_up(dk_luks_material_len(h), DK_SECTOR_SIZE);
    uint8_t key[DK_LUKS_MAX_KEY_BYTES], digest[DK_LUKS_DIGEST_LEN];
    struct dk_sector_cipher *c = NULL;
    uint8_t *mat = malloc(len);
    int r = mat ? 0 : dk_error_set(err, -ENOMEM, "out of memory");
    if (!r && (r = dk_crypto_pbkdf2(h->hash, pass, pass_len, k->salt, DK_LUKS_SALT_LEN,
                                    k->iterations, key, h->key_bytes)))
        dk_error_set(err, r, "LUKS: PBKDF2 failed for key slot %d", i);
    if (!r)
        r = dk_sector_cipher_new(&c, &h->spec, key, h->key_bytes, err);
    if (!r) {
        memcpy(mat, area + (size_t)k->key_offset * DK_SECTOR_SIZE, len);
        r = dk_sector_decrypt(c, mat, len, 0);
    }
    if (!r)
        r = dk_luks_af_merge(h->hash, mat, h->key_bytes, k->stripes, mk);
    if (!r)
        r = dk_crypto_pbkdf2(h->hash, mk, h->key_bytes, h->mk_digest_salt,
                             DK_LUKS_SALT_LEN, h->mk_digest_iter, digest, sizeof(digest));
    if (!r)
        r = dk_osl->CRYPTO_memcmp(digest, h->mk_digest, sizeof(digest)) ? 1 : 0;
    else if (!err || !err->code)
        dk_error_set(err, r, "LUKS: cannot decrypt key slot %d", i);
    dk_sector_cipher_free(c);
    if (mat)
        explicit_bzero(mat, len);
    free(mat);
    explicit_bzero(key, sizeof(key));
    return r;
}

int dk_luks_load(const uint8_t *area, size_t area_len, struct dk_luks_header *h,
                 struct dk_error *err)
{
    if (area_len > DK_LUKS_MAX_AREA)
        return dk_error_set(err, -EINVAL, "LUKS area of %zu bytes exceeds the %u-byte cap",
                            area_len, DK_LUKS_MAX_AREA);
    int r = dk_luks_decode(area, area_len, area_len, h, err);
    /* Refuse an unusable cipher before spending time on PBKDF2. */
    return r ? r : dk_sector_cipher_check(&h->spec, h->key_bytes, err);
}

int dk_luks_unlock(const uint8_t *area, size_t area_len, const unsigned char *pass,
                   size_t pass_len, struct dk_luks **out, struct dk_error *err)
{
    *out = NULL;
    struct dk_luks *l = calloc(1, sizeof(*l));
    if (!l)
        return dk_error_set(err, -ENOMEM, "out of memory");
    int r = dk_luks_load(area, area_len, &l->hdr, err);
    l->slot = -1;
    for (int i = 0; !r && i < DK_LUKS_NUM_SLOTS && l->slot < 0; i++) {
        if (l->hdr.slots[i].active != DK_LUKS_SLOT_ACTIVE)
            continue;
        r = dk_luks_slot_try(&l->hdr, i, area, pass, pass_len, l->master_key, err);
        if (r == 1)
            r = 0;
        else if (r == 0)
            l->slot = i;
    }
    if (!r && l->slot < 0)
        r = dk_error_set(err, -EACCES, "Invalid password, cannot unlock any keyslot");
    if (!r)
        r = dk_sector_cipher_new(&l->cipher, &l->hdr.spec, l->master_key,
                                 l->hdr.key_bytes, err);
    if (r) {
        dk_luks_free(l);
        return r;
    }
    *out = l;
    return 0;
}

/* -------------------------------------------------------------- creation */

/* Measured by doubling a trial run until it takes at least 20 ms of
 * thread CPU time (not wall time: a busy machine does not skew it). */
int dk_luks_calibrate(enum dk_hash h, size_t key_bytes, uint64_t *per_ms)
{
    uint8_t salt[DK_LUKS_SALT_LEN] = { 0 }, out[DK_LUKS_MAX_KEY_BYTES];
    for (uint32_t iters = 1u << 10; iters <= DK_LUKS_MAX_ITERS; iters <<= 1) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        int r = dk_crypto_pbkdf2(h, "calibrate", 9, salt, sizeof(salt), iters, out,
                                 key_bytes);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        if (r)
            return r;
        uint64_t ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u +
                      (uint64_t)b.tv_nsec - (uint64_t)a.tv_nsec;
        if (ns >= 20000000u) {
            *per_ms = DK_MAX((uint64_t)iters * 1000000u / ns, 1u);
            return 0;
        }
    }
    *per_ms = DK_LUKS_MAX_ITERS;   /* faster than we can measure */
    return 0;
}

uint32_t dk_luks_clamp_iters(uint64_t v)
{
    return (uint32_t)DK_MIN(DK_MAX(v, DK_LUKS_MIN_ITERS), DK_LUKS_MAX_ITERS);
}

/* Fills the header of a new area for P: names, key size, slots laid out
 * as qemu does, random salts, uuid and iteration counts. */
static int init_header(const struct dk_luks_create_params *p, struct dk_luks_header *h,
                       struct dk_error *err)
{
    const struct dk_cipher_spec *s = &p->spec;
    memset(h, 0, sizeof(*h));
    h->version = 1;
    h->spec = *s;
    h->hash = p->hash;
    h->key_bytes = (uint32_t)(dk_cipher_alg_key_len(s->alg) * (s->mode == DK_CMODE_XTS ? 2 : 1));
    const char *alg = dk_cipher_alg_name(s->alg);
    snprintf(h->cipher_name, sizeof(h->cipher_name), "%.*s",
             (int)strcspn(alg, "-"), alg);
    snprintf(h->cipher_mode, sizeof(h->cipher_mode), "%s-%s%s%s",
             dk_cipher_mode_name(s->mode), dk_ivgen_name(s->ivgen),
             s->ivgen == DK_IVGEN_ESSIV ? ":" : "",
             s->ivgen == DK_IVGEN_ESSIV ? dk_hash_name(s->ivgen_hash) : "");
    snprintf(h->hash_spec, sizeof(h->hash_spec), "%s", dk_hash_name(p->hash));
    uint8_t u[16];
    if (dk_osl->RAND_bytes(u, sizeof(u)) != 1 ||
        dk_osl->RAND_bytes(h->mk_digest_salt, DK_LUKS_SALT_LEN) != 1 ||
        dk_osl->RAND_bytes(h->slots[0].salt, DK_LUKS_SALT_LEN) != 1)
        return dk_error_set(err, -EIO, "LUKS: no random numbers available");
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);   /* RFC 4122 version 4 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(h->uuid, sizeof(h->uuid), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
             u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    uint32_t slot_sectors = (uint32_t)(dk_round_up(dk_luks_material_len(h), LUKS_ALIGN) /
                                       DK_SECTOR_SIZE);
    for (int i = 0; i < DK_LUKS_NUM_SLOTS; i++) {
        h->slots[i].active = DK_LUKS_SLOT_INACTIVE;
        h->slots[i].stripes = DK_LUKS_STRIPES;
        h->slots[i].key_offset = LUKS_HDR_SECTORS + (uint32_t)i * slot_sectors;
    }
    h->payload_offset = LUKS_HDR_SECTORS + DK_LUKS_NUM_SLOTS * slot_sectors;
    uint64_t per_ms;
    int r = dk_luks_calibrate(p->hash, h->key_bytes, &per_ms);
    if (r)
        return dk_error_set(err, r, "LUKS: cannot run PBKDF2 with hash %s",
                            dk_hash_name(p->hash));
    uint64_t iters = per_ms * p->iter_time_ms;
    h->slots[0].active = DK_LUKS_SLOT_ACTIVE;
    h->slots[0].iterations = dk_luks_clamp_iters(iters);
    /* As cryptsetup: 1/8 of the time, so 8 full slots cost one budget. */
    h->mk_digest_iter = dk_luks_clamp_iters(iters / 8);
    return 0;
}

int dk_luks_slot_seal(const struct dk_luks_header *h, int slot, const uint8_t *mk,
                      const unsigned char *pass, size_t pass_len, uint8_t *mat,
                      struct dk_error *err)
{
    const struct dk_luks_slot *k = &h->slots[slot];
    size_t len = (size_t)dk_round_up(dk_luks_material_len(h), DK_SECTOR_SIZE);
    uint8_t key[DK_LUKS_MAX_KEY_BYTES];
    struct dk_sector_cipher *c = NULL;
    int r = dk_crypto_pbkdf2(h->hash, pass, pass_len, k->salt, DK_LUKS_SALT_LEN,
                             k->iterations, key, h->key_bytes);
    if (r)
        dk_error_set(err, r, "LUKS: PBKDF2 failed");
    if (!r)
        r = dk_sector_cipher_new(&c, &h->spec, key, h->key_bytes, err);
    if (!r && (r = dk_luks_af_split(h->hash, mk, h->key_bytes, k->stripes, mat)))
        dk_error_set(err, r, "LUKS: AF split failed");
    if (!r && (r = dk_sector_encrypt(c, mat, len, 0)))
        dk_error_set(err, r, "LUKS: cannot encrypt the key material");
    dk_sector_cipher_free(c);
    explicit_bzero(key, sizeof(key));
    return r;
}

int dk_luks_create(const struct dk_luks_create_params *p, const unsigned char *pass,
                   size_t pass_len, uint8_t **area, size_t *area_len,
                   struct dk_luks **out, struct dk_error *err)
{
    *out = NULL;
    *area = NULL;
    int r = dk_crypto_lib_load(err);
    if (r)
        return r;
    struct dk_luks *l = calloc(1, sizeof(*l));
    if (!l)
        return dk_error_set(err, -ENOMEM, "out of memory");
    uint8_t *buf = NULL;
    size_t len = 0;
    r = init_header(p, &l->hdr, err);
    if (!r && dk_osl->RAND_bytes(l->master_key, (int)l->hdr.key_bytes) != 1)
        r = dk_error_set(err, -EIO, "LUKS: no random numbers available");
    /* Checks the cipher is usable before the slow parts. */
    if (!r)
        r = dk_sector_cipher_new(&l->cipher, &l->hdr.spec, l->master_key,
                                 l->hdr.key_bytes, err);
    if (!r && (r = dk_crypto_pbkdf2(l->hdr.hash, l->master_key, l->hdr.key_bytes,
                                    l->hdr.mk_digest_salt, DK_LUKS_SALT_LEN,
                                    l->hdr.mk_digest_iter, l->hdr.mk_digest,
                                    DK_LUKS_DIGEST_LEN)))
        dk_error_set(err, r, "LUKS: PBKDF2 failed");
    if (!r) {
        len = (size_t)l->hdr.payload_offset * DK_SECTOR_SIZE;
        buf = calloc(1, len);
        if (!buf)
            r = dk_error_set(err, -ENOMEM, "out of memory");
    }
    if (!r)
        r = dk_luks_slot_seal(&l->hdr, 0, l->master_key, pass, pass_len,
                              buf + (size_t)l->hdr.slots[0].key_offset * DK_SECTOR_SIZE, err);
    if (r) {
        free(buf);
        dk_luks_free(l);
        return r;
    }
    dk_luks_encode(&l->hdr, buf);
    l->slot = 0;
    *area = buf;
    *area_len = len;
    *out = l;
    return 0;
}
