/* qcow2-check.c - consistency check and repair (qemu-img check [-r]).
 *
 * Spec: qemu docs/interop/qcow2.txt (refcounts, L1/L2, snapshots, bitmaps,
 * full disk encryption header); the verdicts, counters and report lines
 * follow qemu 7.2's block/qcow2-refcount.c so that `diskkit check` and
 * `qemu-img check` agree on every image.
 *
 * Algorithm:
 *  1. Write back all caches, then work from the file: every reference a
 *     walk of the metadata finds (header cluster, active L1 and its L2
 *     tables and data clusters, each snapshot's L1/L2/data, the snapshot
 *     table, the refcount table and blocks, the LUKS header area, the
 *     bitmap directory, tables and data) is counted in memory.
 *  2. Counted and stored refcounts are compared cluster by cluster:
 *     stored < counted is a corruption, stored > counted a leak.
 *     -r leaks lowers leaked refcounts; -r all also raises too-low ones.
 *  3. OFLAG_COPIED of the active L1/L2 entries must say "refcount == 1"
 *     (corruption; -r all rewrites the flag).
 *  4. With -r all and nothing left to fix, the corrupt bit is cleared.
 * Fragmentation and allocation statistics count the active L1 only, like
 * qemu: a data cluster that does not follow the previous one of the same
 * L2 table on the host is fragmented; compressed clusters always are.
 *
 *  5. -r all on a damaged refcount structure (a refcount table entry with
 *     reserved bits, a block unaligned, outside the image or shared) or on
 *     a used cluster with refcount 0: the structure is rebuilt from the
 *     counted references (rebuild(), as qemu does), crash safe because it
 *     is written past the end of the file and switched to by one header
 *     write; then everything is compared again.
 * Known gaps: qemu first grows the file to cover a refcount block that
 * lies past its end and counts that as one more repaired corruption; here
 * the block is simply dropped by the rebuild, so the "corruptions" figure
 * of such a repair is one lower than qemu's. Unaligned preallocated zero
 * clusters are reported but not rewritten.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* Counting clusters in memory costs 4 bytes each: 64 Mi clusters is a
 * 4 TiB file with 64 KiB clusters and 256 MiB of counters. */
#define QCOW2_CHECK_MAX_CLUSTERS (64ull << 20)
/* Bitmap directory and each bitmap table: qemu caps both at 64 MiB. */
#define QCOW2_CHECK_MAX_BITMAP_DIR (64u << 20)
#define QCOW2_CHECK_MAX_BITMAPS 65535
#define REFT_OFFSET_MASK 0xfffffffffffffe00ull

struct chk {
    struct dk_image *img;
    struct qcow2_state *s;
    struct dk_check_result *res;
    dk_report_fn report;
    void *opaque;
    unsigned fix;
    uint64_t file_size, cs;
    uint64_t file_clusters;   /* clusters the file covers (last may be partial) */
    uint64_t nb_clusters;     /* counters: one more, for a tail just past EOF */
    uint32_t *ref;            /* counted references per host cluster */
    uint64_t *tbl;            /* one L1/L2 table read from the file */
    uint8_t *rb;              /* refcount block cache for stored refcounts */
    uint64_t rb_off;
    bool rebuild;             /* refcount structure damaged: rebuild it */
    bool zero_used;           /* a referenced cluster has refcount 0 */
    bool quiet;               /* recounting: no report lines */
};

static void say(struct chk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct chk *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (c->report && !c->quiet)
        c->report(c->opaque, line);
}

