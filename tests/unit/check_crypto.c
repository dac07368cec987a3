/* check_crypto.c - the run-time libcrypto loader, sector ciphers (IEEE
 * 1619 XTS vectors, IV generators, thread safety), PBKDF2 and SHA-256
 * known answers, AF split/merge, LUKS1 create and unlock, and every LUKS
 * header validation failure. Not linked with libcrypto: the references
 * computed here call OpenSSL through the loader's table, in OpenSSL's
 * default context rather than diskkit's private one. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto-lib.h"
#include "crypto.h"
#include "util/endian.h"

static void unhex(const char *h, uint8_t *out, size_t n)
{
    ck_assert_uint_eq(strlen(h), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static struct dk_sector_cipher *mk(enum dk_cipher_alg a, enum dk_cipher_mode m,
                                   enum dk_ivgen g, const uint8_t *key, size_t klen)
{
    struct dk_cipher_spec s = { .alg = a, .mode = m, .ivgen = g, .ivgen_hash = DK_HASH_SHA256 };
    struct dk_sector_cipher *c = NULL;
    struct dk_error e = { 0 };
    ck_assert_msg(dk_sector_cipher_new(&c, &s, key, klen, &e) == 0, "%s", e.msg);
    return c;
}

/* IEEE 1619-2007 vector 4: 512-byte unit, sequence number 0. */
static const char v4_ct[] =
    "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89cc78cf7f5e543445f8333"
    "d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412328063fd2aab53e5ea1e0a9f332500a5df9487d0"
    "7a5c92cc512c8866c7e860ce93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad"
    "02655ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8a750e8768defffed"
    "9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f4341332e4ca60482a4ba1a03b3e65008fc5da76"
    "b70bf1690db4eae29c5f1badd03c5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8a"
    "fd1b130e94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc1e08298516e2"
    "c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3e7ff72b1e99785ca0a7e7720c5b36dc6"
    "d72cac9574c8cbbc2f801e23e56fd344b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f49902"
    "7a78572aeebd74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752afe656bb"
    "3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203ebb140f2e583cb2ad15b4aa5b6550"
    "16a8449277dbd477ef2c8d6c017db738b18deb4a427d1923ce3ff262735779a418f20a282df920147bea"
    "be421ee5319d0568";

START_TEST(xts_ieee1619_vector4)
{
    uint8_t key[32], buf[512], ct[512], pt[512];
    unhex("2718281828459045235360287471352631415926535897932384626433832795", key, 32);
    unhex(v4_ct, ct, 512);
    for (int i = 0; i < 512; i++)
        pt[i] = (uint8_t)i;
    struct dk_sector_cipher *c = mk(DK_CIPHER_AES_128, DK_CMODE_XTS, DK_IVGEN_PLAIN64, key, 32);
    memcpy(buf, pt, 512);
    ck_assert_int_eq(dk_sector_encrypt(c, buf, 512, 0), 0);
    ck_assert_mem_eq(buf, ct, 512);
    ck_assert_int_eq(dk_sector_decrypt(c, buf, 512, 0), 0);
    ck_assert_mem_eq(buf, pt, 512);
    dk_sector_cipher_free(c);
}
END_TEST

/* IEEE 1619 vectors 2 and 3 (32-byte units, tweak 0x3333333333): the first
 * 32 bytes of a 512-byte XTS unit equal the 32-byte unit's ciphertext, and
 * the tweak is the plain64 IV of sector 0x3333333333. */
START_TEST(xts_ieee1619_vectors_2_3)
{
    static const char *const keys[] = {
        "1111111111111111111111111111111122222222222222222222222222222222",
        "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f022222222222222222222222222222222",
    };
    static const char *const cts[] = {
        "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0",
        "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89",
    };
    for (int v = 0; v < 2; v++) {
        uint8_t key[32], ct[32], buf[1024];
        unhex(keys[v], key, 32);
        unhex(cts[v], ct, 32);
        memset(buf, 0x44, sizeof(buf));
        struct dk_sector_cipher *c = mk(DK_CIPHER_AES_128, DK_CMODE_XTS, DK_IVGEN_PLAIN64,
                                        key, 32);
        /* two sectors: the second one is sector 0x3333333333 */
        ck_assert_int_eq(dk_sector_encrypt(c, buf, 1024, 0x3333333332ull), 0);
        ck_assert_mem_eq(buf + 512, ct, 32);
        dk_sector_cipher_free(c);
    }
}
END_TEST

