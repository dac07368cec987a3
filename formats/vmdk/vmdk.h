/* vmdk.h - private header of the VMDK driver: on-disk constants, named
 * caps, parsed descriptor, per-extent and per-image state.
 *
 * Spec: VMware "Virtual Disk Format 1.1" (hosted sparse extents, section
 * "Hosted Sparse Extent Header", "Grain Directories and Grain Tables",
 * "The Descriptor File", "Stream-Optimized Compressed Sparse Extents").
 * All on-disk integers are little-endian, sizes are in 512-byte sectors.
 *
 * Files of the driver:
 *   vmdk-desc.c    descriptor text: parse, CID update, generate
 *   vmdk-sparse.c  hosted sparse extents: header, GD/GT, grain allocation
 *   vmdk-stream.c  streamOptimized: compressed grains, footer, writer
 *   vmdk-create.c  create for every subformat
 *   vmdk-io.c      read/write/zero/flush/block status over the extents,
 *                  CID update, compressed-write hooks of the copy engine
 *   vmdk-resize.c  growing (resize): flat and sparse extents, new 2 GB
 *                  extent files, descriptor rewrite
 *   vmdk.c         probe, open/close, info, check; driver table
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_VMDK_H
#define DK_VMDK_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

#define VMDK_SECTOR            512u
#define VMDK4_MAGIC            0x564d444bu   /* "KDMV" read as LE32 */
#define VMDK3_MAGIC            0x44574f43u   /* "COWD" (VMFSSPARSE) */
#define VMDK_GD_AT_END         UINT64_MAX    /* stream: GD location in the footer */

#define VMDK_FLAG_NL_DETECT    0x00000001u
#define VMDK_FLAG_RGD          0x00000002u
#define VMDK_FLAG_ZERO_GRAIN   0x00000004u
#define VMDK_FLAG_COMPRESSED   0x00010000u
#define VMDK_FLAG_MARKERS      0x00020000u
#define VMDK_COMPRESS_DEFLATE  1

#define VMDK_MARKER_EOS        0
#define VMDK_MARKER_GT         1
#define VMDK_MARKER_GD         2
#define VMDK_MARKER_FOOTER     3

#define VMDK_GTE_ZERO          1u    /* zeroed grain (version >= 2 + flag) */

/* ------------------------------------------------------------ caps */

/* Descriptor text: 1 MiB, as qemu reads at most 1 MiB - 1 of a descriptor
 * file; real ones are a few hundred bytes. */
#define VMDK_MAX_DESC_BYTES    (1u << 20)
/* Extents in one descriptor: 8 TiB of twoGbMaxExtent* is 4096 files. */
#define VMDK_MAX_EXTENTS       4096
/* Grain size in sectors: qemu refuses grains over 1 GiB. */
#define VMDK_MAX_GRAIN_SECTORS 0x200000u
/* Grain table entries: the spec fixes 512, qemu refuses more. */
#define VMDK_MAX_GTES          512u
/* Grain directory entries (loaded whole, 4 bytes each: 128 MiB at most;
 * with 64 KiB grains that is 1 PiB of virtual disk). */
#define VMDK_MAX_GD_ENTRIES    (32u << 20)
/* Virtual size in sectors (2^55 bytes): leaves headroom for every
 * sector-to-byte conversion and sum below. */
#define VMDK_MAX_SECTORS       (1ull << 46)
/* Compressed grain payload: zlib's worst case for a 1 GiB grain stays far
 * below grain + grain/8; anything larger is corrupt. */
#define VMDK_MAX_CGRAIN(gbytes) ((gbytes) + (gbytes) / 8 + 4096)
/* Extent size of the twoGbMaxExtent* subformats (2 GiB, as qemu-img). */
#define VMDK_SPLIT_SECTORS     (2ull * 1024 * 1024 * 1024 / VMDK_SECTOR)
/* Grain tables cached per sparse extent (2 KiB each). */
#define VMDK_GT_CACHE          32

/* ------------------------------------------------------------ header */

