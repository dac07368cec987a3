/* qcow2.h - private header of the qcow2 driver: on-disk constants, named
 * caps, the decoded header and the open-image state.
 *
 * Spec: qemu docs/interop/qcow2.txt (versions 2 and 3). All on-disk fields
 * are big-endian and go through lib/util/endian.h.
 *
 * Invariants of an open image (struct qcow2_state):
 *  1. s->l1 holds the active L1 table (or a snapshot's L1 when opened with
 *     img->snapshot, then the image is read-only); entries are host order.
 *  2. s->reftable holds the whole refcount table (<= QCOW2_MAX_REFTABLE
 *     bytes) in host order; refcount blocks and L2 tables live in bounded
 *     LRU caches (qcow2-cache.c) that write back dirty entries.
 *  3. Ordering: a dirty L2 table is written only after the refcount cache
 *     was written and synced (cache dependency), so a refcount increment
 *     is on disk before any L2 entry that needs it. Refcount decrements are
 *     queued (s->pending) and applied only after the L2 tables that dropped
 *     the reference were written: a crash leaks clusters, never loses one.
 *  4. With lazy refcounts the dirty bit is set and synced before the first
 *     refcount change and cleared after a complete flush.
 *
 * State: CLEAN --first metadata change--> MODIFIED (caches dirty, dirty bit
 * set when lazy) --flush--> CLEAN.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_QCOW2_H
#define DK_QCOW2_H

#include "internal.h"
#include "codec.h"
#include "crypto.h"

/* ------------------------------------------------------ on-disk format */

#define QCOW2_MAGIC 0x514649fbu          /* "QFI\xfb" */
#define QCOW2_V2_HDR_LEN 72
#define QCOW2_V3_HDR_LEN 104             /* minimum header_length for v3 */
#define QCOW2_HDR_LEN_QEMU 112           /* what qemu writes (with compression_type) */

#define QCOW2_EXT_END          0x00000000u
#define QCOW2_EXT_BACKING_FMT  0xe2792acau
#define QCOW2_EXT_FEATURES     0x6803f857u
#define QCOW2_EXT_BITMAPS      0x23852875u
#define QCOW2_EXT_CRYPTO       0x0537be77u
#define QCOW2_EXT_DATA_FILE    0x44415441u

#define QCOW2_INCOMPAT_DIRTY        (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                              QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2)
#define QCOW2_COMPAT_LAZY           (1ull << 0)
#define QCOW2_AUTOCLEAR_KNOWN       0ull   /* bitmaps/raw data file not kept up */

#define QCOW2_COMPRESS_ZLIB 0
#define QCOW2_COMPRESS_ZSTD 1

#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       1ull
#define QCOW2_OFFSET_MASK      0x00fffffffffffe00ull   /* bits 9..55 */
#define QCOW2_L1E_RESERVED     0x7f000000000001ffull
#define QCOW2_L2E_RESERVED     0x3f000000000001feull   /* standard cluster */
#define QCOW2_REFT_RESERVED    0x1ffull

/* -------------------------------------------------------- named caps */

/* qemu's limits: it refuses bigger tables, so no valid image has them. */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21           /* 2 MiB */
#define QCOW2_MAX_L1_BYTES     (32u << 20)  /* QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20) /* QCOW_MAX_REFTABLE_SIZE */
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_SNAPSHOTS    65536
#define QCOW2_MAX_SNAP_TABLE   (64u << 20)  /* QCOW_MAX_SNAPSHOTS_SIZE */
#define QCOW2_MAX_SNAP_EXTRA   1024
#define QCOW2_MAX_HOST_OFFSET  (1ull << 56)
#define QCOW2_MAX_EXTS         64           /* each type at most once */
/* Cache caps. The L2 cache covers the whole image when that takes at most
 * 32 MiB (64 KiB clusters: 256 GiB of guest data), so sequential copies
 * never re-read a table; qemu's 1 MiB default would thrash at 8 GiB. The
 * refcount cache needs far less: one 64 KiB block of 16-bit counts covers
 * 2 GiB of host clusters. QCOW2_CACHE_MIN keeps a few entries even for
 * tiny images (a write touches at most two L2 tables at once). */
#ifndef QCOW2_L2_CACHE_MAX_BYTES   /* overridable to test eviction */
#define QCOW2_L2_CACHE_MAX_BYTES (32u << 20)
#endif
#ifndef QCOW2_RB_CACHE_MAX_BYTES
#define QCOW2_RB_CACHE_MAX_BYTES (4u << 20)
#endif
#define QCOW2_CACHE_MIN 8
/* Deferred frees are applied at the latest after this many queued ranges. */
#define QCOW2_MAX_PENDING 4096
/* Dirty-image rebuild counts references in memory, 4 bytes per host
 * cluster: 16 Mi clusters (1 TiB of 64 KiB clusters) take 64 MiB. */