/* plain truncates the sector to 32 bits; plain64 does not. */
START_TEST(ivgen_plain_vs_plain64)
{
    uint8_t key[32] = { 1, 2, 3 }, a[512], b[512], d[512];
    key[31] = 9;
    memset(a, 0x11, 512);
    memcpy(b, a, 512);
    memcpy(d, a, 512);
    struct dk_sector_cipher *p = mk(DK_CIPHER_AES_256, DK_CMODE_CBC, DK_IVGEN_PLAIN, key, 32);
    struct dk_sector_cipher *p64 = mk(DK_CIPHER_AES_256, DK_CMODE_CBC, DK_IVGEN_PLAIN64, key, 32);
    ck_assert_int_eq(dk_sector_encrypt(p, a, 512, 0x100000005ull), 0);
    ck_assert_int_eq(dk_sector_encrypt(p64, b, 512, 5), 0);
    ck_assert_mem_eq(a, b, 512);
    ck_assert_int_eq(dk_sector_encrypt(p64, d, 512, 0x100000005ull), 0);
    ck_assert_mem_ne(a, d, 512);
    dk_sector_cipher_free(p);
    dk_sector_cipher_free(p64);
}
END_TEST

/* essiv:sha256 = AES-256-ECB keyed with SHA256(key) over le64(sector),
 * computed here independently with EVP. */
START_TEST(ivgen_essiv_sha256)
{
    uint8_t key[16], salt[32], iv[16], ref[512], buf[512];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 512; i++)
        ref[i] = buf[i] = (uint8_t)(i * 3);
    uint64_t sector = 0x123456789ull;
    ck_assert_int_eq(dk_crypto_lib_load(NULL), 0);
    const struct dk_osl_api *o = dk_osl;
    EVP_MD *md = o->EVP_MD_fetch(NULL, "SHA256", NULL);
    EVP_MD_CTX *mc = o->EVP_MD_CTX_new();
    ck_assert(md && mc && o->EVP_DigestInit_ex(mc, md, NULL) &&
              o->EVP_DigestUpdate(mc, key, 16) && o->EVP_DigestFinal_ex(mc, salt, NULL));
    o->EVP_MD_CTX_free(mc);
    o->EVP_MD_free(md);
    memset(iv, 0, 16);
    dk_put_le64(iv, sector);
    int n;
    EVP_CIPHER *ecb = o->EVP_CIPHER_fetch(NULL, "AES-256-ECB", NULL);
    EVP_CIPHER *cbc = o->EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
    EVP_CIPHER_CTX *x = o->EVP_CIPHER_CTX_new();
    ck_assert(ecb && cbc && x && o->EVP_CipherInit_ex(x, ecb, NULL, salt, NULL, 1));
    o->EVP_CIPHER_CTX_set_padding(x, 0);
    ck_assert(o->EVP_EncryptUpdate(x, iv, &n, iv, 16));
    ck_assert(o->EVP_CipherInit_ex(x, cbc, NULL, key, iv, 1));
    o->EVP_CIPHER_CTX_set_padding(x, 0);
    ck_assert(o->EVP_EncryptUpdate(x, ref, &n, ref, 512));
    o->EVP_CIPHER_CTX_free(x);
    o->EVP_CIPHER_free(ecb);
    o->EVP_CIPHER_free(cbc);
    struct dk_sector_cipher *c = mk(DK_CIPHER_AES_128, DK_CMODE_CBC, DK_IVGEN_ESSIV, key, 16);
    ck_assert_int_eq(dk_sector_encrypt(c, buf, 512, sector), 0);
    ck_assert_mem_eq(buf, ref, 512);
    dk_sector_cipher_free(c);
}
END_TEST