/* Counts one reference to every cluster touching [OFF, OFF+SIZE). */
static void inc_refs(struct chk *c, uint64_t off, uint64_t size)
{
    if (!size)
        return;
    uint64_t end;
    /* The last cluster may be partly past EOF, but not a whole cluster. */
    if (dk_add_overflow(off, size, &end) ||
        (end > c->file_size && end - c->file_size >= c->cs)) {
        say(c, "ERROR: counting reference for region exceeding the end of the file by "
            "one cluster or more: offset 0x%llx size 0x%llx",
            (unsigned long long)off, (unsigned long long)size);
        c->res->corruptions++;
        return;
    }
    uint64_t max = c->s->refcount_max < UINT32_MAX ? c->s->refcount_max : UINT32_MAX;
    for (uint64_t k = off / c->cs; k <= (end - 1) / c->cs; k++) {
        if (c->ref[k] >= max) {
            say(c, "ERROR: overflow cluster offset=0x%llx", (unsigned long long)(k * c->cs));
            c->res->corruptions++;
            continue;
        }
        c->ref[k]++;
    }
}

/* Reads a table of LEN bytes at OFF into c->tbl (zeros past EOF, as qemu's
 * file layer reads them). */
static int read_table(struct chk *c, uint64_t off, uint64_t len)
{
    int r = dk_file_pread_eof0(c->img->file, c->tbl, len, off);
    if (r < 0) {
        c->res->check_errors++;
        return dk_set_error(c->img, r, "qcow2: check: reading table at 0x%llx: %s",
                            (unsigned long long)off, strerror(-r));
    }
    return 0;
}

static void check_l2_entry(struct chk *c, uint64_t e, bool active, uint64_t *next)
{
    struct qcow2_state *s = c->s;
    switch (cl_type(s, e)) {
    case CL_COMPRESSED: {
        if (e & QCOW2_OFLAG_COPIED) {
            uint64_t mask = (1ull << (62 - (s->cluster_bits - 8))) - 1;
            say(c, "ERROR: coffset=0x%llx: copied flag must never be set for compressed "
                "clusters", (unsigned long long)(e & mask));
            e &= ~QCOW2_OFLAG_COPIED;
            c->res->corruptions++;
        }
        uint64_t coff, clen;
        qcow2_compressed_decode(e, s->cluster_bits, &coff, &clen);
        inc_refs(c, coff, clen);
        if (active) {
            c->res->allocated_clusters++;
            c->res->compressed_clusters++;
            c->res->fragmented_clusters++;   /* qemu: compressed ones always are */
        }
        break;
    }
    case CL_ZERO_ALLOC:
    case CL_NORMAL: {
        uint64_t off = e & QCOW2_OFFSET_MASK;
        if (off & (c->cs - 1)) {
            c->res->corruptions++;
            if (cl_type(s, e) == CL_ZERO_ALLOC)
                say(c, "ERROR offset=%llx: Preallocated cluster is not properly aligned; "
                    "L2 entry corrupted.", (unsigned long long)off);
            else
                say(c, "ERROR offset=%llx: Data cluster is not properly aligned; L2 entry "
                    "corrupted.", (unsigned long long)off);
        }
        if (active) {
            c->res->allocated_clusters++;
            if (*next && off != *next)
                c->res->fragmented_clusters++;
            *next = off + c->cs;
        }
        inc_refs(c, off, c->cs);
        break;
    }
    default:
        break;
    }
}

static int check_l1(struct chk *c, uint64_t l1_off, uint32_t l1_size, bool active)
{
    uint64_t bytes = (uint64_t)l1_size * 8;
    inc_refs(c, l1_off, bytes);
    uint64_t *l1 = malloc(bytes ? bytes : 1);
    if (!l1)
        return dk_set_error(c->img, -ENOMEM, "qcow2: out of memory");
    int r = dk_file_pread_eof0(c->img->file, l1, bytes, l1_off);
    if (r < 0) {
        c->res->check_errors++;
        free(l1);
        return dk_set_error(c->img, r, "qcow2: check: reading L1 table: %s", strerror(-r));
    }
    for (uint32_t i = 0; i < l1_size && r == 0; i++) {
        uint64_t e = dk_be64(&l1[i]);
        if (!e)
            continue;
        if (e & QCOW2_L1E_RESERVED) {
            say(c, "ERROR found L1 entry with reserved bits set: %llx", (unsigned long long)e);
            c->res->corruptions++;
        }
        uint64_t l2_off = e & QCOW2_OFFSET_MASK;
        inc_refs(c, l2_off, c->cs);
        if (l2_off & (c->cs - 1)) {
            say(c, "ERROR l2_offset=%llx: Table is not cluster aligned; L1 entry corrupted",
                (unsigned long long)l2_off);
            c->res->corruptions++;
        }
        if ((r = read_table(c, l2_off, c->cs)) < 0)
            break;
        uint64_t next = 0;   /* per L2 table, as qemu counts fragmentation */
        for (uint64_t j = 0; j < c->s->l2_entries; j++)
            check_l2_entry(c, dk_be64(&c->tbl[j]), active, &next);
    }
    free(l1);
    return r;
}