struct vmdk_header {
    uint32_t version;
    uint32_t flags;
    uint64_t capacity;         /* sectors */
    uint64_t grain_size;       /* sectors */
    uint64_t desc_offset;      /* sectors */
    uint64_t desc_size;        /* sectors */
    uint32_t num_gtes;
    uint64_t rgd_offset;       /* sectors */
    uint64_t gd_offset;        /* sectors, or VMDK_GD_AT_END */
    uint64_t overhead;         /* sectors */
    uint8_t unclean;
    uint8_t nl_check[4];       /* "\n \r\n" */
    uint16_t compress;
};

/* ------------------------------------------------------------ descriptor */

enum vmdk_access { VMDK_RW, VMDK_RDONLY, VMDK_NOACCESS };
enum vmdk_etype { VMDK_EXT_FLAT, VMDK_EXT_SPARSE, VMDK_EXT_ZERO };

struct vmdk_desc_extent {
    enum vmdk_access access;
    enum vmdk_etype type;
    uint64_t sectors;
    uint64_t offset;           /* FLAT: sectors into the file */
    char *fname;               /* NULL for ZERO */
    const char *type_name;     /* as written ("FLAT", "VMFS", ...) static */
};

struct vmdk_desc {
    char *text;                /* raw text, NUL-terminated */
    size_t len;
    uint32_t cid, parent_cid;
    char *create_type;         /* NULL when missing */
    char *parent_hint;         /* parentFileNameHint, or NULL */
    struct vmdk_desc_extent *ext;
    size_t n_ext;
};

/* ------------------------------------------------------------ state */

/* One cached grain table. */
struct vmdk_gt_slot {
    uint32_t gd_index;
    bool valid;
    uint32_t *gt;              /* num_gtes entries, host order */
};

/* Stream writer state (write-once streamOptimized). */
struct vmdk_swriter {
    bool active;               /* this handle appends grains */
    uint64_t next_grain;       /* grains before this are final */
    uint64_t pos;              /* byte offset where the next grain goes */
    uint64_t tail_end;         /* end of the last tail written by flush */
    uint32_t cur_gt;           /* GT index being filled */
    uint32_t *gt;              /* its entries */
    uint8_t *gbuf;             /* pending grain (grain bytes) */
    uint64_t gbuf_index;       /* grain held in gbuf, UINT64_MAX if none */
    uint8_t *cbuf;             /* staging for marker + compressed data */
    size_t cbuf_cap;
};

struct vmdk_extent {
    enum vmdk_etype type;
    enum vmdk_access access;
    uint64_t start;            /* guest byte offset of the extent */
    uint64_t bytes;            /* length in the guest */
    uint64_t flat_offset;      /* FLAT: byte offset in the file */
    char *name;                /* as in the descriptor (NULL: own file) */
    struct dk_file *file;
    bool own_file;             /* file != img->file */

    /* Hosted sparse extents. */
    struct vmdk_header h;
    uint64_t grain_bytes;
    uint64_t file_size;        /* bytes, grows as grains are appended */
    uint32_t gd_entries;
    uint32_t *gd, *rgd;        /* rgd NULL without a redundant GD */
    bool compressed, markers, zeroed_grain;
    bool stream_full;          /* stream extent with data: no writes */
    uint64_t last_gi;          /* grain held decompressed in last_buf */
    uint8_t *last_buf;         /* NULL until a compressed grain is read */
    struct vmdk_gt_slot cache[VMDK_GT_CACHE];
    struct vmdk_swriter sw;
};

struct vmdk_state {
    struct vmdk_desc desc;
    bool desc_embedded;        /* descriptor inside img->file */
    uint64_t desc_off, desc_cap;  /* bytes: where it lies and room it has */
    struct vmdk_extent *ext;
    size_t n_ext;
    bool cid_updated;          /* CID changed during this session */
    bool cid_checked;          /* parent CID verified */
    char *create_type;         /* effective (from descriptor or header) */
};

/* ------------------------------------------------------------ vmdk-desc.c */

