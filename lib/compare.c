/* compare.c - dk_compare: guest-content comparison of two images with the
 * verdicts and messages of qemu-img compare (qemu-img.c img_compare).
 *
 * Walk: block status of both images (whole chains) in lockstep; ranges that
 * read as zero on both sides are skipped, ranges allocated on both sides
 * are read and compared in 512-byte sectors, a range allocated on one side
 * only must read as zero there. Mismatch offsets are reported at sector
 * granularity as qemu-img does. With DK_COPY_STRICT_EQUAL the sizes and
 * the block status (data / zero / allocated) must match as well. Images of
 * different sizes: the part past the smaller one must read as zero.
 *
 * Known gap: strict mode compares diskkit's status bits, which can differ
 * from qemu's in corner cases (qemu's raw "first block" allocation).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CMP_BUF   (1u << 20)     /* bytes compared per step */
#define SECTOR    512u

struct cmp {
    struct dk_image *img[2];
    uint8_t *buf[2];
    struct dk_error *err;
    uint64_t *mismatch;
};

static int img_fail(struct cmp *c, struct dk_image *img, int r)
{
    return dk_error_set(c->err, r, "%s", dk_image_errmsg(img));
}

/* Status of one side: *ALLOC when any layer holds the range, *ZERO when it
 * reads as zeros; *STATUS is the comparable status for strict mode. */
static int side_status(struct cmp *c, int s, uint64_t off, uint64_t len, bool *alloc,
                       bool *zero, unsigned *status, uint64_t *run)
{
    struct dk_extent e;
    int r = dk_block_status(c->img[s], off, len, 0, &e);
    if (r < 0)
        return img_fail(c, c->img[s], r);
    *alloc = e.flags & DK_BS_ALLOCATED;
    *zero = e.flags & DK_BS_ZERO;
    *status = e.flags & (DK_BS_DATA | DK_BS_ZERO | DK_BS_ALLOCATED);
    *run = e.length;
    return 0;
}

static int mismatch_at(struct cmp *c, uint64_t off, const char *fmt)
{
    *c->mismatch = off;
    dk_error_set(c->err, 0, fmt, (unsigned long long)off);
    return 1;
}

/* Returns 1 when [OFF, OFF+LEN) of side S does not read as zeros. */
static int check_zero(struct cmp *c, int s, uint64_t off, uint64_t len)
{
    while (len) {
        size_t n = (size_t)DK_MIN(len, (uint64_t)CMP_BUF);
        int r = dk_pread(c->img[s], c->buf[0], n, off);
        if (r < 0)
            return img_fail(c, c->img[s], r);
        for (size_t i = 0; i < n; i += SECTOR)
            if (!dk_is_zero(c->buf[0] + i, DK_MIN((size_t)SECTOR, n - i)))
                return mismatch_at(c, off + i, "Content mismatch at offset %llu!");
        off += n;
        len -= n;
    }
    return 0;
}

static int check_equal(struct cmp *c, uint64_t off, uint64_t len)
{
    while (len) {
        size_t n = (size_t)DK_MIN(len, (uint64_t)CMP_BUF);
        for (int s = 0; s < 2; s++) {
            int r = dk_pread(c->img[s], c->buf[s], n, off);
            if (r < 0)
                return img_fail(c, c->img[s], r);
        }
        if (memcmp(c->buf[0], c->buf[1], n)) {
            for (size_t i = 0; i < n; i += SECTOR) {
                size_t k = DK_MIN((size_t)SECTOR, n - i);
                if (memcmp(c->buf[0] + i, c->buf[1] + i, k))
                    return mismatch_at(c, off + i, "Content mismatch at offset %llu!");
            }
        }
        off += n;
        len -= n;
    }
    return 0;
}

static int compare_common(struct cmp *c, uint64_t size, bool strict, dk_progress_fn progress,
                          void *opaque, uint64_t total)
{
    for (uint64_t off = 0; off < size;) {
        bool al[2], z[2];
        unsigned st[2];
        uint64_t run[2];
        for (int s = 0; s < 2; s++)
            if (side_status(c, s, off, size - off, &al[s], &z[s], &st[s], &run[s]) < 0)
                return c->err->code;
        uint64_t n = DK_MIN(run[0], run[1]);
        if (strict && st[0] != st[1])
            return mismatch_at(c, off, "Strict mode: Offset %llu block status mismatch!");
        int r = 0;
        if (z[0] && z[1])
            r = 0;
        else if (al[0] && al[1])
            r = check_equal(c, off, n);
        else if (al[0] != al[1])
            r = check_zero(c, al[0] ? 0 : 1, off, n);
        if (r)
            return r;
        off += n;
        if (progress)
            progress(opaque, off, total);
    }
    return 0;
}

/* The tail of the larger image must read as zero. */
static int compare_tail(struct cmp *c, int s, uint64_t off, uint64_t end)
{
    while (off < end) {
        struct dk_extent e;
        int r = dk_block_status(c->img[s], off, end - off, 0, &e);
        if (r < 0)
            return img_fail(c, c->img[s], r);
        if (!(e.flags & DK_BS_ZERO) && (r = check_zero(c, s, off, e.length)) != 0)
            return r;
        off += e.length;
    }
    return 0;
}

int dk_compare(struct dk_image *a, struct dk_image *b, unsigned flags, uint64_t *mismatch,
               dk_progress_fn progress, void *opaque, struct dk_error *err)
{
    struct dk_error local;
    uint64_t mm_local;
    struct cmp c = { .img = { a, b }, .err = err ? err : &local,
                     .mismatch = mismatch ? mismatch : &mm_local };
    c.err->code = 0;
    c.err->msg[0] = '\0';
    uint64_t sa = dk_image_size(a), sb = dk_image_size(b);
    bool strict = flags & DK_COPY_STRICT_EQUAL;
    if (strict && sa != sb)
    {
        *c.mismatch = DK_MIN(sa, sb);
        dk_error_set(c.err, 0, "Strict mode: Image size mismatch!");
        return 1;
    }
    c.buf[0] = dk_alloc_aligned(CMP_BUF);
    c.buf[1] = dk_alloc_aligned(CMP_BUF);
    int r;
    if (!c.buf[0] || !c.buf[1]) {
        r = dk_error_set(c.err, -ENOMEM, "out of memory");
        goto out;
    }
    uint64_t total = DK_MAX(sa, sb);
    r = compare_common(&c, DK_MIN(sa, sb), strict, progress, opaque, total);
    if (r == 0 && sa != sb)
        r = compare_tail(&c, sa > sb ? 0 : 1, DK_MIN(sa, sb), total);
    if (r == 0 && progress)
        progress(opaque, total, total);
out:
    free(c.buf[0]);
    free(c.buf[1]);
    return r;
}
