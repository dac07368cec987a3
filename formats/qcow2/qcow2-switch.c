/* qcow2-switch.c - crash-safe metadata switch used by the snapshot
 * operations: a whole new generation of the active L1/L2 tables, the
 * snapshot table and the refcount structure is written into free space
 * past the end of the file, and one header write makes it current.
 *
 * Spec: qemu docs/interop/qcow2.txt (header fields 36..71, refcounts,
 * OFLAG_COPIED). Why: a snapshot changes refcounts and the COPIED flags of
 * the active tables together. Those live in different clusters, so any
 * in-place order leaves a moment where `qemu-img check` sees an
 * OFLAG_COPIED mismatch (qemu itself has that window). Here nothing that
 * the current header reaches is modified before the switch:
 *
 * Invariants:
 *  1. Before the header write the old generation is untouched; the new
 *     clusters lie past the old end of file, unreferenced and with
 *     refcount 0 in the old structure (neither leaked nor in use).
 *  2. The new refcounts are counted from the new generation itself (like
 *     `check` does), so after the switch every refcount is exact: no
 *     leaks; what only the old generation used becomes free space.
 *  3. The header fields that change (L1 offset/size, refcount table
 *     offset/clusters, snapshot count/offset, size) all lie in the first
 *     sector and go to disk in one write.
 *  4. Every active L2 table is a fresh private copy (COPIED set in L1),
 *     and every data cluster gets COPIED exactly when its count is 1.
 *
 * Cost: the refcount blocks and the active L2 tables are rewritten on each
 * snapshot operation (about 1/4000 of the image size with 64 KiB
 * clusters and 16-bit refcounts).
 * Known gaps: images with persistent bitmaps are refused (the bitmap
 * tables would have to be counted and carried over).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* Counting costs 4 bytes per host cluster (as in qcow2-check.c). */
#define SWITCH_MAX_CLUSTERS (64ull << 20)
/* The copies of the active L2 tables are held in memory while building. */
#define SWITCH_MAX_L2_BYTES (512ull << 20)

struct gen {
    struct dk_image *img;
    struct qcow2_state *s;
    uint64_t cs;
    uint64_t fsize;           /* old end of file */
    uint32_t l1_size;
    uint64_t *l1;             /* new active L1, host order */
    uint64_t n_l2;            /* active L2 copies */
    uint8_t *l2;              /* their contents, on-disk byte order */
    uint64_t l1_off, l2_off, tab_off, rt_off, rb_off;   /* new places */
    uint64_t l1_clusters, tab_bytes, rt_clusters, n_rb, end;  /* end in clusters */
    uint8_t *tab;             /* encoded snapshot table */
    uint32_t *cnt;            /* references per cluster of the new generation */
};

static int corrupt_ref(struct gen *g, uint64_t off, uint64_t len)
{
    return qcow2_signal_corruption(g->img, "qcow2: metadata references 0x%llx+0x%llx beyond "
                                   "the end of the file (run 'diskkit check')",
                                   (unsigned long long)off, (unsigned long long)len);
}

/* One reference to every cluster touching [OFF, OFF+LEN). */
static int count(struct gen *g, uint64_t off, uint64_t len)
{
    uint64_t end;
    if (!len)
        return 0;
    if (dk_add_overflow(off, len, &end) || dk_div_round_up(end, g->cs) > g->end)
        return corrupt_ref(g, off, len);
    for (uint64_t k = off / g->cs; k <= (end - 1) / g->cs; k++) {
        if (g->cnt[k] >= g->s->refcount_max || g->cnt[k] == UINT32_MAX)
            return dk_set_error(g->img, -EOVERFLOW, "qcow2: refcount of cluster 0x%llx "
                                "would overflow", (unsigned long long)(k * g->cs));
        g->cnt[k]++;
    }
    return 0;
}

/* References held by the entries of one L2 table (on-disk byte order). */
static int count_l2_entries(struct gen *g, const uint8_t *t)
{
    int r = 0;
    for (uint64_t j = 0; j < g->s->l2_entries && r == 0; j++) {
        uint64_t e = dk_be64(t + 8 * j), coff, clen;
        switch (cl_type(g->s, e)) {
        case CL_COMPRESSED:
            qcow2_compressed_decode(e, g->s->cluster_bits, &coff, &clen);
            r = count(g, coff, clen);
            break;
        case CL_NORMAL:
        case CL_ZERO_ALLOC:
            if ((e & QCOW2_OFFSET_MASK) & (g->cs - 1))
                return corrupt_ref(g, e & QCOW2_OFFSET_MASK, g->cs);
            r = count(g, e & QCOW2_OFFSET_MASK, g->cs);
            break;
        default:
            break;
        }
    }
    return r;
}