static int check_snapshots(struct chk *c)
{
    struct qcow2_state *s = c->s;
    uint64_t table_bytes = 0;
    for (uint32_t i = 0; i < s->nb_snaps; i++) {
        const struct qcow2_snapshot *sn = &s->snaps[i];
        table_bytes += dk_round_up(40 + (uint64_t)sn->extra_size + strlen(sn->id) +
                                   strlen(sn->name), 8);
        if (sn->l1_offset & (c->cs - 1)) {
            say(c, "ERROR snapshot %s (%s) l1_offset=%#llx: L1 table is not cluster aligned; "
                "snapshot table entry corrupted", sn->id, sn->name,
                (unsigned long long)sn->l1_offset);
            c->res->corruptions++;
            continue;
        }
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
            say(c, "ERROR snapshot %s (%s) l1_size=%#x: L1 table is too large; snapshot "
                "table entry corrupted", sn->id, sn->name, sn->l1_size);
            c->res->corruptions++;
            continue;
        }
        int r = check_l1(c, sn->l1_offset, sn->l1_size, false);
        if (r < 0)
            return r;
    }
    inc_refs(c, s->hdr.snapshots_offset, table_bytes);
    return 0;
}

/* Finds the data of header extension TYPE (NULL if absent). */
static const struct qcow2_ext *find_ext(const struct qcow2_state *s, uint32_t type)
{
    for (size_t i = 0; i < s->n_exts; i++)
        if (s->exts[i].type == type)
            return &s->exts[i];
    return NULL;
}

/* Bitmap directory, each bitmap table and its data clusters. */
static int check_bitmaps(struct chk *c)
{
    const struct qcow2_ext *x = find_ext(c->s, QCOW2_EXT_BITMAPS);
    if (!x || x->len < 24)
        return 0;
    uint32_t nb = dk_be32(x->data);
    uint64_t dir_size = dk_be64(x->data + 8), dir_off = dk_be64(x->data + 16);
    if (!nb || dir_size > QCOW2_CHECK_MAX_BITMAP_DIR || nb > QCOW2_CHECK_MAX_BITMAPS)
        return 0;   /* open refuses such images; nothing sane to count */
    inc_refs(c, dir_off, dir_size);
    uint8_t *dir = malloc(dir_size);
    if (!dir)
        return dk_set_error(c->img, -ENOMEM, "qcow2: out of memory");
    int r = dk_file_pread_eof0(c->img->file, dir, dir_size, dir_off);
    for (uint64_t p = 0, i = 0; r == 0 && i < nb && dir_size - p >= 24; i++) {
        uint64_t toff = dk_be64(dir + p);
        uint32_t tsize = dk_be32(dir + p + 8);
        uint64_t elen = dk_round_up(24 + (uint64_t)dk_be32(dir + p + 20) +
                                    dk_be16(dir + p + 18), 8);
        inc_refs(c, toff, (uint64_t)tsize * 8);
        if ((uint64_t)tsize * 8 <= QCOW2_CHECK_MAX_BITMAP_DIR) {
            uint64_t *t = malloc((uint64_t)tsize * 8 + 8);
            if (!t) {
                r = -ENOMEM;
                break;
            }
            r = dk_file_pread_eof0(c->img->file, t, (uint64_t)tsize * 8, toff);
            for (uint32_t k = 0; r == 0 && k < tsize; k++)
                if (dk_be64(&t[k]) & QCOW2_OFFSET_MASK)
                    inc_refs(c, dk_be64(&t[k]) & QCOW2_OFFSET_MASK, c->cs);
            free(t);
        }
        if (elen > dir_size - p)
            break;
        p += elen;
    }
    free(dir);
    if (r < 0)
        c->res->check_errors++;
    return r < 0 ? dk_set_error(c->img, r, "qcow2: check: reading bitmaps: %s", strerror(-r))
                 : 0;
}

