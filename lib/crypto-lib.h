/* crypto-lib.h - OpenSSL libcrypto loaded at run time, on first use.
 *
 * Why: linking libcrypto costs every diskkit process ~2-3 ms at start
 * (loading and relocating libcrypto.so.3) although only encrypted images
 * need it. crypto-sector.c and crypto-luks.c call OpenSSL only through
 * the table below, filled once by dlopen("libcrypto.so.3") + dlsym.
 *
 * Rules for the callers (invariants):
 *  1. Every entry point that may be the first to need OpenSSL calls
 *     dk_crypto_lib_load() and stops on failure; dk_osl is NULL until a
 *     load succeeded and never changes afterwards.
 *  2. Code that only runs on objects made after a successful load (an
 *     EVP_CIPHER_CTX inside a dk_sector_cipher) uses dk_osl directly.
 *  3. We never define functions named like OpenSSL's (that would
 *     interpose on programs linking both libdiskkit and libcrypto), and
 *     key material is wiped with explicit_bzero, which works even when
 *     libcrypto could not be loaded.
 * The OpenSSL headers are still used for types, constants and, through
 * __typeof__, the exact prototype of every table entry.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_CRYPTO_LIB_H
#define DK_CRYPTO_LIB_H

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "diskkit.h"

/* Every libcrypto function diskkit calls. */
#define DK_OSL_FUNCS(X)                                                      \
    X(OSSL_LIB_CTX_new) X(OSSL_PROVIDER_load)                                \
    X(EVP_MD_fetch) X(EVP_MD_free) X(EVP_MD_get_size)                        \
    X(EVP_MD_CTX_new) X(EVP_MD_CTX_free)                                     \
    X(EVP_DigestInit_ex) X(EVP_DigestUpdate) X(EVP_DigestFinal_ex)           \
    X(EVP_CIPHER_fetch) X(EVP_CIPHER_free) X(EVP_CIPHER_get_iv_length)       \
    X(EVP_CIPHER_CTX_new) X(EVP_CIPHER_CTX_free) X(EVP_CIPHER_CTX_copy)      \
    X(EVP_CIPHER_CTX_set_padding) X(EVP_CipherInit_ex) X(EVP_CipherUpdate)   \
    X(EVP_EncryptUpdate)                                                     \
    X(PKCS5_PBKDF2_HMAC) X(RAND_bytes) X(CRYPTO_memcmp)

/* Members are named after the OpenSSL functions and typed from their
 * prototypes: dk_osl->EVP_MD_fetch(...) is checked like a direct call. */
struct dk_osl_api {
#define DK_OSL_MEMBER(fn) __typeof__(&fn) fn;
    DK_OSL_FUNCS(DK_OSL_MEMBER)
#undef DK_OSL_MEMBER
};

/* The loaded table; NULL until dk_crypto_lib_load() has succeeded. */
extern const struct dk_osl_api *dk_osl;

/* Loads libcrypto.so.3 and resolves the table, once per process
 * (thread-safe; later calls return the first call's result). Returns 0,
 * or -ENOTSUP with ERR (may be NULL) set to "encrypted images need
 * libcrypto.so.3 (OpenSSL 3): <dlerror text>". */
int dk_crypto_lib_load(struct dk_error *err);

#endif
