/* qcow2-snapshot-ops.c - creating, applying and deleting internal
 * snapshots (qemu-img snapshot -c / -a / -d). Reading the table and
 * listing live in qcow2-snapshot.c.
 *
 * Spec: qemu docs/interop/qcow2.txt "Snapshots" and "Cluster mapping"
 * (OFLAG_COPIED: set exactly when the refcount is 1, in the active tables).
 *
 * Invariants and write order (a crash between two steps leaks clusters,
 * it never frees a cluster that is still referenced):
 *  1. create: the copy of the active L1 goes to freshly allocated clusters;
 *     then every L2 table and data cluster reachable from the active L1 gets
 *     +1 (refcount blocks reach the disk before the L2 tables whose COPIED
 *     flags drop, qcow2-cache dependency); then a complete new snapshot
 *     table is written to new clusters and synced; then one header write
 *     switches nb_snapshots/snapshots_offset; only then the old table's
 *     clusters are freed.
 *  2. delete: the new table (without the entry) is written and the header
 *     switched first; then the snapshot's L1 reachable clusters get -1 and
 *     its L1 is freed; finally the COPIED flags of the active tables are
 *     recomputed (refcount 2 -> 1 makes clusters writable in place again).
 *  3. apply: +1 for everything reachable from the snapshot's L1, then the
 *     active L1 is overwritten in place with the snapshot's entries (one
 *     write, the same size or a grown table), then -1 for what the old
 *     active L1 reached, then COPIED flags recomputed.
 *  The one window qemu has too: between a refcount block write and the L2
 *  table write that fixes a COPIED flag, `check` sees an OFLAG_COPIED
 *  mismatch; both writes follow each other immediately.
 *
 * Known gaps: no VM state (vm_state_size is always 0 here), snapshots of
 * images with an external data file are refused (as qemu does).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qcow2.h"

#define SNAP_EXTRA_QEMU 24      /* vm_state_size_large, disk_size, icount */

/* Writes N host-order L1 entries big-endian at OFF and syncs. */
static int write_l1(struct dk_image *img, uint64_t off, const uint64_t *l1, uint32_t n)
{
    if (!n)
        return 0;
    uint64_t *be = malloc((size_t)n * 8);
    if (!be)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    for (uint32_t i = 0; i < n; i++)
        dk_put_be64(&be[i], l1[i]);
    int r = qcow2_check_overlap(img, off, (uint64_t)n * 8, QCOW2_OL_ALL & ~QCOW2_OL_L1);
    if (r == 0 && (r = dk_file_pwrite(img->file, be, (size_t)n * 8, off)) < 0)
        dk_set_error(img, r, "qcow2: writing L1 table: %s", strerror(-r));
    if (r == 0 && (r = dk_file_flush(img->file)) < 0)
        dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    free(be);
    return r;
}

/* Reads and validates a snapshot's L1 table into a host-order array
 * (caller frees). */
static int read_snap_l1(struct dk_image *img, const struct qcow2_snapshot *sn, uint64_t **out)
{
    struct qcow2_state *s = img->priv;
    uint64_t bytes = (uint64_t)sn->l1_size * 8, fsize;
    int r = dk_file_size(img->file, &fsize);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: %s", strerror(-r));
    if (bytes > QCOW2_MAX_L1_BYTES ||
        qcow2_validate_table(sn->l1_offset, bytes, s->cluster_size, fsize) < 0)
        return dk_set_error(img, -EINVAL, "qcow2: snapshot %s (%s) has an invalid L1 table "
                            "(offset 0x%llx, %u entries)", sn->id, sn->name,
                            (unsigned long long)sn->l1_offset, sn->l1_size);
    uint64_t *l1 = calloc(sn->l1_size ? sn->l1_size : 1, 8);
    if (!l1)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (bytes && (r = dk_file_pread(img->file, l1, bytes, sn->l1_offset)) < 0) {
        free(l1);
        return dk_set_error(img, r, "qcow2: reading snapshot L1 table: %s", strerror(-r));
    }
    for (uint32_t i = 0; i < sn->l1_size; i++)
        l1[i] = dk_be64(&l1[i]);
    *out = l1;
    return 0;
}

