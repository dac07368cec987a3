/* crypto.h - sector ciphers and LUKS1 key management used by the drivers
 * (qcow2 LUKS and legacy AES; ARCHITECTURE.md decision 3). All primitives
 * come from OpenSSL libcrypto, loaded at run time on first use
 * (crypto-lib.h): without it the calls that need it fail with -ENOTSUP
 * and a message naming libcrypto.so.3; LUKS headers still decode.
 * Nothing here touches a file or a handle.
 *
 * Objects:
 *  - struct dk_sector_cipher: a keyed cipher + IV generator that encrypts
 *    whole 512-byte sectors in place (dm-crypt / qemu qcrypto_block
 *    semantics). Immutable after creation, so one object may be used from
 *    several threads at once (each call works on its own EVP context).
 *  - struct dk_luks: an unlocked LUKS1 header (parsed header, master key
 *    and the payload sector cipher).
 *
 * Secrets: every key buffer is wiped with explicit_bzero after use and
 * when an object is freed (also when libcrypto could not be loaded); no
 * message ever contains key material or a passphrase.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_CRYPTO_H
#define DK_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diskkit.h"

#define DK_SECTOR_SIZE 512u

/* ------------------------------------------------ names (crypto-sector.c) */

/* Cipher algorithms qemu offers. Only those OpenSSL 3 provides are usable:
 * aes-* in ecb/cbc/ctr/xts (aes-192 has no xts in OpenSSL), cast5-128 in
 * ecb/cbc/ctr when OpenSSL's legacy provider is installed. serpent and
 * twofish are parsed (so messages can name them) but refused. */
enum dk_cipher_alg {
    DK_CIPHER_AES_128, DK_CIPHER_AES_192, DK_CIPHER_AES_256,
    DK_CIPHER_CAST5_128,
    DK_CIPHER_SERPENT_128, DK_CIPHER_SERPENT_192, DK_CIPHER_SERPENT_256,
    DK_CIPHER_TWOFISH_128, DK_CIPHER_TWOFISH_192, DK_CIPHER_TWOFISH_256,
};
enum dk_cipher_mode { DK_CMODE_ECB, DK_CMODE_CBC, DK_CMODE_XTS, DK_CMODE_CTR };
enum dk_ivgen { DK_IVGEN_PLAIN, DK_IVGEN_PLAIN64, DK_IVGEN_ESSIV };
enum dk_hash {
    DK_HASH_MD5, DK_HASH_SHA1, DK_HASH_SHA224, DK_HASH_SHA256,
    DK_HASH_SHA384, DK_HASH_SHA512, DK_HASH_RIPEMD160,
};

/* Parsers return 0 or -EINVAL; names are qemu's ("aes-256", "xts",
 * "plain64", "sha256"). The _name functions return static strings. */
int dk_cipher_alg_parse(const char *s, enum dk_cipher_alg *out);
int dk_cipher_mode_parse(const char *s, enum dk_cipher_mode *out);
int dk_ivgen_parse(const char *s, enum dk_ivgen *out);
int dk_hash_parse(const char *s, enum dk_hash *out);
const char *dk_cipher_alg_name(enum dk_cipher_alg a);
const char *dk_cipher_mode_name(enum dk_cipher_mode m);
const char *dk_ivgen_name(enum dk_ivgen g);
const char *dk_hash_name(enum dk_hash h);
/* Key length in bytes of ALG (one XTS half). */
size_t dk_cipher_alg_key_len(enum dk_cipher_alg a);
/* Digest length in bytes of H. */
size_t dk_hash_len(enum dk_hash h);

/* --------------------------------------- sector cipher (crypto-sector.c) */

struct dk_cipher_spec {
    enum dk_cipher_alg alg;
    enum dk_cipher_mode mode;
    enum dk_ivgen ivgen;
    enum dk_hash ivgen_hash;        /* essiv only */
};

struct dk_sector_cipher;

/* Creates a sector cipher. KEY_LEN must be dk_cipher_alg_key_len(alg), or
 * twice that for xts. The key is copied into OpenSSL contexts; the caller
 * still owns (and should wipe) KEY. Returns 0 or -errno with ERR set:
 * -ENOTSUP for a combination OpenSSL (or qemu) does not provide, -EINVAL
 * for a bad key length. Caller frees with dk_sector_cipher_free. */