/* Parses TEXT (LEN bytes, copied). Errors in ERR name the line. */
int vmdk_desc_parse(struct vmdk_desc *d, const char *text, size_t len,
                    struct dk_error *err);
void vmdk_desc_free(struct vmdk_desc *d);
/* Returns the text with the CID line set to CID (caller frees), or NULL. */
char *vmdk_desc_with_cid(const struct vmdk_desc *d, uint32_t cid, size_t *len);

/* What vmdk_desc_generate needs for a new image. */
struct vmdk_desc_gen {
    uint32_t cid, parent_cid;
    const char *create_type;
    const char *parent_hint;   /* or NULL */
    const char *hw_version, *adapter, *tools_version;
    uint64_t total_sectors;    /* for the geometry */
};
/* Header part (version ... parentFileNameHint) and the DDB part, as
 * qemu-img writes them; extent lines are appended by the caller between.
 * Returns a malloc'd string or NULL. */
char *vmdk_desc_generate(const struct vmdk_desc_gen *g, const char *extent_lines);
/* The descriptor of D after a grow: CID set to CID, the sectors of the
 * last extent line set to LAST_SECTORS, NEW_LINES (one extent line per
 * "\n"-ended line, or NULL) inserted after it, ddb.geometry.cylinders
 * recomputed for TOTAL sectors. Line ends (LF or CRLF) and every other
 * line are kept. Returns a malloc'd string (length in *LEN) or NULL. */
char *vmdk_desc_grown(const struct vmdk_desc *d, uint32_t cid, uint64_t last_sectors,
                      const char *new_lines, uint64_t total, size_t *len);

/* ------------------------------------------------------------ vmdk-sparse.c */

void vmdk_header_decode(const uint8_t *buf, struct vmdk_header *h);
void vmdk_header_encode(const struct vmdk_header *h, uint8_t *buf);
/* Validates a decoded header against FILE_SIZE (bytes). Returns 0 or
 * -EINVAL/-ENOTSUP with a message in ERR. */
int vmdk_header_validate(const struct vmdk_header *h, uint64_t file_size,
                         struct dk_error *err);
/* Loads header, GD (and redundant GD) of a sparse extent from e->file. */
int vmdk_sparse_open(struct dk_image *img, struct vmdk_extent *e);
void vmdk_sparse_close(struct vmdk_extent *e);
/* Grain table entry of grain GI (index in the extent) into *GTE (0 when
 * the GT is absent). */
int vmdk_sparse_gte(struct dk_image *img, struct vmdk_extent *e, uint64_t gi,
                    uint32_t *gte);
/* Loads GT number IDX (cached); returns its entries or NULL (error set). */
uint32_t *vmdk_sparse_gt(struct dk_image *img, struct vmdk_extent *e, uint32_t idx);
/* Writes LEN bytes at byte offset OFF inside the extent (one grain at most). */
int vmdk_sparse_write(struct dk_image *img, struct vmdk_extent *e,
                      const uint8_t *buf, size_t len, uint64_t off);
/* Marks whole grains [FIRST, FIRST+N) as zeroed grains. */
int vmdk_sparse_zero(struct dk_image *img, struct vmdk_extent *e,
                     uint64_t first, uint64_t n);
/* Grows the capacity of an uncompressed sparse extent to SECTORS: new
 * zero-filled GTs (and redundant GTs) appended, GD entries written into
 * the GD slack or GD and RGD relocated to the end of file, flushed, then
 * the header rewritten and flushed. A failure leaves the old extent valid. */
int vmdk_sparse_grow(struct dk_image *img, struct vmdk_extent *e, uint64_t sectors);

/* ------------------------------------------------------------ vmdk-stream.c */

/* Reads grain GI of a compressed extent whose GTE is GTE into OUT
 * (grain_bytes). */
int vmdk_stream_read_grain(struct dk_image *img, struct vmdk_extent *e,
                           uint64_t gi, uint32_t gte, uint8_t *out);
/* Reads the footer of an AT_END stream file into *H. */
int vmdk_stream_footer(struct dk_file *f, uint64_t file_size,
                       struct vmdk_header *h, struct dk_error *err);
