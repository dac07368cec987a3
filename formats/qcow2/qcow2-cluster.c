/* qcow2-cluster.c - guest-to-host mapping: L1/L2 tables, block status,
 * reads (plain and compressed), allocating writes with copy-on-write,
 * zeroing and discarding.
 *
 * Spec: qcow2.txt "Cluster mapping", "Compressed Clusters Descriptor".
 *
 * Invariants:
 *  1. Every host offset taken from an L1/L2 entry is checked (alignment,
 *     below the end of the allocated area) before use; a bad one marks the
 *     image corrupt (qcow2_signal_corruption) and the request fails.
 *  2. A write allocates all clusters of a run in one contiguous host range
 *     and issues at most three pwrites (partial head, middle, partial
 *     tail); block status merges clusters with the same status and
 *     contiguous host offsets, also across L2 tables.
 *  3. Allocation order: refcounts raised (qcow2_alloc_clusters), data
 *     written, then the L2 entry changed; old references are dropped
 *     through qcow2_free_later (applied after the L2 write-back).
 *  4. A new or copied L2 table is on disk before the L1 entry points to it.
 * Known gaps: extended L2 entries (subclusters) are not supported.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"


void qcow2_compressed_decode(uint64_t e, uint32_t cluster_bits, uint64_t *host_off,
                             uint64_t *nb_bytes)
{
    uint32_t x = 62 - (cluster_bits - 8);
    *host_off = e & ((1ull << x) - 1);
    uint64_t nsec = ((e & ~QCOW2_OFLAG_COPIED & ~QCOW2_OFLAG_COMPRESSED) >> x) + 1;
    *nb_bytes = nsec * 512 - (*host_off & 511);
}

uint64_t qcow2_compressed_encode(uint64_t host_off, uint64_t nb_bytes, uint32_t cluster_bits)
{
    uint32_t x = 62 - (cluster_bits - 8);
    uint64_t extra = ((host_off + nb_bytes - 1) >> 9) - (host_off >> 9);
    return QCOW2_OFLAG_COMPRESSED | (extra << x) | host_off;
}

/* Validates the host offset of a normal or zero-allocated entry. */
static int check_host(struct dk_image *img, uint64_t e, uint64_t guest)
{
    struct qcow2_state *s = img->priv;
    uint64_t h = e & QCOW2_OFFSET_MASK;
    if (!dk_is_aligned(h, s->cluster_size))
        return qcow2_signal_corruption(img, "qcow2: L2 entry for guest offset 0x%llx points "
            "to unaligned host offset 0x%llx", (unsigned long long)guest,
            (unsigned long long)h);
    if (h >> s->cluster_bits >= s->alloc_end || h < s->cluster_size)
        return qcow2_signal_corruption(img, "qcow2: data cluster at 0x%llx lies beyond end "
            "of file", (unsigned long long)h);
    return 0;
}

/* ------------------------------------------------------------ L2 access */

static int l2_read(struct dk_image *img, uint64_t l1e, uint64_t **l2)
{
    struct qcow2_state *s = img->priv;
    uint64_t off = l1e & QCOW2_OFFSET_MASK;
    if (!dk_is_aligned(off, s->cluster_size))
        return qcow2_signal_corruption(img, "qcow2: L2 table offset 0x%llx is not cluster "
                                       "aligned", (unsigned long long)off);
    if (off >> s->cluster_bits >= s->alloc_end || off < s->cluster_size)
        return qcow2_signal_corruption(img, "qcow2: L2 table at 0x%llx lies beyond end of "
                                       "file", (unsigned long long)off);
    return qcow2_cache_get(img, s->l2_cache, off, false, (void **)l2);
}

/* Makes L1 entry I point to a private (COPIED) L2 table: new, or a copy
 * of a shared one (whose own refcount then drops by one). */