/* A snapshot's L1, its L2 tables and their data (all stay where they are). */
static int count_snapshot(struct gen *g, const struct qcow2_snapshot *sn, uint8_t *buf)
{
    uint64_t bytes = (uint64_t)sn->l1_size * 8;
    if (bytes > QCOW2_MAX_L1_BYTES || (sn->l1_offset & (g->cs - 1)))
        return corrupt_ref(g, sn->l1_offset, bytes);
    int r = count(g, sn->l1_offset, bytes);
    uint64_t *l1 = malloc(bytes + 8);
    if (r < 0 || !l1) {
        free(l1);
        return r < 0 ? r : dk_set_error(g->img, -ENOMEM, "qcow2: out of memory");
    }
    if ((r = dk_file_pread(g->img->file, l1, bytes, sn->l1_offset)) < 0)
        dk_set_error(g->img, r, "qcow2: reading snapshot L1: %s", strerror(-r));
    for (uint32_t i = 0; r == 0 && i < sn->l1_size; i++) {
        uint64_t l2 = dk_be64(&l1[i]) & QCOW2_OFFSET_MASK;
        if (!l2)
            continue;
        if ((l2 & (g->cs - 1)) || !dk_range_inside(l2, g->cs, g->fsize))
            r = corrupt_ref(g, l2, g->cs);
        else if ((r = count(g, l2, g->cs)) == 0 &&
                 (r = dk_file_pread(g->img->file, buf, g->cs, l2)) == 0)
            r = count_l2_entries(g, buf);
    }
    free(l1);
    return r;
}

/* Loads copies of the L2 tables SRC (host order, N entries) points to. */
static int load_l2_copies(struct gen *g, const uint64_t *src, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        g->n_l2 += (src[i] & QCOW2_OFFSET_MASK) != 0;
    if (g->n_l2 * g->cs > SWITCH_MAX_L2_BYTES)
        return dk_set_error(g->img, -EFBIG, "qcow2: active L2 tables exceed %llu MiB",
                            (unsigned long long)(SWITCH_MAX_L2_BYTES >> 20));
    if (!(g->l2 = malloc(g->n_l2 ? g->n_l2 * g->cs : 1)))
        return dk_set_error(g->img, -ENOMEM, "qcow2: out of memory");
    for (uint32_t i = 0, k = 0; i < n; i++) {
        uint64_t off = src[i] & QCOW2_OFFSET_MASK;
        if (!off)
            continue;
        if ((off & (g->cs - 1)) || !dk_range_inside(off, g->cs, g->fsize))
            return corrupt_ref(g, off, g->cs);
        int r = dk_file_pread(g->img->file, g->l2 + k++ * g->cs, g->cs, off);
        if (r < 0)
            return dk_set_error(g->img, r, "qcow2: reading L2 table: %s", strerror(-r));
    }
    return 0;
}

/* Places the new generation past the old end and sizes the refcount
 * structure so that it also covers itself. */
static int layout(struct gen *g)
{
    uint64_t base = dk_div_round_up(g->fsize, g->cs);
    uint64_t per_rb = 1ull << g->s->rb_bits, rb = 0, rt = 0, last = UINT64_MAX;
    g->l1_clusters = DK_MAX(1, dk_div_round_up((uint64_t)g->l1_size * 8, g->cs));
    uint64_t data_end = base + g->l1_clusters + g->n_l2 + dk_div_round_up(g->tab_bytes, g->cs);
    while (rb + rt != last) {
        last = rb + rt;
        rb = dk_div_round_up(data_end + rt + rb, per_rb);
        rt = dk_div_round_up(rb * 8, g->cs);
    }
    g->end = data_end + rt + rb;
    if (g->end >= SWITCH_MAX_CLUSTERS || g->end >= QCOW2_MAX_HOST_OFFSET / g->cs ||
        rt * g->cs > QCOW2_MAX_REFTABLE_BYTES)
        return dk_set_error(g->img, -EFBIG, "qcow2: image too large for a metadata switch");
    g->l1_off = base * g->cs;
    g->l2_off = g->l1_off + g->l1_clusters * g->cs;
    g->tab_off = g->l2_off + g->n_l2 * g->cs;
    g->rt_off = (data_end) * g->cs;
    g->rb_off = g->rt_off + rt * g->cs;
    g->rt_clusters = rt;
    g->n_rb = rb;
    g->cnt = calloc(g->end, sizeof(*g->cnt));
    return g->cnt ? 0 : dk_set_error(g->img, -ENOMEM, "qcow2: out of memory");
}

