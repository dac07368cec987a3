/* crypto-sector.c - sector ciphers (cipher + mode + IV generator) over
 * OpenSSL EVP, the algorithm name tables, hash/PBKDF2 helpers and the
 * qcow2 legacy AES key derivation. OpenSSL is called through the table
 * of crypto-lib.h, loaded by the entry points that may come first
 * (fetch_spec, dk_crypto_md_fetch, dk_crypto_hash, dk_crypto_pbkdf2).
 *
 * Semantics follow dm-crypt / qemu crypto/block.c with 512-byte sectors:
 * each sector is an independent unit encrypted with IV = ivgen(sector).
 *   plain   : le32(sector mod 2^32), zero padded to the IV length
 *   plain64 : le64(sector), zero padded
 *   essiv   : E_{H(key)}(le64(sector) zero padded), H = ivgen hash, cipher
 *             of the same family keyed by the digest (aes + sha256 ->
 *             aes-256), ECB; qemu refuses essiv for cast5, so do we.
 * xts keys are the two halves concatenated (aes-256-xts: 64 bytes).
 *
 * Concurrency: the object holds keyed template contexts that are never
 * modified after creation; every call copies them into a private
 * EVP_CIPHER_CTX, so calls from several threads are safe.
 *
 * Known gaps: serpent and twofish (not in OpenSSL), aes-192-xts (OpenSSL
 * has no 192-bit XTS), cast5 in xts/ctr (no OpenSSL mode); all refused
 * with -ENOTSUP and a message naming the combination.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crypto-lib.h"
#include "crypto.h"
#include "internal.h"

/* ------------------------------------------------------------ name tables */

struct alg_desc {
    const char *name;         /* qemu's name */
    const char *family;       /* OpenSSL prefix, NULL if OpenSSL lacks it */
    size_t key_len;
};

static const struct alg_desc algs[] = {
    [DK_CIPHER_AES_128] = { "aes-128", "AES-128", 16 },
    [DK_CIPHER_AES_192] = { "aes-192", "AES-192", 24 },
    [DK_CIPHER_AES_256] = { "aes-256", "AES-256", 32 },
    [DK_CIPHER_CAST5_128] = { "cast5-128", "CAST5", 16 },
    [DK_CIPHER_SERPENT_128] = { "serpent-128", NULL, 16 },
    [DK_CIPHER_SERPENT_192] = { "serpent-192", NULL, 24 },
    [DK_CIPHER_SERPENT_256] = { "serpent-256", NULL, 32 },
    [DK_CIPHER_TWOFISH_128] = { "twofish-128", NULL, 16 },
    [DK_CIPHER_TWOFISH_192] = { "twofish-192", NULL, 24 },
    [DK_CIPHER_TWOFISH_256] = { "twofish-256", NULL, 32 },
};
static const char *const modes[] = {
    [DK_CMODE_ECB] = "ecb", [DK_CMODE_CBC] = "cbc",
    [DK_CMODE_XTS] = "xts", [DK_CMODE_CTR] = "ctr",
};
static const char *const ivgens[] = {
    [DK_IVGEN_PLAIN] = "plain", [DK_IVGEN_PLAIN64] = "plain64",
    [DK_IVGEN_ESSIV] = "essiv",
};
struct hash_desc { const char *name, *ossl; size_t len; };
static const struct hash_desc hashes[] = {
    [DK_HASH_MD5] = { "md5", "MD5", 16 },
    [DK_HASH_SHA1] = { "sha1", "SHA1", 20 },
    [DK_HASH_SHA224] = { "sha224", "SHA224", 28 },
    [DK_HASH_SHA256] = { "sha256", "SHA256", 32 },
    [DK_HASH_SHA384] = { "sha384", "SHA384", 48 },
    [DK_HASH_SHA512] = { "sha512", "SHA512", 64 },
    [DK_HASH_RIPEMD160] = { "ripemd160", "RIPEMD160", 20 },
};