/* ------------------------------------------------- refcount walk (+1/-1) */

/* Adjusts the refcount of every cluster one L2 table references by DELTA
 * (0: only recompute flags) and, when ACTIVE, its COPIED flags. */
static int walk_l2(struct dk_image *img, uint64_t l2_off, int64_t delta, bool active)
{
    struct qcow2_state *s = img->priv;
    uint64_t *t;
    int r = qcow2_cache_get(img, s->l2_cache, l2_off, false, (void **)&t);
    if (r < 0)
        return r;
    bool dirty = false;
    for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
        uint64_t e = l2_entry(t, j), rc;
        enum cl_type ty = cl_type(s, e);
        if (ty == CL_COMPRESSED) {
            uint64_t coff, clen;
            qcow2_compressed_decode(e, s->cluster_bits, &coff, &clen);
            if (delta)
                r = qcow2_update_refcount(img, coff, clen, delta);
            continue;
        }
        if (ty != CL_NORMAL && ty != CL_ZERO_ALLOC)
            continue;
        uint64_t off = e & QCOW2_OFFSET_MASK;
        if (delta && (r = qcow2_update_refcount(img, off, s->cluster_size, delta)) < 0)
            break;
        if (!active || (r = qcow2_get_refcount(img, off >> s->cluster_bits, &rc)) < 0)
            continue;
        uint64_t ne = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
        if (ne != e) {
            l2_set(t, j, ne);
            dirty = true;
        }
    }
    if (dirty)
        qcow2_cache_mark_dirty(s->l2_cache, t);
    qcow2_cache_put(s->l2_cache, t);
    return r;
}

/* qemu's qcow2_update_snapshot_refcount: walks L1 (host order, L1_SIZE
 * entries). With ACTIVE the entries are s->l1 and their COPIED flags are
 * recomputed and written back. */
static int walk_l1(struct dk_image *img, uint64_t *l1, uint32_t l1_size, int64_t delta,
                   bool active)
{
    struct qcow2_state *s = img->priv;
    bool l1_dirty = false;
    int r = 0;
    for (uint32_t i = 0; i < l1_size && r == 0; i++) {
        uint64_t l2_off = l1[i] & QCOW2_OFFSET_MASK, rc;
        if (!l2_off)
            continue;
        if (l2_off & (s->cluster_size - 1))
            return qcow2_signal_corruption(img, "qcow2: L2 table offset 0x%llx unaligned "
                                           "(L1 index %u)", (unsigned long long)l2_off, i);
        if ((r = walk_l2(img, l2_off, delta, active)) < 0)
            break;
        if (delta && (r = qcow2_update_refcount(img, l2_off, s->cluster_size, delta)) < 0)
            break;
        if (active && (r = qcow2_get_refcount(img, l2_off >> s->cluster_bits, &rc)) == 0) {
            uint64_t ne = rc == 1 ? l1[i] | QCOW2_OFLAG_COPIED : l1[i] & ~QCOW2_OFLAG_COPIED;
            l1_dirty |= ne != l1[i];
            l1[i] = ne;
        }
    }
    if (r < 0 || !l1_dirty)
        return r;
    /* Refcounts first, then the tables that depend on them. */
    if ((r = qcow2_flush_all(img, true)) < 0)
        return r;
    return write_l1(img, s->l1_offset, s->l1, s->l1_size);
}

/* ----------------------------------------------------- the snapshot table */

static uint64_t entry_bytes(const struct qcow2_snapshot *sn)
{
    return dk_round_up(40 + (uint64_t)sn->extra_size + strlen(sn->id) + strlen(sn->name), 8);
}

static uint64_t table_bytes(const struct qcow2_state *s)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < s->nb_snaps; i++)
        n += entry_bytes(&s->snaps[i]);
    return n;
}

