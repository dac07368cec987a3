/* qcow2-compat.c - version changes of an open image (amend compat=1.1 and
 * compat=0.10, qemu-img amend's qcow2_upgrade and qcow2_downgrade).
 *
 * Spec: qemu docs/interop/qcow2.txt "Header" (version 2 ends at byte 72;
 * version 3 adds the feature bits, refcount_order and header_length),
 * "Header extensions", "Snapshots" (v3 entries need at least 16 bytes of
 * extra data: large VM state size and disk size), "Standard Cluster
 * Descriptor" (the zero flag, bit 0, is v3 only).
 *
 * Upgrade (v2 -> v3): snapshot entries with less than 16 bytes of extra
 * data are rewritten into newly allocated clusters (refcounts synced
 * first); one write of the header cluster then makes the image version 3
 * (header_length 112, no feature bits, refcount_order 4, the feature name
 * table added as qemu-img adds it), pointing at the new snapshot table;
 * the old table is freed last. A crash leaks at most the new or the old
 * table.
 *
 * Downgrade (v3 -> v2), with qemu's preconditions, all checked before
 * anything is written: refcount width 16, no feature bit other than the
 * dirty bit and the compression type, zlib compression unless no cluster
 * is compressed (checked in every L1 table, not only the active one as
 * qemu does), snapshots of the current size with a 32-bit VM state. Then:
 *  1. lazy refcounts are switched off in memory and every postponed
 *     refcount is written (this clears the dirty bit);
 *  2. zero clusters are expanded in the active and every snapshot L2
 *     table (a shared table is edited once, for all its users): without
 *     a backing file an unallocated zero cluster becomes unallocated
 *     (reads zero all the same); otherwise a new cluster is allocated
 *     (refcount = the table's refcount) and filled with zeros. A zero
 *     cluster with an allocation is filled with zeros in place when only
 *     this table reaches it; when something else holds it too (qemu would
 *     overwrite that data) it gets a new cluster and drops the old one.
 *     Per table: allocations and zeros are synced, then the table is
 *     written, then old clusters are released: a crash leaks at most;
 *     every intermediate state reads the same data.
 *  3. one header-cluster write makes it version 2 (72-byte header, the
 *     feature name table dropped, other extensions and the backing file
 *     name kept).
 * Known gaps: as in qemu, the version switch is one write of the header
 * cluster and assumes it is not torn (the extensions move between byte 72
 * and 112); images with persistent bitmaps keep the (already invalidated)
 * bitmaps extension.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

#define SNAP_EXTRA_V3 16        /* large VM state size, disk size */

struct compat {
    struct dk_image *img;
    struct qcow2_state *s;
    uint64_t cs, fsize;
    uint64_t n_zero, n_compressed;
    uint64_t visited, total;    /* L1 entries, for progress (total 0: none) */
    uint64_t *t, *nv;           /* an L2 table as read, and as it will be */
    uint64_t *olds;             /* clusters to release after the table write */
    uint8_t *zeros;
};

typedef int (*l2_fn)(struct compat *x, uint64_t l1i, uint64_t l2off);

static int bad_meta(struct compat *x, const char *what, uint64_t off)
{
    return dk_set_error(x->img, -EINVAL, "qcow2: %s at 0x%llx is unaligned, overlaps the "
                        "header or lies beyond end of file (run 'diskkit check')", what,
                        (unsigned long long)off);
}

static bool cluster_ok(const struct compat *x, uint64_t off)
{
    return dk_is_aligned(off, x->cs) && off >= x->cs && dk_range_inside(off, x->cs, x->fsize);
}

/* Calls FN for every L2 table of L1 table L1 (host order, N entries). */
static int walk_l1(struct compat *x, const uint64_t *l1, uint64_t n, l2_fn fn)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = l1[i] & QCOW2_OFFSET_MASK;
        if (x->total)
            qcow2_amend_progress(x->img, x->visited++, x->total);
        if (!off)
            continue;
        if (!cluster_ok(x, off))
            return bad_meta(x, "L2 table", off);
        int r = fn(x, i, off);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Every L2 table of the active and each snapshot L1 table. */
