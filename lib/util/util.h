/* util.h - small helpers shared by the core and the drivers: overflow-safe
 * arithmetic, rounding, range checks.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_UTIL_UTIL_H
#define DK_UTIL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DK_MAX(a, b) ((a) > (b) ? (a) : (b))
#define DK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Overflow-checked arithmetic: return true on overflow. */
#define dk_add_overflow(a, b, r) __builtin_add_overflow((a), (b), (r))
#define dk_mul_overflow(a, b, r) __builtin_mul_overflow((a), (b), (r))

static inline bool dk_is_pow2(uint64_t v) { return v && !(v & (v - 1)); }
/* ALIGN must be a power of two. */
static inline uint64_t dk_round_down(uint64_t v, uint64_t align) { return v & ~(align - 1); }
static inline uint64_t dk_round_up(uint64_t v, uint64_t align)
{
    return (v + align - 1) & ~(align - 1);
}
static inline uint64_t dk_div_round_up(uint64_t v, uint64_t d) { return v / d + (v % d != 0); }
static inline bool dk_is_aligned(uint64_t v, uint64_t align) { return (v & (align - 1)) == 0; }

/* True when [off, off+len) lies inside [0, end), written without overflow
 * ("len > end - off", never "off + len > end"). */
static inline bool dk_range_inside(uint64_t off, uint64_t len, uint64_t end)
{
    return off <= end && len <= end - off;
}
/* True when the ranges [a, a+alen) and [b, b+blen) overlap. */
static inline bool dk_ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

/* True when all LEN bytes at BUF are zero (fast, word at a time). */
bool dk_is_zero(const void *buf, size_t len);

/* Aligned buffer for O_DIRECT-friendly I/O (4 KiB). NULL on ENOMEM. */
void *dk_alloc_aligned(size_t len);

/* A random (version 4, RFC 4122 variant) UUID in U. MIXED selects the
 * Microsoft GUID byte order of VDI (first three fields little-endian, so
 * the version nibble is in byte 7); otherwise RFC byte order (VHD, byte 6).
 * Returns 0 or -errno from getrandom. */
int dk_random_uuid(uint8_t u[16], bool mixed);

/* strdup that tolerates NULL. */
char *dk_strdup0(const char *s);

/* Monotonic time in nanoseconds. */
uint64_t dk_now_ns(void);

#endif
