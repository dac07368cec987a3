/* vmdk-io.c - guest I/O over the extents of a VMDK: read, write, zero,
 * flush, block status, and the compressed-write hooks of the copy engine.
 *
 * A request is split at extent boundaries; FLAT extents map guest bytes to
 * file bytes, ZERO extents read as zeros, SPARSE extents go through their
 * grain tables (vmdk-sparse.c) or, when compressed, through the stream code
 * (vmdk-stream.c). The first write of a session gives the image a new CID
 * (spec: "the CID changes when the disk is modified"), as qemu does.
 * Known gaps: writes into RDONLY/NOACCESS/ZERO extents are refused.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "codec.h"
#include "vmdk.h"

size_t vmdk_find_extent(const struct vmdk_state *st, uint64_t off)
{
    size_t lo = 0, hi = st->n_ext;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->ext[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Writes the descriptor back with a fresh CID (once per session). */
static int update_cid(struct dk_image *img)
{
    struct vmdk_state *st = img->priv;
    if (st->cid_updated || !st->desc.text)
        return 0;
    uint32_t cid;
    if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid))
        cid = (uint32_t)dk_now_ns() ^ 0x5a5a5a5au;
    size_t len;
    char *t = vmdk_desc_with_cid(&st->desc, cid, &len);
    if (!t) {   /* no CID line to update: nothing to do, like qemu */
        st->cid_updated = true;
        return 0;
    }
    int r;
    if (st->desc_embedded) {
        char *area = len <= st->desc_cap ? calloc(1, st->desc_cap) : NULL;
        r = area ? 0 : (len > st->desc_cap ? -ENOSPC : -ENOMEM);
        if (r == 0) {
            memcpy(area, t, len);
            r = dk_file_pwrite(img->file, area, st->desc_cap, st->desc_off);
        }
        free(area);
    } else {
        r = dk_file_pwrite(img->file, t, len, 0);
        if (r == 0)
            r = dk_file_truncate(img->file, len);
    }
    if (r < 0) {
        free(t);
        return dk_set_error(img, r, "vmdk: cannot update the descriptor CID: %s",
                            strerror(-r));
    }
    free(st->desc.text);
    st->desc.text = t;
    st->desc.len = len;
    st->desc.cid = cid;
    st->cid_updated = true;
    return 0;
}