static int l2_allocate(struct dk_image *img, uint64_t i, uint64_t **out)
{
    struct qcow2_state *s = img->priv;
    uint64_t old = s->l1[i] & QCOW2_OFFSET_MASK, noff, *tbl, *src = NULL;
    int r = qcow2_alloc_clusters(img, 1, &noff);
    if (r < 0)
        return r;
    if (old && (r = l2_read(img, s->l1[i], &src)) < 0)
        return r;
    if ((r = qcow2_cache_get(img, s->l2_cache, noff, true, (void **)&tbl)) < 0) {
        if (src)
            qcow2_cache_put(s->l2_cache, src);
        return r;
    }
    /* Data clusters are counted once per L1 table reaching them (qemu's
     * snapshot semantics), so a copy of a shared table changes no data
     * refcount; they stay >= 2, hence COPIED is cleared. */
    for (uint64_t k = 0; src && k < s->l2_entries; k++)
        l2_set(tbl, k, l2_entry(src, k) & ~QCOW2_OFLAG_COPIED);
    if (src)
        qcow2_cache_put(s->l2_cache, src);
    if (r < 0) {
        qcow2_cache_put(s->l2_cache, tbl);
        return r;
    }
    /* The table is written by the cache (after the refcounts), the L1
     * entry by qcow2_flush_all after the L2 tables (invariant 4). */
    qcow2_cache_mark_dirty(s->l2_cache, tbl);
    s->l1[i] = noff | QCOW2_OFLAG_COPIED;
    qcow2_l1_mark_dirty(s, i);
    if ((r = qcow2_free_later(img, old, old ? s->cluster_size : 0)) < 0) {
        qcow2_cache_put(s->l2_cache, tbl);
        return r;
    }
    *out = tbl;
    return 0;
}

void qcow2_l1_mark_dirty(struct qcow2_state *s, uint64_t i)
{
    if (!s->l1_dirty_hi) {
        s->l1_dirty_lo = i;
        s->l1_dirty_hi = i + 1;
    } else {
        s->l1_dirty_lo = DK_MIN(s->l1_dirty_lo, i);
        s->l1_dirty_hi = DK_MAX(s->l1_dirty_hi, i + 1);
    }
}

int qcow2_l1_write_back(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    if (!s->l1_dirty_hi)
        return 0;
    uint64_t lo = s->l1_dirty_lo, n = s->l1_dirty_hi - lo;
    uint64_t off = s->l1_offset + 8 * lo;
    int r = qcow2_check_overlap(img, off, 8 * n, QCOW2_OL_ALL & ~QCOW2_OL_L1);
    if (r < 0)
        return r;
    uint8_t *b = malloc(8 * n);
    if (!b)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    for (uint64_t k = 0; k < n; k++)
        dk_put_be64(b + 8 * k, s->l1[lo + k]);
    r = dk_file_pwrite(img->file, b, 8 * n, off);
    free(b);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: writing L1 table: %s", strerror(-r));
    s->l1_dirty_lo = s->l1_dirty_hi = 0;
    return 0;
}

int qcow2_l2_get(struct dk_image *img, uint64_t off, bool alloc, uint64_t **l2)
{
    struct qcow2_state *s = img->priv;
    uint64_t i = off >> (s->cluster_bits + s->l2_bits);
    *l2 = NULL;
    if (i >= s->l1_size) {
        if (alloc)
            return dk_set_error(img, -EINVAL, "qcow2: guest offset 0x%llx is beyond the L1 "
                                "table", (unsigned long long)off);
        return 0;
    }
    uint64_t e = s->l1[i];
    if (alloc && !(e & QCOW2_OFLAG_COPIED && e & QCOW2_OFFSET_MASK))
        return l2_allocate(img, i, l2);
    if (!(e & QCOW2_OFFSET_MASK))
        return 0;
    return l2_read(img, e, l2);
}

void qcow2_l2_put(struct dk_image *img, uint64_t *l2)
{
    struct qcow2_state *s = img->priv;
    if (l2)
        qcow2_cache_put(s->l2_cache, l2);
}

