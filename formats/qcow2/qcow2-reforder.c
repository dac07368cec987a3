/* qcow2-reforder.c - changing the refcount width of an image (amend
 * refcount_bits=N, qemu-img amend's qcow2_change_refcount_order).
 *
 * Spec: qemu docs/interop/qcow2.txt "Host cluster management" (header
 * field refcount_order at byte 96, v3 only; refcount blocks hold
 * cluster_size * 8 / refcount_bits entries, sub-byte widths packed from
 * the least significant bit).
 *
 * Like qcow2-switch.c, a complete new refcount structure (table and
 * blocks, in the new width) is written into free space past everything
 * the old structure counts, and one header write switches to it:
 *
 * Invariants:
 *  1. Nothing the current header reaches is written before the switch:
 *     the new clusters lie past the last cluster with a non-zero old
 *     refcount and past the end of file (old refcount 0, unreferenced).
 *     A crash before the header write leaves the old image as it was
 *     (the file is only longer).
 *  2. Every refcount is copied from the old structure, so clusters that
 *     only something diskkit does not parse refers to (bitmaps, unknown
 *     extensions) keep their count. The clusters of the old table and
 *     blocks get 0 (freed by the switch), the new ones 1, and counts of
 *     clusters past the end of file (leaks) are dropped.
 *  3. The fields that change (refcount table offset and clusters at
 *     48..59, refcount_order at 96) lie in the first sector and go to
 *     disk in one header write, after the new structure was synced.
 *  4. A width that cannot hold some existing refcount is refused before
 *     anything is written (qemu's message and rule).
 * The same writer rebuilds a damaged refcount structure for check -r all
 * (qcow2_refcount_rebuild): the refcounts then come from the references
 * check counted, not from the old blocks, which may be unreadable.
 * Known gaps: relies, like every header switch, on the first sector of the
 * header being written atomically.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

struct reorder {
    struct dk_image *img;
    struct qcow2_state *s;
    uint64_t cs, fsize;
    uint32_t order;            /* new refcount_order */
    uint64_t per_old, per_new; /* refcounts per block, old and new width */
    uint64_t n_used;           /* clusters >= this have old refcount 0 */
    uint64_t base, rt, n_rb, end;   /* new structure, in clusters */
    uint64_t *meta;            /* sorted clusters of the old table and blocks */
    size_t n_meta;
    uint8_t *oblk;             /* one old refcount block */
    uint64_t oblk_ti;          /* its table index, UINT64_MAX for none */
    const uint32_t *counts;    /* rebuild: refcounts counted by check, */
    uint64_t n_counts;         /* not read from the old structure */
};

static uint64_t order_max(uint32_t order)
{
    return order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
}

/* Loads old refcount block TI into r->oblk (all zero when absent). */
static int load_old(struct reorder *r, uint64_t ti)
{
    if (r->oblk_ti == ti)
        return 0;
    r->oblk_ti = UINT64_MAX;
    uint64_t off = ti < r->s->reftable_size ? r->s->reftable[ti] & QCOW2_OFFSET_MASK : 0;
    if (!off) {
        memset(r->oblk, 0, r->cs);
    } else {
        if (!dk_is_aligned(off, r->cs) || !dk_range_inside(off, r->cs, r->fsize))
            return dk_set_error(r->img, -EINVAL, "qcow2: refcount block at 0x%llx is "
                                "unaligned or beyond end of file (run 'diskkit check')",
                                (unsigned long long)off);
        int e = dk_file_pread(r->img->file, r->oblk, r->cs, off);
        if (e < 0)
            return dk_set_error(r->img, e, "qcow2: reading refcount block: %s", strerror(-e));
    }
    r->oblk_ti = ti;
    return 0;
}

