/* qcow2-refcount.c - refcount table and blocks: entry access for every
 * width (1..64 bits), updates, cluster allocation, refcount-table growth,
 * deferred frees, the flush order, refcount-table shrinking after an
 * image shrink, and overlap checks.
 *
 * Spec: qcow2.txt "Host cluster management". Sub-byte refcounts are packed
 * from the least significant bit of each byte.
 *
 * Invariants:
 *  1. A new refcount block is written before the table entry that points
 *     to it; a new refcount table (growth) is complete on disk, describing
 *     itself and its new blocks, before the header points to it.
 *  2. Allocation never hands out a cluster whose refcount block does not
 *     exist yet: blocks are created first (placed so they describe
 *     themselves when they lie in their own range), then the scan restarts.
 *  3. Decrements go through qcow2_free_later and are applied by
 *     qcow2_flush_all after the L2 tables (and L1 entries) that dropped the
 *     references were written and synced (see qcow2.h).
 *  4. Shrinking the table (after an image shrink) zeroes the table entries
 *     of unused blocks and syncs before those blocks' own refcounts drop.
 * Known gaps: refcount updates are not rolled back when one of several
 * block updates fails halfway (the image then only leaks clusters).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

uint64_t qcow2_rc_get_entry(const uint8_t *b, uint32_t order, uint64_t i)
{
    switch (order) {
    case 3: return b[i];
    case 4: return dk_be16(b + 2 * i);
    case 5: return dk_be32(b + 4 * i);
    case 6: return dk_be64(b + 8 * i);
    default: {
        uint32_t bits = 1u << order;
        uint64_t bit = i * bits;
        return (b[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
    }
}

void qcow2_rc_set_entry(uint8_t *b, uint32_t order, uint64_t i, uint64_t v)
{
    switch (order) {
    case 3: b[i] = (uint8_t)v; break;
    case 4: dk_put_be16(b + 2 * i, (uint16_t)v); break;
    case 5: dk_put_be32(b + 4 * i, (uint32_t)v); break;
    case 6: dk_put_be64(b + 8 * i, v); break;
    default: {
        uint32_t bits = 1u << order;
        uint64_t bit = i * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
        b[bit / 8] = (uint8_t)((b[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
    }
    }
}

/* Pins the refcount block for table index TI, or sets *BLK NULL when it
 * is not allocated. */
static int get_block(struct dk_image *img, uint64_t ti, uint8_t **blk)
{
    struct qcow2_state *s = img->priv;
    *blk = NULL;
    if (ti >= s->reftable_size || !(s->reftable[ti] & QCOW2_OFFSET_MASK))
        return 0;
    uint64_t off = s->reftable[ti] & QCOW2_OFFSET_MASK;
    if (!dk_is_aligned(off, s->cluster_size))
        return qcow2_signal_corruption(img, "qcow2: refcount block at 0x%llx is not "
                                       "cluster aligned", (unsigned long long)off);
    if (off >> s->cluster_bits >= s->alloc_end)
        return qcow2_signal_corruption(img, "qcow2: refcount block at 0x%llx lies beyond "
                                       "end of file", (unsigned long long)off);
    return qcow2_cache_get(img, s->rb_cache, off, false, (void **)blk);
}

int qcow2_get_refcount(struct dk_image *img, uint64_t cluster, uint64_t *rc)
{
    struct qcow2_state *s = img->priv;
    uint8_t *blk;
    int r = get_block(img, cluster >> s->rb_bits, &blk);
    if (r < 0)
        return r;
    *rc = 0;
    if (blk) {
        *rc = qcow2_rc_get_entry(blk, s->refcount_order,
                                 cluster & ((1ull << s->rb_bits) - 1));
        qcow2_cache_put(s->rb_cache, blk);
    }
    return 0;
}

int qcow2_mark_dirty(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    if (!s->lazy || s->dirty_on_disk)
        return 0;
    int r = qcow2_set_incompat(img, QCOW2_INCOMPAT_DIRTY, true);
    if (r < 0)
        return r;
    r = dk_file_flush(img->file);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    s->dirty_on_disk = true;
    return 0;
}

static int write_reftable_entry(struct dk_image *img, uint64_t ti)
{
    struct qcow2_state *s = img->priv;
    uint8_t be[8];
    dk_put_be64(be, s->reftable[ti]);
    int r = dk_file_pwrite(img->file, be, 8, s->reftable_offset + 8 * ti);
    return r < 0 ? dk_set_error(img, r, "qcow2: writing refcount table: %s", strerror(-r)) : 0;
}