static void check_refblocks(struct chk *c)
{
    struct qcow2_state *s = c->s;
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t e = s->reftable[i], off = e & REFT_OFFSET_MASK;
        unsigned long long ii = (unsigned long long)i;
        if (e & QCOW2_REFT_RESERVED) {
            say(c, "ERROR refcount table entry %llu has reserved bits set", ii);
            c->res->corruptions++;
            c->rebuild = true;
        } else if (off & (c->cs - 1)) {
            say(c, "ERROR refcount block %llu is not cluster aligned; refcount table entry "
                "corrupted", ii);
            c->res->corruptions++;
            c->rebuild = true;
        } else if (off / c->cs >= c->file_clusters) {
            say(c, "ERROR refcount block %llu is outside image", ii);
            c->res->corruptions++;
            c->rebuild = true;
        } else if (off) {
            inc_refs(c, off, c->cs);
            if (c->ref[off / c->cs] != 1) {
                say(c, "ERROR refcount block %llu refcount=%u", ii, c->ref[off / c->cs]);
                c->res->corruptions++;
                c->rebuild = true;
            }
        }
    }
}

/* The refcount stored on disk for CLUSTER (caches written back first). */
static int stored_refcount(struct chk *c, uint64_t cluster, uint64_t *rc)
{
    struct qcow2_state *s = c->s;
    uint64_t idx = cluster >> s->rb_bits;
    *rc = 0;
    if (idx >= s->reftable_size || !(s->reftable[idx] & REFT_OFFSET_MASK))
        return 0;
    uint64_t off = s->reftable[idx] & REFT_OFFSET_MASK;
    if (off & (c->cs - 1))
        return -EIO;      /* a block past the end of file reads as zeros */
    if (off != c->rb_off) {
        int r = dk_file_pread_eof0(c->img->file, c->rb, c->cs, off);
        if (r < 0)
            return r;
        c->rb_off = off;
    }
    *rc = qcow2_rc_get_entry(c->rb, s->refcount_order, cluster & ((1ull << s->rb_bits) - 1));
    return 0;
}

/* Compares counted with stored refcounts (qemu's compare_refcounts), in
 * cluster order so the report lines come out as qemu prints them. With FIX,
 * too-low refcounts are raised here (-r all); leaks are only counted, and
 * lowered afterwards by fix_leaks, so no allocation made while repairing
 * can land on a cluster whose refcount is still too low. A used cluster
 * with refcount 0 is what makes qemu rebuild the refcount structure. */