int dk_sector_cipher_new(struct dk_sector_cipher **out, const struct dk_cipher_spec *spec,
                         const uint8_t *key, size_t key_len, struct dk_error *err);
/* The checks of dk_sector_cipher_new without a key: 0 when SPEC with a
 * KEY_LEN-byte key can be created, else -ENOTSUP / -EINVAL with ERR. */
int dk_sector_cipher_check(const struct dk_cipher_spec *spec, size_t key_len,
                           struct dk_error *err);
void dk_sector_cipher_free(struct dk_sector_cipher *c);
const struct dk_cipher_spec *dk_sector_cipher_spec(const struct dk_sector_cipher *c);

/* Encrypt/decrypt LEN bytes (a multiple of 512) of BUF in place; SECTOR is
 * the 512-byte sector number of the first sector (the IV input; sector i
 * of the buffer uses SECTOR + i). Thread-safe. Returns 0, -EINVAL for a
 * bad length, -ENOMEM or -EIO when OpenSSL fails. */
int dk_sector_encrypt(const struct dk_sector_cipher *c, void *buf, size_t len,
                      uint64_t sector);
int dk_sector_decrypt(const struct dk_sector_cipher *c, void *buf, size_t len,
                      uint64_t sector);

/* qcow2 legacy AES (crypt_method 1): AES-128-CBC, plain64 IV of the guest
 * sector; the key is the passphrase up to its first NUL, truncated or
 * zero-padded to 16 bytes (what qemu's crypto/block-qcow.c does). */
int dk_qcow_aes_new(struct dk_sector_cipher **out, const unsigned char *pass,
                    size_t pass_len, struct dk_error *err);

/* Hash and KDF helpers shared with crypto-luks.c. dk_crypto_md_fetch
 * returns an EVP_MD (declared by its struct tag so this header needs no
 * OpenSSL include) from diskkit's private OpenSSL context, or NULL (also
 * when libcrypto cannot be loaded); free it with dk_osl->EVP_MD_free. */
struct evp_md_st;
struct evp_md_st *dk_crypto_md_fetch(enum dk_hash h);
int dk_crypto_hash(enum dk_hash h, const void *a, size_t alen, const void *b,
                   size_t blen, uint8_t *out);
int dk_crypto_pbkdf2(enum dk_hash h, const void *pass, size_t pass_len,
                     const uint8_t *salt, size_t salt_len, uint32_t iters,
                     uint8_t *out, size_t out_len);

/* ------------------------------------------------------ LUKS1 (crypto-luks.c) */

#define DK_LUKS_MAGIC_LEN      6
#define DK_LUKS_PHDR_SIZE      592u    /* the on-disk partition header */
#define DK_LUKS_NUM_SLOTS      8
#define DK_LUKS_SALT_LEN       32
#define DK_LUKS_DIGEST_LEN     20
#define DK_LUKS_STRIPES        4000u   /* the only value qemu/cryptsetup write */
#define DK_LUKS_SLOT_ACTIVE    0x00AC71F3u
#define DK_LUKS_SLOT_INACTIVE  0x0000DEADu
/* Largest master key: aes-256-xts (two 32-byte keys). */
#define DK_LUKS_MAX_KEY_BYTES  64u
/* PBKDF2 iteration cap for untrusted headers: a 2 s calibration on a fast
 * CPU gives a few million; 2^26 bounds an unlock attempt to about a
 * minute instead of letting a crafted header hang us for hours. */
#define DK_LUKS_MAX_ITERS      (1u << 26)
/* Minimum iterations written by create (the spec's and qemu's floor). */
#define DK_LUKS_MIN_ITERS      1000u
/* Cap on the area (header + key material) a caller may hand us: 8 slots
 * of 64 * 4000 bytes plus the header is about 2 MiB. */
#define DK_LUKS_MAX_AREA       (16u << 20)

struct dk_luks_slot {
    uint32_t active;                /* DK_LUKS_SLOT_ACTIVE / _INACTIVE */
    uint32_t iterations;
    uint8_t salt[DK_LUKS_SALT_LEN];
    uint32_t key_offset;            /* sectors from the header start */
    uint32_t stripes;
};

