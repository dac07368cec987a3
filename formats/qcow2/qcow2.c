/* qcow2.c - qcow2 header: decode, validate, encode, header extensions,
 * feature bits; driver open/close/probe/flush/info/set_backing and the
 * driver table.
 *
 * Spec: qcow2.txt "Header", "Header extensions", "Feature name table".
 * Validation order (STYLE.md): size, magic, version, decode, range checks
 * against the file size and the named caps of qcow2.h.
 * Known gaps: extended L2 entries (subclusters) and external data files
 * are refused. Encryption lives in qcow2-crypt.c (hooks: open, close).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* ------------------------------------------------------ decode/encode */

int qcow2_header_decode(const uint8_t *b, size_t len, struct qcow2_header *h)
{
    memset(h, 0, sizeof(*h));
    if (len < QCOW2_V2_HDR_LEN)
        return -EINVAL;
    h->magic = dk_be32(b);
    h->version = dk_be32(b + 4);
    h->backing_file_offset = dk_be64(b + 8);
    h->backing_file_size = dk_be32(b + 16);
    h->cluster_bits = dk_be32(b + 20);
    h->size = dk_be64(b + 24);
    h->crypt_method = dk_be32(b + 32);
    h->l1_size = dk_be32(b + 36);
    h->l1_table_offset = dk_be64(b + 40);
    h->refcount_table_offset = dk_be64(b + 48);
    h->refcount_table_clusters = dk_be32(b + 56);
    h->nb_snapshots = dk_be32(b + 60);
    h->snapshots_offset = dk_be64(b + 64);
    h->refcount_order = 4;
    h->header_length = QCOW2_V2_HDR_LEN;
    if (h->version < 3)
        return 0;
    if (len < QCOW2_V3_HDR_LEN)
        return -EINVAL;
    h->incompatible = dk_be64(b + 72);
    h->compatible = dk_be64(b + 80);
    h->autoclear = dk_be64(b + 88);
    h->refcount_order = dk_be32(b + 96);
    h->header_length = dk_be32(b + 100);
    if (h->header_length > 104 && len > 104)
        h->compression_type = b[104];
    return 0;
}

/* Writes the fields we know into BUF (header_length bytes, other bytes of
 * a longer header are left as they are). */
void qcow2_header_encode(const struct qcow2_header *h, uint8_t *b)
{
    dk_put_be32(b, h->magic);
    dk_put_be32(b + 4, h->version);
    dk_put_be64(b + 8, h->backing_file_offset);
    dk_put_be32(b + 16, h->backing_file_size);
    dk_put_be32(b + 20, h->cluster_bits);
    dk_put_be64(b + 24, h->size);
    dk_put_be32(b + 32, h->crypt_method);
    dk_put_be32(b + 36, h->l1_size);
    dk_put_be64(b + 40, h->l1_table_offset);
    dk_put_be64(b + 48, h->refcount_table_offset);
    dk_put_be32(b + 56, h->refcount_table_clusters);
    dk_put_be32(b + 60, h->nb_snapshots);
    dk_put_be64(b + 64, h->snapshots_offset);
    if (h->version < 3)
        return;
    dk_put_be64(b + 72, h->incompatible);
    dk_put_be64(b + 80, h->compatible);
    dk_put_be64(b + 88, h->autoclear);
    dk_put_be32(b + 96, h->refcount_order);
    dk_put_be32(b + 100, h->header_length);
    if (h->header_length > 104)
        b[104] = h->compression_type;
}

int qcow2_validate_table(uint64_t off, uint64_t bytes, uint64_t cluster_size,
                         uint64_t file_size)
{
    if (!dk_is_aligned(off, cluster_size))
        return -EINVAL;
    if (!dk_range_inside(off, bytes, file_size) || off >= QCOW2_MAX_HOST_OFFSET)
        return -EFBIG;
    return 0;
}

#define FAIL(...) (snprintf(msg, msglen, __VA_ARGS__), -EINVAL)