static void encode_entry(const struct qcow2_snapshot *sn, uint8_t *p)
{
    size_t id_len = strlen(sn->id), name_len = strlen(sn->name);
    dk_put_be64(p, sn->l1_offset);
    dk_put_be32(p + 8, sn->l1_size);
    dk_put_be16(p + 12, (uint16_t)id_len);
    dk_put_be16(p + 14, (uint16_t)name_len);
    dk_put_be32(p + 16, sn->date_sec);
    dk_put_be32(p + 20, sn->date_nsec);
    dk_put_be64(p + 24, sn->vm_clock_nsec);
    dk_put_be32(p + 32, (uint32_t)sn->vm_state_size);
    dk_put_be32(p + 36, sn->extra_size);
    memcpy(p + 40, sn->extra, sn->extra_size);   /* unknown extra data kept verbatim */
    memcpy(p + 40 + sn->extra_size, sn->id, id_len);
    memcpy(p + 40 + sn->extra_size + id_len, sn->name, name_len);
}

/* Writes s->snaps as a new table in new clusters, switches the header to it
 * (one write) and frees the previous table, whose place is given. */
static int write_table(struct dk_image *img, uint64_t old_off, uint64_t old_bytes)
{
    struct qcow2_state *s = img->priv;
    uint64_t bytes = table_bytes(s), off = 0;
    if (bytes > QCOW2_MAX_SNAP_TABLE)
        return dk_set_error(img, -EFBIG, "qcow2: snapshot table would exceed %u MiB",
                            QCOW2_MAX_SNAP_TABLE >> 20);
    uint64_t nclus = dk_div_round_up(bytes, s->cluster_size);
    uint8_t *buf = calloc(1, nclus ? nclus * s->cluster_size : 1);
    if (!buf)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    for (uint32_t i = 0, p = 0; i < s->nb_snaps; p += (uint32_t)entry_bytes(&s->snaps[i]), i++)
        encode_entry(&s->snaps[i], buf + p);
    int r = nclus ? qcow2_alloc_clusters(img, nclus, &off) : 0;
    if (r == 0 && nclus) {
        r = qcow2_check_overlap(img, off, bytes, QCOW2_OL_ALL);
        if (r == 0 && (r = dk_file_pwrite(img->file, buf, bytes, off)) < 0)
            dk_set_error(img, r, "qcow2: writing snapshot table: %s", strerror(-r));
    }
    free(buf);
    if (r == 0)
        r = qcow2_flush_all(img, true);     /* table and its refcounts on disk */
    if (r < 0)
        return r;
    uint64_t prev_off = s->hdr.snapshots_offset;
    uint32_t prev_n = s->hdr.nb_snapshots;
    s->hdr.snapshots_offset = off;
    s->hdr.nb_snapshots = s->nb_snaps;
    r = qcow2_header_write(img);
    if (r == 0 && (r = dk_file_flush(img->file)) < 0)
        dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    if (r < 0) {
        s->hdr.snapshots_offset = prev_off;
        s->hdr.nb_snapshots = prev_n;
        return r;
    }
    /* The old table is unreferenced now: its clusters can go. */
    return old_bytes ? qcow2_update_refcount(img, old_off, old_bytes, -1) : 0;
}

/* --------------------------------------------------------------- create */