/* Host-order copy of the 592-byte phdr (strings NUL-terminated). */
struct dk_luks_header {
    uint16_t version;
    char cipher_name[33];
    char cipher_mode[33];
    char hash_spec[33];
    uint32_t payload_offset;        /* sectors; ignored inside qcow2 */
    uint32_t key_bytes;
    uint8_t mk_digest[DK_LUKS_DIGEST_LEN];
    uint8_t mk_digest_salt[DK_LUKS_SALT_LEN];
    uint32_t mk_digest_iter;
    char uuid[41];
    struct dk_luks_slot slots[DK_LUKS_NUM_SLOTS];
    /* Derived by dk_luks_decode from the strings above. */
    struct dk_cipher_spec spec;
    enum dk_hash hash;
};

/* Decodes and validates the header at BUF (BUF_LEN >= 592) of a LUKS area
 * of AREA_LEN bytes (header + key material; inside qcow2 the FDE length).
 * Checks magic, version, strings, known cipher/mode/hash, key-bytes,
 * digest iterations and every slot (state, iterations, stripes, key
 * material inside the area and clear of the header and other slots).
 * Returns 0 or -EINVAL (bad header, message in ERR) / -ENOTSUP (valid but
 * a cipher we cannot run). */
int dk_luks_decode(const uint8_t *buf, size_t buf_len, uint64_t area_len,
                   struct dk_luks_header *h, struct dk_error *err);
/* Writes H as the 592-byte phdr into BUF. */
void dk_luks_encode(const struct dk_luks_header *h, uint8_t *buf);

/* Bytes of key material of one slot (key_bytes * stripes) and the space
 * qemu reserves for it (rounded up to 4 KiB). */
uint64_t dk_luks_material_len(const struct dk_luks_header *h);

struct dk_luks {
    struct dk_luks_header hdr;
    uint8_t master_key[DK_LUKS_MAX_KEY_BYTES];
    int slot;                             /* slot that unlocked, or -1 */
    struct dk_sector_cipher *cipher;      /* payload cipher */
};

/* Unlocks: decodes the header at the start of AREA (AREA_LEN bytes, the
 * whole LUKS area) and tries PASS on each active slot. Returns 0 and a new
 * *OUT (caller frees with dk_luks_free), -EACCES "Invalid password, cannot
 * unlock any keyslot", or another -errno with ERR set. */
int dk_luks_unlock(const uint8_t *area, size_t area_len, const unsigned char *pass,
                   size_t pass_len, struct dk_luks **out, struct dk_error *err);
void dk_luks_free(struct dk_luks *l);

struct dk_luks_create_params {
    struct dk_cipher_spec spec;     /* payload cipher */
    enum dk_hash hash;              /* PBKDF2 and AF hash */
    uint32_t iter_time_ms;          /* PBKDF2 calibration target (qemu: 2000) */
};

/* Creates a LUKS1 area laid out as qemu does inside qcow2: the phdr, slot
 * i's key material at sector 8 + i * (material space / 512), payload
 * offset = total length (all sector numbers relative to the header). Slot
 * 0 is active with PASS. *AREA (caller frees; holds no secret in clear)
 * gets *AREA_LEN bytes; *OUT the unlocked object. Returns 0 or -errno. */
int dk_luks_create(const struct dk_luks_create_params *p, const unsigned char *pass,
                   size_t pass_len, uint8_t **area, size_t *area_len,
                   struct dk_luks **out, struct dk_error *err);

/* Helpers shared by crypto-luks.c and crypto-luks-keys.c. */
/* Checks AREA_LEN against DK_LUKS_MAX_AREA, decodes the header at AREA
 * into H and checks its cipher can run (loads libcrypto). 0 or -errno. */
int dk_luks_load(const uint8_t *area, size_t area_len, struct dk_luks_header *h,
                 struct dk_error *err);
/* Decrypts and merges slot I's key material (in AREA, validated by
 * dk_luks_decode) with the key derived from PASS into MK (key_bytes);
 * returns 0 when the master key digest matches, 1 when it does not, or
 * -errno with ERR set. */
int dk_luks_slot_try(const struct dk_luks_header *h, int i, const uint8_t *area,
                     const unsigned char *pass, size_t pass_len, uint8_t *mk,
                     struct dk_error *err);
