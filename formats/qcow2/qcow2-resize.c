/* qcow2-resize.c - resizing (L1 growth and relocation, preallocation of
 * the new area, shrinking) and size measurement (qemu-img measure).
 *
 * Spec: qcow2.txt "Header" (size, l1_size, l1_table_offset). The L1 table
 * grows to exactly the entries needed (as qemu's truncate): a new table is
 * written and synced before the header points to it; the old one is freed
 * after. Measure follows qemu's qcow2_calc_prealloc_size and
 * qcow2_refcount_metadata_size (a fixed point of refcount metadata).
 * Resizing a v3 image with internal snapshots works as in qemu (each
 * snapshot keeps its own disk size and references); v2 images with
 * snapshots are refused, as qemu does (no disk size in their entries).
 * Known gaps: none known against qemu-img 7.2 for off/metadata/falloc/full.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

static uint64_t l1_entries_for(const struct qcow2_state *s, uint64_t size)
{
    return dk_div_round_up(size, s->cluster_size << s->l2_bits);
}

static int grow_l1(struct dk_image *img, uint64_t n)
{
    struct qcow2_state *s = img->priv;
    if (n > QCOW2_MAX_L1_BYTES / 8)
        return dk_set_error(img, -EFBIG, "qcow2: L1 table would exceed %u MiB (image too "
                            "large for this cluster size)", QCOW2_MAX_L1_BYTES >> 20);
    uint64_t bytes = n * 8, off;
    uint64_t *nl = calloc(n, 8);
    uint8_t *raw = calloc(1, bytes);
    int r = nl && raw ? 0 : dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (r >= 0)
        r = qcow2_alloc_clusters(img, dk_div_round_up(bytes, s->cluster_size), &off);
    if (r >= 0) {
        memcpy(nl, s->l1, (size_t)s->l1_size * 8);
        for (uint64_t i = 0; i < n; i++)
            dk_put_be64(raw + 8 * i, nl[i]);
        if ((r = qcow2_flush_all(img, false)) >= 0 &&
            (r = dk_file_pwrite(img->file, raw, bytes, off)) < 0)
            dk_set_error(img, r, "qcow2: writing L1 table: %s", strerror(-r));
    }
    if (r >= 0 && (r = dk_file_flush(img->file)) < 0)
        dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    uint8_t hb[12];
    dk_put_be32(hb, (uint32_t)n);
    dk_put_be64(hb + 4, off);
    if (r >= 0 && (r = dk_file_pwrite(img->file, hb, 12, 36)) < 0)
        dk_set_error(img, r, "qcow2: writing header: %s", strerror(-r));
    free(raw);
    if (r < 0) {
        free(nl);
        return r;
    }
    uint64_t old_off = s->l1_offset, old_bytes = (uint64_t)s->l1_size * 8;
    free(s->l1);
    s->l1 = nl;
    s->l1_size = s->hdr.l1_size = (uint32_t)n;
    s->l1_offset = s->hdr.l1_table_offset = off;
    return old_bytes ? qcow2_free_later(img, old_off, dk_round_up(old_bytes, s->cluster_size))
                     : 0;
}

static int write_size(struct dk_image *img, uint64_t size)
{
    struct qcow2_state *s = img->priv;
    uint8_t b[8];
    dk_put_be64(b, size);
    int r = dk_file_pwrite(img->file, b, 8, 24);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: writing header: %s", strerror(-r));
    s->hdr.size = img->size = size;
    return 0;
}

/* Highest cluster with a non-zero refcount, plus one. */
static int used_end(struct dk_image *img, uint64_t *end)
{
    struct qcow2_state *s = img->priv;
    for (uint64_t c = s->alloc_end; c > 0; c--) {
        uint64_t rc;
        int r = qcow2_get_refcount(img, c - 1, &rc);
        if (r < 0)
            return r;
        if (rc) {
            *end = c;
            return 0;
        }
    }
    *end = 0;
    return 0;
}

/* Drops every reference the active L2 table at L1 index I holds (its data
 * and compressed clusters, then the table itself) without copying it: a
 * table shared with snapshots keeps their references. The L1 entry is
 * cleared first, so any flush writes it before a decrement is applied. */