#define QCOW2_MAX_REBUILD_CLUSTERS (16ull << 20)

/* ------------------------------------------------------------ types */

struct qcow2_header {
    uint32_t magic, version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible, compatible, autoclear;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
};

/* A header extension kept verbatim (unknown types, feature table, ...). */
struct qcow2_ext {
    uint32_t type, len;
    uint8_t *data;
};

struct qcow2_snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;          /* UINT64_MAX when absent */
    uint32_t extra_size;
    uint8_t *extra;           /* kept verbatim for a table rewrite */
};

struct qcow2_cache;

struct qcow2_range { uint64_t off, len; };

struct qcow2_state {
    struct qcow2_header hdr;
    uint8_t *hdr_tail;        /* bytes 104..header_length-1 beyond ours */
    uint32_t hdr_tail_len;
    struct qcow2_ext *exts;   /* all extensions but backing format, in order */
    size_t n_exts;

    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t l2_bits;         /* log2 entries per L2 table */
    uint64_t l2_entries;
    uint32_t rb_bits;         /* log2 refcounts per block */
    uint32_t refcount_order;
    uint64_t refcount_max;
    enum dk_codec codec;
    bool v3, lazy, encrypted, writable;
    bool extl2;               /* 128-bit L2 entries: read-only support */

    uint64_t *l1;             /* host order */
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t l1_dirty_lo, l1_dirty_hi;   /* entries to write back; hi 0 = none */
    uint64_t *reftable;       /* host order */
    uint64_t reftable_size;   /* entries */
    uint64_t reftable_offset;

    struct qcow2_cache *l2_cache, *rb_cache;
    uint64_t free_index;      /* first cluster that may be free */
    uint64_t alloc_end;       /* clusters >= this are unused (may be past EOF) */
    struct qcow2_range *pending;   /* decrements awaiting L2 write-back */
    size_t n_pending, cap_pending;
    bool dirty_on_disk;       /* incompatible dirty bit currently set */

    /* compressed-cluster packing (write_compressed) */
    uint64_t cw_next, cw_end; /* free bytes in the current host cluster */
    /* last decompressed cluster (reads of compressed data come in pieces) */
    uint8_t *zbuf, *zin;
    uint64_t zbuf_l2e;
    bool zbuf_valid;

    struct qcow2_snapshot *snaps;
    uint32_t nb_snaps;
    uint64_t snap_table_bytes;

    struct qcow2_crypt *crypt;   /* qcow2-crypt.c; NULL when not encrypted */

    /* preallocation=metadata detected (qcow2-cluster.c): data clusters
     * may be host holes, which block status then reports as zeros */
    bool meta_prealloc_checked, meta_prealloc;

    uint32_t amend_step, amend_steps;   /* progress of an amend (qcow2-amend.c) */
};

/* Kinds of L2 entries (standard entries, no subclusters). */
enum cl_type { CL_UNALLOC, CL_ZERO, CL_ZERO_ALLOC, CL_NORMAL, CL_COMPRESSED };

static inline enum cl_type cl_type(const struct qcow2_state *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED)
        return CL_COMPRESSED;
    if (s->v3 && (e & QCOW2_OFLAG_ZERO))
        return e & QCOW2_OFFSET_MASK ? CL_ZERO_ALLOC : CL_ZERO;
    return e & QCOW2_OFFSET_MASK ? CL_NORMAL : CL_UNALLOC;
}
/* L2 tables stay in on-disk byte order in the cache. */
static inline uint64_t l2_entry(const uint64_t *l2, uint64_t i) { return dk_be64(&l2[i]); }
static inline void l2_set(uint64_t *l2, uint64_t i, uint64_t v) { dk_put_be64(&l2[i], v); }

/* --------------------------------------------------------- qcow2.c */

int qcow2_header_decode(const uint8_t *buf, size_t len, struct qcow2_header *h);
void qcow2_header_encode(const struct qcow2_header *h, uint8_t *buf);
/* Checks every field against the file size; fills MSG on failure. */
int qcow2_header_validate(const struct qcow2_header *h, uint64_t file_size,
                          char *msg, size_t msglen);