int dk_cipher_alg_parse(const char *s, enum dk_cipher_alg *out)
{
    for (size_t i = 0; i < DK_ARRAY_SIZE(algs); i++)
        if (s && !strcmp(s, algs[i].name)) {
            *out = (enum dk_cipher_alg)i;
            return 0;
        }
    return -EINVAL;
}

static int parse_str(const char *s, const char *const *tab, size_t n, int *out)
{
    for (size_t i = 0; i < n; i++)
        if (s && !strcmp(s, tab[i])) {
            *out = (int)i;
            return 0;
        }
    return -EINVAL;
}

int dk_cipher_mode_parse(const char *s, enum dk_cipher_mode *out)
{
    int v, r = parse_str(s, modes, DK_ARRAY_SIZE(modes), &v);
    if (!r)
        *out = (enum dk_cipher_mode)v;
    return r;
}

int dk_ivgen_parse(const char *s, enum dk_ivgen *out)
{
    int v, r = parse_str(s, ivgens, DK_ARRAY_SIZE(ivgens), &v);
    if (!r)
        *out = (enum dk_ivgen)v;
    return r;
}

int dk_hash_parse(const char *s, enum dk_hash *out)
{
    for (size_t i = 0; i < DK_ARRAY_SIZE(hashes); i++)
        if (s && !strcmp(s, hashes[i].name)) {
            *out = (enum dk_hash)i;
            return 0;
        }
    return -EINVAL;
}

const char *dk_cipher_alg_name(enum dk_cipher_alg a) { return algs[a].name; }
const char *dk_cipher_mode_name(enum dk_cipher_mode m) { return modes[m]; }
const char *dk_ivgen_name(enum dk_ivgen g) { return ivgens[g]; }
const char *dk_hash_name(enum dk_hash h) { return hashes[h].name; }
size_t dk_cipher_alg_key_len(enum dk_cipher_alg a) { return algs[a].key_len; }
size_t dk_hash_len(enum dk_hash h) { return hashes[h].len; }

/* ----------------------------------------------- OpenSSL library context */

/* A private library context with the default and (when installed) legacy
 * providers: cast5 lives in "legacy" in OpenSSL 3. Private so that we do
 * not change which providers the application's default context sees. */
static OSSL_LIB_CTX *libctx;
static pthread_once_t libctx_once = PTHREAD_ONCE_INIT;

static void libctx_init(void)
{
    libctx = dk_osl->OSSL_LIB_CTX_new();
    if (!libctx)
        return;
    dk_osl->OSSL_PROVIDER_load(libctx, "default");
    dk_osl->OSSL_PROVIDER_load(libctx, "legacy");   /* optional */
}

/* Only called once dk_crypto_lib_load() has succeeded. */
static OSSL_LIB_CTX *crypto_libctx(void)
{
    pthread_once(&libctx_once, libctx_init);
    return libctx;
}

EVP_MD *dk_crypto_md_fetch(enum dk_hash h)
{
    if (dk_crypto_lib_load(NULL))
        return NULL;
    return dk_osl->EVP_MD_fetch(crypto_libctx(), hashes[h].ossl, NULL);
}

int dk_crypto_hash(enum dk_hash h, const void *a, size_t alen, const void *b,
                   size_t blen, uint8_t *out)
{
    int r = dk_crypto_lib_load(NULL);
    if (r)
        return r;
    EVP_MD *md = dk_crypto_md_fetch(h);
    EVP_MD_CTX *ctx = dk_osl->EVP_MD_CTX_new();
    r = -EIO;
    if (md && ctx && dk_osl->EVP_DigestInit_ex(ctx, md, NULL) &&
        dk_osl->EVP_DigestUpdate(ctx, a, alen) &&
        (!blen || dk_osl->EVP_DigestUpdate(ctx, b, blen)) &&
        dk_osl->EVP_DigestFinal_ex(ctx, out, NULL))
        r = 0;
    dk_osl->EVP_MD_CTX_free(ctx);
    dk_osl->EVP_MD_free(md);
    return r;
}

