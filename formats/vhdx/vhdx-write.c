/* vhdx-write.c - writes to VHDX images, without the log.
 *
 * Spec: MS-VHDX 1.0 sections 2.2.2 (header updates) and 2.5 (BAT).
 *
 * Rules (log-free, in the spirit of what qemu does when it creates an
 * image: structures are written in place, in an order that keeps the
 * file valid after every step):
 *  1. Before the first write of a session both headers are rewritten, one
 *     after the other, each with the sequence number one higher, a new
 *     file write GUID and a new data write GUID (the spec's "update the
 *     header before the first write"), each followed by fdatasync. The log
 *     GUID stays zero: no log entry is ever written.
 *  2. A block that receives non-zero data and is not fully present gets
 *     a new 1 MiB-aligned block at the end of the file (the file is
 *     extended by the block size first, so the rest of the block reads as
 *     zeros, which is what the NOT_PRESENT / ZERO / UNMAPPED block read
 *     as before). Zeros written to such a block leave it as it is.
 *  3. BAT entries change in memory and reach the disk at flush/close in
 *     the order: data, fdatasync, BAT sectors, fdatasync. A crash leaves
 *     at most blocks past the end that no entry references, which neither
 *     qemu nor diskkit count as a problem, never an entry pointing at
 *     unwritten data.
 *
 * Refused: writing to an image whose log needs replay (the replay lives
 * in memory only) and to one with bad BAT entries (the open makes the
 * handle read-only); differencing images do not open at all.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "vhdx.h"

/* Rule 1: header N+1 goes to the inactive slot, then N+2 to the other. */
static int update_headers(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    struct vhdx_header h = s->hdr;
    uint8_t buf[VHDX_HEADER_SIZE];
    int r = vhdx_new_guid(h.file_write_guid);
    if (r == 0)
        r = vhdx_new_guid(h.data_write_guid);
    if (r < 0)
        return dk_set_error(img, r, "vhdx: cannot make a GUID: %s", strerror(-r));
    for (int i = 0; i < 2; i++) {
        int slot = 1 - s->active;
        h.sequence = s->hdr.sequence + 1;
        vhdx_header_encode(&h, buf);
        r = dk_file_pwrite(img->file, buf, sizeof(buf),
                           slot ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
        if (r == 0)
            r = dk_file_flush(img->file);
        if (r < 0)
            return dk_set_error(img, r, "vhdx: cannot update header %d: %s", slot + 1,
                                strerror(-r));
        s->hdr = h;
        s->active = slot;
    }
    s->headers_done = true;
    return 0;
}

static void mark_dirty(struct vhdx_state *s, uint64_t idx)
{
    if (s->dirty_lo >= s->dirty_hi) {
        s->dirty_lo = idx;
        s->dirty_hi = idx + 1;
    } else {
        s->dirty_lo = DK_MIN(s->dirty_lo, idx);
        s->dirty_hi = DK_MAX(s->dirty_hi, idx + 1);
    }
}

/* Rule 2: a new block for guest block B holding N bytes of BUF at IN. */
static int alloc_write(struct dk_image *img, uint64_t b, const uint8_t *buf, size_t n,
                       uint64_t in)
{
    struct vhdx_state *s = img->priv;
    uint64_t bs = s->lay.block_size;
    uint64_t host = dk_round_up(s->real_file_size, VHDX_MIB);
    if (host < s->real_file_size || host > (UINT64_MAX & VHDX_BAT_OFF_MASK) - bs)
        return dk_set_error(img, -EFBIG, "vhdx: no room for a new block");
    int r = dk_file_truncate(img->file, host + bs);
    if (r == 0)
        r = dk_file_pwrite(img->file, buf, n, host + in);
    if (r < 0)
        return dk_set_error(img, r, "vhdx: cannot write a new block at %" PRIu64 ": %s",
                            host, strerror(-r));
    uint64_t idx = vhdx_bat_index(&s->lay, b);
    s->bat[idx] = host | VHDX_BAT_FULLY_PRESENT;
    mark_dirty(s, idx);
    s->real_file_size = s->file_size = host + bs;
    return 0;
}

int vhdx_write(struct dk_image *img, const void *buf, size_t len, uint64_t off)
{
    struct vhdx_state *s = img->priv;
    uint64_t bs = s->lay.block_size;
    const uint8_t *p = buf;
    int r;
    if (!s->headers_done && (r = update_headers(img)) < 0)
        return r;
    while (len) {
        uint64_t b = off / bs, in = off % bs;
        size_t n = (size_t)DK_MIN((uint64_t)len, bs - in);
        uint64_t e = s->bat[vhdx_bat_index(&s->lay, b)];
        unsigned st = (unsigned)(e & VHDX_BAT_STATE_MASK);
        r = 0;
        if (vhdx_is_bad(s, b))
            return dk_corrupt(img, "vhdx: write to a block with an invalid BAT entry");
        if (st == VHDX_BAT_FULLY_PRESENT) {
            uint64_t host = (e & VHDX_BAT_OFF_MASK) + in;
            r = dk_file_pwrite(img->file, p, n, host);
            if (r < 0)
                return dk_set_error(img, r, "vhdx: write at host offset %" PRIu64 ": %s",
                                    host, strerror(-r));
        } else if (!dk_is_zero(p, n)) {
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

/* Rule 3. */
int vhdx_flush(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    uint8_t buf[16384];
    int r = dk_file_flush(img->file);
    if (r < 0)
        return dk_set_error(img, r, "flush: %s", strerror(-r));
    if (s->dirty_lo >= s->dirty_hi)
        return 0;
    for (uint64_t i = s->dirty_lo; i < s->dirty_hi;) {
        uint64_t n = DK_MIN((uint64_t)sizeof(buf) / 8, s->dirty_hi - i);
        for (uint64_t k = 0; k < n; k++)
            dk_put_le64(buf + k * 8, s->bat[i + k]);
        r = dk_file_pwrite(img->file, buf, n * 8, s->lay.bat.offset + i * 8);
        if (r < 0)
            return dk_set_error(img, r, "vhdx: cannot write the BAT: %s", strerror(-r));
        i += n;
    }
    s->dirty_lo = s->dirty_hi = 0;
    r = dk_file_flush(img->file);
    return r < 0 ? dk_set_error(img, r, "flush: %s", strerror(-r)) : 0;
}