static int walk(struct compat *x, l2_fn fn)
{
    struct qcow2_state *s = x->s;
    int r = walk_l1(x, s->l1, s->l1_size, fn);
    for (uint32_t k = 0; r == 0 && k < s->nb_snaps; k++) {
        const struct qcow2_snapshot *sn = &s->snaps[k];
        uint64_t bytes = (uint64_t)sn->l1_size * 8;
        if (bytes > QCOW2_MAX_L1_BYTES ||
            qcow2_validate_table(sn->l1_offset, bytes, x->cs, x->fsize) < 0)
            return dk_set_error(x->img, -EINVAL, "qcow2: snapshot %s has an invalid L1 table",
                                sn->id);
        uint64_t *l1 = malloc(bytes ? bytes : 8);
        if (!l1)
            return dk_set_error(x->img, -ENOMEM, "qcow2: out of memory");
        if (bytes && (r = dk_file_pread(x->img->file, l1, bytes, sn->l1_offset)) < 0)
            dk_set_error(x->img, r, "qcow2: reading snapshot L1 table: %s", strerror(-r));
        for (uint32_t i = 0; r == 0 && i < sn->l1_size; i++)
            l1[i] = dk_be64(&l1[i]);
        if (r == 0)
            r = walk_l1(x, l1, sn->l1_size, fn);
        free(l1);
    }
    return r;
}

static int read_table(struct compat *x, uint64_t off)
{
    int r = dk_file_pread(x->img->file, x->t, x->cs, off);
    return r < 0 ? dk_set_error(x->img, r, "qcow2: reading L2 table: %s", strerror(-r)) : 0;
}

/* The refcount of the cluster at OFF, which must be in use. */
static int used_refcount(struct compat *x, uint64_t off, const char *what, uint64_t *rc)
{
    int r = qcow2_get_refcount(x->img, off >> x->s->cluster_bits, rc);
    if (r == 0 && !*rc)
        r = dk_set_error(x->img, -EINVAL, "qcow2: %s at 0x%llx has refcount 0 (run "
                         "'diskkit check -r all')", what, (unsigned long long)off);
    return r;
}

/* Scan: counts zero and compressed clusters, validates what the
 * expansion will touch. */
static int scan_table(struct compat *x, uint64_t l1i, uint64_t off)
{
    struct qcow2_state *s = x->s;
    (void)l1i;
    uint64_t l2rc = 0, rc;
    int r = read_table(x, off);
    for (uint64_t j = 0; r == 0 && j < s->l2_entries; j++) {
        uint64_t e = l2_entry(x->t, j), h = e & QCOW2_OFFSET_MASK;
        switch (cl_type(s, e)) {
        case CL_COMPRESSED:
            x->n_compressed++;
            break;
        case CL_ZERO:
            x->n_zero++;
            break;
        case CL_ZERO_ALLOC:
            x->n_zero++;
            if (!cluster_ok(x, h))
                return bad_meta(x, "zero cluster", h);
            if (!l2rc && (r = used_refcount(x, off, "L2 table", &l2rc)) < 0)
                return r;
            if ((r = used_refcount(x, h, "zero cluster", &rc)) == 0 && rc < l2rc)
                r = dk_set_error(x->img, -EINVAL, "qcow2: zero cluster at 0x%llx has a "
                                 "refcount lower than its references (run 'diskkit check "
                                 "-r all')", (unsigned long long)h);
            break;
        default:
            break;
        }
    }
    return r;
}

/* A new zero-filled cluster with refcount RC for guest offset GUEST. */
static int new_zero_cluster(struct compat *x, uint64_t rc, uint64_t guest, uint64_t *out)
{
    int r = qcow2_alloc_clusters(x->img, 1, out);
    if (r == 0 && rc > 1)
        r = qcow2_update_refcount(x->img, *out, x->cs, (int64_t)(rc - 1));
    if (r == 0)
        r = qcow2_data_pwrite(x->img, x->zeros, x->cs, *out, guest);
    return r;
}