/* Entries of the L1 table needed for SIZE bytes (overflow-safe). */
static uint64_t l1_needed(uint64_t size, uint32_t cluster_bits, bool extl2)
{
    uint32_t shift = cluster_bits + (cluster_bits - (extl2 ? 4 : 3));
    return (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
}

static int validate_tables(const struct qcow2_header *h, uint64_t fsize,
                           char *msg, size_t msglen)
{
    uint64_t cs = 1ull << h->cluster_bits;
    if (h->l1_size > QCOW2_MAX_L1_BYTES / 8)
        return FAIL("qcow2: L1 table of %u entries exceeds the %u MiB limit",
                    h->l1_size, QCOW2_MAX_L1_BYTES >> 20);
    if (l1_needed(h->size, h->cluster_bits, h->incompatible & QCOW2_INCOMPAT_EXTL2) > h->l1_size)
        return FAIL("qcow2: L1 table of %u entries is too small for the image size %llu",
                    h->l1_size, (unsigned long long)h->size);
    int r = qcow2_validate_table(h->l1_table_offset, (uint64_t)h->l1_size * 8, cs, fsize);
    if (h->l1_size && r == -EINVAL)
        return FAIL("qcow2: L1 table offset 0x%llx is not cluster aligned",
                    (unsigned long long)h->l1_table_offset);
    if (h->l1_size && r < 0)
        return FAIL("qcow2: L1 table at 0x%llx lies beyond end of file",
                    (unsigned long long)h->l1_table_offset);
    if (!h->refcount_table_clusters)
        return FAIL("qcow2: image has no refcount table");
    if ((uint64_t)h->refcount_table_clusters * cs > QCOW2_MAX_REFTABLE_BYTES)
        return FAIL("qcow2: refcount table of %u clusters exceeds the %u MiB limit",
                    h->refcount_table_clusters, QCOW2_MAX_REFTABLE_BYTES >> 20);
    r = qcow2_validate_table(h->refcount_table_offset,
                             (uint64_t)h->refcount_table_clusters * cs, cs, fsize);
    if (r == -EINVAL)
        return FAIL("qcow2: refcount table offset 0x%llx is not cluster aligned",
                    (unsigned long long)h->refcount_table_offset);
    if (r < 0)
        return FAIL("qcow2: refcount table at 0x%llx lies beyond end of file",
                    (unsigned long long)h->refcount_table_offset);
    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
        return FAIL("qcow2: %u snapshots exceed the limit of %u",
                    h->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
    r = qcow2_validate_table(h->snapshots_offset, (uint64_t)h->nb_snapshots * 40, cs, fsize);
    if (h->nb_snapshots && r < 0)
        return FAIL("qcow2: snapshot table at 0x%llx is %s", (unsigned long long)h->snapshots_offset,
                    r == -EINVAL ? "not cluster aligned" : "beyond end of file");
    return 0;
}

int qcow2_header_validate(const struct qcow2_header *h, uint64_t fsize, char *msg,
                          size_t msglen)
{
    if (h->magic != QCOW2_MAGIC)
        return FAIL("qcow2: bad magic 0x%08x (not a qcow2 image)", h->magic);
    if (h->version != 2 && h->version != 3)
        return FAIL("qcow2: unsupported version %u", h->version);
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return FAIL("qcow2: cluster_bits %u out of range (%d..%d)", h->cluster_bits,
                    QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
    uint64_t cs = 1ull << h->cluster_bits;
    if (h->version == 3 && (h->header_length < QCOW2_V3_HDR_LEN || h->header_length % 8 ||
                            h->header_length > cs))
        return FAIL("qcow2: invalid header_length %u", h->header_length);
    if (h->refcount_order > 6)
        return FAIL("qcow2: refcount_order %u out of range (0..6)", h->refcount_order);
    if (h->backing_file_offset) {
        if (h->backing_file_size > QCOW2_MAX_BACKING_NAME)
            return FAIL("qcow2: backing file name of %u bytes is longer than %d",
                        h->backing_file_size, QCOW2_MAX_BACKING_NAME);
        if (!dk_range_inside(h->backing_file_offset, h->backing_file_size, cs) ||
            h->backing_file_offset < h->header_length)
            return FAIL("qcow2: backing file name at 0x%llx lies outside the header cluster",
                        (unsigned long long)h->backing_file_offset);
    }
    if (h->crypt_method > 2)
        return FAIL("qcow2: unknown encryption method %u", h->crypt_method);
    if (h->size > (uint64_t)INT64_MAX)
        return FAIL("qcow2: virtual size %llu is too large", (unsigned long long)h->size);
    if ((h->incompatible & QCOW2_INCOMPAT_EXTL2) && h->cluster_bits < 14)
        return FAIL("qcow2: extended L2 entries need clusters of at least 16 KiB");
    if (h->compression_type > QCOW2_COMPRESS_ZSTD)
        return FAIL("qcow2: unknown compression type %u", h->compression_type);
    if (h->compression_type && !(h->incompatible & QCOW2_INCOMPAT_COMPRESSION))
        return FAIL("qcow2: compression type %u needs incompatible feature bit 3",
                    h->compression_type);
    return validate_tables(h, fsize, msg, msglen);
}
#undef FAIL

/* --------------------------------------------------------- extensions */

static void free_exts(struct qcow2_state *s)
{
    for (size_t i = 0; i < s->n_exts; i++)
        free(s->exts[i].data);
    free(s->exts);
    s->exts = NULL;
    s->n_exts = 0;
}

static int add_ext(struct dk_image *img, uint32_t type, const uint8_t *data, uint32_t len)
{
    struct qcow2_state *s = img->priv;
    if (s->n_exts >= QCOW2_MAX_EXTS)
        return dk_set_error(img, -EINVAL, "qcow2: more than %d header extensions",
                            QCOW2_MAX_EXTS);
    struct qcow2_ext *e = realloc(s->exts, (s->n_exts + 1) * sizeof(*e));
    if (!e)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    s->exts = e;
    e = &s->exts[s->n_exts];
    e->type = type;
    e->len = len;
    if (!(e->data = malloc(len ? len : 1)))
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    memcpy(e->data, data, len);
    s->n_exts++;
    return 0;
}

static const struct qcow2_ext *find_ext(const struct qcow2_state *s, uint32_t type)
{
    for (size_t i = 0; i < s->n_exts; i++)
        if (s->exts[i].type == type)
            return &s->exts[i];
    return NULL;
}

/* Parses the extensions in cluster 0 (C0, CS bytes) into state; the
 * backing format goes to img->backing_fmt. */
static int read_exts(struct dk_image *img, const uint8_t *c0)
{
    struct qcow2_state *s = img->priv;
    uint64_t end = s->cluster_size, off = s->hdr.header_length;
    if (s->hdr.backing_file_offset > off)
        end = s->hdr.backing_file_offset;
    while (off < end) {
        if (end - off < 8)
            return dk_set_error(img, -EINVAL, "qcow2: header extension at 0x%llx is truncated",
                                (unsigned long long)off);
        uint32_t type = dk_be32(c0 + off), len = dk_be32(c0 + off + 4);
        off += 8;
        if (type == QCOW2_EXT_END)
            return 0;
        if (len > end - off)
            return dk_set_error(img, -EINVAL, "qcow2: header extension 0x%08x of %u bytes "
                                "overruns the header cluster", type, len);
        if (type == QCOW2_EXT_BACKING_FMT) {
            if (len > QCOW2_MAX_BACKING_NAME)
                return dk_set_error(img, -EINVAL, "qcow2: backing format name too long");
            free(img->backing_fmt);
            img->backing_fmt = strndup((const char *)c0 + off, len);
            if (!img->backing_fmt)
                return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
        } else {
            int r = add_ext(img, type, c0 + off, len);
            if (r < 0)
                return r;
        }
        off += dk_round_up(len, 8) <= end - off ? dk_round_up(len, 8) : end - off;
    }
    return 0;
}

/* Name of incompatible bit BIT: ours, else from the image's table. */
static const char *incompat_name(const struct qcow2_state *s, unsigned bit, char *tmp)
{
    static const char *const known[] = { "dirty bit", "corrupt bit", "external data file",
                                         "compression type", "extended L2 entries" };
    if (bit < DK_ARRAY_SIZE(known))
        return known[bit];
    const struct qcow2_ext *ft = find_ext(s, QCOW2_EXT_FEATURES);
    for (uint32_t i = 0; ft && i + 48 <= ft->len; i += 48) {
        if (ft->data[i] == 0 && ft->data[i + 1] == bit) {
            snprintf(tmp, 64, "%.46s", (const char *)ft->data + i + 2);
            return tmp;
        }
    }
    snprintf(tmp, 64, "unknown feature bit %u", bit);
    return tmp;
}

static int check_incompat(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    uint64_t bad = s->hdr.incompatible & ~QCOW2_INCOMPAT_KNOWN;
    if (!bad)
        return 0;
    char list[512] = "", tmp[64];
    for (unsigned bit = 0; bit < 64; bit++) {
        if (!(bad & (1ull << bit)))
            continue;
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s (bit %u)", l ? ", " : "",
                 incompat_name(s, bit, tmp), bit);
    }
    return dk_set_error(img, -ENOTSUP, "qcow2: unsupported incompatible feature(s): %s", list);
}

/* --------------------------------------------------------- header write */

int qcow2_header_write(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    uint64_t cs = s->cluster_size;
    uint8_t *c0 = calloc(1, cs);
    if (!c0)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    memcpy(c0, s->hdr_tail, s->hdr.header_length);
    uint64_t off = s->hdr.header_length;
    size_t bl = img->backing_name ? strlen(img->backing_name) : 0;
    size_t fl = bl && img->backing_fmt ? strlen(img->backing_fmt) : 0;
    uint64_t need = off + (fl ? 8 + dk_round_up(fl, 8) : 0) + 8 + bl;
    for (size_t i = 0; i < s->n_exts; i++)
        need += 8 + dk_round_up(s->exts[i].len, 8);
    if (need > cs) {
        free(c0);
        return dk_set_error(img, -ENOSPC, "qcow2: header extensions and backing file name "
                            "do not fit in the first cluster");
    }
    if (fl) {
        dk_put_be32(c0 + off, QCOW2_EXT_BACKING_FMT);
        dk_put_be32(c0 + off + 4, (uint32_t)fl);
        memcpy(c0 + off + 8, img->backing_fmt, fl);
        off += 8 + dk_round_up(fl, 8);
    }
    for (size_t i = 0; i < s->n_exts; i++) {
        dk_put_be32(c0 + off, s->exts[i].type);
        dk_put_be32(c0 + off + 4, s->exts[i].len);
        memcpy(c0 + off + 8, s->exts[i].data, s->exts[i].len);
        off += 8 + dk_round_up(s->exts[i].len, 8);
    }
    off += 8;   /* end marker (zeros) */
    s->hdr.backing_file_offset = bl ? off : 0;
    s->hdr.backing_file_size = (uint32_t)bl;
    memcpy(c0 + off, img->backing_name ? img->backing_name : "", bl);
    qcow2_header_encode(&s->hdr, c0);
    memcpy(s->hdr_tail, c0, s->hdr.header_length);
    int r = dk_file_pwrite(img->file, c0, cs, 0);
    free(c0);
    return r < 0 ? dk_set_error(img, r, "qcow2: writing header: %s", strerror(-r)) : 0;
}

int qcow2_set_incompat(struct dk_image *img, uint64_t bits, bool on)
{
    struct qcow2_state *s = img->priv;
    if (!s->v3)
        return 0;   /* v2 has no feature bits */
    s->hdr.incompatible = on ? s->hdr.incompatible | bits : s->hdr.incompatible & ~bits;
    uint8_t b[8];
    dk_put_be64(b, s->hdr.incompatible);
    memcpy(s->hdr_tail + 72, b, 8);
    int r = dk_file_pwrite(img->file, b, 8, 72);
    return r < 0 ? dk_set_error(img, r, "qcow2: writing header: %s", strerror(-r)) : 0;
}

int qcow2_signal_corruption(struct dk_image *img, const char *fmt, ...)
{
    struct qcow2_state *s = img->priv;
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->writable && !img->corrupt) {
        /* Best effort: the image is already known to be damaged. */
        (void)qcow2_set_incompat(img, QCOW2_INCOMPAT_CORRUPT, true);
        (void)dk_file_flush(img->file);
    }
    return dk_corrupt(img, "%s", msg);
}

/* --------------------------------------------------------------- open */

static int probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len >= 8 && dk_be32(buf) == QCOW2_MAGIC && dk_be32(buf + 4) >= 2)
        return 100;
    return 0;
}

