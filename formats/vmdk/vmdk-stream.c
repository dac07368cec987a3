/* vmdk-stream.c - streamOptimized extents: reading compressed grains (with
 * or without markers), the footer of files whose header says the grain
 * directory is "at end", and the write-once stream writer.
 *
 * Spec: "Virtual Disk Format 1.1", "Stream-Optimized Compressed Sparse
 * Extents". A grain is {u64 LBA, u32 size, zlib data} padded to a sector; a
 * metadata marker is a sector {u64 numSectors, u32 0, u32 type} followed by
 * numSectors of GT, GD or footer (0 EOS, 1 GT, 2 GD, 3 footer).
 *
 * Writer layout (VMware's, which ESXi and OVF importers expect):
 *   header (version 3, flags 0x30001, gdOffset = AT_END) | descriptor |
 *   grains in increasing LBA order (all-zero grains skipped) with, after the
 *   grains of each grain table, a GT marker + GT | GD marker + GD |
 *   footer marker + header copy with the real gdOffset | EOS marker.
 *
 * Writer state machine (struct vmdk_swriter):
 *   idle --(open of an empty stream file, writable)--> active
 *   active: grains < next_grain are appended and final; gbuf holds at most
 *   one pending grain still being filled; gt holds the entries of GT
 *   cur_gt, emitted when a grain of a later GT is appended.
 *   flush: writes pending grain + current GT + GD + footer + EOS after
 *   `pos` WITHOUT moving `pos` (the "tail"), then truncates the file there;
 *   a later write overwrites the tail and the next flush writes a new one.
 * Invariant: writes go forward only; a write before the pending grain, or
 * into a grain already appended, fails with -EINVAL.
 * Known gaps: an existing stream image holding data cannot be appended to.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "vmdk.h"

#define NO_GRAIN UINT64_MAX

int vmdk_marker_decode(const uint8_t *sec, uint64_t *val, uint32_t *size)
{
    *val = dk_le64(sec);
    *size = dk_le32(sec + 8);
    if (*size)
        return -1;
    return (int)DK_MIN(dk_le32(sec + 12), 0x7fffffffu);
}

static void marker_encode(uint8_t *sec, uint64_t val, uint32_t type)
{
    memset(sec, 0, VMDK_SECTOR);
    dk_put_le64(sec, val);
    dk_put_le32(sec + 12, type);
}

int vmdk_stream_footer(struct dk_file *f, uint64_t fsize, struct vmdk_header *h,
                       struct dk_error *err)
{
    uint8_t b[3 * VMDK_SECTOR];
    uint64_t v;
    uint32_t sz;
    /* footer marker, footer (a header copy), EOS marker: qemu and VMware
     * both expect exactly these as the last three sectors. */
    if (fsize < 4 * VMDK_SECTOR)
        return dk_error_set(err, -EINVAL, "vmdk: stream file too short for a footer");
    int r = dk_file_pread(f, b, sizeof(b), dk_round_down(fsize, VMDK_SECTOR) - sizeof(b));
    if (r < 0)
        return dk_error_set(err, r, "vmdk: cannot read footer: %s", strerror(-r));
    if (vmdk_marker_decode(b, &v, &sz) != VMDK_MARKER_FOOTER ||
        dk_le32(b + VMDK_SECTOR) != VMDK4_MAGIC ||
        vmdk_marker_decode(b + 2 * VMDK_SECTOR, &v, &sz) != VMDK_MARKER_EOS || v != 0)
        return dk_error_set(err, -EINVAL, "vmdk: invalid footer (grain directory is "
                            "\"at end\" but no footer/end-of-stream markers found)");
    vmdk_header_decode(b + VMDK_SECTOR, h);
    if (h->gd_offset == VMDK_GD_AT_END)
        return dk_error_set(err, -EINVAL, "vmdk: footer does not give the grain directory");
    return 0;
}

