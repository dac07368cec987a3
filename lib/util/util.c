/* util.c - size and bool parsing, zero detection, small helpers.
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "diskkit.h"
#include "util.h"

bool dk_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    /* Check a head byte by byte until aligned, then 8 words at a time. */
    while (len && ((uintptr_t)p & 7)) {
        if (*p)
            return false;
        p++, len--;
    }
    const uint64_t *w = (const uint64_t *)(const void *)p;
    while (len >= 64) {
        if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
            return false;
        w += 8;
        len -= 64;
    }
    p = (const unsigned char *)w;
    while (len--)
        if (*p++)
            return false;
    return true;
}

void *dk_alloc_aligned(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, len ? len : 1))
        return NULL;
    return p;
}

char *dk_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

uint64_t dk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int dk_parse_size(const char *str, uint64_t *out)
{
    if (!str || !*str || isspace((unsigned char)*str) || *str == '-' || *str == '+')
        return -EINVAL;
    /* Integer part first so that exact large byte counts do not go through
     * a double; a fraction is allowed only with a suffix. */
    errno = 0;
    char *end;
    unsigned long long ip = strtoull(str, &end, 10);
    if (end == str || errno == ERANGE)
        return end == str ? -EINVAL : -ERANGE;
    double frac = 0;
    if (*end == '.') {
        char *fe;
        frac = strtod(end, &fe);
        if (fe == end + 1)
            return -EINVAL;
        end = fe;
    }
    unsigned shift = 0;
    if (*end) {
        const char *suf = "kKMGTPE";
        const char *s = strchr(suf, *end);
        if (!s || end[1] != '\0')
            return -EINVAL;
        shift = (s == suf) ? 10 : 10 * (unsigned)(s - suf);
    } else if (frac != 0) {
        return -EINVAL;
    }
    if (shift && ip > (UINT64_MAX >> 1) >> shift)
        return -ERANGE;
    uint64_t v = (uint64_t)ip << shift;
    if (frac != 0)
        v += (uint64_t)(frac * (double)(1ull << shift));
    if (v > (uint64_t)INT64_MAX)
        return -ERANGE;
    *out = v;
    return 0;
}

int dk_parse_bool(const char *str)
{
    static const char *const yes[] = { "on", "true", "yes", "1" };
    static const char *const no[] = { "off", "false", "no", "0" };
    if (!str)
        return -EINVAL;
    for (size_t i = 0; i < DK_ARRAY_SIZE(yes); i++) {
        if (!strcasecmp(str, yes[i]))
            return 1;
        if (!strcasecmp(str, no[i]))
            return 0;
    }
    return -EINVAL;
}

int dk_random_uuid(uint8_t u[16], bool mixed)
{
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(u + got, 16 - got, 0);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0)
            got += (size_t)n;
    }
    int v = mixed ? 7 : 6;
    u[v] = (uint8_t)((u[v] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    return 0;
}