/* Rewrites cluster 0 (header, extensions, backing name) from state. */
int qcow2_header_write(struct dk_image *img);
int qcow2_set_incompat(struct dk_image *img, uint64_t bits, bool on);
/* Marks the image corrupt on disk (when writable) and records MSG. */
int qcow2_signal_corruption(struct dk_image *img, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Checks a table (offset, bytes) is aligned and inside the file. */
int qcow2_validate_table(uint64_t off, uint64_t bytes, uint64_t cluster_size,
                         uint64_t file_size);

/* ------------------------------------------------- qcow2-snapshot.c */

int qcow2_info(struct dk_image *img, struct dk_info *info);
int qcow2_set_backing(struct dk_image *img, const char *name, const char *fmt);

int qcow2_snapshots_read(struct dk_image *img, uint64_t file_size);
void qcow2_snapshots_free(struct qcow2_state *s);
int qcow2_snapshot_find(struct qcow2_state *s, const char *id_or_name);
int qcow2_snapshot_list(struct dk_image *img, struct dk_snapshot **out, size_t *n);

/* ---------------------------------- qcow2-check.c (imgcmds helper) */

int qcow2_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
                dk_report_fn report, void *opaque);

/* ---------------------------- qcow2-snapshot-ops.c (imgcmds helper) */

int qcow2_snapshot_create(struct dk_image *img, const char *name);
int qcow2_snapshot_apply(struct dk_image *img, const char *id_or_name);
int qcow2_snapshot_delete(struct dk_image *img, const char *id_or_name);
/* Encodes a snapshot table (caller frees *OUT). */
int qcow2_snaptable_encode(struct dk_image *img, const struct qcow2_snapshot *snaps,
                           uint32_t nb, uint8_t **out, uint64_t *bytes);

/* ----------------------------------- qcow2-amend.c (imgcmds helper) */

int qcow2_amend(struct dk_image *img, const struct dk_opts *opts);
/* Reports DONE of TOTAL for the current step of a multi-step amend. */
void qcow2_amend_progress(struct dk_image *img, uint64_t done, uint64_t total);

/* ---------------------------------- qcow2-compat.c (imgcmds helper) */

/* compat=1.1 on a v2 image: checks only / applies (see the file). */
int qcow2_upgrade_check(struct dk_image *img);
int qcow2_upgrade(struct dk_image *img);
/* compat=0.10: qemu's preconditions for the image as it will be after the
 * other amended options (refcount ORDER, virtual SIZE); writes nothing
 * but a flush of cached metadata. */
int qcow2_downgrade_check(struct dk_image *img, uint32_t order, uint64_t size);
int qcow2_downgrade(struct dk_image *img);

/* -------------------------------- qcow2-reforder.c (imgcmds helper) */

/* refcount_bits=1<<ORDER: checks that every refcount fits / rebuilds the
 * refcount structure in the new width (crash safe, see the file). */
int qcow2_refcount_order_check(struct dk_image *img, uint32_t order);
int qcow2_refcount_order_change(struct dk_image *img, uint32_t order);
/* check -r all: writes a new refcount structure (same width) holding
 * COUNTS[0..N) (0 past N) past the used clusters and the end of file, and
 * switches the header to it; the old table and blocks are left unreferenced.
 * Crash safe like the width change. */
int qcow2_refcount_rebuild(struct dk_image *img, const uint32_t *counts, uint64_t n);

/* ---------------------------------- qcow2-switch.c (imgcmds helper) */

/* Writes a new generation of metadata past the end of the file and
 * switches to it with one header write: active tables copied from SRC
 * (SRC_N host-order L1 entries, new L1 of L1_SIZE entries), snapshot list
 * SNAPS (borrowed), virtual SIZE; refcounts and COPIED flags recomputed. */
int qcow2_switch(struct dk_image *img, const uint64_t *src, uint32_t src_n, uint32_t l1_size,
                 const struct qcow2_snapshot *snaps, uint32_t nb, uint64_t size);

/* -------------------------------------------------- qcow2-cluster.c */

/* Compressed descriptor fields. */
void qcow2_compressed_decode(uint64_t l2e, uint32_t cluster_bits,
                             uint64_t *host_off, uint64_t *nb_bytes);
uint64_t qcow2_compressed_encode(uint64_t host_off, uint64_t nb_bytes,
                                 uint32_t cluster_bits);
/* Gets the L2 table for guest OFF (pinned; qcow2_l2_put releases).
 * ALLOC: create/copy-on-write it. *L2 = NULL when unallocated (!ALLOC). */
int qcow2_l2_get(struct dk_image *img, uint64_t off, bool alloc, uint64_t **l2);
void qcow2_l2_put(struct dk_image *img, uint64_t *l2);
/* L1 entries changed in memory are written by qcow2_flush_all, after the
 * L2 tables they point to. */