int vmdk_stream_read_grain(struct dk_image *img, struct vmdk_extent *e, uint64_t gi,
                           uint32_t gte, uint8_t *out)
{
    uint64_t off = (uint64_t)gte * VMDK_SECTOR, cap = VMDK_MAX_CGRAIN(e->grain_bytes);
    uint64_t avail = off < e->file_size ? e->file_size - off : 0;
    size_t hdr = e->markers ? 12 : 0;
    if (avail <= hdr)
        return dk_corrupt(img, "vmdk: %s: compressed grain %llu at offset 0x%llx lies "
                          "beyond end of file", e->file->path, (unsigned long long)gi,
                          (unsigned long long)off);
    uint64_t want = DK_MIN(avail, cap + hdr);
    if (e->markers) {
        uint8_t m[12];
        int r = dk_file_pread(e->file, m, sizeof(m), off);
        if (r < 0)
            return dk_set_error(img, r, "vmdk: %s: read: %s", e->file->path, strerror(-r));
        uint32_t sz = dk_le32(m + 8);
        if (sz == 0 || sz > cap || sz > avail - hdr)
            return dk_corrupt(img, "vmdk: %s: compressed grain %llu has invalid size %u",
                              e->file->path, (unsigned long long)gi, sz);
        want = hdr + sz;
    }
    uint8_t *c = malloc(want);
    if (!c)
        return dk_set_error(img, -ENOMEM, "out of memory");
    int r = dk_file_pread(e->file, c, want, off);
    ssize_t n = r < 0 ? r : dk_decompress_partial(DK_CODEC_ZLIB, c + hdr, want - hdr, out,
                                                  e->grain_bytes, NULL);
    free(c);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s: read: %s", e->file->path, strerror(-r));
    if (n < 0)
        return dk_corrupt(img, "vmdk: %s: compressed grain %llu at offset 0x%llx is corrupt",
                          e->file->path, (unsigned long long)gi, (unsigned long long)off);
    memset(out + n, 0, e->grain_bytes - (size_t)n);
    return 0;
}

/* ------------------------------------------------------------- writer */

/* Writes marker TYPE and the u32 table T (N entries, padded) at *POS. */
static int put_table(struct dk_file *f, uint32_t type, const uint32_t *t, uint64_t n,
                     uint64_t *pos)
{
    uint64_t bytes = dk_round_up(n * 4, VMDK_SECTOR);
    uint8_t *b = calloc(1, VMDK_SECTOR + bytes);
    if (!b)
        return -ENOMEM;
    marker_encode(b, bytes / VMDK_SECTOR, type);
    for (uint64_t i = 0; i < n; i++)
        dk_put_le32(b + VMDK_SECTOR + 4 * i, t[i]);
    int r = dk_file_pwrite(f, b, VMDK_SECTOR + bytes, *pos);
    free(b);
    *pos += VMDK_SECTOR + bytes;
    return r;
}

/* GD marker + GD, footer marker + footer, EOS at POS; truncates after. */
static int write_tail(struct dk_file *f, const struct vmdk_header *h, const uint32_t *gd,
                      uint64_t n, uint64_t pos, uint64_t *end)
{
    uint64_t gd_sec = pos / VMDK_SECTOR + 1;
    int r = put_table(f, VMDK_MARKER_GD, gd, n, &pos);
    if (r < 0)
        return r;
    uint8_t b[3 * VMDK_SECTOR];
    struct vmdk_header fh = *h;
    fh.gd_offset = gd_sec;
    marker_encode(b, 1, VMDK_MARKER_FOOTER);
    vmdk_header_encode(&fh, b + VMDK_SECTOR);
    marker_encode(b + 2 * VMDK_SECTOR, 0, VMDK_MARKER_EOS);
    if ((r = dk_file_pwrite(f, b, sizeof(b), pos)) < 0)
        return r;
    pos += sizeof(b);
    *end = pos;
    return dk_file_truncate(f, pos);
}