/* Reads an array of big-endian u64 of N entries at OFF into host order. */
static int read_u64_table(struct dk_image *img, uint64_t off, uint64_t n, uint64_t **out)
{
    uint64_t *t = malloc(n ? n * 8 : 8);
    if (!t)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    int r = n ? dk_file_pread(img->file, t, n * 8, off) : 0;
    if (r < 0) {
        free(t);
        return dk_set_error(img, r, "qcow2: reading table at 0x%llx: %s",
                            (unsigned long long)off, strerror(-r));
    }
    for (uint64_t i = 0; i < n; i++)
        t[i] = dk_be64(&t[i]);
    *out = t;
    return 0;
}

static int read_header(struct dk_image *img, uint64_t fsize, uint8_t **c0out)
{
    struct qcow2_state *s = img->priv;
    uint8_t hb[QCOW2_HDR_LEN_QEMU];
    if (fsize < QCOW2_V2_HDR_LEN)
        return dk_set_error(img, -EINVAL, "qcow2: file of %llu bytes is too small for a "
                            "qcow2 header", (unsigned long long)fsize);
    int r = dk_file_pread_eof0(img->file, hb, sizeof(hb), 0);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: reading header: %s", strerror(-r));
    r = qcow2_header_decode(hb, DK_MIN(sizeof(hb), fsize), &s->hdr);
    if (r < 0 && dk_be32(hb) == QCOW2_MAGIC)
        return dk_set_error(img, -EINVAL, "qcow2: header is truncated");
    char msg[256];
    if (r < 0 || qcow2_header_validate(&s->hdr, fsize, msg, sizeof(msg)) < 0)
        return dk_set_error(img, -EINVAL, "%s", r < 0 ? "qcow2: bad header" : msg);
    s->cluster_bits = s->hdr.cluster_bits;
    s->cluster_size = 1ull << s->cluster_bits;
    if (s->hdr.header_length > fsize)
        return dk_set_error(img, -EINVAL, "qcow2: header is truncated");
    uint8_t *c0 = malloc(s->cluster_size);
    if (!c0)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if ((r = dk_file_pread_eof0(img->file, c0, s->cluster_size, 0)) < 0) {
        free(c0);
        return dk_set_error(img, r, "qcow2: reading header: %s", strerror(-r));
    }
    if (!(s->hdr_tail = malloc(s->hdr.header_length))) {
        free(c0);
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    }
    memcpy(s->hdr_tail, c0, s->hdr.header_length);
    *c0out = c0;
    return 0;
}