void qcow2_l1_mark_dirty(struct qcow2_state *s, uint64_t i);
int qcow2_l1_write_back(struct dk_image *img);
int qcow2_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                       struct dk_extent *ext);
int qcow2_read(struct dk_image *img, void *buf, size_t len, uint64_t off);
int qcow2_write(struct dk_image *img, const void *buf, size_t len, uint64_t off);
int qcow2_zero(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags);
int qcow2_discard(struct dk_image *img, uint64_t off, uint64_t len);
ssize_t qcow2_compress(struct dk_image *img, const void *in, size_t in_len,
                       void *out, size_t cap);
int qcow2_write_compressed(struct dk_image *img, uint64_t off, const void *cdata,
                           size_t clen, const void *plain, size_t plain_len);
/* Drops the references held by an L2 entry (queues the decrements). */
int qcow2_free_l2_entry(struct dk_image *img, uint64_t l2e);
/* Allocates data/metadata for [OFF, OFF+LEN) (preallocation=metadata). */
int qcow2_preallocate(struct dk_image *img, uint64_t off, uint64_t len, const char *mode);

int qcow2_read_compressed(struct dk_image *img, uint64_t e, void *buf, size_t n,
                          uint64_t off);

/* --------------------------------------------------- qcow2-extl2.c */

int qcow2_ext_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                           struct dk_extent *ext);
int qcow2_ext_read(struct dk_image *img, void *buf, size_t len, uint64_t off);

/* ------------------------------------------------- qcow2-refcount.c */

int qcow2_refcount_init(struct dk_image *img);
uint64_t qcow2_rc_get_entry(const uint8_t *block, uint32_t order, uint64_t i);
void qcow2_rc_set_entry(uint8_t *block, uint32_t order, uint64_t i, uint64_t v);
int qcow2_get_refcount(struct dk_image *img, uint64_t cluster, uint64_t *rc);
/* Adds DELTA to the refcount of every cluster touching [OFF, OFF+LEN). */
int qcow2_update_refcount(struct dk_image *img, uint64_t off, uint64_t len, int64_t delta);
/* Allocates N contiguous clusters (refcount 1); returns the host offset. */
int qcow2_alloc_clusters(struct dk_image *img, uint64_t n, uint64_t *off);
/* Allocates LEN bytes for compressed data, packed after earlier ones. */
int qcow2_alloc_bytes(struct dk_image *img, uint64_t len, uint64_t *off);
/* Queues a decrement applied after the next L2 write-back. */
int qcow2_free_later(struct dk_image *img, uint64_t off, uint64_t len);
/* Writes back caches in dependency order, applies deferred frees, syncs. */
int qcow2_flush_all(struct dk_image *img, bool sync);
/* Before the first metadata change: sets the dirty bit for lazy refcounts. */
int qcow2_mark_dirty(struct dk_image *img);
/* After a shrink (everything flushed): refcount blocks that count no
 * cluster but themselves leave the table (qemu's qcow2_shrink_reftable). */
int qcow2_shrink_reftable(struct dk_image *img);
/* Rebuilds every refcount from a walk of the metadata (dirty images). */
int qcow2_rebuild_refcounts(struct dk_image *img);
/* Refuses writes of metadata over other metadata (qemu overlap checks). */
#define QCOW2_OL_HEADER    0x01u
#define QCOW2_OL_L1        0x02u
#define QCOW2_OL_REFTABLE  0x04u
#define QCOW2_OL_REFBLOCK  0x08u
#define QCOW2_OL_SNAPTABLE 0x10u
#define QCOW2_OL_L2        0x20u
#define QCOW2_OL_ALL       0x3fu
/* Checks [OFF, OFF+LEN) against the metadata kinds in CHECK; on overlap
 * marks the image corrupt and returns -EIO. */
int qcow2_check_overlap(struct dk_image *img, uint64_t off, uint64_t len,
                        unsigned check);

/* --------------------------------------------------- qcow2-cache.c */

/* A cache of cluster-sized tables with at most MAX entries. Before a dirty
 * entry is written, DEP (if set) is written back and synced. */
struct qcow2_cache *qcow2_cache_new(size_t max, size_t entry_size, unsigned kind);
void qcow2_cache_free(struct qcow2_cache *c);
void qcow2_cache_set_dep(struct qcow2_cache *c, struct qcow2_cache *dep);
/* Returns a pinned table at host offset OFF, read from disk unless FRESH
 * (then zero-filled). Release with qcow2_cache_put. */
int qcow2_cache_get(struct dk_image *img, struct qcow2_cache *c, uint64_t off,
                    bool fresh, void **out);