static int grow_reftable(struct dk_image *img, uint64_t min_entries);

/* First cluster at or after FROM with refcount 0 (uncovered ranges are
 * free). */
static int next_free(struct dk_image *img, uint64_t from, uint64_t *out)
{
    struct qcow2_state *s = img->priv;
    uint64_t per = 1ull << s->rb_bits;
    for (uint64_t c = from;;) {
        uint8_t *blk;
        int r = get_block(img, c >> s->rb_bits, &blk);
        if (r < 0)
            return r;
        if (!blk) {
            *out = c;
            return 0;
        }
        uint64_t end = (c | (per - 1)) + 1;
        for (; c < end; c++) {
            if (!qcow2_rc_get_entry(blk, s->refcount_order, c & (per - 1))) {
                qcow2_cache_put(s->rb_cache, blk);
                *out = c;
                return 0;
            }
        }
        qcow2_cache_put(s->rb_cache, blk);
    }
}

/* Creates the refcount block for table index TI (invariant 2). */
static int ensure_block(struct dk_image *img, uint64_t ti)
{
    struct qcow2_state *s = img->priv;
    for (;;) {
        if (ti >= s->reftable_size) {
            int r = grow_reftable(img, ti + 1);
            if (r < 0)
                return r;
        }
        if (s->reftable[ti])
            return 0;
        uint64_t f;
        int r = next_free(img, s->free_index, &f);
        if (r < 0)
            return r;
        if (f >> s->rb_bits != ti) {
            if (!s->reftable_size || f >> s->rb_bits >= s->reftable_size ||
                !s->reftable[f >> s->rb_bits]) {
                r = ensure_block(img, f >> s->rb_bits);
                if (r < 0)
                    return r;
                continue;   /* f may be taken by that block now */
            }
            r = qcow2_update_refcount(img, f << s->cluster_bits, s->cluster_size, 1);
            if (r < 0)
                return r;
        }
        uint8_t *blk;
        uint64_t off = f << s->cluster_bits;
        qcow2_cache_drop(s->l2_cache, off);
        r = qcow2_cache_get(img, s->rb_cache, off, true, (void **)&blk);
        if (r < 0)
            return r;
        if (f >> s->rb_bits == ti)
            qcow2_rc_set_entry(blk, s->refcount_order, f & ((1ull << s->rb_bits) - 1), 1);
        r = dk_file_pwrite(img->file, blk, s->cluster_size, off);
        qcow2_cache_put(s->rb_cache, blk);
        if (r < 0)
            return dk_set_error(img, r, "qcow2: writing refcount block: %s", strerror(-r));
        if (!s->lazy && (r = dk_file_flush(img->file)) < 0)
            return dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
        s->alloc_end = DK_MAX(s->alloc_end, f + 1);
        s->reftable[ti] = off;
        return write_reftable_entry(img, ti);
    }
}

int qcow2_update_refcount(struct dk_image *img, uint64_t off, uint64_t len, int64_t delta)
{
    struct qcow2_state *s = img->priv;
    if (!len)
        return 0;
    int r = qcow2_mark_dirty(img);
    if (r < 0)
        return r;
    uint64_t first = off >> s->cluster_bits;
    uint64_t last = (off + len - 1) >> s->cluster_bits;
    uint64_t per = 1ull << s->rb_bits;
    for (uint64_t c = first; c <= last;) {
        uint64_t ti = c >> s->rb_bits;
        if (delta > 0 && (r = ensure_block(img, ti)) < 0)
            return r;
        uint8_t *blk;
        if ((r = get_block(img, ti, &blk)) < 0)
            return r;
        if (!blk)
            return qcow2_signal_corruption(img, "qcow2: freeing cluster 0x%llx that has "
                "no refcount block", (unsigned long long)(c << s->cluster_bits));
        uint64_t end = DK_MIN(last, c | (per - 1));
        for (; c <= end; c++) {
            uint64_t i = c & (per - 1);
            uint64_t v = qcow2_rc_get_entry(blk, s->refcount_order, i);
            if ((delta < 0 && v < (uint64_t)-delta) ||
                (delta > 0 && s->refcount_max - v < (uint64_t)delta)) {
                qcow2_cache_put(s->rb_cache, blk);
                if (delta > 0)
                    return dk_set_error(img, -ERANGE, "qcow2: refcount of cluster 0x%llx "
                        "would exceed %llu", (unsigned long long)(c << s->cluster_bits),
                        (unsigned long long)s->refcount_max);
                return qcow2_signal_corruption(img, "qcow2: refcount of cluster 0x%llx "
                    "would drop below zero", (unsigned long long)(c << s->cluster_bits));
            }
            v += (uint64_t)delta;
            qcow2_rc_set_entry(blk, s->refcount_order, i, v);
            if (v == 0) {
                if (c < s->free_index)
                    s->free_index = c;
                qcow2_cache_drop(s->l2_cache, c << s->cluster_bits);
            } else if (c >= s->alloc_end) {
                s->alloc_end = c + 1;
            }
        }
        qcow2_cache_mark_dirty(s->rb_cache, blk);
        qcow2_cache_put(s->rb_cache, blk);
    }
    return 0;
}