int dk_crypto_pbkdf2(enum dk_hash h, const void *pass, size_t pass_len,
                     const uint8_t *salt, size_t salt_len, uint32_t iters,
                     uint8_t *out, size_t out_len)
{
    if (pass_len > INT32_MAX || iters == 0 || iters > INT32_MAX)
        return -EINVAL;
    int r = dk_crypto_lib_load(NULL);
    if (r)
        return r;
    EVP_MD *md = dk_crypto_md_fetch(h);
    if (!md)
        return -ENOTSUP;
    /* An empty passphrase is legal; OpenSSL wants a non-NULL pointer. */
    int ok = dk_osl->PKCS5_PBKDF2_HMAC(pass_len ? pass : "", (int)pass_len, salt,
                                       (int)salt_len, (int)iters, md, (int)out_len, out);
    dk_osl->EVP_MD_free(md);
    return ok ? 0 : -EIO;
}

/* ------------------------------------------------------ the sector cipher */

struct dk_sector_cipher {
    struct dk_cipher_spec spec;
    size_t iv_len;                 /* 0 for ecb */
    EVP_CIPHER_CTX *enc, *dec;     /* keyed templates (never modified) */
    EVP_CIPHER_CTX *essiv;         /* keyed ECB encryptor for essiv IVs */
};

/* OpenSSL cipher for ALG in MODE (and KEY_LEN for the essiv cipher). */
static EVP_CIPHER *cipher_fetch(const char *family, enum dk_cipher_mode m)
{
    static const char *const suffix[] = {
        [DK_CMODE_ECB] = "ECB", [DK_CMODE_CBC] = "CBC",
        [DK_CMODE_XTS] = "XTS", [DK_CMODE_CTR] = "CTR",
    };
    char name[32];
    snprintf(name, sizeof(name), "%s-%s", family, suffix[m]);
    return dk_osl->EVP_CIPHER_fetch(crypto_libctx(), name, NULL);
}