static void compare(struct chk *c, unsigned fix, uint64_t *highest)
{
    /* Clusters past EOF count only when referenced (qemu grows its array
     * then); a refcount there with no reference is not a leak to qemu. */
    uint64_t n = c->ref[c->file_clusters] ? c->nb_clusters : c->file_clusters;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t st, real = c->ref[i];
        int r = stored_refcount(c, i, &st);
        if (r < 0) {
            say(c, "Can't get refcount for cluster %llu: %s", (unsigned long long)i,
                strerror(-r));
            c->res->check_errors++;
            continue;
        }
        if (st || real)
            *highest = i;
        if (st == real)
            continue;
        if (st == 0)
            c->zero_used = true;
        bool fixing = st > real ? (fix & DK_FIX_LEAKS) : (fix & DK_FIX_ERRORS);
        say(c, "%s cluster %llu refcount=%llu reference=%llu",
            fixing ? "Repairing" : st < real ? "ERROR" : "Leaked", (unsigned long long)i,
            (unsigned long long)st, (unsigned long long)real);
        if (fixing && st > real) {
            c->res->leaks_fixed++;
            continue;
        }
        if (fixing && qcow2_update_refcount(c->img, i * c->cs, c->cs,
                                            (int64_t)(real - st)) == 0) {
            c->res->corruptions_fixed++;
            c->rb_off = UINT64_MAX;    /* our copy of the block is stale now */
            continue;
        }
        if (st < real)
            c->res->corruptions++;
        else
            c->res->leaks++;
    }
}

/* Lowers the refcounts of leaked clusters (second pass of -r leaks). */
static int fix_leaks(struct chk *c)
{
    int r = qcow2_flush_all(c->img, false);
    c->rb_off = UINT64_MAX;
    for (uint64_t i = 0; r == 0 && i < c->file_clusters; i++) {
        uint64_t st;
        if (stored_refcount(c, i, &st) < 0 || st <= c->ref[i])
            continue;
        r = qcow2_update_refcount(c->img, i * c->cs, c->cs, -(int64_t)(st - c->ref[i]));
        c->rb_off = UINT64_MAX;
    }
    if (r < 0) {
        c->res->check_errors++;
        return r;
    }
    r = qcow2_flush_all(c->img, false);
    c->rb_off = UINT64_MAX;
    return r;
}

/* OFLAG_COPIED of one active L2 table; rewrites it when repairing. */
static int check_copied_l2(struct chk *c, uint64_t l2_off, bool repair)
{
    struct qcow2_state *s = c->s;
    int r = read_table(c, l2_off, c->cs);
    if (r < 0)
        return r;
    uint64_t dirty = 0;
    for (uint64_t j = 0; j < s->l2_entries; j++) {
        uint64_t e = dk_be64(&c->tbl[j]), rc;
        enum cl_type t = cl_type(s, e);
        if (t != CL_NORMAL && t != CL_ZERO_ALLOC)
            continue;
        if (stored_refcount(c, (e & QCOW2_OFFSET_MASK) / c->cs, &rc) < 0)
            continue;
        if ((rc == 1) == !!(e & QCOW2_OFLAG_COPIED))
            continue;
        c->res->corruptions++;
        say(c, "%s OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu",
            repair ? "Repairing" : "ERROR", (unsigned long long)e, (unsigned long long)rc);
        if (repair) {
            dk_put_be64(&c->tbl[j], rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED);
            dirty++;
        }
    }
    if (!dirty || (l2_off & (c->cs - 1)) || l2_off / c->cs >= c->file_clusters)
        return 0;
    if (qcow2_check_overlap(c->img, l2_off, c->cs, QCOW2_OL_ALL & ~QCOW2_OL_L2) < 0) {
        c->res->check_errors++;
        return -EIO;
    }
    qcow2_cache_drop(s->l2_cache, l2_off);
    r = dk_file_pwrite(c->img->file, c->tbl, c->cs, l2_off);
    if (r < 0) {
        c->res->check_errors++;
        return dk_set_error(c->img, r, "qcow2: check: writing L2 table: %s", strerror(-r));
    }
    c->res->corruptions -= (int64_t)dirty;
    c->res->corruptions_fixed += (int64_t)dirty;
    return 0;
}