/* Finds N free contiguous clusters whose refcount blocks all exist. */
static int find_free_run(struct dk_image *img, uint64_t n, uint64_t *start)
{
    struct qcow2_state *s = img->priv;
    uint64_t c = s->free_index;
    for (;;) {
        int r = next_free(img, c, &c);
        if (r < 0)
            return r;
        uint64_t run = 0, rc = 0;
        while (run < n) {
            uint64_t ti = (c + run) >> s->rb_bits;
            if (ti >= s->reftable_size || !s->reftable[ti]) {
                r = ensure_block(img, ti);
                if (r < 0)
                    return r;
                break;      /* rescan: the block may sit in our run */
            }
            if ((r = qcow2_get_refcount(img, c + run, &rc)) < 0)
                return r;
            if (rc)
                break;
            run++;
        }
        if (run == n) {
            *start = c;
            return 0;
        }
        if (rc)
            c += run + 1;
    }
}

int qcow2_alloc_clusters(struct dk_image *img, uint64_t n, uint64_t *off)
{
    struct qcow2_state *s = img->priv;
    uint64_t c;
    int r = find_free_run(img, n, &c);
    if (r < 0)
        return r;
    if (c + n > QCOW2_MAX_HOST_OFFSET >> s->cluster_bits)
        return dk_set_error(img, -EFBIG, "qcow2: image file would exceed 64 PiB");
    r = qcow2_update_refcount(img, c << s->cluster_bits, n << s->cluster_bits, 1);
    if (r < 0)
        return r;
    if (s->free_index == c)
        s->free_index = c + n;
    for (uint64_t i = 0; i < n; i++)
        qcow2_cache_drop(s->l2_cache, (c + i) << s->cluster_bits);
    *off = c << s->cluster_bits;
    return 0;
}

/* Takes cluster C if it is free (for packing compressed data). */
static int try_alloc_at(struct dk_image *img, uint64_t c, bool *ok)
{
    struct qcow2_state *s = img->priv;
    uint64_t rc = 1;
    uint64_t ti = c >> s->rb_bits;
    *ok = false;
    if (ti < s->reftable_size && s->reftable[ti]) {
        int r = qcow2_get_refcount(img, c, &rc);
        if (r < 0)
            return r;
    }
    if (rc)
        return 0;
    *ok = true;
    return qcow2_update_refcount(img, c << s->cluster_bits, s->cluster_size, 1);
}

int qcow2_alloc_bytes(struct dk_image *img, uint64_t len, uint64_t *off)
{
    struct qcow2_state *s = img->priv;
    uint64_t cs = s->cluster_size;
    if (s->cw_next && s->cw_next < s->cw_end) {
        uint64_t space = s->cw_end - s->cw_next;
        uint64_t cur = s->cw_next >> s->cluster_bits;
        bool ok = len <= space;
        int r = 0;
        if (!ok && len - space <= cs && (r = try_alloc_at(img, cur + 1, &ok)) < 0)
            return r;
        if (ok) {
            *off = s->cw_next;
            s->cw_next += len;
            if (len > space)
                s->cw_end += cs;
            return qcow2_update_refcount(img, cur << s->cluster_bits, cs, 1);
        }
    }
    uint64_t n = dk_div_round_up(len, cs), c;
    int r = qcow2_alloc_clusters(img, n, &c);
    if (r < 0)
        return r;
    *off = c;
    s->cw_next = c + len;
    s->cw_end = c + n * cs;
    return 0;
}

