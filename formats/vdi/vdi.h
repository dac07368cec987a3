/* vdi.h - private header of the VirtualBox VDI driver: on-disk constants,
 * limits, the host-order header struct and the driver state.
 *
 * Layout (little-endian; VirtualBox VDICore.h, qemu block/vdi.c):
 *   0    text[64]          "<<< ... Virtual Disk Image >>>\n"
 *   64   u32 signature     0xbeda107f
 *   68   u32 version       0x00010001 (1.1)
 *   72   u32 header_size   bytes from offset 72 (0x180 v1, 0x190 v1+)
 *   76   u32 image_type    1 dynamic, 2 static, 3 undo, 4 differencing
 *   80   u32 image_flags
 *   84   description[256]
 *   340  u32 offset_bmap,  344 u32 offset_data
 *   348  u32 cylinders, heads, sectors, sector_size (legacy geometry)
 *   364  u32 unused
 *   368  u64 disk_size
 *   376  u32 block_size, block_extra, blocks_in_image, blocks_allocated
 *   392  uuid image, 408 last snapshot, 424 link, 440 parent (16 bytes each)
 *   456  end of a v1 header (v1+ adds an LCHS geometry, kept as is)
 * Block map: one u32 per guest block at offset_bmap; a data block index,
 * or VDI_MAP_UNALLOCATED / VDI_MAP_ZERO. Data block i lies at
 * offset_data + i * (block_size + block_extra) + block_extra.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_FORMATS_VDI_H
#define DK_FORMATS_VDI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define VDI_TEXT_LEN          64
#define VDI_DESC_LEN          256
#define VDI_UUID_LEN          16
#define VDI_SIGNATURE         0xbeda107fu
#define VDI_VERSION_1_1       0x00010001u
#define VDI_PREHEADER_SIZE    72u          /* text + signature + version */
#define VDI_HEADER_V1_SIZE    0x180u       /* header_size of a v1 header */
#define VDI_HEADER_V1_END     (VDI_PREHEADER_SIZE + VDI_HEADER_V1_SIZE)  /* 456 */
#define VDI_HEADER_SECTOR     512u         /* what we read and write back */
#define VDI_SECTOR_SIZE       512u

#define VDI_TYPE_DYNAMIC      1u
#define VDI_TYPE_STATIC       2u
#define VDI_TYPE_UNDO         3u
#define VDI_TYPE_DIFF         4u

#define VDI_MAP_UNALLOCATED   0xffffffffu  /* never written: reads zeros */
#define VDI_MAP_ZERO          0xfffffffeu  /* discarded: reads zeros */

/* VirtualBox and qemu write 1 MiB blocks only (qemu refuses others). Other
 * powers of two use the same arithmetic, so they are accepted; the maximum
 * bounds the bounce buffer of a partial allocating write. */
#define VDI_BLOCK_SIZE_DEFAULT (1u << 20)
#define VDI_BLOCK_SIZE_MIN     VDI_SECTOR_SIZE
#define VDI_BLOCK_SIZE_MAX     (64u << 20)
/* Per-block metadata VirtualBox may reserve in front of each block (always
 * 0 in practice); a multiple of the sector size. */
#define VDI_BLOCK_EXTRA_MAX    (1u << 20)
/* Cap on blocks_in_image: the block map is held in memory (4 bytes per
 * block), so 2^28 blocks is a 1 GiB map = 256 TiB of 1 MiB blocks, far more
 * than VirtualBox creates (2 TiB) yet below qemu's 2^30 - 1. The map must
 * also fit inside the file, so a small file never makes us allocate much. */
#define VDI_MAX_BLOCKS         (1u << 28)

/* The header in host order. Unknown bytes (description, LCHS geometry,
 * padding) are kept in the raw sector of the state and written back. */