static void setup_geometry(struct qcow2_state *s)
{
    s->v3 = s->hdr.version >= 3;
    s->extl2 = s->v3 && (s->hdr.incompatible & QCOW2_INCOMPAT_EXTL2);
    s->l2_bits = s->cluster_bits - (s->extl2 ? 4 : 3);
    s->l2_entries = 1ull << s->l2_bits;
    s->refcount_order = s->hdr.refcount_order;
    s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->refcount_max = s->refcount_order == 6 ? UINT64_MAX
                      : (1ull << (1u << s->refcount_order)) - 1;
    s->codec = s->hdr.compression_type == QCOW2_COMPRESS_ZSTD ? DK_CODEC_ZSTD
                                                              : DK_CODEC_DEFLATE_RAW;
    s->encrypted = s->hdr.crypt_method != 0;
    s->lazy = s->v3 && (s->hdr.compatible & QCOW2_COMPAT_LAZY);
}

static int load_l1(struct dk_image *img, uint64_t fsize)
{
    struct qcow2_state *s = img->priv;
    s->l1_offset = s->hdr.l1_table_offset;
    s->l1_size = s->hdr.l1_size;
    if (img->snapshot) {
        int i = qcow2_snapshot_find(s, img->snapshot);
        if (i < 0)
            return dk_set_error(img, -ENOENT, "qcow2: snapshot '%s' not found", img->snapshot);
        struct qcow2_snapshot *sn = &s->snaps[i];
        if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8 ||
            qcow2_validate_table(sn->l1_offset, (uint64_t)sn->l1_size * 8, s->cluster_size,
                                 fsize) < 0)
            return dk_set_error(img, -EINVAL, "qcow2: snapshot '%s' has an invalid L1 table",
                                img->snapshot);
        /* Like qemu's bdrv_snapshot_load_tmp (qemu-img convert/measure
         * -l): the virtual size stays the image's current one, not the
         * snapshot's disk size; clusters past the snapshot's L1 read as
         * unallocated, data past the current size is not seen. */
        s->l1_offset = sn->l1_offset;
        s->l1_size = sn->l1_size;
        img->read_only = true;
    }
    return read_u64_table(img, s->l1_offset, s->l1_size, &s->l1);
}

