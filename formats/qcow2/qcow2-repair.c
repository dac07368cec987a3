/* qcow2-repair.c - metadata overlap checks before writes, and the rebuild
 * of refcounts from an L1/L2 walk for images left dirty (lazy refcounts).
 *
 * Spec: qcow2.txt "Host cluster management"; the overlap checks follow
 * qemu's qcow2_check_metadata_overlap (header, active L1, refcount table,
 * refcount blocks, snapshot table and inactive L1 tables, active L2 tables).
 * Known gaps: inactive L2 tables and the bitmap directory are not part of
 * the overlap checks; the rebuild counts at most
 * QCOW2_MAX_REBUILD_CLUSTERS host clusters and does not repair COPIED
 * flags (they only matter with internal snapshots).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

static const char *overlap_what(struct qcow2_state *s, uint64_t off, uint64_t len,
                                unsigned check)
{
    uint64_t cs = s->cluster_size;
    if ((check & QCOW2_OL_HEADER) && dk_ranges_overlap(off, len, 0, cs))
        return "qcow2 header";
    if ((check & QCOW2_OL_L1) && dk_ranges_overlap(off, len, s->l1_offset, s->l1_size * 8ull))
        return "active L1 table";
    if ((check & QCOW2_OL_REFTABLE) &&
        dk_ranges_overlap(off, len, s->reftable_offset, s->reftable_size * 8))
        return "refcount table";
    if ((check & QCOW2_OL_SNAPTABLE) && s->nb_snaps &&
        dk_ranges_overlap(off, len, s->hdr.snapshots_offset, s->snap_table_bytes))
        return "snapshot table";
    uint64_t fo, fl;   /* the LUKS area (qcow2-crypt.c) */
    if ((check & QCOW2_OL_HEADER) && qcow2_crypt_area(s, &fo, &fl) &&
        dk_ranges_overlap(off, len, fo, fl))
        return "LUKS header";
    for (uint32_t i = 0; (check & QCOW2_OL_SNAPTABLE) && i < s->nb_snaps; i++)
        if (dk_ranges_overlap(off, len, s->snaps[i].l1_offset, s->snaps[i].l1_size * 8ull))
            return "inactive L1 table";
    for (uint64_t i = 0; (check & QCOW2_OL_REFBLOCK) && i < s->reftable_size; i++) {
        uint64_t b = s->reftable[i] & QCOW2_OFFSET_MASK;
        if (b && dk_ranges_overlap(off, len, b, cs))
            return "refcount block";
    }
    for (uint64_t i = 0; (check & QCOW2_OL_L2) && i < s->l1_size; i++) {
        uint64_t b = s->l1[i] & QCOW2_OFFSET_MASK;
        if (b && dk_ranges_overlap(off, len, b, cs))
            return "active L2 table";
    }
    return NULL;
}

int qcow2_check_overlap(struct dk_image *img, uint64_t off, uint64_t len, unsigned check)
{
    struct qcow2_state *s = img->priv;
    const char *what = overlap_what(s, off, len, check);
    if (!what)
        return 0;
    return qcow2_signal_corruption(img, "qcow2: preventing a write of %llu bytes at 0x%llx "
                                   "over the %s", (unsigned long long)len,
                                   (unsigned long long)off, what);
}

/* ------------------------------------------------------------- rebuild */

struct walk {
    struct dk_image *img;
    uint32_t *cnt;          /* references per host cluster */
    uint64_t n;             /* clusters counted */
};

static int count(struct walk *w, uint64_t off, uint64_t len, const char *what)
{
    struct qcow2_state *s = w->img->priv;
    if (!len)
        return 0;
    uint64_t a = off >> s->cluster_bits, b = (off + len - 1) >> s->cluster_bits;
    if (b >= w->n)
        return qcow2_signal_corruption(w->img, "qcow2: %s at 0x%llx lies beyond end of file",
                                       what, (unsigned long long)off);
    for (uint64_t c = a; c <= b; c++)
        if (w->cnt[c] < UINT32_MAX)
            w->cnt[c]++;
    return 0;
}

static int count_l2(struct walk *w, uint64_t l2off)
{
    struct qcow2_state *s = w->img->priv;
    uint64_t *l2 = NULL;
    int r = qcow2_cache_get(w->img, s->l2_cache, l2off, false, (void **)&l2);
    for (uint64_t k = 0; r >= 0 && k < s->l2_entries; k++) {
        uint64_t e = l2_entry(l2, k), h, n;
        switch (cl_type(s, e)) {
        case CL_NORMAL:
        case CL_ZERO_ALLOC:
            if (!dk_is_aligned(e & QCOW2_OFFSET_MASK, s->cluster_size))
                r = qcow2_signal_corruption(w->img, "qcow2: unaligned data cluster 0x%llx",
                                            (unsigned long long)(e & QCOW2_OFFSET_MASK));
            else
                r = count(w, e & QCOW2_OFFSET_MASK, s->cluster_size, "data cluster");
            break;
        case CL_COMPRESSED:
            qcow2_compressed_decode(e, s->cluster_bits, &h, &n);
            r = count(w, h, n, "compressed cluster");
            break;
        default:
            break;
        }
    }
    if (l2)
        qcow2_cache_put(s->l2_cache, l2);
    return r;
}