int vmdk_stream_create(struct dk_file *f, uint64_t sectors, const char *desc,
                       struct dk_error *err)
{
    size_t dlen = strlen(desc);
    struct vmdk_header h = {
        .version = 3, .flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS,
        .capacity = sectors, .grain_size = 128, .desc_offset = 1,
        .desc_size = DK_MAX(20, dk_div_round_up(dlen, VMDK_SECTOR)),
        .num_gtes = 512, .gd_offset = VMDK_GD_AT_END, .compress = VMDK_COMPRESS_DEFLATE,
    };
    h.overhead = dk_round_up(1 + h.desc_size, h.grain_size);
    uint64_t n = dk_div_round_up(sectors, 512 * 128), end;
    uint8_t *b = calloc(1, h.overhead * VMDK_SECTOR);
    uint32_t *gd = calloc(n ? n : 1, 4);
    int r = -ENOMEM;
    if (b && gd) {
        vmdk_header_encode(&h, b);
        memcpy(b + VMDK_SECTOR, desc, dlen);
        r = dk_file_pwrite(f, b, h.overhead * VMDK_SECTOR, 0);
        if (r == 0)
            r = write_tail(f, &h, gd, n, h.overhead * VMDK_SECTOR, &end);
    }
    free(b);
    free(gd);
    return r < 0 ? dk_error_set(err, r, "vmdk: %s: %s", f->path, strerror(-r)) : 0;
}

int vmdk_swriter_start(struct dk_image *img, struct vmdk_extent *e)
{
    struct vmdk_swriter *w = &e->sw;
    size_t cap = VMDK_MAX_CGRAIN(e->grain_bytes) + VMDK_SECTOR;
    w->gt = calloc(e->h.num_gtes, 4);
    w->gbuf = malloc(e->grain_bytes);
    w->cbuf = malloc(cap);
    if (!w->gt || !w->gbuf || !w->cbuf) {
        vmdk_swriter_free(e);
        return dk_set_error(img, -ENOMEM, "out of memory");
    }
    w->cbuf_cap = cap;
    w->gbuf_index = NO_GRAIN;
    w->pos = e->h.overhead * VMDK_SECTOR;
    /* Turn the header into the VMware layout: GD found through the footer. */
    struct vmdk_header h = e->h;
    h.version = 3;
    h.flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS;
    h.gd_offset = VMDK_GD_AT_END;
    h.rgd_offset = 0;
    uint8_t b[VMDK_SECTOR];
    vmdk_header_encode(&h, b);
    int r = dk_file_pwrite(e->file, b, sizeof(b), 0);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s: write: %s", e->file->path, strerror(-r));
    e->h = h;
    free(e->rgd);
    e->rgd = NULL;
    memset(e->gd, 0, (size_t)e->gd_entries * 4);
    w->active = true;
    return 0;
}

void vmdk_swriter_free(struct vmdk_extent *e)
{
    free(e->sw.gt);
    free(e->sw.gbuf);
    free(e->sw.cbuf);
    memset(&e->sw, 0, sizeof(e->sw));
}

bool vmdk_swriter_lookup(struct vmdk_extent *e, uint64_t gi, uint32_t *gte)
{
    if (gi / e->h.num_gtes != e->sw.cur_gt)
        return false;
    *gte = e->sw.gt[gi % e->h.num_gtes];
    return true;
}

const uint8_t *vmdk_swriter_pending(struct vmdk_extent *e, uint64_t gi)
{
    return e->sw.active && e->sw.gbuf_index == gi ? e->sw.gbuf : NULL;
}

/* Builds the grain record (marker + zlib data, sector padded) in cbuf. */
static ssize_t build_grain(struct vmdk_extent *e, uint64_t gi, const void *cdata,
                           size_t clen, const void *plain, size_t plain_len)
{
    struct vmdk_swriter *w = &e->sw;
    uint8_t *b = w->cbuf;
    if (!clen) {
        const void *src = plain;
        if (plain_len < e->grain_bytes) {   /* last grain: full-size like qemu */
            memmove(w->gbuf, plain, plain_len);
            memset(w->gbuf + plain_len, 0, e->grain_bytes - plain_len);
            src = w->gbuf;
        }
        ssize_t n = dk_compress(DK_CODEC_ZLIB, 0, src, e->grain_bytes, b + 12,
                                w->cbuf_cap - 12 - VMDK_SECTOR);
        if (n <= 0)
            return n < 0 ? n : -EIO;
        clen = (size_t)n;
    } else {
        if (clen > w->cbuf_cap - 12 - VMDK_SECTOR)
            return -EINVAL;
        memcpy(b + 12, cdata, clen);
    }
    size_t total = dk_round_up(12 + clen, VMDK_SECTOR);
    dk_put_le64(b, gi * e->h.grain_size);
    dk_put_le32(b + 8, (uint32_t)clen);
    memset(b + 12 + clen, 0, total - 12 - clen);
    return (ssize_t)total;
}