/* Counts every reference of the new generation (invariant 2). */
static int count_all(struct gen *g, const struct qcow2_snapshot *snaps, uint32_t nb)
{
    struct qcow2_state *s = g->s;
    uint8_t *buf = malloc(g->cs);
    if (!buf)
        return dk_set_error(g->img, -ENOMEM, "qcow2: out of memory");
    int r = count(g, 0, g->cs);                                  /* header */
    if (r == 0)
        r = count(g, g->l1_off, (uint64_t)g->l1_size * 8);
    for (uint64_t k = 0; r == 0 && k < g->n_l2; k++)
        if ((r = count(g, g->l2_off + k * g->cs, g->cs)) == 0)
            r = count_l2_entries(g, g->l2 + k * g->cs);
    for (uint32_t i = 0; r == 0 && i < nb; i++)
        r = count_snapshot(g, &snaps[i], buf);
    if (r == 0 && nb)
        r = count(g, g->tab_off, g->tab_bytes);
    if (r == 0)
        r = count(g, g->rt_off, g->rt_clusters * g->cs);
    if (r == 0)
        r = count(g, g->rb_off, g->n_rb * g->cs);
    for (size_t i = 0; r == 0 && i < s->n_exts; i++)
        if (s->exts[i].type == QCOW2_EXT_CRYPTO && s->exts[i].len >= 16)
            r = count(g, dk_be64(s->exts[i].data), dk_be64(s->exts[i].data + 8));
    free(buf);
    return r;
}

/* Sets OFLAG_COPIED in the copies from the counts (invariant 4). */
static void set_flags(struct gen *g)
{
    for (uint64_t k = 0; k < g->n_l2; k++) {
        uint8_t *t = g->l2 + k * g->cs;
        for (uint64_t j = 0; j < g->s->l2_entries; j++) {
            uint64_t e = dk_be64(t + 8 * j);
            enum cl_type ty = cl_type(g->s, e);
            if (ty == CL_COMPRESSED)
                e &= ~QCOW2_OFLAG_COPIED;
            else if (ty == CL_NORMAL || ty == CL_ZERO_ALLOC)
                e = g->cnt[(e & QCOW2_OFFSET_MASK) / g->cs] == 1 ? e | QCOW2_OFLAG_COPIED
                                                                 : e & ~QCOW2_OFLAG_COPIED;
            dk_put_be64(t + 8 * j, e);
        }
    }
}

static int put(struct gen *g, const void *buf, uint64_t len, uint64_t off)
{
    int r = len ? dk_file_pwrite(g->img->file, buf, len, off) : 0;
    return r < 0 ? dk_set_error(g->img, r, "qcow2: writing new metadata: %s", strerror(-r)) : 0;
}

/* Writes the new generation (nothing the header reaches yet) and syncs. */
static int write_gen(struct gen *g, uint64_t *rt)
{
    uint64_t per_rb = 1ull << g->s->rb_bits;
    uint8_t *buf = calloc(1, DK_MAX(g->cs, g->l1_clusters * g->cs));
    if (!buf)
        return dk_set_error(g->img, -ENOMEM, "qcow2: out of memory");
    for (uint32_t i = 0; i < g->l1_size; i++)
        dk_put_be64(buf + 8 * i, g->l1[i]);
    int r = put(g, buf, g->l1_clusters * g->cs, g->l1_off);
    if (r == 0)
        r = put(g, g->l2, g->n_l2 * g->cs, g->l2_off);
    if (r == 0)
        r = put(g, g->tab, g->tab_bytes, g->tab_off);
    for (uint64_t b = 0; r == 0 && b < g->n_rb; b++) {
        memset(buf, 0, g->cs);
        for (uint64_t i = 0; i < per_rb && b * per_rb + i < g->end; i++)
            qcow2_rc_set_entry(buf, g->s->refcount_order, i, g->cnt[b * per_rb + i]);
        r = put(g, buf, g->cs, g->rb_off + b * g->cs);
        rt[b] = g->rb_off + b * g->cs;
    }
    free(buf);
    uint64_t rt_bytes = g->rt_clusters * g->cs;
    uint8_t *rtb = calloc(1, rt_bytes);
    if (r == 0 && !rtb)
        r = dk_set_error(g->img, -ENOMEM, "qcow2: out of memory");
    for (uint64_t b = 0; r == 0 && b < g->n_rb; b++)
        dk_put_be64(rtb + 8 * b, rt[b]);
    if (r == 0)
        r = put(g, rtb, rt_bytes, g->rt_off);
    free(rtb);
    if (r == 0 && (r = dk_file_flush(g->img->file)) < 0)
        dk_set_error(g->img, r, "qcow2: flush: %s", strerror(-r));
    return r;
}