/* --------------------------------------------------------- block status */

struct bs_run {
    enum cl_type type;
    uint64_t next_host;     /* expected host offset of the next cluster */
};

static unsigned type_flags(const struct qcow2_state *s, enum cl_type t)
{
    unsigned enc = s->encrypted ? DK_BS_ENCRYPTED : 0;
    switch (t) {
    case CL_UNALLOC: return 0;
    case CL_ZERO: return DK_BS_ZERO | DK_BS_ALLOCATED;
    case CL_ZERO_ALLOC: return DK_BS_ZERO | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID;
    case CL_COMPRESSED: return DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_COMPRESSED | enc;
    default: return DK_BS_DATA | DK_BS_ALLOCATED | (enc ? enc : DK_BS_OFFSET_VALID);
    }
}

/* Counts clusters from index K of L2 (NULL = unallocated table) that
 * continue RUN, up to MAX. Returns the count or -errno. */
static int64_t scan_l2(struct dk_image *img, const uint64_t *l2, uint64_t k, uint64_t max,
                       uint64_t guest, struct bs_run *run)
{
    struct qcow2_state *s = img->priv;
    uint64_t n = 0;
    for (; n < max; n++) {
        uint64_t e = l2 ? l2_entry(l2, k + n) : 0;
        enum cl_type t = cl_type(s, e);
        if (t != run->type)
            break;
        if (t == CL_NORMAL || t == CL_ZERO_ALLOC) {
            int r = check_host(img, e, guest + (n << s->cluster_bits));
            if (r < 0)
                return r;
            if ((e & QCOW2_OFFSET_MASK) != run->next_host)
                break;
            run->next_host += s->cluster_size;
        }
    }
    return (int64_t)n;
}

static int l2_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                           struct dk_extent *ext)
{
    struct qcow2_state *s = img->priv;
    uint64_t cs = s->cluster_size, end = off + len, pos = dk_round_down(off, cs);
    struct bs_run run = { 0, 0 };
    uint64_t first_host = 0;
    bool started = false;
    while (pos < end) {
        uint64_t *l2;
        int r = qcow2_l2_get(img, pos, false, &l2);
        if (r < 0)
            return r;
        uint64_t k = (pos >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t max = DK_MIN(s->l2_entries - k, dk_div_round_up(end - pos, cs));
        if (!started) {
            uint64_t e = l2 ? l2_entry(l2, k) : 0;
            run.type = cl_type(s, e);
            run.next_host = first_host = e & QCOW2_OFFSET_MASK;
            started = true;
        }
        int64_t n = scan_l2(img, l2, k, max, pos, &run);
        qcow2_l2_put(img, l2);
        if (n < 0)
            return (int)n;
        pos += (uint64_t)n << s->cluster_bits;
        if ((uint64_t)n < max)
            break;
    }
    if (pos == dk_round_down(off, cs))
        pos += cs;     /* an entry whose check failed was already reported */
    ext->length = DK_MIN(pos, end) - off;
    ext->flags = type_flags(s, run.type);
    if (ext->flags & DK_BS_OFFSET_VALID) {
        ext->host_offset = first_host + (off & (cs - 1));
        ext->host_file = img->filename;
    }
    return 0;
}

/* Whether the image looks preallocated with preallocation=metadata:
 * clearly more clusters are in use by refcount than the host file has
 * allocated blocks for. qemu makes the same test (with the same 10/9
 * margin) to decide when data clusters are worth checking for host holes;
 * doing as it does keeps `map` output identical. */
static int detect_meta_prealloc(struct dk_image *img, bool *yes)
{
    struct qcow2_state *s = img->priv;
    uint64_t fsize, alloc;
    int r = dk_file_size(img->file, &fsize);
    if (r >= 0)
        r = dk_file_allocated(img->file, &alloc);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: %s: cannot stat the image file", img->filename);
    *yes = false;
    if (alloc == 0)     /* a block device or no st_blocks: nothing to learn */
        return 0;
    uint64_t real = alloc >> s->cluster_bits;
    uint64_t threshold = DK_MAX(real * 10 / 9, real + 2);
    uint64_t end = dk_div_round_up(fsize, s->cluster_size), used = 0;
    for (uint64_t i = 0; i < end && used < threshold; i++) {
        uint64_t rc;
        if ((r = qcow2_get_refcount(img, i, &rc)) < 0)
            return r;
        used += rc != 0;
    }
    *yes = used >= threshold;
    return 0;
}

int qcow2_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                       struct dk_extent *ext)
{
    struct qcow2_state *s = img->priv;
    int r = s->extl2 ? qcow2_ext_block_status(img, off, len, ext)
                     : l2_block_status(img, off, len, ext);
    if (r < 0 || ext->flags != (DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID))
        return r;
    if (!s->meta_prealloc_checked) {
        if ((r = detect_meta_prealloc(img, &s->meta_prealloc)) < 0)
            return r;
        s->meta_prealloc_checked = true;
    }
    if (!s->meta_prealloc)
        return 0;
    /* Data in a host hole reads as zeros: say so, split at the hole. */
    bool data;
    uint64_t run;
    if ((r = dk_file_extent(img->file, ext->host_offset, ext->length, &data, &run)) < 0)
        return dk_set_error(img, r, "qcow2: %s: cannot query the host file", img->filename);
    if (run > 0 && run < ext->length)
        ext->length = run;
    if (!data)
        ext->flags |= DK_BS_ZERO;
    return 0;
}