/* Appends the GT being filled (when it has entries) and records it in GD. */
static int emit_gt(struct vmdk_extent *e)
{
    struct vmdk_swriter *w = &e->sw;
    if (dk_is_zero(w->gt, (size_t)e->h.num_gtes * 4))
        return 0;
    uint64_t at = w->pos;
    int r = put_table(e->file, VMDK_MARKER_GT, w->gt, e->h.num_gtes, &w->pos);
    if (r == 0)
        e->gd[w->cur_gt] = (uint32_t)(at / VMDK_SECTOR + 1);
    return r;
}

/* Appends the grain record in cbuf (TOTAL bytes) as grain GI. */
static int append_grain(struct dk_image *img, struct vmdk_extent *e, uint64_t gi,
                        size_t total)
{
    struct vmdk_swriter *w = &e->sw;
    uint32_t idx = (uint32_t)(gi / e->h.num_gtes);
    int r = 0;
    if (idx != w->cur_gt) {
        r = emit_gt(e);
        memset(w->gt, 0, (size_t)e->h.num_gtes * 4);
        w->cur_gt = idx;
    }
    if (r == 0 && (w->pos + total) / VMDK_SECTOR > UINT32_MAX)
        return dk_set_error(img, -EFBIG, "vmdk: %s: stream file would exceed 2 TiB",
                            e->file->path);
    if (r == 0)
        r = dk_file_pwrite(e->file, w->cbuf, total, w->pos);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s: write: %s", e->file->path, strerror(-r));
    w->gt[gi % e->h.num_gtes] = (uint32_t)(w->pos / VMDK_SECTOR);
    w->pos += total;
    e->file_size = DK_MAX(e->file_size, w->pos);
    w->next_grain = gi + 1;
    return 0;
}

static int out_of_order(struct dk_image *img, struct vmdk_extent *e, uint64_t gi)
{
    return dk_set_error(img, -EINVAL, "vmdk: streamOptimized images are written once, in "
                        "increasing order: write to grain %llu after grain %llu",
                        (unsigned long long)gi, (unsigned long long)
                        (e->sw.gbuf_index != NO_GRAIN ? e->sw.gbuf_index
                                                      : e->sw.next_grain - 1));
}

/* Compresses and appends the pending grain (skipped when all zero). */
static int commit_pending(struct dk_image *img, struct vmdk_extent *e)
{
    struct vmdk_swriter *w = &e->sw;
    uint64_t gi = w->gbuf_index;
    if (gi == NO_GRAIN)
        return 0;
    w->gbuf_index = NO_GRAIN;
    if (!img->backing && dk_is_zero(w->gbuf, e->grain_bytes)) {
        w->next_grain = gi + 1;
        return 0;
    }
    ssize_t n = build_grain(e, gi, NULL, 0, w->gbuf, e->grain_bytes);
    if (n < 0)
        return dk_set_error(img, (int)n, "vmdk: compressing grain %llu failed",
                            (unsigned long long)gi);
    return append_grain(img, e, gi, (size_t)n);
}

