/* crypto-lib.c - loads OpenSSL libcrypto on first use (see crypto-lib.h
 * for why and for the callers' rules).
 *
 * One pthread_once: dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL), then
 * dlsym of every DK_OSL_FUNCS entry into a static table, published through
 * dk_osl only when all were found. The outcome (table or error text) is
 * fixed for the life of the process; the library is never unloaded, as
 * OpenSSL keeps global state. When the host program already links
 * libcrypto.so.3, dlopen returns that same copy.
 *
 * Known gaps: only the OpenSSL 3 soname is tried (1.1 has another ABI).
 * SPDX-License-Identifier: MIT
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "crypto-lib.h"
#include "internal.h"

#define LIBCRYPTO_SONAME "libcrypto.so.3"

const struct dk_osl_api *dk_osl;

static struct dk_osl_api table;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
/* Why loading failed (set once, read-only afterwards). */
static char load_error[512];

/* dlerror() text, or a fallback: it is NULL when a symbol is NULL. */
static const char *why(void)
{
    const char *e = dlerror();
    return e ? e : "unknown error";
}

static void load(void)
{
    void *h = dlopen(LIBCRYPTO_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof(load_error), "%s", why());
        return;
    }
    /* POSIX guarantees the void * -> function pointer cast for dlsym. */
#define DK_OSL_RESOLVE(fn)                                                   \
    if (!(table.fn = (__typeof__(table.fn))dlsym(h, #fn))) {                 \
        snprintf(load_error, sizeof(load_error), "%s: missing %s", why(), #fn); \
        return;                                                              \
    }
    DK_OSL_FUNCS(DK_OSL_RESOLVE)
#undef DK_OSL_RESOLVE
    dk_osl = &table;
}

int dk_crypto_lib_load(struct dk_error *err)
{
    pthread_once(&load_once, load);
    if (dk_osl)
        return 0;
    return dk_error_set(err, -ENOTSUP, "encrypted images need " LIBCRYPTO_SONAME
                        " (OpenSSL 3): %s", load_error);
}