static int new_entry(struct dk_image *img, const char *name, uint64_t l1_off,
                     struct qcow2_snapshot *sn)
{
    struct qcow2_state *s = img->priv;
    unsigned long long max_id = 0;
    for (uint32_t i = 0; i < s->nb_snaps; i++) {
        unsigned long long v = strtoull(s->snaps[i].id, NULL, 10);
        if (v > max_id)
            max_id = v;
    }
    char id[32];
    snprintf(id, sizeof(id), "%llu", max_id + 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memset(sn, 0, sizeof(*sn));
    sn->l1_offset = l1_off;
    sn->l1_size = s->l1_size;
    sn->date_sec = (uint32_t)ts.tv_sec;
    sn->date_nsec = (uint32_t)(ts.tv_nsec / 1000 * 1000);   /* qemu-img: microseconds */
    sn->disk_size = img->size;
    sn->icount = 0;
    sn->extra_size = SNAP_EXTRA_QEMU;
    sn->id = strdup(id);
    sn->name = strdup(name);
    sn->extra = calloc(1, SNAP_EXTRA_QEMU);
    if (!sn->id || !sn->name || !sn->extra) {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    }
    dk_put_be64(sn->extra + 8, img->size);    /* vm_state_size_large 0, disk_size, icount 0 */
    return 0;
}

static void drop_last_entry(struct qcow2_state *s)
{
    struct qcow2_snapshot *sn = &s->snaps[--s->nb_snaps];
    free(sn->id);
    free(sn->name);
    free(sn->extra);
}

int qcow2_snapshot_create(struct dk_image *img, const char *name)
{
    struct qcow2_state *s = img->priv;
    if (s->hdr.incompatible & QCOW2_INCOMPAT_DATA_FILE)
        return dk_set_error(img, -ENOTSUP, "qcow2: internal snapshots are not supported "
                            "with an external data file");
    if (s->nb_snaps >= QCOW2_MAX_SNAPSHOTS)
        return dk_set_error(img, -EFBIG, "qcow2: too many snapshots (at most %u)",
                            QCOW2_MAX_SNAPSHOTS);
    if (!*name || strlen(name) > 65535)
        return dk_set_error(img, -EINVAL, "qcow2: invalid snapshot name");
    struct qcow2_snapshot *v = realloc(s->snaps, (s->nb_snaps + 1) * sizeof(*v));
    if (!v)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    s->snaps = v;
    uint64_t old_off = s->hdr.snapshots_offset, old_bytes = table_bytes(s), l1_off = 0;
    uint64_t l1_clusters = dk_div_round_up((uint64_t)s->l1_size * 8, s->cluster_size);
    int r = qcow2_flush_all(img, true);
    /* 1. a copy of the active L1, 2. +1 on everything it reaches */
    if (r == 0 && l1_clusters && (r = qcow2_alloc_clusters(img, l1_clusters, &l1_off)) == 0)
        r = write_l1(img, l1_off, s->l1, s->l1_size);
    if (r < 0)
        return r;
    if ((r = walk_l1(img, s->l1, s->l1_size, 1, true)) == 0)
        r = qcow2_flush_all(img, true);
    if (r < 0)
        return r;   /* refcounts partly raised: leaks at worst */
    /* 3. the new table, 4. header switch, 5. old table freed */
    if ((r = new_entry(img, name, l1_off, &s->snaps[s->nb_snaps])) < 0)
        return r;
    s->nb_snaps++;
    r = write_table(img, old_off, old_bytes);
    if (r < 0 && s->hdr.nb_snapshots != s->nb_snaps) {
        /* Not recorded: undo the references taken for it. */
        drop_last_entry(s);
        if (walk_l1(img, s->l1, s->l1_size, -1, true) == 0 && l1_clusters)
            qcow2_update_refcount(img, l1_off, l1_clusters * s->cluster_size, -1);
        return r;
    }
    int f = qcow2_flush_all(img, true);
    return r < 0 ? r : f;
}

/* --------------------------------------------------------------- delete */

int qcow2_snapshot_delete(struct dk_image *img, const char *key)
{
    struct qcow2_state *s = img->priv;
    int idx = qcow2_snapshot_find(s, key);
    if (idx < 0)
        return dk_set_error(img, -ENOENT, "snapshot not found");
    uint64_t *l1;
    int r = read_snap_l1(img, &s->snaps[idx], &l1);
    if (r < 0)
        return r;
    if ((r = qcow2_flush_all(img, true)) < 0) {
        free(l1);
        return r;
    }
    struct qcow2_snapshot gone = s->snaps[idx];
    uint64_t old_off = s->hdr.snapshots_offset, old_bytes = table_bytes(s);
    memmove(&s->snaps[idx], &s->snaps[idx + 1], (s->nb_snaps - idx - 1) * sizeof(gone));
    s->nb_snaps--;
    /* 1. drop the reference (table + header), 2. then lower refcounts */
    r = write_table(img, old_off, old_bytes);
    if (r < 0 && s->hdr.nb_snapshots != s->nb_snaps) {
        memmove(&s->snaps[idx + 1], &s->snaps[idx], (s->nb_snaps - idx) * sizeof(gone));
        s->snaps[idx] = gone;
        s->nb_snaps++;
        free(l1);
        return r;
    }
    uint64_t l1_bytes = (uint64_t)gone.l1_size * 8;
    if (r == 0)
        r = walk_l1(img, l1, gone.l1_size, -1, false);
    if (r == 0 && l1_bytes)
        r = qcow2_update_refcount(img, gone.l1_offset, l1_bytes, -1);
    /* 3. clusters shared with the deleted snapshot may be writable again */
    if (r == 0)
        r = walk_l1(img, s->l1, s->l1_size, 0, true);
    if (r == 0)
        r = qcow2_flush_all(img, true);
    free(gone.id);
    free(gone.name);
    free(gone.extra);
    free(l1);
    return r;
}

/* ---------------------------------------------------------------- apply */

/* Makes NL1 (host order, N entries; always taken over) the active L1: in place
 * when it fits the current table's clusters, else in new clusters with a
 * header switch. */
static int replace_active_l1(struct dk_image *img, uint64_t *nl1, uint32_t n)
{
    struct qcow2_state *s = img->priv;
    uint64_t have = dk_div_round_up((uint64_t)s->l1_size * 8, s->cluster_size);
    uint64_t need = dk_div_round_up((uint64_t)n * 8, s->cluster_size), off = s->l1_offset;
    int r = 0;
    if (need > have && (r = qcow2_alloc_clusters(img, need, &off)) == 0)
        r = qcow2_flush_all(img, true);
    if (r == 0)
        r = write_l1(img, off, nl1, n);
    if (r < 0) {
        free(nl1);
        return r;
    }
    uint64_t old_off = s->l1_offset;
    if (off != old_off || n != s->l1_size) {
        s->hdr.l1_table_offset = off;
        s->hdr.l1_size = n;
        if ((r = qcow2_header_write(img)) == 0 && (r = dk_file_flush(img->file)) < 0)
            dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
        if (r < 0) {
            s->hdr.l1_table_offset = old_off;
            s->hdr.l1_size = s->l1_size;
            free(nl1);
            return r;
        }
    }
    free(s->l1);
    s->l1 = nl1;
    s->l1_size = n;
    s->l1_offset = off;
    if (off != old_off && have)
        r = qcow2_update_refcount(img, old_off, have * s->cluster_size, -1);
    return r;
}

int qcow2_snapshot_apply(struct dk_image *img, const char *key)
{
    struct qcow2_state *s = img->priv;
    int idx = qcow2_snapshot_find(s, key);
    if (idx < 0)
        return dk_set_error(img, -ENOENT, "Failed to load snapshot: No such file or directory");
    const struct qcow2_snapshot *sn = &s->snaps[idx];
    uint64_t *snl1, *old = NULL;
    int r = read_snap_l1(img, sn, &snl1);
    if (r < 0)
        return r;
    /* The new active table keeps at least the current size (zeros past the
     * snapshot's entries), like qemu. */
    uint32_t n = DK_MAX(sn->l1_size, s->l1_size), old_n = s->l1_size;
    uint64_t *nl1 = calloc(n ? n : 1, 8);
    if (!nl1 || !(old = malloc((old_n ? old_n : 1) * 8ull))) {
        free(nl1);
        free(snl1);
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    }
    memcpy(nl1, snl1, (size_t)sn->l1_size * 8);
    memcpy(old, s->l1, (size_t)old_n * 8);
    uint64_t disk_size = sn->disk_size;
    /* 1. +1 for the snapshot's clusters, 2. switch, 3. -1 for the old ones */
    if ((r = qcow2_flush_all(img, true)) == 0 &&
        (r = walk_l1(img, snl1, sn->l1_size, 1, false)) == 0 &&
        (r = qcow2_flush_all(img, true)) == 0) {
        r = replace_active_l1(img, nl1, n);
        nl1 = NULL;   /* owned by the state now, or freed below on failure */
    }
    if (r == 0)
        r = walk_l1(img, old, old_n, -1, false);
    if (r == 0)
        r = walk_l1(img, s->l1, s->l1_size, 0, true);
    if (r == 0 && disk_size != UINT64_MAX && disk_size != img->size) {
        s->hdr.size = disk_size;          /* the snapshot's virtual size comes back */
        if ((r = qcow2_header_write(img)) == 0)
            img->size = disk_size;
    }
    if (r == 0)
        r = qcow2_flush_all(img, true);
    free(nl1);
    free(snl1);
    free(old);
    return r;
}