static int drop_l2_table(struct dk_image *img, uint64_t i)
{
    struct qcow2_state *s = img->priv;
    uint64_t l1e = s->l1[i], *l2;
    if (!(l1e & QCOW2_OFFSET_MASK))
        return 0;
    int r = qcow2_l2_get(img, i << (s->cluster_bits + s->l2_bits), false, &l2);
    if (r < 0)
        return r;
    s->l1[i] = 0;
    qcow2_l1_mark_dirty(s, i);
    for (uint64_t k = 0; r >= 0 && k < s->l2_entries; k++)
        r = qcow2_free_l2_entry(img, l2_entry(l2, k));
    qcow2_l2_put(img, l2);
    return r < 0 ? r : qcow2_free_later(img, l1e & QCOW2_OFFSET_MASK, s->cluster_size);
}

/* Shrinks like qemu's qcow2_co_truncate: the clusters past the new end
 * are dropped from the active tables (the table straddling the end is
 * copied first when snapshots share it), the L1 keeps its length with the
 * tail entries zeroed, unused refcount blocks go, and the file is cut
 * after the last cluster with a non-zero refcount. Order on disk: L2
 * tables, L1 entries, sync, refcount decrements, sync, then the size; a
 * crash leaks clusters at worst. Snapshots keep their own references. */
static int shrink(struct dk_image *img, uint64_t size)
{
    struct qcow2_state *s = img->priv;
    uint64_t start = dk_round_up(size, s->cluster_size);
    uint64_t keep = l1_entries_for(s, size);
    uint64_t tail_end = DK_MIN(keep * (s->cluster_size << s->l2_bits), img->size);
    int r = start < tail_end ? qcow2_discard(img, start, tail_end - start) : 0;
    for (uint64_t i = keep; r >= 0 && i < s->l1_size; i++)
        r = drop_l2_table(img, i);
    if (r >= 0)
        r = qcow2_flush_all(img, true);
    if (r >= 0)
        r = qcow2_shrink_reftable(img);
    if (r >= 0)
        r = write_size(img, size);
    if (r >= 0)
        r = qcow2_flush_all(img, true);
    uint64_t end = 0;
    if (r >= 0 && (r = used_end(img, &end)) >= 0 && end < s->alloc_end) {
        if ((r = dk_file_truncate(img->file, end << s->cluster_bits)) < 0)
            return dk_set_error(img, r, "qcow2: truncating file: %s", strerror(-r));
        s->alloc_end = end;
        s->free_index = DK_MIN(s->free_index, end);
    }
    return r;
}

int qcow2_truncate(struct dk_image *img, uint64_t size, const char *prealloc, unsigned flags)
{
    struct qcow2_state *s = img->priv;
    const char *mode = prealloc ? prealloc : "off";
    if (strcmp(mode, "off") && strcmp(mode, "metadata") && strcmp(mode, "falloc") &&
        strcmp(mode, "full"))
        return dk_set_error(img, -EINVAL, "Invalid preallocation mode: '%s'", mode);
    if (size % 512)
        return dk_set_error(img, -EINVAL, "qcow2: size must be a multiple of 512 bytes");
    /* Preallocated clusters would read as decrypted zeros, i.e. garbage. */
    if (s->encrypted && strcmp(mode, "off"))
        return dk_set_error(img, -ENOTSUP, "qcow2: preallocation=%s is not supported "
                            "with encryption", mode);
    if (s->nb_snaps && s->hdr.version < 3)
        return dk_set_error(img, -ENOTSUP, "qcow2: Can't resize a v2 image which has snapshots");
    if (size < img->size) {
        if (!(flags & DK_RESIZE_SHRINK))
            return dk_set_error(img, -EPERM, "Use the --shrink option to perform a shrink "
                                "operation.");
        return shrink(img, size);
    }
    uint64_t need = l1_entries_for(s, size), old = img->size;
    int r = need > s->l1_size ? grow_l1(img, need) : 0;
    if (r >= 0 && strcmp(mode, "off") && size > old)
        r = qcow2_preallocate(img, old, size - old, mode);
    if (r >= 0)
        r = qcow2_flush_all(img, false);
    if (r >= 0)
        r = write_size(img, size);
    if (r >= 0)
        r = qcow2_flush_all(img, true);
    return r;
}