/* A template context keyed with KEY for direction ENC (padding off). */
static EVP_CIPHER_CTX *keyed_ctx(EVP_CIPHER *ci, const uint8_t *key, int enc)
{
    EVP_CIPHER_CTX *ctx = dk_osl->EVP_CIPHER_CTX_new();
    if (!ctx)
        return NULL;
    if (!dk_osl->EVP_CipherInit_ex(ctx, ci, NULL, key, NULL, enc) ||
        !dk_osl->EVP_CIPHER_CTX_set_padding(ctx, 0)) {
        dk_osl->EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The essiv cipher: same family, keyed with H(key). */
static int essiv_setup(struct dk_sector_cipher *c, const uint8_t *key, size_t key_len,
                       struct dk_error *err)
{
    const struct dk_cipher_spec *s = &c->spec;
    size_t dlen = hashes[s->ivgen_hash].len;
    const char *family = NULL;
    if (s->alg <= DK_CIPHER_AES_256)
        family = dlen == 16 ? "AES-128" : dlen == 24 ? "AES-192" : dlen == 32 ? "AES-256" : NULL;
    if (!family)
        return dk_error_set(err, -ENOTSUP, "cipher %s not supported with essiv and hash %s",
                            algs[s->alg].name, hashes[s->ivgen_hash].name);
    uint8_t ekey[64];
    int r = dk_crypto_hash(s->ivgen_hash, key, key_len, NULL, 0, ekey);
    EVP_CIPHER *ci = r ? NULL : cipher_fetch(family, DK_CMODE_ECB);
    if (ci)
        c->essiv = keyed_ctx(ci, ekey, 1);
    explicit_bzero(ekey, sizeof(ekey));
    dk_osl->EVP_CIPHER_free(ci);
    if (!c->essiv)
        return dk_error_set(err, -EIO, "cannot set up the essiv IV generator");
    return 0;
}

static int check_spec(const struct dk_cipher_spec *s, size_t key_len, struct dk_error *err)
{
    const struct alg_desc *a = &algs[s->alg];
    if (!a->family)
        return dk_error_set(err, -ENOTSUP, "cipher %s is not available (OpenSSL lacks it)",
                            a->name);
    if (s->mode == DK_CMODE_XTS && s->alg != DK_CIPHER_AES_128 &&
        s->alg != DK_CIPHER_AES_256)
        return dk_error_set(err, -ENOTSUP, "cipher %s is not available in xts mode "
                            "(OpenSSL has aes-128 and aes-256 xts only)", a->name);
    if (s->alg == DK_CIPHER_CAST5_128 && s->mode == DK_CMODE_CTR)
        return dk_error_set(err, -ENOTSUP, "cipher cast5-128 is not available in ctr mode");
    if (s->alg == DK_CIPHER_CAST5_128 && s->ivgen == DK_IVGEN_ESSIV)
        return dk_error_set(err, -ENOTSUP, "cipher cast5-128 not supported with essiv");
    size_t want = a->key_len * (s->mode == DK_CMODE_XTS ? 2 : 1);
    if (key_len != want)
        return dk_error_set(err, -EINVAL, "cipher %s-%s needs a %zu-byte key, not %zu",
                            a->name, modes[s->mode], want, key_len);
    return 0;
}

/* Checks SPEC and KEY_LEN, loads libcrypto and fetches the OpenSSL
 * cipher into *CI. Every sector cipher is created through here. */
static int fetch_spec(const struct dk_cipher_spec *spec, size_t key_len, EVP_CIPHER **ci,
                      struct dk_error *err)
{
    int r = check_spec(spec, key_len, err);
    if (!r)
        r = dk_crypto_lib_load(err);
    if (r)
        return r;
    *ci = cipher_fetch(algs[spec->alg].family, spec->mode);
    if (!*ci)
        return dk_error_set(err, -ENOTSUP, "cipher %s-%s is not available in this OpenSSL%s",
                            algs[spec->alg].name, modes[spec->mode],
                            spec->alg == DK_CIPHER_CAST5_128 ? " (needs the legacy provider)" : "");
    return 0;
}

int dk_sector_cipher_check(const struct dk_cipher_spec *spec, size_t key_len,
                           struct dk_error *err)
{
    EVP_CIPHER *ci = NULL;
    int r = fetch_spec(spec, key_len, &ci, err);
    if (!r)
        dk_osl->EVP_CIPHER_free(ci);
    return r;
}

int dk_sector_cipher_new(struct dk_sector_cipher **out, const struct dk_cipher_spec *spec,
                         const uint8_t *key, size_t key_len, struct dk_error *err)
{
    *out = NULL;
    EVP_CIPHER *ci = NULL;
    int r = fetch_spec(spec, key_len, &ci, err);
    if (r)
        return r;
    struct dk_sector_cipher *c = calloc(1, sizeof(*c));
    if (!c) {
        dk_osl->EVP_CIPHER_free(ci);
        return dk_error_set(err, -ENOMEM, "out of memory");
    }
    c->spec = *spec;
    c->iv_len = (size_t)dk_osl->EVP_CIPHER_get_iv_length(ci);
    c->enc = keyed_ctx(ci, key, 1);
    c->dec = keyed_ctx(ci, key, 0);
    dk_osl->EVP_CIPHER_free(ci);
    if (!c->enc || !c->dec)
        r = dk_error_set(err, -EIO, "cannot key cipher %s-%s", algs[spec->alg].name,
                         modes[spec->mode]);
    else if (spec->ivgen == DK_IVGEN_ESSIV && c->iv_len)
        r = essiv_setup(c, key, key_len, err);
    if (r) {
        dk_sector_cipher_free(c);
        return r;
    }
    *out = c;
    return 0;
}

void dk_sector_cipher_free(struct dk_sector_cipher *c)
{
    if (!c)
        return;
    /* C exists only after a successful load (fetch_spec); the
     * EVP_CIPHER_CTX_free calls cleanse the key schedules. */
    dk_osl->EVP_CIPHER_CTX_free(c->enc);
    dk_osl->EVP_CIPHER_CTX_free(c->dec);
    dk_osl->EVP_CIPHER_CTX_free(c->essiv);
    free(c);
}

const struct dk_cipher_spec *dk_sector_cipher_spec(const struct dk_sector_cipher *c)
{
    return &c->spec;
}

/* IV of SECTOR into IV (c->iv_len bytes); ESSIV is a private ECB context. */
static int make_iv(const struct dk_sector_cipher *c, EVP_CIPHER_CTX *essiv,
                   uint64_t sector, uint8_t *iv)
{
    memset(iv, 0, c->iv_len);
    if (c->spec.ivgen == DK_IVGEN_PLAIN)
        dk_put_le32(iv, (uint32_t)sector);
    else
        dk_put_le64(iv, sector);    /* iv_len >= 8 for every cipher we run */
    if (c->spec.ivgen != DK_IVGEN_ESSIV)
        return 0;
    int n;
    return dk_osl->EVP_EncryptUpdate(essiv, iv, &n, iv, (int)c->iv_len) ? 0 : -EIO;
}

static int crypt_sectors(const struct dk_sector_cipher *c, bool enc, uint8_t *p,
                         size_t len, uint64_t sector)
{
    if (len % DK_SECTOR_SIZE || len > INT32_MAX)
        return -EINVAL;
    EVP_CIPHER_CTX *ctx = dk_osl->EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX *ectx = c->essiv ? dk_osl->EVP_CIPHER_CTX_new() : NULL;
    int r = -EIO, n;
    if (!ctx || (c->essiv && !ectx)) {
        r = -ENOMEM;
        goto out;
    }
    if (!dk_osl->EVP_CIPHER_CTX_copy(ctx, enc ? c->enc : c->dec) ||
        (ectx && !dk_osl->EVP_CIPHER_CTX_copy(ectx, c->essiv)))
        goto out;
    if (!c->iv_len) {   /* ecb: no IV, one pass */
        r = dk_osl->EVP_CipherUpdate(ctx, p, &n, p, (int)len) ? 0 : -EIO;
        goto out;
    }
    uint8_t iv[EVP_MAX_IV_LENGTH];
    for (size_t i = 0; i < len / DK_SECTOR_SIZE; i++) {
        uint8_t *s = p + i * DK_SECTOR_SIZE;
        if (make_iv(c, ectx, sector + i, iv) ||
            !dk_osl->EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1) ||
            !dk_osl->EVP_CipherUpdate(ctx, s, &n, s, DK_SECTOR_SIZE) || n != DK_SECTOR_SIZE)
            goto out;
    }
    explicit_bzero(iv, sizeof(iv));
    r = 0;
out:
    dk_osl->EVP_CIPHER_CTX_free(ctx);
    dk_osl->EVP_CIPHER_CTX_free(ectx);
    return r;
}

int dk_sector_encrypt(const struct dk_sector_cipher *c, void *buf, size_t len,
                      uint64_t sector)
{
    return crypt_sectors(c, true, buf, len, sector);
}

int dk_sector_decrypt(const struct dk_sector_cipher *c, void *buf, size_t len,
                      uint64_t sector)
{
    return crypt_sectors(c, false, buf, len, sector);
}

/* ------------------------------------------------------- qcow2 legacy AES */

int dk_qcow_aes_new(struct dk_sector_cipher **out, const unsigned char *pass,
                    size_t pass_len, struct dk_error *err)
{
    static const struct dk_cipher_spec spec = {
        .alg = DK_CIPHER_AES_128, .mode = DK_CMODE_CBC, .ivgen = DK_IVGEN_PLAIN64,
    };
    uint8_t key[16] = { 0 };
    /* qemu takes the secret as a C string: it ends at the first NUL. */
    const unsigned char *nul = pass_len ? memchr(pass, 0, pass_len) : NULL;
    size_t n = nul ? (size_t)(nul - pass) : pass_len;
    memcpy(key, pass, DK_MIN(n, sizeof(key)));
    int r = dk_sector_cipher_new(out, &spec, key, sizeof(key), err);
    explicit_bzero(key, sizeof(key));
    return r;
}