/* Step 2 for one entry: sets x->nv[J] (and x->olds[J]). */
static int expand_entry(struct compat *x, uint64_t j, uint64_t l2rc, uint64_t guest)
{
    struct qcow2_state *s = x->s;
    uint64_t e = l2_entry(x->t, j), h = e & QCOW2_OFFSET_MASK, rc = l2rc;
    int r = 0;
    enum cl_type ty = cl_type(s, e);
    if (ty != CL_ZERO && ty != CL_ZERO_ALLOC)
        return 0;
    if (ty == CL_ZERO && !x->img->backing_name) {
        l2_set(x->nv, j, 0);
        return 0;
    }
    if (ty == CL_ZERO_ALLOC && !cluster_ok(x, h))
        return bad_meta(x, "zero cluster", h);
    if (ty == CL_ZERO_ALLOC && (r = used_refcount(x, h, "zero cluster", &rc)) < 0)
        return r;
    if (ty == CL_ZERO_ALLOC && rc == l2rc) {
        /* Only this table reaches it: zeros in place. */
        if ((r = qcow2_check_overlap(x->img, h, x->cs, QCOW2_OL_ALL)) == 0)
            r = qcow2_data_pwrite(x->img, x->zeros, x->cs, h, guest);
    } else {
        if (ty == CL_ZERO_ALLOC)
            x->olds[j] = h;
        rc = l2rc;
        r = new_zero_cluster(x, rc, guest, &h);
    }
    if (r == 0)
        l2_set(x->nv, j, h | (rc == 1 ? QCOW2_OFLAG_COPIED : 0));
    return r;
}

static int expand_table(struct compat *x, uint64_t l1i, uint64_t off)
{
    struct qcow2_state *s = x->s;
    uint64_t n = 0, l2rc;
    int r = read_table(x, off);
    for (uint64_t j = 0; r == 0 && j < s->l2_entries; j++) {
        enum cl_type ty = cl_type(s, l2_entry(x->t, j));
        n += ty == CL_ZERO || ty == CL_ZERO_ALLOC;
    }
    if (r < 0 || !n)
        return r;
    if ((r = used_refcount(x, off, "L2 table", &l2rc)) < 0)
        return r;
    memcpy(x->nv, x->t, x->cs);
    memset(x->olds, 0, s->l2_entries * 8);
    uint64_t base = l1i << (s->l2_bits + s->cluster_bits);
    for (uint64_t j = 0; r == 0 && j < s->l2_entries; j++)
        r = expand_entry(x, j, l2rc, base + (j << s->cluster_bits));
    /* Refcounts and zeros durable before the table refers to them. */
    if (r == 0)
        r = qcow2_flush_all(x->img, true);
    qcow2_cache_drop(s->l2_cache, off);
    if (r == 0)
        r = qcow2_check_overlap(x->img, off, x->cs, QCOW2_OL_ALL & ~QCOW2_OL_L2);
    if (r == 0 && (r = dk_file_pwrite(x->img->file, x->nv, x->cs, off)) < 0)
        dk_set_error(x->img, r, "qcow2: writing L2 table: %s", strerror(-r));
    if (r == 0 && (r = dk_file_flush(x->img->file)) < 0)
        dk_set_error(x->img, r, "qcow2: flush: %s", strerror(-r));
    for (uint64_t j = 0; r == 0 && j < s->l2_entries; j++)
        if (x->olds[j])
            r = qcow2_update_refcount(x->img, x->olds[j], x->cs, -(int64_t)l2rc);
    return r;
}

static int compat_init(struct dk_image *img, struct compat *x)
{
    struct qcow2_state *s = img->priv;
    memset(x, 0, sizeof(*x));
    x->img = img;
    x->s = s;
    x->cs = s->cluster_size;
    int r = qcow2_flush_all(img, true);     /* the disk is current */
    if (r == 0 && (r = dk_file_size(img->file, &x->fsize)) < 0)
        return dk_set_error(img, r, "qcow2: %s", strerror(-r));
    x->t = malloc(x->cs);
    x->nv = malloc(x->cs);
    x->olds = malloc(x->cs);
    x->zeros = calloc(1, x->cs);
    if (r == 0 && (!x->t || !x->nv || !x->olds || !x->zeros))
        r = dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    return r;
}

static void compat_free(struct compat *x)
{
    free(x->t);
    free(x->nv);
    free(x->olds);
    free(x->zeros);
}

/* ------------------------------------------------------------ headers */

/* Bytes cluster 0 needs with a header of HLEN bytes, the extensions but
 * SKIP_TYPE, and one more extension of ADD_LEN bytes (0: none). */