START_TEST(modes_round_trip)
{
    static const struct { enum dk_cipher_alg a; enum dk_cipher_mode m; size_t k; } t[] = {
        { DK_CIPHER_AES_128, DK_CMODE_ECB, 16 }, { DK_CIPHER_AES_192, DK_CMODE_CBC, 24 },
        { DK_CIPHER_AES_256, DK_CMODE_CTR, 32 }, { DK_CIPHER_AES_256, DK_CMODE_XTS, 64 },
    };
    uint8_t key[64], buf[2048], orig[2048];
    for (int i = 0; i < 64; i++)
        key[i] = (uint8_t)(i * 5 + 1);
    for (int i = 0; i < 2048; i++)
        orig[i] = (uint8_t)(i ^ (i >> 8));
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct dk_sector_cipher *c = mk(t[i].a, t[i].m, DK_IVGEN_PLAIN64, key, t[i].k);
        memcpy(buf, orig, sizeof(buf));
        ck_assert_int_eq(dk_sector_encrypt(c, buf, sizeof(buf), 77), 0);
        ck_assert_mem_ne(buf, orig, 512);
        /* sector-wise: decrypting the third sector alone works */
        uint8_t one[512];
        memcpy(one, buf + 1024, 512);
        ck_assert_int_eq(dk_sector_decrypt(c, one, 512, 79), 0);
        ck_assert_mem_eq(one, orig + 1024, 512);
        ck_assert_int_eq(dk_sector_decrypt(c, buf, sizeof(buf), 77), 0);
        ck_assert_mem_eq(buf, orig, sizeof(buf));
        ck_assert_int_eq(dk_sector_encrypt(c, buf, 100, 0), -EINVAL);
        dk_sector_cipher_free(c);
    }
}
END_TEST

START_TEST(unsupported_ciphers)
{
    uint8_t key[64] = { 1 };
    struct dk_error e = { 0 };
    struct dk_sector_cipher *c = NULL;
    struct dk_cipher_spec s = { DK_CIPHER_AES_192, DK_CMODE_XTS, DK_IVGEN_PLAIN64, 0 };
    ck_assert_int_eq(dk_sector_cipher_new(&c, &s, key, 48, &e), -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(e.msg, "xts"));
    s = (struct dk_cipher_spec){ DK_CIPHER_SERPENT_256, DK_CMODE_XTS, DK_IVGEN_PLAIN64, 0 };
    ck_assert_int_eq(dk_sector_cipher_new(&c, &s, key, 64, &e), -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(e.msg, "serpent-256"));
    s = (struct dk_cipher_spec){ DK_CIPHER_AES_256, DK_CMODE_XTS, DK_IVGEN_PLAIN64, 0 };
    ck_assert_int_eq(dk_sector_cipher_new(&c, &s, key, 32, &e), -EINVAL);
    s = (struct dk_cipher_spec){ DK_CIPHER_CAST5_128, DK_CMODE_CBC, DK_IVGEN_ESSIV,
                                 DK_HASH_SHA256 };
    ck_assert_int_eq(dk_sector_cipher_new(&c, &s, key, 16, &e), -ENOTSUP);
    /* essiv with a hash whose length is no AES key size */
    s = (struct dk_cipher_spec){ DK_CIPHER_AES_128, DK_CMODE_CBC, DK_IVGEN_ESSIV, DK_HASH_SHA1 };
    ck_assert_int_eq(dk_sector_cipher_new(&c, &s, key, 16, &e), -ENOTSUP);
    ck_assert_ptr_null(c);
    /* names */
    enum dk_cipher_alg a;
    ck_assert_int_eq(dk_cipher_alg_parse("twofish-128", &a), 0);
    ck_assert_int_eq(dk_cipher_alg_parse("aes-512", &a), -EINVAL);
    ck_assert_str_eq(dk_cipher_alg_name(DK_CIPHER_AES_256), "aes-256");
}
END_TEST