/* ------------------------------------------------------ zero, discard */

enum dealloc_how { DA_DISCARD, DA_ZERO_UNMAP, DA_ZERO_KEEP };

/* Applies HOW to the whole clusters [OFF, OFF+LEN) of one L2 table. */
static int dealloc_in_table(struct dk_image *img, uint64_t off, uint64_t len,
                            enum dealloc_how how)
{
    struct qcow2_state *s = img->priv;
    uint64_t i = off >> (s->cluster_bits + s->l2_bits);
    bool has_backing = img->backing_name && *img->backing_name;
    if (!(s->l1[i] & QCOW2_OFFSET_MASK) && (how == DA_DISCARD || !has_backing))
        return 0;   /* already unallocated and reads as zero (or don't care) */
    uint64_t *l2;
    int r = qcow2_l2_get(img, off, true, &l2);
    if (r < 0)
        return r;
    uint64_t k = (off >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t n = len >> s->cluster_bits;
    for (uint64_t j = k; r >= 0 && j < k + n; j++) {
        uint64_t e = l2_entry(l2, j), ne;
        enum cl_type t = cl_type(s, e);
        if (how == DA_DISCARD || !s->v3)
            ne = 0;
        else if (how == DA_ZERO_KEEP && t == CL_NORMAL && (e & QCOW2_OFLAG_COPIED))
            ne = e | QCOW2_OFLAG_ZERO;
        else if (t == CL_UNALLOC && !has_backing)
            ne = 0;
        else
            ne = QCOW2_OFLAG_ZERO;
        if (ne == e)
            continue;
        l2_set(l2, j, ne);
        if ((ne & QCOW2_OFFSET_MASK) != (e & QCOW2_OFFSET_MASK) || t == CL_COMPRESSED)
            r = qcow2_free_l2_entry(img, e);
    }
    qcow2_cache_mark_dirty(s->l2_cache, l2);
    qcow2_l2_put(img, l2);
    return r;
}

static int dealloc_range(struct dk_image *img, uint64_t off, uint64_t len,
                         enum dealloc_how how)
{
    struct qcow2_state *s = img->priv;
    uint64_t span = s->cluster_size << s->l2_bits;
    while (len) {
        uint64_t n = DK_MIN(len, span - (off & (span - 1)));
        int r = dealloc_in_table(img, off, n, how);
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

static int write_zeros(struct dk_image *img, uint64_t off, uint64_t len)
{
    if (!len)
        return 0;
    void *z = calloc(1, (size_t)len);
    if (!z)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    int r = qcow2_write(img, z, (size_t)len, off);
    free(z);
    return r;
}

int qcow2_zero(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct qcow2_state *s = img->priv;
    uint64_t cs = s->cluster_size, end = off + len;
    bool has_backing = img->backing_name && *img->backing_name;
    if (s->encrypted || (!s->v3 && has_backing))
        return -ENOTSUP;   /* the core writes zeros as data */
    uint64_t a = dk_round_up(off, cs);
    uint64_t b = end == img->size ? dk_round_up(end, cs) : dk_round_down(end, cs);
    if (a >= b)
        return write_zeros(img, off, len);
    int r = write_zeros(img, off, a - off);
    if (r >= 0 && end < b)
        r = 0;
    else if (r >= 0)
        r = write_zeros(img, b, end - b);
    if (r >= 0)
        r = dealloc_range(img, a, b - a,
                          flags & DK_ZERO_MAY_UNMAP ? DA_ZERO_UNMAP : DA_ZERO_KEEP);
    return r;
}

int qcow2_discard(struct dk_image *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->priv;
    uint64_t cs = s->cluster_size, end = off + len;
    uint64_t a = dk_round_up(off, cs);
    uint64_t b = end == img->size ? dk_round_up(end, cs) : dk_round_down(end, cs);
    return a < b ? dealloc_range(img, a, b - a, DA_DISCARD) : 0;
}

/* --------------------------------------------------------- preallocation */

static int prealloc_run(struct dk_image *img, uint64_t *l2, uint64_t k, uint64_t n,
                        const char *mode)
{
    struct qcow2_state *s = img->priv;
    uint64_t host;
    int r = qcow2_alloc_clusters(img, n, &host);
    if (r < 0)
        return r;
    uint64_t bytes = n << s->cluster_bits;
    if (!strcmp(mode, "falloc"))
        r = dk_file_fallocate(img->file, host, bytes);
    else if (!strcmp(mode, "full"))
        r = dk_file_prealloc_full(img->file, host, bytes);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: preallocation: %s", strerror(-r));
    for (uint64_t i = 0; i < n; i++)
        l2_set(l2, k + i, (host + (i << s->cluster_bits)) | QCOW2_OFLAG_COPIED);
    qcow2_cache_mark_dirty(s->l2_cache, l2);
    return 0;
}

int qcow2_preallocate(struct dk_image *img, uint64_t off, uint64_t len, const char *mode)
{
    struct qcow2_state *s = img->priv;
    uint64_t cs = s->cluster_size, span = cs << s->l2_bits;
    uint64_t end = dk_round_up(off + len, cs);
    off = dk_round_down(off, cs);
    while (off < end) {
        uint64_t n = DK_MIN(end - off, span - (off & (span - 1))) >> s->cluster_bits;
        uint64_t *l2, k = (off >> s->cluster_bits) & (s->l2_entries - 1);
        int r = qcow2_l2_get(img, off, true, &l2);
        for (uint64_t j = 0; r >= 0 && j < n;) {
            uint64_t m = 0;
            while (j + m < n && cl_type(s, l2_entry(l2, k + j + m)) <= CL_ZERO)
                m++;
            if (m)
                r = prealloc_run(img, l2, k + j, m, mode);
            j += m ? m : 1;
        }
        qcow2_l2_put(img, l2);
        if (r < 0)
            return r;
        off += n << s->cluster_bits;
    }
    uint64_t fsize;
    int r = dk_file_size(img->file, &fsize);
    if (r >= 0 && fsize < s->alloc_end << s->cluster_bits)
        r = dk_file_truncate(img->file, s->alloc_end << s->cluster_bits);
    return r < 0 ? dk_set_error(img, r, "qcow2: preallocation: %s", strerror(-r)) : 0;
}