/* Header write (invariant 3); restores the in-memory header on failure. */
static int switch_header(struct gen *g, uint32_t nb, uint64_t size)
{
    struct qcow2_state *s = g->s;
    struct qcow2_header old = s->hdr;
    s->hdr.l1_table_offset = g->l1_off;
    s->hdr.l1_size = g->l1_size;
    s->hdr.refcount_table_offset = g->rt_off;
    s->hdr.refcount_table_clusters = (uint32_t)g->rt_clusters;
    s->hdr.nb_snapshots = nb;
    s->hdr.snapshots_offset = nb ? g->tab_off : 0;
    s->hdr.size = size;
    int r = qcow2_header_write(g->img);
    if (r == 0 && (r = dk_file_flush(g->img->file)) < 0)
        dk_set_error(g->img, r, "qcow2: flush: %s", strerror(-r));
    if (r < 0)
        s->hdr = old;
    return r;
}

/* Makes the in-memory state follow the new generation. */
static int adopt(struct gen *g, uint64_t *rt, uint64_t size)
{
    struct qcow2_state *s = g->s;
    free(s->l1);
    s->l1 = g->l1;
    g->l1 = NULL;
    s->l1_offset = g->l1_off;
    s->l1_size = g->l1_size;
    free(s->reftable);
    s->reftable = rt;
    s->reftable_offset = g->rt_off;
    s->reftable_size = g->rt_clusters * g->cs / 8;
    s->free_index = 0;
    s->alloc_end = g->end;
    s->cw_next = s->cw_end = 0;
    s->zbuf_valid = false;
    g->img->size = size;
    /* Cached tables may describe clusters that are free now: start over,
     * sized as at open. */
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->rb_cache);
    uint64_t l2_need = ((uint64_t)s->l1_size + 2) * g->cs;
    uint64_t rb_need = (s->reftable_size + 2) * g->cs;
    s->l2_cache = qcow2_cache_new(DK_MIN(l2_need, QCOW2_L2_CACHE_MAX_BYTES) / g->cs, g->cs,
                                  QCOW2_OL_L2);
    s->rb_cache = qcow2_cache_new(DK_MIN(rb_need, QCOW2_RB_CACHE_MAX_BYTES) / g->cs, g->cs,
                                  QCOW2_OL_REFBLOCK);
    if (!s->l2_cache || !s->rb_cache)
        return dk_corrupt(g->img, "qcow2: out of memory after a metadata switch");
    if (!s->lazy)
        qcow2_cache_set_dep(s->l2_cache, s->rb_cache);
    return 0;
}

int qcow2_switch(struct dk_image *img, const uint64_t *src, uint32_t src_n, uint32_t l1_size,
                 const struct qcow2_snapshot *snaps, uint32_t nb, uint64_t size)
{
    struct qcow2_state *s = img->priv;
    struct gen g = { .img = img, .s = s, .cs = s->cluster_size, .l1_size = l1_size };
    uint64_t *rt = NULL;
    for (size_t i = 0; i < s->n_exts; i++)
        if (s->exts[i].type == QCOW2_EXT_BITMAPS)
            return dk_set_error(img, -ENOTSUP, "qcow2: snapshots of images with persistent "
                                "bitmaps are not supported");
    int r = qcow2_flush_all(img, true);
    if (r == 0 && (r = dk_file_size(img->file, &g.fsize)) < 0)
        dk_set_error(img, r, "qcow2: %s", strerror(-r));
    if (r == 0)
        r = qcow2_snaptable_encode(img, snaps, nb, &g.tab, &g.tab_bytes);
    if (r == 0)
        r = load_l2_copies(&g, src, DK_MIN(src_n, l1_size));
    if (r == 0 && !(g.l1 = calloc(DK_MAX(l1_size, 1), 8)))
        r = dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (r == 0)
        r = layout(&g);
    for (uint32_t i = 0, k = 0; r == 0 && i < DK_MIN(src_n, l1_size); i++)
        if (src[i] & QCOW2_OFFSET_MASK)
            g.l1[i] = (g.l2_off + k++ * g.cs) | QCOW2_OFLAG_COPIED;
    if (r == 0)
        r = count_all(&g, snaps, nb);
    if (r == 0 && !(rt = calloc(g.rt_clusters * g.cs / 8, 8)))
        r = dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (r == 0) {
        set_flags(&g);
        r = write_gen(&g, rt);
    }
    if (r == 0)
        r = switch_header(&g, nb, size);
    if (r == 0) {
        r = adopt(&g, rt, size);
        rt = NULL;
    }
    free(rt);
    free(g.l1);
    free(g.l2);
    free(g.tab);
    free(g.cnt);
    return r;
}