START_TEST(cast5_cbc_if_available)
{
    uint8_t key[16] = { 7 }, buf[512] = { 0 };
    struct dk_error e = { 0 };
    struct dk_sector_cipher *c = NULL;
    struct dk_cipher_spec s = { DK_CIPHER_CAST5_128, DK_CMODE_CBC, DK_IVGEN_PLAIN64, 0 };
    int r = dk_sector_cipher_new(&c, &s, key, 16, &e);
    if (r == -ENOTSUP) {   /* no legacy provider: the message says so */
        ck_assert_ptr_nonnull(strstr(e.msg, "legacy"));
        return;
    }
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(dk_sector_encrypt(c, buf, 512, 3), 0);
    ck_assert(buf[0] || buf[1] || buf[2]);
    ck_assert_int_eq(dk_sector_decrypt(c, buf, 512, 3), 0);
    for (int i = 0; i < 512; i++)
        ck_assert_int_eq(buf[i], 0);
    dk_sector_cipher_free(c);
}
END_TEST

START_TEST(legacy_aes_key)
{
    /* the key is the passphrase zero-padded to 16 bytes, NUL-terminated */
    uint8_t key[16] = { 'p', 'w' }, a[512], b[512];
    memset(a, 0x5a, 512);
    memcpy(b, a, 512);
    struct dk_sector_cipher *ref = mk(DK_CIPHER_AES_128, DK_CMODE_CBC, DK_IVGEN_PLAIN64, key, 16);
    struct dk_sector_cipher *c = NULL;
    ck_assert_int_eq(dk_qcow_aes_new(&c, (const unsigned char *)"pw\0junk", 7, NULL), 0);
    ck_assert_int_eq(dk_sector_encrypt(ref, a, 512, 9), 0);
    ck_assert_int_eq(dk_sector_encrypt(c, b, 512, 9), 0);
    ck_assert_mem_eq(a, b, 512);
    dk_sector_cipher_free(c);
    /* longer than 16 bytes: truncated */
    struct dk_sector_cipher *l1 = NULL, *l2 = NULL;
    const unsigned char *long_pw = (const unsigned char *)"0123456789abcdefXYZ";
    ck_assert_int_eq(dk_qcow_aes_new(&l1, long_pw, 19, NULL), 0);
    ck_assert_int_eq(dk_qcow_aes_new(&l2, long_pw, 16, NULL), 0);
    memset(a, 1, 512);
    memset(b, 1, 512);
    dk_sector_encrypt(l1, a, 512, 0);
    dk_sector_encrypt(l2, b, 512, 0);
    ck_assert_mem_eq(a, b, 512);
    dk_sector_cipher_free(l1);
    dk_sector_cipher_free(l2);
    dk_sector_cipher_free(ref);
}
END_TEST

struct thr { const struct dk_sector_cipher *c; uint8_t buf[8192]; int rc; };

static void *thr_run(void *p)
{
    struct thr *t = p;
    for (int i = 0; i < 50 && !t->rc; i++) {
        t->rc = dk_sector_encrypt(t->c, t->buf, sizeof(t->buf), 1000);
        if (!t->rc)
            t->rc = dk_sector_decrypt(t->c, t->buf, sizeof(t->buf), 1000);
    }
    if (!t->rc)
        t->rc = dk_sector_encrypt(t->c, t->buf, sizeof(t->buf), 1000);
    return NULL;
}

