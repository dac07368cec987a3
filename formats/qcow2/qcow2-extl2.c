/* qcow2-extl2.c - reading images with extended L2 entries (subclusters).
 *
 * Spec: qcow2.txt "Extended L2 Entries": 128-bit entries; the first word
 * is a standard descriptor (bit 0 unused), the second holds 32 "allocated"
 * bits (0-31) and 32 "reads as zero" bits (32-63), one pair per subcluster
 * of cluster_size/32 bytes. Compressed clusters have no subclusters.
 * Status and reads work per subcluster: allocated subclusters read from
 * host offset + index * subcluster size, zero ones as zeros, the others
 * from the backing chain.
 * Known gaps: read-only; writing subclusters is refused at open.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <string.h>

#include "qcow2.h"

enum sc_type { SC_UNALLOC, SC_ZERO, SC_DATA, SC_COMPRESSED };

struct sc_run {
    enum sc_type type;
    uint64_t host0;       /* host offset of the run's first byte (SC_DATA) */
    uint64_t host;        /* host offset expected next */
    uint64_t l2e;         /* entry of the first cluster (SC_COMPRESSED) */
};

static enum sc_type sc_type(uint64_t w0, uint64_t bm, unsigned j)
{
    if (w0 & QCOW2_OFLAG_COMPRESSED)
        return SC_COMPRESSED;
    if ((bm >> (32 + j)) & 1)
        return SC_ZERO;
    return (bm >> j) & 1 ? SC_DATA : SC_UNALLOC;
}

static int check_entry(struct dk_image *img, uint64_t w0, uint64_t bm)
{
    struct qcow2_state *s = img->priv;
    uint64_t h = w0 & QCOW2_OFFSET_MASK;
    if ((w0 & QCOW2_OFLAG_COMPRESSED) || !(bm & 0xffffffffu))
        return 0;
    if (bm & (bm >> 32) & 0xffffffffu)
        return qcow2_signal_corruption(img, "qcow2: extended L2 entry marks a subcluster "
                                       "both allocated and zero");
    if (!h || !dk_is_aligned(h, s->cluster_size))
        return qcow2_signal_corruption(img, "qcow2: extended L2 entry has invalid host "
                                       "offset 0x%llx", (unsigned long long)h);
    if (h >> s->cluster_bits >= s->alloc_end)
        return qcow2_signal_corruption(img, "qcow2: data cluster at 0x%llx lies beyond end "
                                       "of file", (unsigned long long)h);
    return 0;
}

/* Extends RUN over the subclusters of one L2 table from guest POS to at
 * most END. Returns the new position (stops early when the run ends). */
static int scan_table(struct dk_image *img, uint64_t pos, uint64_t end, bool *first,
                      struct sc_run *run, uint64_t *out)
{
    struct qcow2_state *s = img->priv;
    uint64_t *l2, sc = s->cluster_size >> 5;
    int r = qcow2_l2_get(img, pos, false, &l2);
    if (r < 0)
        return r;
    uint64_t span = s->cluster_size << s->l2_bits;
    uint64_t stop = DK_MIN(end, dk_round_down(pos, span) + span);
    while (pos < stop) {
        uint64_t k = (pos >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t w0 = l2 ? dk_be64(&l2[2 * k]) : 0, bm = l2 ? dk_be64(&l2[2 * k + 1]) : 0;
        if ((r = check_entry(img, w0, bm)) < 0)
            break;
        unsigned j = (unsigned)((pos & (s->cluster_size - 1)) / sc);
        enum sc_type t = sc_type(w0, bm, j);
        uint64_t host = (w0 & QCOW2_OFFSET_MASK) + j * sc + (pos & (sc - 1));
        if (*first) {
            *run = (struct sc_run){ t, host, host, w0 };
            *first = false;
        } else if (t != run->type || (t == SC_DATA && host != run->host) ||
                   (t == SC_COMPRESSED && w0 != run->l2e)) {
            break;
        }
        uint64_t step = t == SC_COMPRESSED ? s->cluster_size - (pos & (s->cluster_size - 1))
                                           : sc - (pos & (sc - 1));
        pos += step;
        if (t == SC_DATA)
            run->host = host + step;
    }
    qcow2_l2_put(img, l2);
    *out = pos;
    return r < 0 ? r : 0;
}

/* Longest uniform run at OFF: type, length and (SC_DATA) host offset. */
static int ext_status(struct dk_image *img, uint64_t off, uint64_t len, struct sc_run *run,
                      uint64_t *n)
{
    struct qcow2_state *s = img->priv;
    uint64_t span = s->cluster_size << s->l2_bits, pos = off, end = off + len;
    bool first = true;
    while (pos < end) {
        uint64_t next;
        int r = scan_table(img, pos, end, &first, run, &next);
        if (r < 0)
            return r;
        pos = next;
        if ((next & (span - 1)) || run->type == SC_COMPRESSED)
            break;      /* the run ended inside this table */
    }
    *n = DK_MIN(pos, end) - off;
    return 0;
}

int qcow2_ext_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                           struct dk_extent *ext)
{
    struct sc_run run;
    uint64_t n;
    int r = ext_status(img, off, len, &run, &n);
    if (r < 0)
        return r;
    ext->length = n;
    switch (run.type) {
    case SC_UNALLOC: ext->flags = 0; break;
    case SC_ZERO: ext->flags = DK_BS_ZERO | DK_BS_ALLOCATED; break;
    case SC_COMPRESSED: ext->flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_COMPRESSED; break;
    default:
        ext->flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID;
        ext->host_offset = run.host0;
        ext->host_file = img->filename;
    }
    return 0;
}

int qcow2_ext_read(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        struct sc_run run;
        uint64_t n;
        int r = ext_status(img, off, len, &run, &n);
        if (r < 0)
            return r;
        if (run.type == SC_DATA) {
            r = dk_file_pread_eof0(img->file, p, (size_t)n, run.host0);
            if (r < 0)
                return dk_set_error(img, r, "qcow2: read: %s", strerror(-r));
        } else if (run.type == SC_ZERO) {
            memset(p, 0, (size_t)n);
        } else if (run.type == SC_UNALLOC) {
            if ((r = dk_read_backing(img, p, (size_t)n, off)) < 0)
                return r;
        } else {
            struct qcow2_state *s = img->priv;
            n = DK_MIN(n, s->cluster_size - (off & (s->cluster_size - 1)));
            if ((r = qcow2_read_compressed(img, run.l2e, p, (size_t)n, off)) < 0)
                return r;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}