/* ------------------------------------------------------------- measure */

static uint64_t refcount_metadata_size(uint64_t clusters, uint64_t cs, uint32_t order)
{
    uint64_t per_table = cs / 8, per_block = cs * 8 >> order;
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = dk_div_round_up(clusters + table + blocks, per_block);
        table = dk_div_round_up(blocks, per_table);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
}

static uint64_t prealloc_size(uint64_t size, uint64_t cs, uint32_t order)
{
    uint64_t total = dk_round_up(size, cs), meta = cs;
    uint64_t nl2e = dk_round_up(total / cs, cs / 8);
    meta += nl2e * 8;
    uint64_t nl1e = dk_round_up(nl2e * 8 / cs, cs / 8);
    meta += nl1e * 8;
    meta += refcount_metadata_size((meta + total) / cs, cs, order);
    return meta + total;
}

static int parse_measure_opts(const struct dk_opts *o, uint64_t *cs, uint32_t *order,
                              const char **prealloc, struct dk_error *err)
{
    const char *v = dk_opts_get(o, "cluster_size");
    *cs = 65536;
    if (v && (dk_parse_size(v, cs) < 0 || !dk_is_pow2(*cs) || *cs < 512 || *cs > (2u << 20)))
        return dk_error_set(err, -EINVAL,
                            "Cluster size must be a power of two between 512 and 2048k");
    uint64_t rb = (v = dk_opts_get(o, "refcount_bits")) ? strtoull(v, NULL, 0) : 16;
    if (!dk_is_pow2(rb) || rb > 64)
        return dk_error_set(err, -EINVAL, "Refcount width must be a power of two and may "
                            "not exceed 64 bits");
    *order = (uint32_t)__builtin_ctzll(rb);
    *prealloc = dk_opts_get(o, "preallocation");
    if (!*prealloc)
        *prealloc = "off";
    if (strcmp(*prealloc, "off") && strcmp(*prealloc, "metadata") &&
        strcmp(*prealloc, "falloc") && strcmp(*prealloc, "full"))
        return dk_error_set(err, -EINVAL, "Invalid preallocation mode: '%s'", *prealloc);
    if ((v = dk_opts_get(o, "extended_l2")) && dk_parse_bool(v) == 1)
        return dk_error_set(err, -ENOTSUP, "qcow2: extended_l2 is not supported by diskkit");
    return 0;
}

int qcow2_measure(const struct dk_opts *opts, uint64_t size, struct dk_image *src,
                  struct dk_measure *out, struct dk_error *err)
{
    uint64_t cs = 0;
    uint32_t order = 4;
    const char *prealloc = "off";
    int r = parse_measure_opts(opts, &cs, &order, &prealloc, err);
    if (r < 0)
        return r;
    uint64_t vsize = dk_round_up(src ? dk_image_size(src) : size, cs);
    /* Data clusters needed: none for an empty image of SIZE, every one
     * when a backing file may differ from the source (qemu's rule). */
    uint64_t required = src ? vsize : 0;
    if (src && !dk_opts_get(opts, "backing_file")) {
        required = 0;
        for (uint64_t off = 0; off < dk_image_size(src);) {
            struct dk_extent e;
            if ((r = dk_block_status(src, off, dk_image_size(src) - off, 0, &e)) < 0)
                return dk_error_set(err, r, "%s", dk_image_errmsg(src));
            uint64_t n = e.length;
            if (!(e.flags & DK_BS_ZERO) && (e.flags & DK_BS_DATA)) {
                n = dk_round_up(off + n, cs) - off;
                required += off % cs + n;
            }
            off += n;
        }
    }
    if (!strcmp(prealloc, "falloc") || !strcmp(prealloc, "full"))
        required = vsize;
    uint64_t luks;   /* LUKS header + key material (qcow2-crypt.c) */
    if ((r = qcow2_crypt_measure(opts, cs, &luks, err)) < 0)
        return r;
    out->fully_allocated = prealloc_size(vsize, cs, order) + luks;
    out->required = out->fully_allocated - vsize + required;
    out->bitmaps = 0;
    return 0;
}