START_TEST(concurrent_use)
{
    uint8_t key[64];
    for (int i = 0; i < 64; i++)
        key[i] = (uint8_t)(i + 100);
    struct dk_sector_cipher *c = mk(DK_CIPHER_AES_256, DK_CMODE_XTS, DK_IVGEN_PLAIN64, key, 64);
    static struct thr t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i].c = c;
        t[i].rc = 0;
        memset(t[i].buf, 0x3c, sizeof(t[i].buf));
        pthread_create(&th[i], NULL, thr_run, &t[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    uint8_t ref[8192];
    memset(ref, 0x3c, sizeof(ref));
    ck_assert_int_eq(dk_sector_encrypt(c, ref, sizeof(ref), 1000), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(t[i].rc, 0);
        ck_assert_mem_eq(t[i].buf, ref, sizeof(ref));
    }
    dk_sector_cipher_free(c);
}
END_TEST

/* The loader: resolves every entry once, later calls agree, and a hash
 * through the table gives the FIPS 180-2 answer for SHA-256("abc"). (The
 * XTS, PBKDF2 and LUKS tests check the rest against known answers.) */
START_TEST(lib_loader)
{
    struct dk_error e = { 0 };
    ck_assert_msg(dk_crypto_lib_load(&e) == 0, "%s", e.msg);
    const struct dk_osl_api *t = dk_osl;
    ck_assert_ptr_nonnull(t);
#define CHECK_ENTRY(fn) ck_assert_msg(t->fn != NULL, "%s not resolved", #fn);
    DK_OSL_FUNCS(CHECK_ENTRY)
#undef CHECK_ENTRY
    ck_assert_int_eq(dk_crypto_lib_load(NULL), 0);
    ck_assert_ptr_eq(dk_osl, t);
    uint8_t out[32], want[32];
    ck_assert_int_eq(dk_crypto_hash(DK_HASH_SHA256, "ab", 2, "c", 1, out), 0);
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, 32);
    ck_assert_mem_eq(out, want, 32);
}
END_TEST

/* RFC 6070 (PBKDF2-HMAC-SHA1) and the common SHA-256 vector. */
START_TEST(pbkdf2_known_answers)
{
    uint8_t out[32], want[32];
    ck_assert_int_eq(dk_crypto_pbkdf2(DK_HASH_SHA1, "password", 8, (const uint8_t *)"salt", 4,
                                      2, out, 20), 0);
    unhex("ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957", want, 20);
    ck_assert_mem_eq(out, want, 20);
    ck_assert_int_eq(dk_crypto_pbkdf2(DK_HASH_SHA256, "password", 8,
                                      (const uint8_t *)"salt", 4, 1, out, 32), 0);
    unhex("120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b", want, 32);
    ck_assert_mem_eq(out, want, 32);
    ck_assert_int_eq(dk_crypto_pbkdf2(DK_HASH_SHA256, "p", 1, want, 4, 0, out, 32), -EINVAL);
}
END_TEST

START_TEST(af_split_merge)
{
    static const enum dk_hash hs[] = { DK_HASH_SHA1, DK_HASH_SHA256, DK_HASH_SHA512 };
    for (size_t i = 0; i < 3; i++) {
        uint8_t key[64], back[64];
        for (int j = 0; j < 64; j++)
            key[j] = (uint8_t)(j * 11);
        uint8_t *m = malloc(64 * 4000);
        ck_assert_int_eq(dk_luks_af_split(hs[i], key, 64, 4000, m), 0);
        ck_assert_int_eq(dk_luks_af_merge(hs[i], m, 64, 4000, back), 0);
        ck_assert_mem_eq(key, back, 64);
        m[100] ^= 1;   /* any damaged stripe destroys the key */
        ck_assert_int_eq(dk_luks_af_merge(hs[i], m, 64, 4000, back), 0);
        ck_assert_mem_ne(key, back, 64);
        free(m);
    }
}
END_TEST

/* ------------------------------------------------------------------ LUKS */

static uint8_t *area;
static size_t area_len;

static void make_area(enum dk_cipher_alg a, enum dk_cipher_mode m, enum dk_ivgen g,
                      enum dk_hash h)
{
    struct dk_luks_create_params p = {
        .spec = { .alg = a, .mode = m, .ivgen = g, .ivgen_hash = DK_HASH_SHA256 },
        .hash = h, .iter_time_ms = 10,
    };
    struct dk_luks *l = NULL;
    struct dk_error e = { 0 };
    free(area);
    ck_assert_msg(dk_luks_create(&p, (const unsigned char *)"secret", 6, &area, &area_len,
                                 &l, &e) == 0, "%s", e.msg);
    struct dk_luks *u = NULL;
    ck_assert_msg(dk_luks_unlock(area, area_len, (const unsigned char *)"secret", 6, &u, &e)
                  == 0, "%s", e.msg);
    ck_assert_int_eq(u->slot, 0);
    ck_assert_mem_eq(u->master_key, l->master_key, l->hdr.key_bytes);
    ck_assert_int_eq(u->hdr.spec.alg, a);
    ck_assert_int_eq(u->hdr.spec.mode, m);
    /* the payload ciphers agree */
    uint8_t x[1024], y[1024];
    memset(x, 0x42, sizeof(x));
    memcpy(y, x, sizeof(y));
    dk_sector_encrypt(l->cipher, x, sizeof(x), 12345);
    dk_sector_encrypt(u->cipher, y, sizeof(y), 12345);
    ck_assert_mem_eq(x, y, sizeof(x));
    dk_luks_free(u);
    dk_luks_free(l);
}