/* qemu's check_oflag_copied over the active L1 table. */
static int check_copied(struct chk *c)
{
    struct qcow2_state *s = c->s;
    /* qemu: with -r leaks only when everything else is consistent, since
     * the flags follow the refcounts repaired just before. */
    bool repair = (c->fix & DK_FIX_ERRORS) ||
                  ((c->fix & DK_FIX_LEAKS) && !c->res->check_errors &&
                   !c->res->corruptions && !c->res->leaks);
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = s->l1[i], l2_off = e & QCOW2_OFFSET_MASK, rc;
        if (!l2_off || stored_refcount(c, l2_off / c->cs, &rc) < 0)
            continue;
        if ((rc == 1) != !!(e & QCOW2_OFLAG_COPIED)) {
            c->res->corruptions++;
            say(c, "%s OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%llx refcount=%llu",
                repair ? "Repairing" : "ERROR", i, (unsigned long long)e,
                (unsigned long long)rc);
            if (repair) {
                uint8_t be[8];
                s->l1[i] = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
                dk_put_be64(be, s->l1[i]);
                int r = dk_file_pwrite(c->img->file, be, 8, s->l1_offset + 8ull * i);
                if (r < 0) {
                    c->res->check_errors++;
                    return dk_set_error(c->img, r, "qcow2: check: writing L1: %s",
                                        strerror(-r));
                }
                c->res->corruptions--;
                c->res->corruptions_fixed++;
            }
        }
        int r = check_copied_l2(c, l2_off, repair);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Step 1: counts every reference the metadata holds; the refcount table
 * and blocks themselves only with REFCOUNTS (a rebuild replaces them). */
static int count_references(struct chk *c, bool refcounts)
{
    struct qcow2_state *s = c->s;
    inc_refs(c, 0, c->cs);                                   /* header */
    int r = check_l1(c, s->l1_offset, s->l1_size, true);
    if (r == 0)
        r = check_snapshots(c);
    if (r < 0)
        return r;
    if (refcounts)
        inc_refs(c, s->hdr.refcount_table_offset,
                 (uint64_t)s->hdr.refcount_table_clusters * c->cs);
    const struct qcow2_ext *x = find_ext(s, QCOW2_EXT_CRYPTO);
    if (x && x->len >= 16)
        inc_refs(c, dk_be64(x->data), dk_be64(x->data + 8));
    if ((r = check_bitmaps(c)) < 0)
        return r;
    if (refcounts)
        check_refblocks(c);
    return 0;
}

/* Counts again from scratch, without report lines; the counters in c->res
 * are left as they were. */
static int recount(struct chk *c, bool refcounts)
{
    struct dk_check_result saved = *c->res;
    memset(c->ref, 0, c->nb_clusters * sizeof(*c->ref));
    c->quiet = true;
    int r = count_references(c, refcounts);
    c->quiet = false;
    *c->res = saved;
    return r;
}

/* -r all on a damaged refcount structure (qemu's rebuild): a new table and
 * blocks are written past the end of the file from the references counted
 * without the old ones, and one header write switches to them
 * (qcow2_refcount_rebuild). What the first comparison found counts as
 * repaired; a second comparison against the new structure must then come
 * out clean, and whatever it still finds is reported as usual. */
static int rebuild(struct chk *c, uint64_t *highest)
{
    say(c, "Rebuilding refcount structure");
    int r = recount(c, false);
    if (r == 0)
        r = qcow2_refcount_rebuild(c->img, c->ref, c->nb_clusters);
    if (r < 0) {
        c->res->check_errors++;
        return r;
    }
    c->res->corruptions_fixed += c->res->corruptions;
    c->res->leaks_fixed += c->res->leaks;
    c->res->corruptions = c->res->leaks = 0;
    c->rebuild = c->zero_used = false;
    c->rb_off = UINT64_MAX;
    /* The file grew: the new structure lies past the old end. */
    uint64_t size;
    if ((r = dk_file_size(c->img->file, &size)) < 0)
        return dk_set_error(c->img, r, "qcow2: check: %s", strerror(-r));
    uint64_t clusters = dk_div_round_up(size, c->cs);
    uint32_t *ref = realloc(c->ref, (clusters + 1) * sizeof(*ref));
    if (!ref)
        return dk_set_error(c->img, -ENOMEM, "qcow2: out of memory");
    c->ref = ref;
    c->file_size = size;
    c->file_clusters = clusters;
    c->nb_clusters = clusters + 1;
    if ((r = recount(c, true)) < 0)
        return r;
    struct dk_check_result before = *c->res;
    *highest = 0;
    compare(c, c->fix, highest);
    if (c->res->leaks_fixed > before.leaks_fixed && (r = fix_leaks(c)) < 0)
        return r;
    return qcow2_flush_all(c->img, false);
}

static int run(struct chk *c)
{
    struct qcow2_state *s = c->s;
    int r = count_references(c, true);
    if (r < 0)
        return r;
    uint64_t highest = 0;
    /* As qemu: a first comparison only reports; repairs run in a second
     * one, unless the refcount structure would need a rebuild, which only
     * -r all may attempt. */
    struct dk_check_result before = *c->res;
    compare(c, 0, &highest);
    if (!c->fix || (!c->res->leaks && !c->res->corruptions))
        goto copied;
    if ((c->rebuild || c->zero_used) && !(c->fix & DK_FIX_ERRORS)) {
        say(c, "ERROR need to rebuild refcount structures");
        c->res->check_errors++;
        return dk_set_error(c->img, -EIO, "qcow2: check: the refcount structure needs a "
                            "rebuild (use -r all)");
    }
    if (c->rebuild || c->zero_used) {
        if ((r = rebuild(c, &highest)) < 0)
            return r;
        goto copied;
    }
    /* Repairs may allocate refcount blocks: only past the end of the file. */
    if (c->fix & DK_FIX_ERRORS)
        s->free_index = DK_MAX(s->free_index, c->file_clusters);
    *c->res = before;
    compare(c, c->fix, &highest);
    if (c->res->leaks_fixed && (r = fix_leaks(c)) < 0)
        return r;
    if ((r = qcow2_flush_all(c->img, false)) < 0)
        return r;
copied:
    c->rb_off = UINT64_MAX;
    if ((r = check_copied(c)) < 0)
        return r;
    c->res->image_end_offset = (highest + 1) * c->cs;
    if ((c->fix & DK_FIX_ERRORS) && !c->res->corruptions && !c->res->check_errors &&
        (s->hdr.incompatible & QCOW2_INCOMPAT_CORRUPT)) {
        if ((r = qcow2_set_incompat(c->img, QCOW2_INCOMPAT_CORRUPT, false)) < 0)
            return r;
        c->img->corrupt = false;
    }
    return c->fix ? qcow2_flush_all(c->img, true) : 0;
}

int qcow2_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
                dk_report_fn report, void *opaque)
{
    struct qcow2_state *s = img->priv;
    struct chk c = { .img = img, .s = s, .res = res, .report = report, .opaque = opaque,
                     .fix = fix, .cs = s->cluster_size, .rb_off = UINT64_MAX };
    int r = img->read_only ? 0 : qcow2_flush_all(img, false);
    if (r < 0)
        return r;
    if ((r = dk_file_size(img->file, &c.file_size)) < 0)
        return dk_set_error(img, r, "qcow2: check: %s", strerror(-r));
    c.file_clusters = dk_div_round_up(c.file_size, c.cs);
    if (c.file_clusters >= QCOW2_CHECK_MAX_CLUSTERS)
        return dk_set_error(img, -EFBIG, "qcow2: check: the file has more than %llu clusters",
                            (unsigned long long)QCOW2_CHECK_MAX_CLUSTERS);
    c.nb_clusters = c.file_clusters + 1;
    c.ref = calloc(c.nb_clusters, sizeof(*c.ref));
    c.tbl = malloc(c.cs);
    c.rb = malloc(c.cs);
    if (!c.ref || !c.tbl || !c.rb)
        r = dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    else
        r = run(&c);
    res->total_clusters = dk_div_round_up(img->size, c.cs);
    free(c.ref);
    free(c.tbl);
    free(c.rb);
    return r;
}