static uint64_t header_need(struct dk_image *img, uint32_t hlen, uint32_t skip_type,
                            uint32_t add_len)
{
    struct qcow2_state *s = img->priv;
    size_t bl = img->backing_name ? strlen(img->backing_name) : 0;
    size_t fl = bl && img->backing_fmt ? strlen(img->backing_fmt) : 0;
    uint64_t need = hlen + (fl ? 8 + dk_round_up(fl, 8) : 0) + 8 + bl;
    for (size_t i = 0; i < s->n_exts; i++)
        if (s->exts[i].type != skip_type)
            need += 8 + dk_round_up(s->exts[i].len, 8);
    return need + (add_len ? 8 + dk_round_up(add_len, 8) : 0);
}

static bool has_ext(const struct qcow2_state *s, uint32_t type)
{
    for (size_t i = 0; i < s->n_exts; i++)
        if (s->exts[i].type == type)
            return true;
    return false;
}

/* qemu-img writes the feature name table into v3 headers of clusters
 * larger than 4 KiB (see qcow2-create.c). */
static bool wants_feature_table(const struct qcow2_state *s)
{
    return s->cluster_size > 4096 && !has_ext(s, QCOW2_EXT_FEATURES);
}

/* A saved header state, restored when a version switch fails. */
struct hdr_save {
    struct qcow2_header hdr;
    uint8_t *tail;
    struct qcow2_ext *exts;
    size_t n_exts;
};

/* Writes the header (fields and extensions prepared by the caller) with
 * a header_length of HLEN and syncs; on failure puts the header fields of
 * SAVE back (the caller restores the extensions). */
static int write_version(struct dk_image *img, struct hdr_save *save, uint32_t hlen)
{
    struct qcow2_state *s = img->priv;
    uint8_t *tail = calloc(1, hlen);
    if (!tail)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    memcpy(tail, save->tail, QCOW2_V2_HDR_LEN);
    s->hdr_tail = tail;
    s->hdr_tail_len = hlen;
    s->hdr.header_length = hlen;
    int r = qcow2_header_write(img);
    if (r == 0 && (r = dk_file_flush(img->file)) < 0)
        dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    if (r < 0) {
        free(tail);
        s->hdr_tail = save->tail;
        s->hdr_tail_len = save->hdr.header_length;
        s->hdr = save->hdr;
        return r;
    }
    free(save->tail);
    return 0;
}

/* ------------------------------------------------------------ upgrade */

int qcow2_upgrade_check(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    uint32_t ft = wants_feature_table(s) ? QCOW2_FEATURE_TABLE_BYTES : 0;
    if (header_need(img, QCOW2_HDR_LEN_QEMU, 0, ft) > s->cluster_size)
        return dk_set_error(img, -ENOSPC, "qcow2: compat=1.1: the version 3 header, its "
                            "extensions and the backing file name do not fit in the first "
                            "cluster (%llu bytes)", (unsigned long long)s->cluster_size);
    return 0;
}

/* v3 snapshot entries: extra data of at least 16 bytes. NEWX[i] gets the
 * new extra data of entry i (NULL: unchanged); the table is written to
 * newly allocated clusters at *OFF (0: no rewrite needed). */
static int upgrade_snaptable(struct dk_image *img, uint8_t **newx, uint64_t *off,
                             uint64_t *bytes)
{
    struct qcow2_state *s = img->priv;
    struct qcow2_snapshot *v = malloc((s->nb_snaps ? s->nb_snaps : 1) * sizeof(*v));
    if (!v)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    bool any = false;
    for (uint32_t i = 0; i < s->nb_snaps; i++) {
        v[i] = s->snaps[i];
        if (s->snaps[i].extra_size >= SNAP_EXTRA_V3)
            continue;
        if (!(newx[i] = calloc(1, SNAP_EXTRA_V3))) {
            free(v);
            return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
        }
        uint64_t ds = s->snaps[i].disk_size != UINT64_MAX ? s->snaps[i].disk_size : img->size;
        dk_put_be64(newx[i], s->snaps[i].vm_state_size);
        dk_put_be64(newx[i] + 8, ds);
        v[i].extra = newx[i];
        v[i].extra_size = SNAP_EXTRA_V3;
        any = true;
    }
    uint8_t *buf = NULL;
    int r = any ? qcow2_snaptable_encode(img, v, s->nb_snaps, &buf, bytes) : 0;
    free(v);
    if (r < 0 || !any)
        return r;
    r = qcow2_alloc_clusters(img, dk_div_round_up(*bytes, s->cluster_size), off);
    if (r == 0 && (r = dk_file_pwrite(img->file, buf, *bytes, *off)) < 0)
        dk_set_error(img, r, "qcow2: writing snapshot table: %s", strerror(-r));
    free(buf);
    if (r == 0)
        r = qcow2_flush_all(img, true);     /* refcounts and table durable */
    return r;
}