static int make_caches(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    uint64_t l2_need = ((uint64_t)s->l1_size + 2) * s->cluster_size;
    uint64_t rb_need = (s->reftable_size + 2) * s->cluster_size;
    s->l2_cache = qcow2_cache_new(DK_MIN(l2_need, QCOW2_L2_CACHE_MAX_BYTES) / s->cluster_size,
                                  s->cluster_size, QCOW2_OL_L2);
    s->rb_cache = qcow2_cache_new(DK_MIN(rb_need, QCOW2_RB_CACHE_MAX_BYTES) / s->cluster_size,
                                  s->cluster_size, QCOW2_OL_REFBLOCK);
    s->zbuf = malloc(s->cluster_size);
    s->zin = malloc(2 * s->cluster_size);
    if (!s->l2_cache || !s->rb_cache || !s->zbuf || !s->zin)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (!s->lazy)
        qcow2_cache_set_dep(s->l2_cache, s->rb_cache);
    return 0;
}

/* Checks feature bits and decides how the image may be used. */
static int check_features(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    int r = check_incompat(img);
    if (r < 0)
        return r;
    if ((s->hdr.incompatible & QCOW2_INCOMPAT_CORRUPT) && !(img->flags & DK_OPEN_REPAIR) &&
        !img->read_only) {
        /* Opened read-only; the handle says why on the first write. */
        img->read_only = true;
        img->corrupt = true;
        dk_set_error(img, 0, "qcow2: image is marked corrupt; opened read-only");
    }
    if (s->extl2 && !img->read_only)
        return dk_set_error(img, -ENOTSUP, "qcow2: writing images with extended L2 entries "
                            "(subclusters) is not supported; open it read-only");
    s->writable = !img->read_only;
    return 0;
}