struct vdi_header {
    char text[VDI_TEXT_LEN];
    uint32_t signature;
    uint32_t version;
    uint32_t header_size;
    uint32_t image_type;
    uint32_t image_flags;
    char description[VDI_DESC_LEN];
    uint32_t offset_bmap;
    uint32_t offset_data;
    uint32_t cylinders, heads, sectors;
    uint32_t sector_size;
    uint64_t disk_size;
    uint32_t block_size;
    uint32_t block_extra;
    uint32_t blocks_in_image;
    uint32_t blocks_allocated;
    uint8_t uuid_image[VDI_UUID_LEN];
    uint8_t uuid_last_snap[VDI_UUID_LEN];
    uint8_t uuid_link[VDI_UUID_LEN];
    uint8_t uuid_parent[VDI_UUID_LEN];
};

/* Driver state (img->priv).
 * Invariants:
 *  1. map[] holds blocks_in_image entries in host order; it is the truth
 *     while the image is open. Entries changed since the last flush lie in
 *     [dirty_lo, dirty_hi) and reach the disk in vdi_flush, after the data
 *     they point to (fdatasync in between), followed by the header.
 *  2. next_index is above every data block index in use, so a new block
 *     never overwrites a referenced one even when the header's count is
 *     stale after a crash.
 *  3. bad (a bit per guest block, NULL when none) marks entries that must
 *     not be used: out of range, sharing a data block with an earlier
 *     entry, or lying past the end of the file. I/O on them fails. */
struct vdi_state {
    struct vdi_header hdr;
    uint8_t hdr_raw[VDI_HEADER_SECTOR];
    uint32_t *map;
    uint8_t *bad;
    uint64_t nbad;
    uint64_t stride;           /* block_size + block_extra */
    uint64_t file_size;        /* as far as we know it */
    uint32_t next_index;
    uint32_t dirty_lo, dirty_hi;
    bool hdr_dirty;
    bool trunc_pending;        /* the last block was freed: shrink file */
    uint8_t *bounce;           /* block_size bytes, allocated on demand */
};

/* ---------------------------------------------------------------- vdi.c */
int vdi_header_decode(const uint8_t *buf, size_t len, struct vdi_header *h);
void vdi_header_encode(const struct vdi_header *h, uint8_t *buf);
/* Validates H against FILE_SIZE. Returns 0 or -errno with a one-line
 * reason in MSG (MSG_LEN bytes). */
int vdi_header_validate(const struct vdi_header *h, uint64_t file_size,
                        char *msg, size_t msg_len);
/* Guest size: disk_size rounded up to a sector (VBoxManage writes odd ones). */
uint64_t vdi_guest_size(const struct vdi_header *h);
static inline bool vdi_entry_allocated(uint32_t e) { return e < VDI_MAP_ZERO; }
/* Host offset of the data of data block IDX. */
uint64_t vdi_block_host(const struct vdi_state *s, uint32_t idx);
/* Bytes of guest block B that must be present in the file. */
uint64_t vdi_block_need(const struct vdi_state *s, uint32_t b);
int vdi_write_map(struct dk_image *img, uint32_t lo, uint32_t hi);
int vdi_write_header(struct dk_image *img);
int vdi_flush(struct dk_image *img);
void vdi_mark_dirty(struct vdi_state *s, uint32_t b);
/* Rescans the map: recomputes bad, nbad and next_index. */
int vdi_scan_map(struct dk_image *img);

/* --------------------------------------------------------- vdi-create.c */
int vdi_create(const struct dk_create_ctx *ctx);
int vdi_truncate(struct dk_image *img, uint64_t size, const char *prealloc, unsigned flags);
int vdi_info(struct dk_image *img, struct dk_info *info);

/* ----------------------------------------------------------- vdi-grow.c */
/* Grows to N blocks and NSIZE bytes when the map has no room for N entries
 * before the data: moves the first data blocks to the end and writes the
 * map in their place, crash-safely. Pending writes must be flushed. */
int vdi_grow_moving(struct dk_image *img, uint32_t n, uint64_t nsize);
/* Called before any grow: clears entries past the guest size and compacts
 * the data blocks when they are not dense (both left by an interrupted
 * grow), with the repair of vdi-check.c. */
int vdi_grow_prepare(struct dk_image *img);

/* ---------------------------------------------------------- vdi-check.c */
int vdi_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
              dk_report_fn report, void *opaque);

#endif