/* AF-splits master key MK and encrypts it with the key PBKDF2 derives
 * from PASS with slot SLOT's salt and iterations, into MAT (key material
 * length rounded up to 512 bytes). Returns 0 or -errno with ERR set. */
int dk_luks_slot_seal(const struct dk_luks_header *h, int slot, const uint8_t *mk,
                      const unsigned char *pass, size_t pass_len, uint8_t *mat,
                      struct dk_error *err);
/* PBKDF2 iterations of hash H (KEY_BYTES output) per millisecond of CPU. */
int dk_luks_calibrate(enum dk_hash h, size_t key_bytes, uint64_t *per_ms);
/* V clamped to [DK_LUKS_MIN_ITERS, DK_LUKS_MAX_ITERS]. */
uint32_t dk_luks_clamp_iters(uint64_t v);

/* Anti-forensic split/merge (LUKS1 spec section 2.4), exposed for tests.
 * SRC/DST are BLOCK bytes, MATERIAL is BLOCK * STRIPES bytes. */
int dk_luks_af_split(enum dk_hash h, const uint8_t *src, size_t block,
                     uint32_t stripes, uint8_t *material);
int dk_luks_af_merge(enum dk_hash h, const uint8_t *material, size_t block,
                     uint32_t stripes, uint8_t *dst);

/* ------------------------------------- LUKS1 key slots (crypto-luks-keys.c) */

/* What `amend -o encrypt.*` asks for (qemu's QCryptoBlockAmendOptionsLUKS).
 * A secret pointer is NULL when the option was not given; its bytes are
 * borrowed for the call. */
struct dk_luks_amend {
    bool activate;                  /* encrypt.state=active (add) / inactive */
    bool has_keyslot;
    int keyslot;                    /* encrypt.keyslot (any int; checked) */
    bool has_iter_time;
    uint32_t iter_time_ms;          /* encrypt.iter-time (default 2000) */
    bool force;                     /* --force */
    const unsigned char *key;       /* passphrase that opened the image */
    size_t key_len;
    const unsigned char *new_secret;   /* encrypt.new-secret */
    size_t new_len;
    const unsigned char *old_secret;   /* encrypt.old-secret */
    size_t old_len;
};

/* A key slot change computed in memory by dk_luks_change_prepare and
 * written by dk_luks_change_write. Holds no secret in clear (the new
 * slot's key material is encrypted). */
struct dk_luks_change;

/* Where a change goes: PWRITE writes LEN bytes at OFF relative to the
 * LUKS header start; SYNC makes every earlier write durable. Both return
 * 0 or -errno. */
struct dk_luks_io {
    int (*pwrite)(void *opaque, const void *buf, size_t len, uint64_t off);
    int (*sync)(void *opaque);
    void *opaque;
};

/* Checks A against the LUKS area AREA (AREA_LEN bytes: header and every
 * slot's key material) with qemu 7.2's rules and messages (e.g. "Refusing
 * to overwrite active keyslot 0 - please erase it first") and computes the
 * change: for an add, the master key (unlocked with A->key), a new salt,
 * iterations calibrated to A->iter_time_ms, and the sealed key material;
 * for an erase, the slots to disable (matched by keyslot and/or by trying
 * A->old_secret on every active slot). Writes nothing. Returns 0 and *OUT
 * (free with dk_luks_change_free), -EINVAL / -EACCES / -ENOSPC with ERR. */
int dk_luks_change_prepare(const uint8_t *area, size_t area_len,
                           const struct dk_luks_amend *a, struct dk_luks_change **out,
                           struct dk_error *err);
/* Writes C crash-safely (see crypto-luks-keys.c for the order) through
 * IO. Returns 0 or the first -errno (ERR set); on failure the area on
 * disk is in one of the intermediate states the order allows. */
int dk_luks_change_write(const struct dk_luks_change *c, const struct dk_luks_io *io,
                         struct dk_error *err);
/* The header after C (for info). Borrowed until dk_luks_change_free. */
const struct dk_luks_header *dk_luks_change_header(const struct dk_luks_change *c);
void dk_luks_change_free(struct dk_luks_change *c);

#endif