void qcow2_cache_put(struct qcow2_cache *c, void *table);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, void *table);
/* Writes every dirty entry (after DEP); *WROTE tells whether any was. */
int qcow2_cache_flush(struct dk_image *img, struct qcow2_cache *c, bool sync);
bool qcow2_cache_is_dirty(const struct qcow2_cache *c);
/* Forgets the entry at OFF (cluster freed or reused for other data). */
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off);

/* ------------------------------------------------ qcow2-create.c */

int qcow2_create(const struct dk_create_ctx *ctx);
int qcow2_measure(const struct dk_opts *opts, uint64_t size, struct dk_image *src,
                  struct dk_measure *out, struct dk_error *err);
int qcow2_truncate(struct dk_image *img, uint64_t size, const char *prealloc,
                   unsigned flags);
extern const struct dk_optdesc qcow2_create_opts[];
/* Fills BUF with qemu's feature name table; returns its length. */
#define QCOW2_FEATURE_TABLE_BYTES 384u   /* 8 entries of 48 bytes */
size_t qcow2_feature_table(uint8_t *buf);

/* --------------------------------------------------- qcow2-crypt.c */

/* Encryption requested at create time (method 0: none). */
struct qcow2_crypt_params {
    uint32_t method;                     /* 1 AES, 2 LUKS */
    struct dk_luks_create_params luks;
};

/* After the header extensions are read: validates crypt_method and the
 * FDE extension, reads the LUKS header and unlocks it with img->secret
 * (no secret: opens, data I/O refused; wrong secret: -EACCES). */
int qcow2_crypt_open(struct dk_image *img, uint64_t file_size);
void qcow2_crypt_close(struct qcow2_state *s);
/* False when the image is encrypted and opened without its secret. */
bool qcow2_crypt_has_key(const struct qcow2_state *s);
/* The LUKS area (header + key material) as host range, if any. */
bool qcow2_crypt_area(const struct qcow2_state *s, uint64_t *off, uint64_t *len);
/* Replaces the decoded LUKS header kept for info (after a key change). */
void qcow2_crypt_set_header(struct qcow2_state *s, const struct dk_luks_header *h);
/* "image is encrypted: give the passphrase with ..." */
extern const char qcow2_no_key_msg[];
/* Guest data to/from the host file: decrypts/encrypts when encrypted
 * (HOST and GUEST are the byte offsets of the same data). */
int qcow2_data_pread(struct dk_image *img, void *buf, size_t n, uint64_t host,
                     uint64_t guest);
int qcow2_data_pwrite(struct dk_image *img, const void *buf, size_t n, uint64_t host,
                      uint64_t guest);
/* Adds format-specific "encrypt" (qemu-img info keys) to DATA. */
bool qcow2_crypt_info(struct dk_image *img, struct dk_val *data);
/* Create: parses encrypt.* / encryption options (needs ctx->secret), then
 * sets up encryption on the freshly created, opened image. */
int qcow2_crypt_parse(const struct dk_create_ctx *ctx, const char *prealloc,
                      struct qcow2_crypt_params *p);
int qcow2_crypt_create(struct dk_image *img, const struct qcow2_crypt_params *p,
                       const struct dk_create_ctx *ctx);
/* Measure: bytes the encrypt.* options of OPTS add (the LUKS area in
 * whole clusters of CS bytes; 0 for none or AES). */
int qcow2_crypt_measure(const struct dk_opts *opts, uint64_t cs, uint64_t *bytes,
                        struct dk_error *err);

/* ---------------------------------------------- qcow2-crypt-amend.c */

/* True for the amend options that change LUKS key slots (encrypt.state,
 * encrypt.keyslot, encrypt.new-secret, encrypt.old-secret,
 * encrypt.iter-time). */
bool qcow2_crypt_amend_option(const char *key);
/* Those that are not creation options, for dk_amend_options. */
extern const struct dk_optdesc qcow2_amend_opts[];
/* Checks the key slot options of OPTS against the image and computes the
 * change (writes nothing). *OUT is NULL when OPTS has none. Needs the
 * image opened with its passphrase; new-secret/old-secret name secrets
 * registered with dk_image_add_secret. Returns 0 or -errno (message on
 * IMG, qemu-img's words). */
int qcow2_crypt_amend_prepare(struct dk_image *img, const struct dk_opts *opts,
                              struct dk_luks_change **out);
/* Writes the prepared change to the LUKS area crash-safely and syncs. */
int qcow2_crypt_amend_apply(struct dk_image *img, const struct dk_luks_change *c);

#endif