static int count_l1(struct walk *w, uint64_t off, uint32_t size)
{
    struct qcow2_state *s = w->img->priv;
    int r = count(w, off, size * 8ull, "L1 table");
    uint8_t *raw = r >= 0 ? malloc(size * 8ull + 8) : NULL;
    if (r >= 0 && !raw)
        return dk_set_error(w->img, -ENOMEM, "qcow2: out of memory");
    if (r >= 0 && size && (r = dk_file_pread(w->img->file, raw, size * 8ull, off)) < 0)
        dk_set_error(w->img, r, "qcow2: reading L1 table: %s", strerror(-r));
    for (uint32_t i = 0; r >= 0 && i < size; i++) {
        uint64_t l2 = dk_be64(raw + 8ull * i) & QCOW2_OFFSET_MASK;
        if (!l2)
            continue;
        if (!dk_is_aligned(l2, s->cluster_size) || l2 >> s->cluster_bits >= w->n) {
            r = qcow2_signal_corruption(w->img, "qcow2: L2 table at 0x%llx lies beyond end "
                                        "of file", (unsigned long long)l2);
            break;
        }
        /* Tables shared with a snapshot count once per L1; their data
         * clusters too (qemu counts references per L1 walk). */
        r = count(w, l2, s->cluster_size, "L2 table");
        if (r >= 0)
            r = count_l2(w, l2);
    }
    free(raw);
    return r;
}

static int walk_all(struct walk *w)
{
    struct qcow2_state *s = w->img->priv;
    int r = count(w, 0, s->cluster_size, "header");
    if (r >= 0)
        r = count_l1(w, s->hdr.l1_table_offset, s->hdr.l1_size);
    for (uint32_t i = 0; r >= 0 && i < s->nb_snaps; i++)
        r = count_l1(w, s->snaps[i].l1_offset, s->snaps[i].l1_size);
    if (r >= 0 && s->nb_snaps)
        r = count(w, s->hdr.snapshots_offset, s->snap_table_bytes, "snapshot table");
    uint64_t fo, fl;
    if (r >= 0 && qcow2_crypt_area(s, &fo, &fl))
        r = count(w, fo, fl, "LUKS header");
    if (r >= 0)
        r = count(w, s->reftable_offset, s->reftable_size * 8, "refcount table");
    for (uint64_t i = 0; r >= 0 && i < s->reftable_size; i++)
        if (s->reftable[i] & QCOW2_OFFSET_MASK)
            r = count(w, s->reftable[i] & QCOW2_OFFSET_MASK, s->cluster_size,
                      "refcount block");
    return r;
}

/* Stores the counts into the existing blocks, then adds the counts of
 * clusters whose block is missing through the allocator. */
static int store_counts(struct walk *w)
{
    struct dk_image *img = w->img;
    struct qcow2_state *s = img->priv;
    uint64_t per = 1ull << s->rb_bits;
    int r = 0;
    for (uint64_t ti = 0; r >= 0 && ti < s->reftable_size; ti++) {
        uint64_t b = s->reftable[ti] & QCOW2_OFFSET_MASK;
        uint8_t *blk;
        if (!b || (r = qcow2_cache_get(img, s->rb_cache, b, false, (void **)&blk)) < 0)
            continue;
        for (uint64_t i = 0; i < per; i++) {
            uint64_t c = ti * per + i;
            uint64_t v = c < w->n ? DK_MIN((uint64_t)w->cnt[c], s->refcount_max) : 0;
            qcow2_rc_set_entry(blk, s->refcount_order, i, v);
        }
        qcow2_cache_mark_dirty(s->rb_cache, blk);
        qcow2_cache_put(s->rb_cache, blk);
    }
    s->free_index = w->n;
    for (uint64_t c = 0; r >= 0 && c < w->n; c++) {
        uint64_t ti = c >> s->rb_bits;
        if (w->cnt[c] && (ti >= s->reftable_size || !(s->reftable[ti] & QCOW2_OFFSET_MASK)))
            r = qcow2_update_refcount(img, c << s->cluster_bits, s->cluster_size,
                                      (int64_t)w->cnt[c]);
    }
    s->free_index = 0;
    return r;
}

int qcow2_rebuild_refcounts(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    struct walk w = { .img = img, .n = s->alloc_end };
    if (w.n > QCOW2_MAX_REBUILD_CLUSTERS)
        return dk_set_error(img, -EFBIG, "qcow2: image too large to rebuild refcounts "
                            "(%llu clusters)", (unsigned long long)w.n);
    if (!(w.cnt = calloc(w.n ? w.n : 1, sizeof(*w.cnt))))
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    int r = walk_all(&w);
    if (r >= 0)
        r = store_counts(&w);
    free(w.cnt);
    return r;
}