START_TEST(luks_create_unlock_xts)
{
    make_area(DK_CIPHER_AES_256, DK_CMODE_XTS, DK_IVGEN_PLAIN64, DK_HASH_SHA256);
    /* qemu's layout for aes-256-xts inside qcow2 */
    ck_assert_uint_eq(area_len, 2068480);
    struct dk_luks_header h;
    ck_assert_int_eq(dk_luks_decode(area, area_len, area_len, &h, NULL), 0);
    ck_assert_str_eq(h.cipher_name, "aes");
    ck_assert_str_eq(h.cipher_mode, "xts-plain64");
    ck_assert_str_eq(h.hash_spec, "sha256");
    ck_assert_uint_eq(h.key_bytes, 64);
    ck_assert_uint_eq(h.payload_offset, 4040);
    ck_assert_uint_eq(h.slots[0].key_offset, 8);
    ck_assert_uint_eq(h.slots[1].key_offset, 512);
    ck_assert_uint_eq(h.slots[0].active, DK_LUKS_SLOT_ACTIVE);
    ck_assert_uint_eq(h.slots[1].active, DK_LUKS_SLOT_INACTIVE);
    ck_assert_uint_ge(h.slots[0].iterations, DK_LUKS_MIN_ITERS);
    ck_assert_uint_eq(strlen(h.uuid), 36);
    /* encode(decode(x)) == x */
    uint8_t again[DK_LUKS_PHDR_SIZE];
    dk_luks_encode(&h, again);
    ck_assert_mem_eq(again, area, DK_LUKS_PHDR_SIZE);
}
END_TEST

START_TEST(luks_create_unlock_other_specs)
{
    make_area(DK_CIPHER_AES_128, DK_CMODE_CBC, DK_IVGEN_ESSIV, DK_HASH_SHA1);
    struct dk_luks_header h;
    ck_assert_int_eq(dk_luks_decode(area, area_len, area_len, &h, NULL), 0);
    ck_assert_str_eq(h.cipher_mode, "cbc-essiv:sha256");
    ck_assert_str_eq(h.hash_spec, "sha1");
    /* aes-192: 96000 bytes of material, not a whole number of sectors */
    make_area(DK_CIPHER_AES_192, DK_CMODE_CBC, DK_IVGEN_PLAIN64, DK_HASH_SHA512);
    make_area(DK_CIPHER_AES_128, DK_CMODE_XTS, DK_IVGEN_PLAIN, DK_HASH_SHA256);
}
END_TEST

START_TEST(luks_wrong_passphrase)
{
    make_area(DK_CIPHER_AES_256, DK_CMODE_XTS, DK_IVGEN_PLAIN64, DK_HASH_SHA256);
    struct dk_luks *u = (void *)1;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_luks_unlock(area, area_len, (const unsigned char *)"secreT", 6, &u, &e),
                     -EACCES);
    ck_assert_ptr_null(u);
    ck_assert_str_eq(e.msg, "Invalid password, cannot unlock any keyslot");
    ck_assert_ptr_null(strstr(e.msg, "secre"));
    /* damaged key material: also just "wrong password" */
    area[8 * 512 + 1000] ^= 0x80;
    ck_assert_int_eq(dk_luks_unlock(area, area_len, (const unsigned char *)"secret", 6, &u, &e),
                     -EACCES);
}
END_TEST