int vmdk_swriter_write(struct dk_image *img, struct vmdk_extent *e, const uint8_t *buf,
                       size_t len, uint64_t off)
{
    struct vmdk_swriter *w = &e->sw;
    while (len) {
        uint64_t gi = off / e->grain_bytes, in = off % e->grain_bytes;
        size_t n = (size_t)DK_MIN((uint64_t)len, e->grain_bytes - in);
        int r = 0;
        if (gi < w->next_grain || (w->gbuf_index != NO_GRAIN && gi < w->gbuf_index))
            return out_of_order(img, e, gi);
        if (w->gbuf_index != gi) {
            if ((r = commit_pending(img, e)) < 0)
                return r;
            if (img->backing && (r = vmdk_parent_check(img)) == 0)
                r = dk_read_backing(img, w->gbuf, e->grain_bytes,
                                    e->start + gi * e->grain_bytes);
            else
                memset(w->gbuf, 0, e->grain_bytes);
            if (r < 0)
                return r;
            w->gbuf_index = gi;
        }
        memcpy(w->gbuf + in, buf, n);
        if (in + n == e->grain_bytes || off + n == e->bytes) {
            if ((r = commit_pending(img, e)) < 0)
                return r;
        }
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

int vmdk_swriter_grain(struct dk_image *img, struct vmdk_extent *e, uint64_t gi,
                       const void *cdata, size_t clen, const void *plain, size_t plain_len)
{
    struct vmdk_swriter *w = &e->sw;
    if (w->gbuf_index != NO_GRAIN && w->gbuf_index < gi) {
        int r = commit_pending(img, e);
        if (r < 0)
            return r;
    }
    if (gi < w->next_grain || w->gbuf_index != NO_GRAIN)
        return out_of_order(img, e, gi);
    if (!img->backing && plain && dk_is_zero(plain, plain_len)) {
        w->next_grain = gi + 1;
        return 0;
    }
    ssize_t n = build_grain(e, gi, cdata, clen, plain, plain_len);
    if (n < 0)
        return dk_set_error(img, (int)n, "vmdk: compressing grain %llu failed",
                            (unsigned long long)gi);
    return append_grain(img, e, gi, (size_t)n);
}

int vmdk_swriter_finish(struct dk_image *img, struct vmdk_extent *e)
{
    struct vmdk_swriter *w = &e->sw;
    uint64_t pos = w->pos, end;
    uint32_t *gd = malloc((size_t)e->gd_entries * 4 + 4);
    uint32_t *gt = malloc((size_t)e->h.num_gtes * 4);
    int r = gd && gt ? 0 : -ENOMEM;
    if (r == 0) {
        memcpy(gd, e->gd, (size_t)e->gd_entries * 4);
        memcpy(gt, w->gt, (size_t)e->h.num_gtes * 4);
    }
    uint64_t gi = w->gbuf_index;
    uint32_t idx = w->cur_gt;
    if (r == 0 && gi != NO_GRAIN && (img->backing || !dk_is_zero(w->gbuf, e->grain_bytes))) {
        /* The pending grain goes into the tail without being committed. */
        ssize_t n = build_grain(e, gi, NULL, 0, w->gbuf, e->grain_bytes);
        r = n < 0 ? (int)n : 0;
        if (r == 0 && gi / e->h.num_gtes != w->cur_gt) {
            r = dk_is_zero(gt, (size_t)e->h.num_gtes * 4) ? 0 : -EAGAIN;
            memset(gt, 0, (size_t)e->h.num_gtes * 4);
            idx = (uint32_t)(gi / e->h.num_gtes);
        }
        if (r == -EAGAIN) {   /* emit the finished GT first, in the tail */
            uint64_t at = pos;
            r = put_table(e->file, VMDK_MARKER_GT, w->gt, e->h.num_gtes, &pos);
            gd[w->cur_gt] = (uint32_t)(at / VMDK_SECTOR + 1);
        }
        if (r == 0 && (r = dk_file_pwrite(e->file, w->cbuf, (size_t)n, pos)) == 0) {
            gt[gi % e->h.num_gtes] = (uint32_t)(pos / VMDK_SECTOR);
            pos += (uint64_t)n;
        }
    }
    if (r == 0 && !dk_is_zero(gt, (size_t)e->h.num_gtes * 4)) {
        uint64_t at = pos;
        r = put_table(e->file, VMDK_MARKER_GT, gt, e->h.num_gtes, &pos);
        gd[idx] = (uint32_t)(at / VMDK_SECTOR + 1);
    }
    if (r == 0)
        r = write_tail(e->file, &e->h, gd, e->gd_entries, pos, &end);
    free(gd);
    free(gt);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s: finishing stream: %s", e->file->path,
                            strerror(-r));
    w->tail_end = end;
    e->file_size = end;
    return 0;
}