int qcow2_free_later(struct dk_image *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->priv;
    if (!len)
        return 0;
    if (s->n_pending == s->cap_pending) {
        if (s->n_pending >= QCOW2_MAX_PENDING) {
            int r = qcow2_flush_all(img, false);
            if (r < 0)
                return r;
        } else {
            size_t cap = s->cap_pending ? s->cap_pending * 2 : 64;
            struct qcow2_range *p = realloc(s->pending, cap * sizeof(*p));
            if (!p)
                return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
            s->pending = p;
            s->cap_pending = cap;
        }
    }
    s->pending[s->n_pending++] = (struct qcow2_range){ off, len };
    return 0;
}

int qcow2_flush_all(struct dk_image *img, bool sync)
{
    struct qcow2_state *s = img->priv;
    bool l1 = s->l1_dirty_hi != 0;
    int r = qcow2_cache_flush(img, s->rb_cache, !s->lazy);
    /* L2 tables reach the disk before the L1 entries pointing to them and
     * before the decrements of what they no longer reference. */
    if (r >= 0)
        r = qcow2_cache_flush(img, s->l2_cache, !s->lazy && (l1 || s->n_pending));
    if (r >= 0 && l1 && (r = qcow2_l1_write_back(img)) >= 0 && !s->lazy && s->n_pending &&
        (r = dk_file_flush(img->file)) < 0)
        dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    for (size_t i = 0; r >= 0 && i < s->n_pending; i++)
        r = qcow2_update_refcount(img, s->pending[i].off, s->pending[i].len, -1);
    if (r < 0)
        return r;
    if (s->n_pending) {
        /* The cluster being packed with compressed data may just have
         * dropped to refcount 0 and be handed out whole: start a new one. */
        s->cw_next = s->cw_end = 0;
    }
    s->n_pending = 0;
    if ((r = qcow2_cache_flush(img, s->rb_cache, false)) < 0)
        return r;
    if (sync && (r = dk_file_flush(img->file)) < 0)
        return dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    if (sync && s->dirty_on_disk) {
        if ((r = qcow2_set_incompat(img, QCOW2_INCOMPAT_DIRTY, false)) < 0)
            return r;
        s->dirty_on_disk = false;
        if ((r = dk_file_flush(img->file)) < 0)
            return dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    }
    return 0;
}

/* Number of table indexes in [A, B] (cluster numbers) with no block. */
static uint64_t missing_blocks(struct qcow2_state *s, uint64_t a, uint64_t b)
{
    uint64_t n = 0;
    for (uint64_t ti = a >> s->rb_bits; ti <= b >> s->rb_bits; ti++)
        if (ti >= s->reftable_size || !s->reftable[ti])
            n++;
    return n;
}

/* Writes the refcount structures for [E, LAST) of a new table NT: new
 * blocks (placed after the table, at E + TCL) or updates of old ones. */
static int grow_fill(struct dk_image *img, uint64_t *nt, uint64_t e, uint64_t tcl,
                     uint64_t last)
{
    struct qcow2_state *s = img->priv;
    uint64_t per = 1ull << s->rb_bits, pos = e + tcl;
    uint8_t *blk = malloc(s->cluster_size);
    if (!blk)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    int r = 0;
    for (uint64_t ti = e >> s->rb_bits; r >= 0 && ti <= (last - 1) >> s->rb_bits; ti++) {
        uint64_t lo = DK_MAX(e, ti * per), hi = DK_MIN(last, (ti + 1) * per);
        if (ti < s->reftable_size && s->reftable[ti]) {
            r = qcow2_update_refcount(img, lo << s->cluster_bits,
                                      (hi - lo) << s->cluster_bits, 1);
            continue;
        }
        memset(blk, 0, s->cluster_size);
        for (uint64_t c = lo; c < hi; c++)
            qcow2_rc_set_entry(blk, s->refcount_order, c & (per - 1), 1);
        nt[ti] = pos << s->cluster_bits;
        qcow2_cache_drop(s->rb_cache, nt[ti]);
        r = dk_file_pwrite(img->file, blk, s->cluster_size, nt[ti]);
        if (r < 0)
            dk_set_error(img, r, "qcow2: writing refcount block: %s", strerror(-r));
        pos++;
    }
    free(blk);
    return r;
}

/* Replaces the refcount table by one of at least MIN_ENTRIES entries,
 * placed past every used cluster together with the blocks that describe
 * it (qemu's self-describing growth), then switches the header. */