static int old_refcount(struct reorder *r, uint64_t c, uint64_t *v)
{
    int e = load_old(r, c / r->per_old);
    if (e == 0)
        *v = qcow2_rc_get_entry(r->oblk, r->s->refcount_order, c % r->per_old);
    return e;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool is_old_meta(const struct reorder *r, uint64_t c)
{
    return bsearch(&c, r->meta, r->n_meta, sizeof(*r->meta), cmp_u64) != NULL;
}

/* Pass 1 (read only): the used range, and refusal when a refcount does
 * not fit the new width (invariant 4). */
static int scan_old(struct reorder *r)
{
    struct qcow2_state *s = r->s;
    uint64_t max = order_max(r->order);
    uint64_t rt_first = s->reftable_offset / r->cs;
    uint64_t rt_n = s->reftable_size * 8 / r->cs;
    uint64_t file_clusters = dk_div_round_up(r->fsize, r->cs);
    if (!(r->meta = malloc((s->reftable_size + rt_n) * sizeof(*r->meta))))
        return dk_set_error(r->img, -ENOMEM, "qcow2: out of memory");
    for (uint64_t k = 0; k < rt_n; k++)
        r->meta[r->n_meta++] = rt_first + k;
    for (uint64_t ti = 0; ti < s->reftable_size; ti++) {
        if (!(s->reftable[ti] & QCOW2_OFFSET_MASK))
            continue;
        int e = load_old(r, ti);
        if (e < 0)
            return e;
        r->meta[r->n_meta++] = (s->reftable[ti] & QCOW2_OFFSET_MASK) / r->cs;
        for (uint64_t i = 0; i < r->per_old; i++) {
            uint64_t v = qcow2_rc_get_entry(r->oblk, s->refcount_order, i);
            if (!v)
                continue;
            if (v > max)
                return dk_set_error(r->img, -EINVAL, "Cannot decrease refcount entry width "
                                    "to %u bits: Cluster at offset 0x%llx has a refcount of "
                                    "%llu", 1u << r->order,
                                    (unsigned long long)((ti * r->per_old + i) * r->cs),
                                    (unsigned long long)v);
            /* Counts past the end of file describe nothing (leaks at
             * most) and are not carried over: the new structure must not
             * be placed at some huge offset because of them. */
            if (ti * r->per_old + i < file_clusters)
                r->n_used = ti * r->per_old + i + 1;
        }
    }
    qsort(r->meta, r->n_meta, sizeof(*r->meta), cmp_u64);
    return 0;
}

/* Places the new structure past the used range and the end of file, sized
 * so that it also covers itself. */
static int layout(struct reorder *r)
{
    uint64_t rb = 0, rt = 0, last = UINT64_MAX;
    r->base = DK_MAX(r->n_used, dk_div_round_up(r->fsize, r->cs));
    while (rb + rt != last) {
        last = rb + rt;
        rb = dk_div_round_up(r->base + rt + rb, r->per_new);
        rt = dk_div_round_up(rb * 8, r->cs);
    }
    r->rt = rt;
    r->n_rb = rb;
    r->end = r->base + rt + rb;
    if (rt * r->cs > QCOW2_MAX_REFTABLE_BYTES || r->end >= QCOW2_MAX_HOST_OFFSET / r->cs)
        return dk_set_error(r->img, -EFBIG, "qcow2: a refcount table for %u-bit refcounts "
                            "would exceed %u MiB", 1u << r->order,
                            QCOW2_MAX_REFTABLE_BYTES >> 20);
    return 0;
}

static int put(struct reorder *r, const void *buf, uint64_t len, uint64_t off)
{
    int e = dk_file_pwrite(r->img->file, buf, len, off);
    return e < 0 ? dk_set_error(r->img, e, "qcow2: writing refcount structure: %s",
                                strerror(-e)) : 0;
}

/* Pass 2: writes the new blocks and table (invariants 1, 2) and syncs.
 * RT gets the new table in host order. */
static int write_new(struct reorder *r, uint64_t *rt)
{
    uint64_t rb_first = r->base + r->rt;
    uint8_t *blk = malloc(r->cs);
    if (!blk)
        return dk_set_error(r->img, -ENOMEM, "qcow2: out of memory");
    int e = 0;
    for (uint64_t b = 0; e == 0 && b < r->n_rb; b++) {
        memset(blk, 0, r->cs);
        for (uint64_t i = 0; e == 0 && i < r->per_new; i++) {
            uint64_t c = b * r->per_new + i, v = 0;
            if (c >= r->end)
                break;
            if (c >= r->base)
                v = 1;
            else if (r->counts)
                v = c < r->n_counts ? r->counts[c] : 0;
            else if (c < r->n_used && !is_old_meta(r, c))
                e = old_refcount(r, c, &v);
            qcow2_rc_set_entry(blk, r->order, i, v);
        }
        rt[b] = (rb_first + b) * r->cs;
        if (e == 0)
            e = put(r, blk, r->cs, rt[b]);
        qcow2_amend_progress(r->img, b + 1, r->n_rb + 1);
    }
    free(blk);
    uint8_t *raw = e == 0 ? calloc(r->rt, r->cs) : NULL;
    if (e == 0 && !raw)
        e = dk_set_error(r->img, -ENOMEM, "qcow2: out of memory");
    for (uint64_t b = 0; e == 0 && b < r->n_rb; b++)
        dk_put_be64(raw + 8 * b, rt[b]);
    if (e == 0)
        e = put(r, raw, r->rt * r->cs, r->base * r->cs);
    free(raw);
    if (e == 0 && (e = dk_file_flush(r->img->file)) < 0)
        dk_set_error(r->img, e, "qcow2: flush: %s", strerror(-e));
    return e;
}

/* The header switch (invariant 3); the in-memory header is restored when
 * it fails. */
static int switch_header(struct reorder *r)
{
    struct qcow2_state *s = r->s;
    struct qcow2_header old = s->hdr;
    s->hdr.refcount_order = r->order;
    s->hdr.refcount_table_offset = r->base * r->cs;
    s->hdr.refcount_table_clusters = (uint32_t)r->rt;
    int e = qcow2_header_write(r->img);
    if (e == 0 && (e = dk_file_flush(r->img->file)) < 0)
        dk_set_error(r->img, e, "qcow2: flush: %s", strerror(-e));
    if (e < 0)
        s->hdr = old;
    return e;
}

/* Makes the open image use the new structure. */
static int adopt(struct reorder *r, uint64_t *rt)
{
    struct qcow2_state *s = r->s;
    free(s->reftable);
    s->reftable = rt;
    s->reftable_offset = r->base * r->cs;
    s->reftable_size = r->rt * r->cs / 8;
    s->refcount_order = r->order;
    s->rb_bits = s->cluster_bits + 3 - r->order;
    s->refcount_max = order_max(r->order);
    s->free_index = 0;
    s->alloc_end = r->end;
    s->cw_next = s->cw_end = 0;
    /* Cached blocks are in the old width: start over, sized as at open. */
    qcow2_cache_free(s->rb_cache);
    uint64_t rb_need = (s->reftable_size + 2) * r->cs;
    s->rb_cache = qcow2_cache_new(DK_MIN(rb_need, QCOW2_RB_CACHE_MAX_BYTES) / r->cs, r->cs,
                                  QCOW2_OL_REFBLOCK);
    if (!s->rb_cache) {
        qcow2_cache_set_dep(s->l2_cache, NULL);
        return dk_corrupt(r->img, "qcow2: out of memory after a refcount width change");
    }
    qcow2_cache_set_dep(s->l2_cache, s->lazy ? NULL : s->rb_cache);
    return 0;
}

static int prepare(struct dk_image *img, uint32_t order, struct reorder *r)
{
    struct qcow2_state *s = img->priv;
    memset(r, 0, sizeof(*r));
    r->img = img;
    r->s = s;
    r->cs = s->cluster_size;
    r->order = order;
    r->per_old = 1ull << s->rb_bits;
    r->per_new = 1ull << (s->cluster_bits + 3 - order);
    r->oblk_ti = UINT64_MAX;
    if (order > 6)
        return dk_set_error(img, -EINVAL, "Refcount width must be a power of two and may "
                            "not exceed 64 bits");
    /* Postponed refcounts (lazy mode) and cached blocks reach the disk. */
    int e = qcow2_flush_all(img, true);
    if (e == 0 && (e = dk_file_size(img->file, &r->fsize)) < 0)
        dk_set_error(img, e, "qcow2: %s", strerror(-e));
    if (e == 0 && !(r->oblk = malloc(r->cs)))
        e = dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (e == 0)
        e = scan_old(r);
    return e;
}

static void release(struct reorder *r)
{
    free(r->meta);
    free(r->oblk);
}

int qcow2_refcount_order_check(struct dk_image *img, uint32_t order)
{
    struct reorder r;
    int e = prepare(img, order, &r);
    if (e == 0)
        e = layout(&r);
    release(&r);
    return e;
}

int qcow2_refcount_order_change(struct dk_image *img, uint32_t order)
{
    struct qcow2_state *s = img->priv;
    if (order == s->refcount_order)
        return 0;
    if (!s->v3)
        return dk_set_error(img, -EINVAL, "Refcount widths other than 16 bits require "
                            "compatibility level 1.1 or above (use compat=1.1 or greater)");
    struct reorder r;
    uint64_t *rt = NULL;
    int e = prepare(img, order, &r);
    if (e == 0)
        e = layout(&r);
    if (e == 0 && !(rt = calloc(r.rt * r.cs / 8, 8)))
        e = dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (e == 0)
        e = write_new(&r, rt);
    if (e == 0)
        e = switch_header(&r);
    if (e == 0) {
        e = adopt(&r, rt);
        rt = NULL;
    }
    free(rt);
    release(&r);
    return e;
}

int qcow2_refcount_rebuild(struct dk_image *img, const uint32_t *counts, uint64_t n)
{
    struct qcow2_state *s = img->priv;
    struct reorder r = { .img = img, .s = s, .cs = s->cluster_size,
                         .order = s->refcount_order, .oblk_ti = UINT64_MAX,
                         .counts = counts, .n_counts = n };
    r.per_old = r.per_new = 1ull << s->rb_bits;
    while (n && !counts[n - 1])
        n--;
    r.n_used = n;
    uint64_t *rt = NULL;
    int e = dk_file_size(img->file, &r.fsize);
    if (e < 0)
        return dk_set_error(img, e, "qcow2: %s", strerror(-e));
    e = layout(&r);
    if (e == 0 && !(rt = calloc(r.rt * r.cs / 8, 8)))
        e = dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (e == 0)
        e = write_new(&r, rt);
    if (e == 0)
        e = switch_header(&r);
    if (e == 0) {
        e = adopt(&r, rt);
        rt = NULL;
    }
    free(rt);
    return e;
}
