/* qcow2-io.c - guest data I/O: reads of plain and compressed clusters,
 * allocating writes with copy-on-write, compressed writes (convert -c).
 *
 * Spec: qcow2.txt "Cluster mapping", "Compressed Clusters Descriptor".
 * Invariants (see also qcow2-cluster.c):
 *  1. Reads and writes of contiguous host runs are one syscall each.
 *  2. Clusters written in place are normal clusters with COPIED set (their
 *     refcount is exactly 1); every other kind gets a new cluster, filled
 *     from what the guest saw before (backing file, zeros, the shared or
 *     compressed cluster) where the request covers it only partly.
 *  3. Compressed clusters are packed byte-wise; each host cluster touched
 *     by a compressed cluster holds one reference for it.
 *  4. Locking: callbacks run with img->lock held (lib/internal.h). The one
 *     exception is qcow2_read of whole compressed clusters: it reads the
 *     compressed bytes under the lock into a buffer of its own, releases
 *     every L2 table it pinned, then drops img->lock only around
 *     dk_decompress into the caller's buffer, so copy-engine workers
 *     decompress in parallel. While unlocked it touches no qcow2_state
 *     (in particular not the shared s->zin/s->zbuf cache) and nothing of
 *     the handle; qcow2_read is only entered from dk_pread, which holds
 *     img->lock exactly once. Paths inside writes (write_partial) never
 *     drop the lock.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"


static int host_check(struct dk_image *img, uint64_t h)
{
    struct qcow2_state *s = img->priv;
    if (!dk_is_aligned(h, s->cluster_size))
        return qcow2_signal_corruption(img, "qcow2: data cluster offset 0x%llx is not "
                                       "cluster aligned", (unsigned long long)h);
    if (h >> s->cluster_bits >= s->alloc_end || h < s->cluster_size)
        return qcow2_signal_corruption(img, "qcow2: data cluster at 0x%llx lies beyond end "
                                       "of file", (unsigned long long)h);
    return 0;
}

/* Host offset *H and length *N of compressed entry E, checked. */
static int compressed_span(struct dk_image *img, uint64_t e, uint64_t *h, uint64_t *n)
{
    struct qcow2_state *s = img->priv;
    qcow2_compressed_decode(e, s->cluster_bits, h, n);
    if (*h >> s->cluster_bits >= s->alloc_end || *h < s->cluster_size)
        return qcow2_signal_corruption(img, "qcow2: compressed cluster at 0x%llx lies beyond "
                                       "end of file", (unsigned long long)*h);
    return 0;
}

static int compressed_corrupt(struct dk_image *img, uint64_t h)
{
    struct qcow2_state *s = img->priv;
    return dk_set_error(img, -EIO, "qcow2: compressed cluster at 0x%llx is corrupt (%s)",
                        (unsigned long long)h, s->codec == DK_CODEC_ZSTD ? "zstd" : "deflate");
}

/* Reads the N compressed bytes at host H into ZIN. */
static int compressed_pread(struct dk_image *img, uint8_t *zin, uint64_t n, uint64_t h)
{
    int r = dk_file_pread_eof0(img->file, zin, n, h);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: reading compressed cluster at 0x%llx: %s",
                            (unsigned long long)h, strerror(-r));
    return 0;
}

/* Decompresses the cluster of entry E into s->zbuf (cached by entry). */
static int load_compressed(struct dk_image *img, uint64_t e)
{
    struct qcow2_state *s = img->priv;
    if (s->zbuf_valid && s->zbuf_l2e == e)
        return 0;
    uint64_t h, n;
    int r = compressed_span(img, e, &h, &n);
    if (r < 0 || (r = compressed_pread(img, s->zin, n, h)) < 0)
        return r;
    s->zbuf_valid = false;
    if (dk_decompress(s->codec, s->zin, n, s->zbuf, s->cluster_size) < 0)
        return compressed_corrupt(img, h);
    s->zbuf_l2e = e;
    s->zbuf_valid = true;
    return 0;
}

/* Reads the whole compressed cluster of entry E into BUF, decompressing
 * with img->lock dropped (invariant 4). *ZIN is the caller's input buffer
 * (2 clusters, allocated here on first use; the caller frees it). No L2
 * table may be pinned. */