static int grow_reftable(struct dk_image *img, uint64_t min_entries)
{
    struct qcow2_state *s = img->priv;
    uint64_t epc = s->cluster_size / 8;
    uint64_t want = DK_MAX(min_entries, s->reftable_size + s->reftable_size / 2);
    uint64_t tcl = dk_div_round_up(want, epc), k = 0;
    uint64_t e = DK_MAX(s->alloc_end, s->free_index);
    for (;;) {
        uint64_t last = e + tcl + k;
        if ((last - 1) >> s->rb_bits >= tcl * epc) {
            tcl++;
            continue;
        }
        uint64_t need = missing_blocks(s, e, last - 1);
        if (need == k)
            break;
        k = need;
    }
    if (tcl * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES)
        return dk_set_error(img, -EFBIG, "qcow2: refcount table would exceed %u MiB",
                            QCOW2_MAX_REFTABLE_BYTES >> 20);
    uint64_t n = tcl * epc, last = e + tcl + k;
    uint64_t *nt = calloc(n, 8);
    uint8_t *raw = malloc(n * 8);
    if (!nt || !raw) {
        free(nt);
        free(raw);
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    }
    memcpy(nt, s->reftable, s->reftable_size * 8);
    int r = grow_fill(img, nt, e, tcl, last);
    for (uint64_t i = 0; i < n; i++)
        dk_put_be64(raw + 8 * i, nt[i]);
    if (r >= 0 && (r = dk_file_pwrite(img->file, raw, n * 8, e << s->cluster_bits)) < 0)
        dk_set_error(img, r, "qcow2: writing refcount table: %s", strerror(-r));
    free(raw);
    if (r >= 0)
        r = qcow2_cache_flush(img, s->rb_cache, true);
    if (r >= 0 && (r = dk_file_flush(img->file)) < 0)
        dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    uint8_t hb[12];
    dk_put_be64(hb, e << s->cluster_bits);
    dk_put_be32(hb + 8, (uint32_t)tcl);
    if (r >= 0 && (r = dk_file_pwrite(img->file, hb, 12, 48)) < 0)
        dk_set_error(img, r, "qcow2: writing header: %s", strerror(-r));
    if (r < 0) {
        free(nt);
        return r;
    }
    uint64_t old_off = s->reftable_offset;
    uint64_t old_len = (uint64_t)s->hdr.refcount_table_clusters << s->cluster_bits;
    free(s->reftable);
    s->reftable = nt;
    s->reftable_size = n;
    s->reftable_offset = s->hdr.refcount_table_offset = e << s->cluster_bits;
    s->hdr.refcount_table_clusters = (uint32_t)tcl;
    s->alloc_end = DK_MAX(s->alloc_end, last);
    return qcow2_free_later(img, old_off, old_len);
}

/* Whether the refcount block BLK of table index TI at cluster OWN counts
 * nothing but (when it lies in its own range) itself. */
static bool block_unused(const struct qcow2_state *s, const uint8_t *blk, uint64_t ti,
                         uint64_t own)
{
    uint64_t per = 1ull << s->rb_bits;
    bool self = own >> s->rb_bits == ti;
    for (uint64_t i = 0; i < per; i++)
        if ((!self || i != (own & (per - 1))) && qcow2_rc_get_entry(blk, s->refcount_order, i))
            return false;
    return true;
}

int qcow2_shrink_reftable(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    bool changed = false;
    int r = 0;
    for (uint64_t ti = 0; r >= 0 && ti < s->reftable_size; ti++) {
        uint64_t off = s->reftable[ti] & QCOW2_OFFSET_MASK, own = off >> s->cluster_bits;
        uint8_t *blk;
        if (!off || (r = get_block(img, ti, &blk)) < 0)
            continue;
        bool unused = block_unused(s, blk, ti, own);
        qcow2_cache_put(s->rb_cache, blk);
        if (!unused)
            continue;
        s->reftable[ti] = 0;
        qcow2_cache_drop(s->rb_cache, off);
        s->free_index = DK_MIN(s->free_index, own);
        changed = true;
        if ((r = write_reftable_entry(img, ti)) >= 0 && own >> s->rb_bits != ti)
            r = qcow2_free_later(img, off, s->cluster_size);
    }
    /* The table entries are on disk before the blocks' own refcounts drop. */
    if (r >= 0 && changed && (r = dk_file_flush(img->file)) < 0)
        return dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    return r < 0 ? r : qcow2_flush_all(img, false);
}