/* First write-open: clear autoclear bits we do not maintain, and rebuild
 * refcounts of a dirty image. */
static int prepare_write(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    int r;
    if (s->hdr.incompatible & QCOW2_INCOMPAT_DIRTY) {
        if ((r = qcow2_rebuild_refcounts(img)) < 0)
            return r;
        s->dirty_on_disk = true;
        if ((r = qcow2_flush_all(img, true)) < 0)
            return r;
        if (s->hdr.incompatible & QCOW2_INCOMPAT_DIRTY &&
            (r = qcow2_set_incompat(img, QCOW2_INCOMPAT_DIRTY, false)) < 0)
            return r;
        s->dirty_on_disk = false;
    }
    if (s->hdr.autoclear & ~QCOW2_AUTOCLEAR_KNOWN) {
        s->hdr.autoclear &= QCOW2_AUTOCLEAR_KNOWN;
        if ((r = qcow2_header_write(img)) < 0 || (r = dk_file_flush(img->file)) < 0)
            return r < 0 ? r : dk_set_error(img, r, "qcow2: flush failed");
    }
    return 0;
}

static int qcow2_open(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    uint64_t fsize;
    uint8_t *c0 = NULL;
    int r = dk_file_size(img->file, &fsize);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: cannot get file size: %s", strerror(-r));
    if ((r = read_header(img, fsize, &c0)) < 0)
        return r;
    setup_geometry(s);
    img->size = s->hdr.size;
    r = read_exts(img, c0);
    if (r >= 0 && s->hdr.backing_file_offset &&
        !(img->backing_name = strndup((const char *)c0 + s->hdr.backing_file_offset,
                                      s->hdr.backing_file_size)))
        r = dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    free(c0);
    if (r < 0 || (r = check_features(img)) < 0 || (r = qcow2_crypt_open(img, fsize)) < 0)
        return r;
    s->alloc_end = dk_div_round_up(fsize, s->cluster_size);
    s->reftable_offset = s->hdr.refcount_table_offset;
    s->reftable_size = ((uint64_t)s->hdr.refcount_table_clusters << s->cluster_bits) / 8;
    if ((r = read_u64_table(img, s->reftable_offset, s->reftable_size, &s->reftable)) < 0 ||
        (r = qcow2_snapshots_read(img, fsize)) < 0 || (r = load_l1(img, fsize)) < 0 ||
        (r = make_caches(img)) < 0)
        return r;
    s->writable = !img->read_only;
    if (s->writable)
        return prepare_write(img);
    return 0;
}

