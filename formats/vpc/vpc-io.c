/* vpc-io.c - VHD data path: read, write (block allocation), zero and
 * discard, block status, flush.
 *
 * Fixed disks are the guest bytes followed by the footer: I/O goes straight
 * to the file at the guest offset, and the footer (at or after the end of
 * the guest data) is never touched.
 *
 * Dynamic disks, allocation (spec "Block Allocation Table and Data
 * Blocks"): a block that receives non-zero data is placed at free_off,
 * where the old end-of-file footer lies. We write its sector bitmap (all
 * ones: every sector is present, as qemu writes it; the unwritten ones read
 * as zeros from the sparse file), then the data, then the footer copy just
 * past the new block, which also extends the file over the whole block.
 * The BAT entry changes in memory only and reaches the disk in vpc_flush
 * after an fdatasync of the data. A crash therefore leaves at most
 * unreferenced blocks between the last referenced one and the file's end,
 * which qemu and diskkit both ignore (the next allocation reuses the space,
 * zeroing whatever stale data it holds).
 * Zeroing an allocated range punches holes; blocks are never freed (qemu
 * 7.2 has no discard for vpc either).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vpc.h"

static inline bool allocated(const struct vpc_state *s, uint32_t b)
{
    return s->bat[b] != VPC_BAT_UNALLOCATED;
}

/* Host offset of byte IN of the data of allocated guest block B. */
static inline uint64_t block_host(const struct vpc_state *s, uint32_t b, uint64_t in)
{
    return (uint64_t)s->bat[b] * VPC_SECTOR + s->bitmap_size + in;
}

static int io_error(struct dk_image *img, int r, const char *what, uint64_t host)
{
    return dk_set_error(img, r, "vpc: %s at host offset %" PRIu64 ": %s", what, host,
                        strerror(-r));
}