static int add_feature_table(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    struct qcow2_ext *e = malloc((s->n_exts + 1) * sizeof(*e));
    uint8_t *d = calloc(1, QCOW2_FEATURE_TABLE_BYTES);
    if (!e || !d) {
        free(e);
        free(d);
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    }
    /* Where qemu-img puts it: after the encryption and data file
     * extensions, before the bitmaps and unknown ones. */
    size_t at = 0;
    while (at < s->n_exts && (s->exts[at].type == QCOW2_EXT_CRYPTO ||
                              s->exts[at].type == QCOW2_EXT_DATA_FILE))
        at++;
    if (s->n_exts)
        memcpy(e, s->exts, at * sizeof(*e));
    e[at] = (struct qcow2_ext){ QCOW2_EXT_FEATURES, (uint32_t)qcow2_feature_table(d), d };
    if (s->n_exts > at)
        memcpy(e + at + 1, s->exts + at, (s->n_exts - at) * sizeof(*e));
    s->exts = e;
    s->n_exts++;
    return 0;
}

/* After a failed header switch: the feature table added and the new
 * snapshot table (at TOFF, TBYTES) go again. */
static void upgrade_rollback(struct dk_image *img, const struct hdr_save *save,
                             uint64_t toff, uint64_t tbytes)
{
    struct qcow2_state *s = img->priv;
    if (s->exts != save->exts) {
        for (size_t i = 0; i < s->n_exts; i++)
            if (s->exts[i].type == QCOW2_EXT_FEATURES)
                free(s->exts[i].data);
        free(s->exts);
        s->exts = save->exts;
        s->n_exts = save->n_exts;
    }
    if (toff)   /* best effort: otherwise only leaked */
        (void)qcow2_update_refcount(img, toff, tbytes, -1);
}

/* After the header switch: the state follows, the old table is freed. */
static int upgrade_commit(struct dk_image *img, const struct hdr_save *save, uint8_t **newx,
                          uint64_t toff, uint64_t tbytes)
{
    struct qcow2_state *s = img->priv;
    int r = 0;
    if (save->exts != s->exts)
        free(save->exts);
    s->v3 = true;
    for (uint32_t i = 0; i < s->nb_snaps; i++) {
        if (!newx[i])
            continue;
        free(s->snaps[i].extra);
        s->snaps[i].extra = newx[i];
        s->snaps[i].extra_size = SNAP_EXTRA_V3;
        newx[i] = NULL;
    }
    if (toff) {
        r = qcow2_update_refcount(img, save->hdr.snapshots_offset, s->snap_table_bytes, -1);
        s->snap_table_bytes = tbytes;
    }
    return r == 0 ? qcow2_flush_all(img, true) : r;
}

int qcow2_upgrade(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    if (s->v3)
        return 0;
    uint8_t **newx = calloc(s->nb_snaps ? s->nb_snaps : 1, sizeof(*newx));
    uint64_t toff = 0, tbytes = 0;
    int r = newx ? qcow2_upgrade_check(img) : dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    qcow2_amend_progress(img, 0, 2);
    if (r == 0)
        r = qcow2_flush_all(img, true);
    if (r == 0)
        r = upgrade_snaptable(img, newx, &toff, &tbytes);
    qcow2_amend_progress(img, 1, 2);
    struct hdr_save save = { s->hdr, s->hdr_tail, s->exts, s->n_exts };
    if (r == 0 && wants_feature_table(s))
        r = add_feature_table(img);
    if (r == 0) {
        s->hdr.version = 3;
        s->hdr.incompatible = s->hdr.compatible = s->hdr.autoclear = 0;
        s->hdr.refcount_order = 4;
        s->hdr.compression_type = QCOW2_COMPRESS_ZLIB;
        if (toff)
            s->hdr.snapshots_offset = toff;
        r = write_version(img, &save, QCOW2_HDR_LEN_QEMU);
    }
    if (r < 0)
        upgrade_rollback(img, &save, toff, tbytes);
    else
        r = upgrade_commit(img, &save, newx, toff, tbytes);
    for (uint32_t i = 0; newx && i < s->nb_snaps; i++)
        free(newx[i]);
    free(newx);
    return r;
}