static int read_sparse(struct dk_image *img, struct vmdk_extent *e, uint8_t *buf,
                       size_t len, uint64_t off)
{
    while (len) {
        uint64_t gi = off / e->grain_bytes, in = off % e->grain_bytes;
        size_t n = (size_t)DK_MIN((uint64_t)len, e->grain_bytes - in);
        const uint8_t *pend = vmdk_swriter_pending(e, gi);
        uint32_t gte;
        int r = pend ? 0 : vmdk_sparse_gte(img, e, gi, &gte);
        if (r < 0)
            return r;
        if (pend) {
            memcpy(buf, pend + in, n);
        } else if (gte <= VMDK_GTE_ZERO) {
            memset(buf, 0, n);   /* only reached for partial block-status runs */
        } else if (e->compressed) {
            if (!e->last_buf || e->last_gi != gi) {
                if (!e->last_buf && !(e->last_buf = malloc(e->grain_bytes)))
                    return dk_set_error(img, -ENOMEM, "out of memory");
                e->last_gi = UINT64_MAX;
                if ((r = vmdk_stream_read_grain(img, e, gi, gte, e->last_buf)) < 0)
                    return r;
                e->last_gi = gi;
            }
            memcpy(buf, e->last_buf + in, n);
        } else {
            uint64_t host = (uint64_t)gte * VMDK_SECTOR;
            if (host >= e->file_size)
                return dk_corrupt(img, "vmdk: %s: grain %llu at offset 0x%llx lies beyond "
                                  "end of file", e->file->path, (unsigned long long)gi,
                                  (unsigned long long)host);
            /* One pread for the following grains stored right after. */
            uint32_t next;
            while (n < len && !e->sw.active &&
                   vmdk_sparse_gte(img, e, gi + 1, &next) == 0 &&
                   (uint64_t)next * VMDK_SECTOR == host + in + n && host + in + n < e->file_size) {
                n += (size_t)DK_MIN((uint64_t)(len - n), e->grain_bytes);
                gi++;
            }
            r = dk_file_pread_eof0(e->file, buf, n, host + in);
            if (r < 0)
                return dk_set_error(img, r, "vmdk: %s: read: %s", e->file->path,
                                    strerror(-r));
        }
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

int vmdk_read(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    struct vmdk_state *st = img->priv;
    uint8_t *p = buf;
    while (len) {
        struct vmdk_extent *e = &st->ext[vmdk_find_extent(st, off)];
        uint64_t rel = off - e->start;
        size_t n = (size_t)DK_MIN((uint64_t)len, e->bytes - rel);
        int r = 0;
        if (e->access == VMDK_NOACCESS)
            return dk_set_error(img, -EACCES, "vmdk: extent %s is NOACCESS",
                                e->name ? e->name : "");
        if (e->type == VMDK_EXT_ZERO)
            memset(p, 0, n);
        else if (e->type == VMDK_EXT_FLAT)
            r = dk_file_pread_eof0(e->file, p, n, e->flat_offset + rel);
        else
            r = read_sparse(img, e, p, n, rel);
        if (r < 0)
            return img->err ? r : dk_set_error(img, r, "vmdk: read: %s", strerror(-r));
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int write_extent(struct dk_image *img, struct vmdk_extent *e, const uint8_t *p,
                        size_t n, uint64_t rel)
{
    if (e->access != VMDK_RW || e->type == VMDK_EXT_ZERO)
        return dk_set_error(img, -EROFS, "vmdk: extent %s cannot be written (%s)",
                            e->name ? e->name : "", e->type == VMDK_EXT_ZERO
                            ? "ZERO extent" : "not RW");
    if (e->type == VMDK_EXT_FLAT) {
        int r = dk_file_pwrite(e->file, p, n, e->flat_offset + rel);
        return r < 0 ? dk_set_error(img, r, "vmdk: %s: write: %s", e->file->path,
                                    strerror(-r)) : 0;
    }
    int r;
    if (e->compressed && !e->sw.active && !e->stream_full &&
        (r = vmdk_swriter_start(img, e)) < 0)
        return r;
    if (e->sw.active)
        return vmdk_swriter_write(img, e, p, n, rel);
    if (e->compressed)
        return dk_set_error(img, -ENOTSUP, "vmdk: %s: this streamOptimized image already "
                            "holds data; stream images are written once, right after "
                            "creation", e->file->path);
    while (n) {
        size_t k = (size_t)DK_MIN((uint64_t)n, e->grain_bytes - rel % e->grain_bytes);
        r = vmdk_sparse_write(img, e, p, k, rel);
        if (r < 0)
            return r;
        p += k;
        rel += k;
        n -= k;
    }
    return 0;
}

int vmdk_write(struct dk_image *img, const void *buf, size_t len, uint64_t off)
{
    struct vmdk_state *st = img->priv;
    const uint8_t *p = buf;
    int r = update_cid(img);
    while (r == 0 && len) {
        struct vmdk_extent *e = &st->ext[vmdk_find_extent(st, off)];
        uint64_t rel = off - e->start;
        size_t n = (size_t)DK_MIN((uint64_t)len, e->bytes - rel);
        r = write_extent(img, e, p, n, rel);
        p += n;
        off += n;
        len -= n;
    }
    return r;
}

/* Zeroes with zeroed-grain GTEs when every extent touched allows it;
 * -ENOTSUP otherwise (the core then writes zeros). */
int vmdk_zero(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vmdk_state *st = img->priv;
    for (uint64_t o = off; o < off + len;) {
        struct vmdk_extent *e = &st->ext[vmdk_find_extent(st, o)];
        if (e->type != VMDK_EXT_SPARSE || !e->zeroed_grain || e->compressed ||
            e->access != VMDK_RW)
            return -ENOTSUP;
        o = e->start + e->bytes;
    }
    int r = update_cid(img);
    static const uint8_t zeros[VMDK_SECTOR * 8];
    while (r == 0 && len) {
        struct vmdk_extent *e = &st->ext[vmdk_find_extent(st, off)];
        uint64_t rel = off - e->start, in = rel % e->grain_bytes;
        uint64_t n = DK_MIN(len, e->bytes - rel);
        if (in == 0 && n >= e->grain_bytes) {
            n = dk_round_down(n, e->grain_bytes);
            r = vmdk_sparse_zero(img, e, rel / e->grain_bytes, n / e->grain_bytes);
        } else {
            n = DK_MIN(DK_MIN(n, e->grain_bytes - in), (uint64_t)sizeof(zeros));
            r = vmdk_sparse_write(img, e, zeros, (size_t)n, rel);
        }
        off += n;
        len -= n;
    }
    (void)flags;
    return r;
}

int vmdk_flush(struct dk_image *img)
{
    struct vmdk_state *st = img->priv;
    for (size_t i = 0; i < st->n_ext; i++) {
        struct vmdk_extent *e = &st->ext[i];
        int r = 0;
        if (e->sw.active && (r = vmdk_swriter_finish(img, e)) < 0)
            return r;
        if (e->file && !e->file->read_only && (r = dk_file_flush(e->file)) < 0)
            return dk_set_error(img, r, "vmdk: %s: flush: %s", e->file->path, strerror(-r));
    }
    int r = dk_file_flush(img->file);
    return r < 0 ? dk_set_error(img, r, "vmdk: flush: %s", strerror(-r)) : 0;
}

/* Status of one grain: DK_BS_* flags and, for raw grains, the host offset. */
static int grain_status(struct dk_image *img, struct vmdk_extent *e, uint64_t gi,
                        unsigned *flags, uint64_t *host)
{
    uint32_t gte = 0;
    *host = 0;
    if (vmdk_swriter_pending(e, gi)) {
        *flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_COMPRESSED;
        return 0;
    }
    int r = vmdk_sparse_gte(img, e, gi, &gte);
    if (r < 0)
        return r;
    if (gte == 0)
        *flags = 0;
    else if (gte == VMDK_GTE_ZERO)
        *flags = DK_BS_ZERO | DK_BS_ALLOCATED;
    else if (e->compressed)
        *flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_COMPRESSED;
    else {
        *flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID;
        *host = (uint64_t)gte * VMDK_SECTOR;
    }
    return 0;
}

static int sparse_status(struct dk_image *img, struct vmdk_extent *e, uint64_t rel,
                         uint64_t len, struct dk_extent *ext)
{
    uint64_t gi = rel / e->grain_bytes, in = rel % e->grain_bytes, host;
    unsigned flags, f2;
    int r = grain_status(img, e, gi, &flags, &host);
    if (r < 0)
        return r;
    uint64_t run = DK_MIN(len, e->grain_bytes - in);
    ext->flags = flags;
    ext->host_offset = host + in;
    ext->host_file = e->file->path;
    /* Extend over following grains with the same status (and, for raw
     * grains, contiguous host offsets); bounded to keep the call short. */
    for (uint64_t k = 1; run < len && k < 4096; k++) {
        uint64_t h2;
        if ((r = grain_status(img, e, gi + k, &f2, &h2)) < 0)
            return r;
        if (f2 != flags || ((flags & DK_BS_OFFSET_VALID) && h2 != host + k * e->grain_bytes))
            break;
        run = DK_MIN(len, run + e->grain_bytes);
    }
    ext->length = run;
    if (!flags && img->backing)
        return vmdk_parent_check(img);
    return 0;
}

int vmdk_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                      struct dk_extent *ext)
{
    struct vmdk_state *st = img->priv;
    struct vmdk_extent *e = &st->ext[vmdk_find_extent(st, off)];
    uint64_t rel = off - e->start;
    len = DK_MIN(len, e->bytes - rel);
    if (e->access == VMDK_NOACCESS)
        return dk_set_error(img, -EACCES, "vmdk: extent %s is NOACCESS",
                            e->name ? e->name : "");
    if (e->type == VMDK_EXT_ZERO) {
        ext->length = len;
        ext->flags = DK_BS_ZERO | DK_BS_ALLOCATED;
        return 0;
    }
    if (e->type == VMDK_EXT_FLAT) {
        /* Like qemu: holes of the flat file are data that reads as zero. */
        bool data = true;
        uint64_t run = len;
        int r = dk_file_extent(e->file, e->flat_offset + rel, len, &data, &run);
        if (r < 0)
            return dk_set_error(img, r, "vmdk: %s: block status: %s", e->file->path,
                                strerror(-r));
        ext->length = run ? run : len;
        ext->flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID |
                     (data ? 0 : DK_BS_ZERO);
        ext->host_offset = e->flat_offset + rel;
        ext->host_file = e->file->path;
        return 0;
    }
    return sparse_status(img, e, rel, len, ext);
}

/* The stream extent of a single-extent stream image, or NULL. */
static struct vmdk_extent *stream_extent(struct dk_image *img)
{
    struct vmdk_state *st = img->priv;
    return st->n_ext == 1 && st->ext[0].type == VMDK_EXT_SPARSE && st->ext[0].compressed
           ? &st->ext[0] : NULL;
}

/* Runs without the image lock: reads only the immutable grain size. */
ssize_t vmdk_compress(struct dk_image *img, const void *in, size_t in_len, void *out,
                      size_t cap)
{
    struct vmdk_extent *e = stream_extent(img);
    if (!e || in_len == 0)  /* other subformats store grains plain, as qemu-img does */
        return 0;
    if (in_len >= e->grain_bytes)
        return dk_compress(DK_CODEC_ZLIB, 0, in, in_len, out, cap);
    uint8_t *full = calloc(1, e->grain_bytes);   /* last grain: pad like qemu */
    if (!full)
        return -ENOMEM;
    memcpy(full, in, in_len);
    ssize_t n = dk_compress(DK_CODEC_ZLIB, 0, full, e->grain_bytes, out, cap);
    free(full);
    return n;
}

int vmdk_write_compressed(struct dk_image *img, uint64_t off, const void *cdata,
                          size_t clen, const void *plain, size_t plain_len)
{
    struct vmdk_extent *e = stream_extent(img);
    if (!e || e->stream_full || e->access != VMDK_RW) {
        if (!e && clen)
            return dk_set_error(img, -ENOTSUP, "vmdk: compressed writes need "
                                "subformat=streamOptimized");
        return vmdk_write(img, plain, plain_len, off);   /* stores or gives the error */
    }
    int r = update_cid(img);
    if (r == 0 && !e->sw.active)
        r = vmdk_swriter_start(img, e);
    return r < 0 ? r : vmdk_swriter_grain(img, e, off / e->grain_bytes, cdata, clen, plain,
                                          plain_len);
}