/* Decodes a copy of AREA's header after MUTATE; expects ERR and a message
 * containing WHAT. */
static void expect_bad(void (*mutate)(uint8_t *), size_t len, int err, const char *what)
{
    uint8_t *b = malloc(area_len);
    memcpy(b, area, area_len);
    mutate(b);
    struct dk_luks_header h;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_luks_decode(b, area_len, len, &h, &e), err);
    ck_assert_msg(strstr(e.msg, what) != NULL, "'%s' lacks '%s'", e.msg, what);
    struct dk_luks *u = NULL;
    if (len == area_len) {
        ck_assert_int_eq(dk_luks_unlock(b, area_len, (const unsigned char *)"secret", 6, &u, &e),
                         err);
        ck_assert_ptr_null(u);
    }
    free(b);
}

static void m_none(uint8_t *b) { (void)b; }
static void m_magic(uint8_t *b) { b[4] = 0; }
static void m_version(uint8_t *b) { dk_put_be16(b + 6, 2); }
static void m_name(uint8_t *b) { memset(b + 8, 'a', 32); }
static void m_mode(uint8_t *b) { memset(b + 40, 0, 32); strcpy((char *)b + 40, "xts-weird"); }
static void m_hash(uint8_t *b) { memset(b + 72, 0, 32); strcpy((char *)b + 72, "whirlpool"); }
static void m_uuid(uint8_t *b) { memset(b + 168, '1', 40); }
static void m_cipher(uint8_t *b) { memset(b + 8, 0, 32); strcpy((char *)b + 8, "serpent"); }
static void m_kb0(uint8_t *b) { dk_put_be32(b + 108, 0); }
static void m_kb_big(uint8_t *b) { dk_put_be32(b + 108, 65); }
static void m_kb_odd(uint8_t *b) { dk_put_be32(b + 108, 40); }
static void m_mkiter0(uint8_t *b) { dk_put_be32(b + 164, 0); }
static void m_mkiter_huge(uint8_t *b) { dk_put_be32(b + 164, 0xffffffffu); }
static void m_state(uint8_t *b) { dk_put_be32(b + 208 + 48, 0x1234); }
static void m_stripes(uint8_t *b) { dk_put_be32(b + 208 + 44, 4001); }
static void m_iter0(uint8_t *b) { dk_put_be32(b + 208 + 4, 0); }
static void m_iter_huge(uint8_t *b) { dk_put_be32(b + 208 + 4, 0x80000000u); }
static void m_koff_hdr(uint8_t *b) { dk_put_be32(b + 208 + 40, 1); }
static void m_koff_far(uint8_t *b) { dk_put_be32(b + 208 + 48 * 7 + 40, 0xfffffff0u); }
static void m_overlap(uint8_t *b) { dk_put_be32(b + 208 + 48 + 40, 100); }
static void m_payload(uint8_t *b) { dk_put_be32(b + 104, 600); }