/* ---------------------------------------------------------- downgrade */

int qcow2_downgrade_check(struct dk_image *img, uint32_t order, uint64_t size)
{
    struct qcow2_state *s = img->priv;
    if (order != 4)
        return dk_set_error(img, -ENOTSUP, "compat=0.10 requires refcount_bits=16");
    uint64_t bad = s->hdr.incompatible & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_COMPRESSION);
    if (bad)
        return dk_set_error(img, -ENOTSUP, "Cannot downgrade an image with incompatible "
                            "features 0x%llx set", (unsigned long long)bad);
    for (uint32_t i = 0; i < s->nb_snaps; i++)
        if (s->snaps[i].vm_state_size > UINT32_MAX ||
            (s->snaps[i].disk_size != UINT64_MAX && s->snaps[i].disk_size != size))
            return dk_set_error(img, -ENOTSUP, "Internal snapshots prevent downgrade of image");
    struct compat x;
    int r = compat_init(img, &x);
    if (r == 0)
        r = walk(&x, scan_table);
    if (r == 0 && x.n_compressed && s->hdr.compression_type != QCOW2_COMPRESS_ZLIB)
        r = dk_set_error(img, -ENOTSUP, "Cannot downgrade an image with zstd compression "
                         "type and existing compressed clusters");
    if (r == 0 && x.n_zero && !qcow2_crypt_has_key(s))
        r = dk_set_error(img, -EACCES, "qcow2: compat=0.10 must write zeros into the "
                         "encrypted image's zero clusters: give its passphrase");
    compat_free(&x);
    return r;
}

static int drop_feature_table(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    struct qcow2_ext *e = malloc((s->n_exts ? s->n_exts : 1) * sizeof(*e));
    if (!e)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < s->n_exts; i++)
        if (s->exts[i].type != QCOW2_EXT_FEATURES)
            e[n++] = s->exts[i];
    s->exts = e;
    s->n_exts = n;
    return 0;
}

int qcow2_downgrade(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    if (!s->v3)
        return 0;
    int r = qcow2_downgrade_check(img, s->refcount_order, img->size);
    if (r < 0)
        return r;
    /* Step 1: strict refcount ordering from here on. */
    s->lazy = false;
    qcow2_cache_set_dep(s->l2_cache, s->rb_cache);
    struct compat x;
    if ((r = compat_init(img, &x)) == 0) {
        x.total = s->l1_size + 1;
        for (uint32_t i = 0; i < s->nb_snaps; i++)
            x.total += s->snaps[i].l1_size;
        r = walk(&x, expand_table);
    }
    if (r == 0)
        r = qcow2_flush_all(img, true);
    compat_free(&x);
    if (r < 0)
        return r;
    /* Step 3. */
    struct hdr_save save = { s->hdr, s->hdr_tail, s->exts, s->n_exts };
    if ((r = drop_feature_table(img)) < 0)
        return r;
    s->hdr.version = 2;
    s->hdr.incompatible = s->hdr.compatible = s->hdr.autoclear = 0;
    s->hdr.refcount_order = 4;
    s->hdr.compression_type = QCOW2_COMPRESS_ZLIB;
    if ((r = write_version(img, &save, QCOW2_V2_HDR_LEN)) < 0) {
        if (s->exts != save.exts)
            free(s->exts);
        s->exts = save.exts;
        s->n_exts = save.n_exts;
        return r;
    }
    for (size_t i = 0; i < save.n_exts; i++)
        if (save.exts[i].type == QCOW2_EXT_FEATURES)
            free(save.exts[i].data);
    free(save.exts);
    s->v3 = false;
    s->codec = DK_CODEC_DEFLATE_RAW;
    return 0;
}