static void qcow2_close(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    if (s->writable && !img->corrupt && s->l2_cache && s->rb_cache)
        (void)qcow2_flush_all(img, true);
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->rb_cache);
    qcow2_snapshots_free(s);
    qcow2_crypt_close(s);
    free_exts(s);
    free(s->hdr_tail);
    free(s->l1);
    free(s->reftable);
    free(s->pending);
    free(s->zbuf);
    free(s->zin);
}

static int qcow2_flush(struct dk_image *img)
{
    struct qcow2_state *s = img->priv;
    if (!s->writable || img->corrupt)
        return 0;
    return qcow2_flush_all(img, true);
}

const struct dk_driver dk_drv_qcow2 = {
    .struct_size = sizeof(struct dk_driver),
    .name = "qcow2",
    .state_size = sizeof(struct qcow2_state),
    .features = DK_DRV_BACKING | DK_DRV_SNAPSHOTS | DK_DRV_COMPRESSION | DK_DRV_ENCRYPTION,
    .create_opts = qcow2_create_opts,
    .amend_opts = qcow2_amend_opts,
    .probe = probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .read = qcow2_read,
    .write = qcow2_write,
    .zero = qcow2_zero,
    .discard = qcow2_discard,
    .flush = qcow2_flush,
    .block_status = qcow2_block_status,
    .truncate = qcow2_truncate,
    .create = qcow2_create,
    .info = qcow2_info,
    .snapshot_list = qcow2_snapshot_list,
    .check = qcow2_check,                       /* qcow2-check.c */
    .snapshot_create = qcow2_snapshot_create,   /* qcow2-snapshot-ops.c */
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
    .amend = qcow2_amend,                       /* qcow2-amend.c */
    .compress = qcow2_compress,
    .write_compressed = qcow2_write_compressed,
    .set_backing = qcow2_set_backing,
    .measure = qcow2_measure,
};