static int read_compressed_unlocked(struct dk_image *img, uint64_t e, uint8_t *buf,
                                    uint8_t **zin)
{
    struct qcow2_state *s = img->priv;
    if (s->zbuf_valid && s->zbuf_l2e == e) {
        memcpy(buf, s->zbuf, s->cluster_size);
        return 0;
    }
    uint64_t h, n;
    int r = compressed_span(img, e, &h, &n);
    if (r < 0)
        return r;
    if (!*zin && !(*zin = malloc(2 * s->cluster_size)))
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if ((r = compressed_pread(img, *zin, n, h)) < 0)
        return r;
    enum dk_codec codec = s->codec;
    size_t cs = (size_t)s->cluster_size;
    pthread_mutex_unlock(&img->lock);
    r = dk_decompress(codec, *zin, n, buf, cs);
    pthread_mutex_lock(&img->lock);
    return r < 0 ? compressed_corrupt(img, h) : 0;
}

int qcow2_read_compressed(struct dk_image *img, uint64_t e, void *buf, size_t n, uint64_t off)
{
    struct qcow2_state *s = img->priv;
    int r = load_compressed(img, e);
    if (r >= 0)
        memcpy(buf, s->zbuf + (off & (s->cluster_size - 1)), n);
    return r;
}

/* Reads N bytes at guest OFF, all inside the cluster of entry E. */
static int read_piece(struct dk_image *img, uint64_t e, uint8_t *buf, size_t n, uint64_t off)
{
    struct qcow2_state *s = img->priv;
    uint64_t in = off & (s->cluster_size - 1);
    int r;
    switch (cl_type(s, e)) {
    case CL_UNALLOC:
        return dk_read_backing(img, buf, n, off);
    case CL_ZERO:
    case CL_ZERO_ALLOC:
        memset(buf, 0, n);
        return 0;
    case CL_COMPRESSED:
        if ((r = load_compressed(img, e)) < 0)
            return r;
        memcpy(buf, s->zbuf + in, n);
        return 0;
    default:
        if ((r = host_check(img, e & QCOW2_OFFSET_MASK)) < 0)
            return r;
        return qcow2_data_pread(img, buf, n, (e & QCOW2_OFFSET_MASK) + in, off);
    }
}

/* Length of the run of normal clusters from index K with contiguous host
 * offsets, capped at MAX clusters. */
static uint64_t normal_run(const struct qcow2_state *s, const uint64_t *l2, uint64_t k,
                           uint64_t max)
{
    uint64_t h = l2_entry(l2, k) & QCOW2_OFFSET_MASK, n = 1;
    while (n < max && cl_type(s, l2_entry(l2, k + n)) == CL_NORMAL &&
           (l2_entry(l2, k + n) & QCOW2_OFFSET_MASK) == h + (n << s->cluster_bits))
        n++;
    return n;
}

/* Like normal_run, for clusters that may be overwritten in place. */
static uint64_t inplace_run(const struct qcow2_state *s, const uint64_t *l2, uint64_t k,
                            uint64_t max)
{
    uint64_t h = l2_entry(l2, k) & QCOW2_OFFSET_MASK, n = 1;
    for (; n < max; n++) {
        uint64_t e = l2_entry(l2, k + n);
        if (cl_type(s, e) != CL_NORMAL || !(e & QCOW2_OFLAG_COPIED) ||
            (e & QCOW2_OFFSET_MASK) != h + (n << s->cluster_bits))
            break;
    }
    return n;
}