START_TEST(luks_validation_failures)
{
    make_area(DK_CIPHER_AES_256, DK_CMODE_XTS, DK_IVGEN_PLAIN64, DK_HASH_SHA256);
    expect_bad(m_none, 100, -EINVAL, "truncated");
    expect_bad(m_none, area_len - 4096, -EINVAL, "slot 7 material");
    expect_bad(m_magic, area_len, -EINVAL, "magic");
    expect_bad(m_version, area_len, -ENOTSUP, "version 2");
    expect_bad(m_name, area_len, -EINVAL, "unterminated");
    expect_bad(m_uuid, area_len, -EINVAL, "unterminated");
    expect_bad(m_mode, area_len, -ENOTSUP, "xts-weird");
    expect_bad(m_hash, area_len, -ENOTSUP, "whirlpool");
    expect_bad(m_kb0, area_len, -EINVAL, "key-bytes 0");
    expect_bad(m_kb_big, area_len, -EINVAL, "key-bytes 65");
    expect_bad(m_kb_odd, area_len, -ENOTSUP, "40 key bytes");
    expect_bad(m_mkiter0, area_len, -EINVAL, "digest iterations 0");
    expect_bad(m_mkiter_huge, area_len, -EINVAL, "digest iterations");
    expect_bad(m_state, area_len, -EINVAL, "slot 1 has invalid state");
    expect_bad(m_stripes, area_len, -EINVAL, "4001 stripes");
    expect_bad(m_iter0, area_len, -EINVAL, "slot 0 has 0 iterations");
    expect_bad(m_iter_huge, area_len, -EINVAL, "2147483648 iterations");
    expect_bad(m_koff_hdr, area_len, -EINVAL, "overlaps the header");
    expect_bad(m_koff_far, area_len, -EINVAL, "slot 7 material");
    expect_bad(m_overlap, area_len, -EINVAL, "slots 0 and 1 overlap");
    expect_bad(m_payload, area_len, -EINVAL, "material");
    /* valid header, cipher OpenSSL lacks: decode passes, unlock refuses */
    uint8_t *b = malloc(area_len);
    memcpy(b, area, area_len);
    m_cipher(b);
    struct dk_luks_header h;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_luks_decode(b, area_len, area_len, &h, &e), 0);
    struct dk_luks *u = NULL;
    ck_assert_int_eq(dk_luks_unlock(b, area_len, (const unsigned char *)"secret", 6, &u, &e),
                     -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(e.msg, "serpent-256"));
    free(b);
    /* the area cap */
    ck_assert_int_eq(dk_luks_unlock(area, DK_LUKS_MAX_AREA + 1ull,
                                    (const unsigned char *)"x", 1, &u, &e), -EINVAL);
}
END_TEST

/* Random damage to the header and key material never crashes (run under
 * ASan): decode either rejects it or unlock gives a clean error/success. */
START_TEST(luks_random_damage)
{
    make_area(DK_CIPHER_AES_128, DK_CMODE_XTS, DK_IVGEN_PLAIN64, DK_HASH_SHA1);
    uint8_t *b = malloc(area_len);
    unsigned seed = 1;
    for (int round = 0; round < 3000; round++) {
        memcpy(b, area, area_len);
        int n = 1 + round % 8;
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % DK_LUKS_PHDR_SIZE;
            b[at] = (uint8_t)(seed >> 3);
        }
        struct dk_luks_header h;
        struct dk_error e = { 0 };
        int r = dk_luks_decode(b, area_len, area_len, &h, &e);
        ck_assert(r == 0 || (r < 0 && e.msg[0]));
        /* unlock only what stays cheap (PBKDF2 cost is bounded by the header) */
        if (r == 0 && round % 50 == 0 && h.slots[0].iterations < 100000 &&
            h.mk_digest_iter < 100000) {
            struct dk_luks *u = NULL;
            r = dk_luks_unlock(b, area_len, (const unsigned char *)"secret", 6, &u, &e);
            ck_assert(r <= 0);
            dk_luks_free(u);
        }
    }
    free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crypto");
    TCase *t = tcase_create("sector");
    tcase_add_test(t, lib_loader);
    tcase_add_test(t, xts_ieee1619_vector4);
    tcase_add_test(t, xts_ieee1619_vectors_2_3);
    tcase_add_test(t, ivgen_plain_vs_plain64);
    tcase_add_test(t, ivgen_essiv_sha256);
    tcase_add_test(t, modes_round_trip);
    tcase_add_test(t, unsupported_ciphers);
    tcase_add_test(t, cast5_cbc_if_available);
    tcase_add_test(t, legacy_aes_key);
    tcase_add_test(t, concurrent_use);
    tcase_add_test(t, pbkdf2_known_answers);
    tcase_add_test(t, af_split_merge);
    suite_add_tcase(s, t);
    TCase *l = tcase_create("luks");
    tcase_set_timeout(l, 120);
    tcase_add_test(l, luks_create_unlock_xts);
    tcase_add_test(l, luks_create_unlock_other_specs);
    tcase_add_test(l, luks_wrong_passphrase);
    tcase_add_test(l, luks_validation_failures);
    tcase_add_test(l, luks_random_damage);
    suite_add_tcase(s, l);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(area);
    return failed ? 1 : 0;
}