/* Parses a 512-byte marker: returns its type (0..3) with *VAL = numSectors
 * (or LBA), or -1 when the sector is a grain marker (size != 0). */
int vmdk_marker_decode(const uint8_t *sec, uint64_t *val, uint32_t *size);
/* Writer: starts appending on a fresh stream extent. */
int vmdk_swriter_start(struct dk_image *img, struct vmdk_extent *e);
void vmdk_swriter_free(struct vmdk_extent *e);
/* Sequential guest write into the stream extent (byte offset in the
 * extent); -EINVAL when it goes backwards. */
int vmdk_swriter_write(struct dk_image *img, struct vmdk_extent *e,
                       const uint8_t *buf, size_t len, uint64_t off);
/* Appends one grain already compressed (CLEN 0: PLAIN not compressed). */
int vmdk_swriter_grain(struct dk_image *img, struct vmdk_extent *e, uint64_t gi,
                       const void *cdata, size_t clen, const void *plain,
                       size_t plain_len);
/* Writes GTs, GD, footer and EOS after the last grain (repeatable). */
int vmdk_swriter_finish(struct dk_image *img, struct vmdk_extent *e);
/* With an active writer: true when grain GI lies in the GT being filled
 * (then *GTE is its entry there). */
bool vmdk_swriter_lookup(struct vmdk_extent *e, uint64_t gi, uint32_t *gte);
/* The writer's pending (not yet appended) grain GI, or NULL. */
const uint8_t *vmdk_swriter_pending(struct vmdk_extent *e, uint64_t gi);
/* Writes the initial layout of an empty stream file. */
int vmdk_stream_create(struct dk_file *f, uint64_t sectors, const char *desc,
                       struct dk_error *err);

/* ------------------------------------------------------------ vmdk-io.c */

int vmdk_read(struct dk_image *img, void *buf, size_t len, uint64_t off);
int vmdk_write(struct dk_image *img, const void *buf, size_t len, uint64_t off);
int vmdk_zero(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags);
int vmdk_flush(struct dk_image *img);
int vmdk_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                      struct dk_extent *ext);
ssize_t vmdk_compress(struct dk_image *img, const void *in, size_t in_len,
                      void *out, size_t cap);
int vmdk_write_compressed(struct dk_image *img, uint64_t off, const void *cdata,
                          size_t clen, const void *plain, size_t plain_len);
/* Index of the extent holding guest byte OFF (OFF < img->size). */
size_t vmdk_find_extent(const struct vmdk_state *st, uint64_t off);

/* ------------------------------------------------------------ vmdk.c */

/* Verifies once per session that the parent's CID matches our parentCID
 * before parent data is used (qemu fails such reads with EINVAL). */
int vmdk_parent_check(struct dk_image *img);
/* Appends a zeroed extent to ST (pointers into st->ext are invalidated). */
struct vmdk_extent *vmdk_add_extent(struct dk_image *img, struct vmdk_state *st);
/* Opens the extent the descriptor line X names into E (start preset). */
int vmdk_open_extent(struct dk_image *img, struct vmdk_extent *e,
                     const struct vmdk_desc_extent *x);

/* ------------------------------------------------------------ vmdk-resize.c */

int vmdk_truncate(struct dk_image *img, uint64_t size, const char *prealloc,
                  unsigned flags);

/* ------------------------------------------------------------ vmdk-create.c */

int vmdk_create(const struct dk_create_ctx *c);
/* Writes an empty hosted sparse extent (qemu's layout) to F. DESC may be
 * NULL (split extents carry no descriptor). */
int vmdk_sparse_create(struct dk_file *f, uint64_t sectors, bool zeroed_grain,
                       const char *desc, struct dk_error *err);
/* "dir/name.vmdk" + "-f001" -> "dir/name-f001.vmdk" (qemu's extent file
 * names). Caller frees; NULL when out of memory. */
char *vmdk_extent_path(const char *filename, const char *suffix);
extern const struct dk_optdesc vmdk_create_opts[];

#endif /* DK_VMDK_H */