int qcow2_read(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    struct qcow2_state *s = img->priv;
    uint8_t *p = buf, *zin = NULL;
    if (s->extl2) {
        if (s->crypt)
            return dk_set_error(img, -ENOTSUP,
                                "qcow2: encrypted images with extended L2 entries are not supported");
        return qcow2_ext_read(img, buf, len, off);
    }
    int r = 0;
    while (len) {
        uint64_t *l2;
        if ((r = qcow2_l2_get(img, off, false, &l2)) < 0)
            break;
        uint64_t k = (off >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t in = off & (s->cluster_size - 1);
        uint64_t e = l2 ? l2_entry(l2, k) : 0;
        size_t n = (size_t)DK_MIN((uint64_t)len, s->cluster_size - in);
        if (cl_type(s, e) == CL_NORMAL && (r = host_check(img, e & QCOW2_OFFSET_MASK)) >= 0) {
            uint64_t max = DK_MIN(s->l2_entries - k,
                                  dk_div_round_up(in + len, s->cluster_size));
            uint64_t run = normal_run(s, l2, k, max);
            n = (size_t)DK_MIN((uint64_t)len, (run << s->cluster_bits) - in);
            r = qcow2_data_pread(img, p, n, (e & QCOW2_OFFSET_MASK) + in, off);
        } else if (r >= 0 && cl_type(s, e) == CL_COMPRESSED && n == s->cluster_size) {
            qcow2_l2_put(img, l2);
            l2 = NULL;
            r = read_compressed_unlocked(img, e, p, &zin);
        } else if (r >= 0) {
            r = read_piece(img, e, p, n, off);
        }
        qcow2_l2_put(img, l2);
        if (r < 0)
            break;
        p += n;
        off += n;
        len -= n;
    }
    free(zin);
    return r < 0 ? r : 0;
}

/* ---------------------------------------------------------------- writes */

int qcow2_free_l2_entry(struct dk_image *img, uint64_t e)
{
    struct qcow2_state *s = img->priv;
    switch (cl_type(s, e)) {
    case CL_NORMAL:
    case CL_ZERO_ALLOC:
        return qcow2_free_later(img, e & QCOW2_OFFSET_MASK, s->cluster_size);
    case CL_COMPRESSED: {
        uint64_t h, n;
        qcow2_compressed_decode(e, s->cluster_bits, &h, &n);
        if (s->zbuf_l2e == e)
            s->zbuf_valid = false;
        return qcow2_free_later(img, h, n);
    }
    default:
        return 0;
    }
}

static int pwrite_raw(struct dk_image *img, const void *buf, size_t n, uint64_t host)
{
    int r = dk_file_pwrite(img->file, buf, n, host);
    return r < 0 ? dk_set_error(img, r, "qcow2: write at 0x%llx: %s",
                                (unsigned long long)host, strerror(-r)) : 0;
}

/* Guest data (at guest offset GUEST) to HOST; encrypted when the image is
 * (qcow2-crypt.c). */
static int pwrite_data(struct dk_image *img, const void *buf, size_t n, uint64_t host,
                       uint64_t guest)
{
    return qcow2_data_pwrite(img, buf, n, host, guest);
}

/* Writes one partially covered cluster: old content of entry E for the
 * guest cluster at G, overlaid with N bytes of BUF at IN, to HOST. */
static int write_partial(struct dk_image *img, uint64_t e, uint64_t g, const uint8_t *buf,
                         uint64_t in, size_t n, uint64_t host)
{
    struct qcow2_state *s = img->priv;
    uint8_t *c = malloc(s->cluster_size);
    if (!c)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    int r = read_piece(img, e, c, s->cluster_size, g);
    if (r >= 0) {
        memcpy(c + in, buf, n);
        r = pwrite_data(img, c, s->cluster_size, host, g);
    }
    free(c);
    return r;
}

/* Allocates and writes K clusters from index K0 of L2 for the request
 * part BUF/LEN at guest OFF (which starts in cluster K0). */
static int write_alloc(struct dk_image *img, uint64_t *l2, uint64_t k0, uint64_t k,
                       const uint8_t *buf, uint64_t len, uint64_t off)
{
    struct qcow2_state *s = img->priv;
    uint64_t cs = s->cluster_size, host, in = off & (cs - 1);
    uint64_t g0 = off - in;
    int r = qcow2_alloc_clusters(img, k, &host);
    if (r < 0)
        return r;
    uint64_t done = 0, c = 0;
    if (in || len < cs) {                       /* partial head */
        size_t n = (size_t)DK_MIN(len, cs - in);
        if ((r = write_partial(img, l2_entry(l2, k0), g0, buf, in, n, host)) < 0)
            return r;
        done = n;
        c = 1;
    }
    uint64_t full = (len - done) / cs;
    if (c + full > k)
        full = k - c;
    if (full && (r = pwrite_data(img, buf + done, full * cs, host + c * cs,
                                 g0 + c * cs)) < 0)
        return r;
    done += full * cs;
    c += full;
    if (c < k) {                                /* partial tail */
        size_t n = (size_t)(len - done);
        if ((r = write_partial(img, l2_entry(l2, k0 + c), g0 + c * cs, buf + done, 0, n,
                               host + c * cs)) < 0)
            return r;
    }
    for (uint64_t i = 0; i < k; i++) {
        uint64_t old = l2_entry(l2, k0 + i);
        l2_set(l2, k0 + i, (host + i * cs) | QCOW2_OFLAG_COPIED);
        if ((r = qcow2_free_l2_entry(img, old)) < 0)
            return r;
    }
    qcow2_cache_mark_dirty(s->l2_cache, l2);
    return 0;
}

/* Writes the part of the request that falls into one L2 table. */
static int write_in_table(struct dk_image *img, uint64_t *l2, const uint8_t *buf,
                          uint64_t len, uint64_t off)
{
    struct qcow2_state *s = img->priv;
    uint64_t cs = s->cluster_size;
    while (len) {
        uint64_t k = (off >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t in = off & (cs - 1);
        uint64_t max = dk_div_round_up(in + len, cs);
        uint64_t e = l2_entry(l2, k), n, r;
        if (cl_type(s, e) == CL_NORMAL && (e & QCOW2_OFLAG_COPIED)) {
            int rr = host_check(img, e & QCOW2_OFFSET_MASK);
            if (rr < 0)
                return rr;
            n = inplace_run(s, l2, k, max);
            uint64_t bytes = DK_MIN(len, (n << s->cluster_bits) - in);
            uint64_t host = (e & QCOW2_OFFSET_MASK) + in;
            rr = qcow2_check_overlap(img, host, bytes, QCOW2_OL_ALL);
            if (rr >= 0)
                rr = pwrite_data(img, buf, (size_t)bytes, host, off);
            if (rr < 0)
                return rr;
            r = bytes;
        } else {
            for (n = 1; n < max; n++) {
                uint64_t en = l2_entry(l2, k + n);
                if (cl_type(s, en) == CL_NORMAL && (en & QCOW2_OFLAG_COPIED))
                    break;
            }
            r = DK_MIN(len, (n << s->cluster_bits) - in);
            int rr = write_alloc(img, l2, k, n, buf, r, off);
            if (rr < 0)
                return rr;
        }
        buf += r;
        off += r;
        len -= r;
    }
    return 0;
}

int qcow2_write(struct dk_image *img, const void *buf, size_t len, uint64_t off)
{
    struct qcow2_state *s = img->priv;
    const uint8_t *p = buf;
    uint64_t span = s->cluster_size << s->l2_bits;
    while (len) {
        uint64_t n = DK_MIN((uint64_t)len, span - (off & (span - 1)));
        uint64_t *l2;
        int r = qcow2_l2_get(img, off, true, &l2);
        if (r < 0)
            return r;
        r = write_in_table(img, l2, p, n, off);
        qcow2_l2_put(img, l2);
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ------------------------------------------------------ compressed writes */

ssize_t qcow2_compress(struct dk_image *img, const void *in, size_t in_len, void *out,
                       size_t cap)
{
    struct qcow2_state *s = img->priv;   /* immutable fields only: thread-safe */
    size_t cs = (size_t)s->cluster_size;
    if (in_len == 0)        /* the copy engine asks whether we can */
        return s->crypt ? dk_set_error(img, -ENOTSUP, "Compression and encryption not "
                                       "supported at the same time") : 0;
    if (in_len > cs)
        return -EINVAL;
    const void *src = in;
    uint8_t *pad = NULL;
    if (in_len < cs) {
        /* The last cluster is compressed as a full, zero-padded cluster. */
        if (!(pad = calloc(1, cs)))
            return -ENOMEM;
        memcpy(pad, in, in_len);
        src = pad;
    }
    ssize_t n = dk_compress(s->codec, 0, src, cs, out, DK_MIN(cap, cs - 1));
    free(pad);
    return n;
}

int qcow2_write_compressed(struct dk_image *img, uint64_t off, const void *cdata, size_t clen,
                           const void *plain, size_t plain_len)
{
    struct qcow2_state *s = img->priv;
    if (!clen || s->crypt)   /* encrypted images store no compressed clusters */
        return qcow2_write(img, plain, plain_len, off);
    if (clen >= s->cluster_size || !dk_is_aligned(off, s->cluster_size))
        return dk_set_error(img, -EINVAL, "qcow2: bad compressed write at 0x%llx",
                            (unsigned long long)off);
    uint64_t *l2, host;
    int r = qcow2_l2_get(img, off, true, &l2);
    if (r < 0)
        return r;
    uint64_t k = (off >> s->cluster_bits) & (s->l2_entries - 1);
    if ((r = qcow2_alloc_bytes(img, clen, &host)) >= 0 &&
        (r = pwrite_raw(img, cdata, clen, host)) >= 0) {
        uint64_t old = l2_entry(l2, k);
        l2_set(l2, k, qcow2_compressed_encode(host, clen, s->cluster_bits));
        qcow2_cache_mark_dirty(s->l2_cache, l2);
        r = qcow2_free_l2_entry(img, old);
    }
    qcow2_l2_put(img, l2);
    return r;
}