int vpc_read(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    struct vpc_state *s = img->priv;
    uint8_t *p = buf;
    if (s->fixed) {
        int r = dk_file_pread(img->file, buf, len, off);
        return r < 0 ? io_error(img, r, "read", off) : 0;
    }
    while (len) {
        uint32_t b = (uint32_t)(off / s->block_size);
        uint64_t in = off % s->block_size;
        size_t n = (size_t)DK_MIN((uint64_t)len, s->block_size - in);
        if (allocated(s, b)) {
            int r = dk_file_pread(img->file, p, n, block_host(s, b, in));
            if (r < 0)
                return io_error(img, r, "read", block_host(s, b, in));
        } else {
            memset(p, 0, n);
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Allocates guest block B at free_off and writes N bytes of BUF at IN
 * inside it (see the top of the file for the order). */
static int alloc_write(struct dk_image *img, uint32_t b, const uint8_t *buf, size_t n,
                       uint64_t in)
{
    struct vpc_state *s = img->priv;
    uint64_t host = s->free_off;
    uint64_t data = host + s->bitmap_size, end = data + s->block_size;
    if (host / VPC_SECTOR > UINT32_MAX - 1)
        return dk_set_error(img, -EFBIG, "vpc: the file has grown beyond what the BAT "
                            "can address (2 TiB)");
    if (!s->bitmap) {
        if (!(s->bitmap = malloc(s->bitmap_size)))
            return dk_set_error(img, -ENOMEM, "out of memory");
        memset(s->bitmap, 0xff, s->bitmap_size);
    }
    int r = 0;
    /* Left over by an allocation that never reached the BAT: must read as
     * zeros again where this write does not cover it. */
    if (s->file_size > data)
        r = dk_file_zero(img->file, data, DK_MIN(s->block_size, s->file_size - data), true);
    if (r == 0)
        r = dk_file_pwrite(img->file, s->bitmap, s->bitmap_size, host);
    if (r == 0)
        r = dk_file_pwrite(img->file, buf, n, data + in);
    if (r == 0)
        r = dk_file_pwrite(img->file, s->footer_raw, VPC_FOOTER_SIZE, end);
    if (r < 0)
        return io_error(img, r, "block allocation", host);
    s->file_size = DK_MAX(s->file_size, end + VPC_FOOTER_SIZE);
    s->free_off = end;
    s->bat[b] = (uint32_t)(host / VPC_SECTOR);
    s->dirty_lo = DK_MIN(s->dirty_lo, b);
    s->dirty_hi = DK_MAX(s->dirty_hi, b + 1);
    return 0;
}

int vpc_write(struct dk_image *img, const void *buf, size_t len, uint64_t off)
{
    struct vpc_state *s = img->priv;
    const uint8_t *p = buf;
    if (s->fixed) {
        int r = dk_file_pwrite(img->file, buf, len, off);
        return r < 0 ? io_error(img, r, "write", off) : 0;
    }
    while (len) {
        uint32_t b = (uint32_t)(off / s->block_size);
        uint64_t in = off % s->block_size;
        size_t n = (size_t)DK_MIN((uint64_t)len, s->block_size - in);
        int r = 0;
        if (allocated(s, b)) {
            r = dk_file_pwrite(img->file, p, n, block_host(s, b, in));
            if (r < 0)
                return io_error(img, r, "write", block_host(s, b, in));
        } else if (!dk_is_zero(p, n)) {
            /* Zeros into an unallocated block: it already reads so. */
            r = alloc_write(img, b, p, n, in);
        }
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int vpc_zero(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vpc_state *s = img->priv;
    bool unmap = flags & DK_ZERO_MAY_UNMAP;
    if (s->fixed) {
        int r = dk_file_zero(img->file, off, len, unmap);
        return r < 0 ? io_error(img, r, "zeroing", off) : 0;
    }
    while (len) {
        uint32_t b = (uint32_t)(off / s->block_size);
        uint64_t in = off % s->block_size, n = DK_MIN(len, s->block_size - in);
        if (allocated(s, b)) {
            int r = dk_file_zero(img->file, block_host(s, b, in), n, unmap);
            if (r < 0)
                return io_error(img, r, "zeroing", block_host(s, b, in));
        }
        off += n;
        len -= n;
    }
    return 0;
}

int vpc_discard(struct dk_image *img, uint64_t off, uint64_t len)
{
    return vpc_zero(img, off, len, DK_ZERO_MAY_UNMAP);
}

/* Writes BAT entries [LO, HI) big-endian. */
static int write_bat(struct dk_image *img, uint32_t lo, uint32_t hi)
{
    struct vpc_state *s = img->priv;
    size_t bytes = (size_t)(hi - lo) * 4;
    uint8_t *raw = malloc(bytes);
    if (!raw)
        return dk_set_error(img, -ENOMEM, "out of memory");
    for (uint32_t i = lo; i < hi; i++)
        dk_put_be32(raw + (size_t)(i - lo) * 4, s->bat[i]);
    uint64_t at = s->dyn.table_offset + (uint64_t)lo * 4;
    int r = dk_file_pwrite(img->file, raw, bytes, at);
    free(raw);
    return r < 0 ? io_error(img, r, "BAT write", at) : 0;
}

int vpc_flush(struct dk_image *img)
{
    struct vpc_state *s = img->priv;
    int r;
    if (s->dirty_lo < s->dirty_hi) {
        /* Data and bitmaps first: no entry may point at unwritten blocks. */
        if ((r = dk_file_flush(img->file)) < 0)
            return dk_set_error(img, r, "flush: %s", strerror(-r));
        if ((r = write_bat(img, s->dirty_lo, s->dirty_hi)) < 0)
            return r;
        s->dirty_lo = UINT32_MAX;
        s->dirty_hi = 0;
    }
    r = dk_file_flush(img->file);
    return r < 0 ? dk_set_error(img, r, "flush: %s", strerror(-r)) : 0;
}

/* Fixed disks: the whole range is data at the same offset in the file;
 * holes of the sparse file are reported as zero data, as qemu does for
 * vpc's fixed disks (BDRV_BLOCK_RECURSE), so `map` prints the same. */
static int fixed_status(struct dk_image *img, uint64_t off, uint64_t len,
                        struct dk_extent *ext)
{
    bool data;
    uint64_t run;
    ext->flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID;
    ext->host_offset = off;
    ext->host_file = img->filename;
    ext->length = len;
    int r = dk_file_extent(img->file, off, len, &data, &run);
    if (r < 0)
        return dk_set_error(img, r, "vpc: block status: %s", strerror(-r));
    if (run && run < len)
        ext->length = run;
    if (!data)
        ext->flags |= DK_BS_ZERO;
    return 0;
}

/* Dynamic disks: an allocated block is data, one block at a time (its
 * bitmap separates it from the next); runs of unallocated blocks read as
 * zeros and, there being no backing file, are allocated zeros in this
 * layer, which qemu-img map prints as "present": true, "zero": true.
 * Differencing disks: unallocated blocks and clear bitmap bits are the
 * parent's (vpc-parent.c). */
int vpc_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                     struct dk_extent *ext)
{
    struct vpc_state *s = img->priv;
    if (s->fixed)
        return fixed_status(img, off, len, ext);
    uint32_t b = (uint32_t)(off / s->block_size);
    uint64_t in = off % s->block_size, run = s->block_size - in;
    if (s->diff && allocated(s, b))
        return vpc_diff_status(img, b, in, len, ext);
    if (allocated(s, b)) {
        ext->length = DK_MIN(run, len);
        ext->flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID;
        ext->host_offset = block_host(s, b, in);
        ext->host_file = img->filename;
        return 0;
    }
    for (uint32_t nb = b + 1; run < len && nb < s->dyn.max_table_entries; nb++) {
        if (allocated(s, nb))
            break;
        run += s->block_size;
    }
    ext->length = DK_MIN(run, len);
    ext->flags = DK_BS_ZERO | DK_BS_ALLOCATED;
    if (s->diff) {
        ext->flags = 0;                       /* the parent's */
        return vpc_diff_unallocated(img);
    }
    return 0;
}
