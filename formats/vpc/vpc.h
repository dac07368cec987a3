/* vpc.h - private header of the VHD ("vpc", Virtual PC / Hyper-V) driver:
 * on-disk constants, limits, the host-order footer and dynamic header
 * structs and the driver state.
 *
 * Layout (big-endian; Microsoft "Virtual Hard Disk Image Format
 * Specification" 1.0, and qemu block/vpc.c for what qemu accepts):
 * Footer, 512 bytes: at the end of every image, and a copy at offset 0 of
 * dynamic and differencing images.
 *   0  cookie "conectix"   8  u32 features      12 u32 version 0x00010000
 *   16 u64 data_offset (dynamic header; ~0 for fixed)  24 u32 timestamp
 *   28 creator_app[4]      32 u32 creator_version   36 creator_os[4]
 *   40 u64 original_size   48 u64 current_size
 *   56 u16 cylinders, 58 u8 heads, 59 u8 sectors per track
 *   60 u32 disk_type (2 fixed, 3 dynamic, 4 differencing)
 *   64 u32 checksum (one's complement of the byte sum, field taken as 0)
 *   68 uuid[16]   84 u8 saved_state   85 reserved
 * Dynamic disk header, 1024 bytes at footer.data_offset:
 *   0  cookie "cxsparse"   8 u64 data_offset (~0)   16 u64 table_offset
 *   24 u32 version   28 u32 max_table_entries   32 u32 block_size
 *   36 u32 checksum  40 parent_uuid[16]  56 u32 parent_timestamp
 *   64 parent_name[512] (UTF-16BE)  576 8 parent locators of 24 bytes
 * BAT: max_table_entries u32 sector numbers at table_offset; 0xFFFFFFFF is
 * unallocated. A block is a sector bitmap (block_size / 512 bits, padded
 * to a sector) followed by block_size bytes of data.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_FORMATS_VPC_H
#define DK_FORMATS_VPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define VPC_SECTOR            512u
#define VPC_FOOTER_SIZE       512u
#define VPC_DYN_HEADER_SIZE   1024u
#define VPC_UUID_LEN          16
#define VPC_COOKIE            "conectix"
#define VPC_DYN_COOKIE        "cxsparse"
#define VPC_VERSION           0x00010000u
#define VPC_FEATURES_RESERVED 0x00000002u   /* always set, per the spec */

#define VPC_TYPE_FIXED        2u
#define VPC_TYPE_DYNAMIC      3u
#define VPC_TYPE_DIFF         4u

#define VPC_BAT_UNALLOCATED   0xffffffffu

/* Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC (VHD timestamps). */
#define VPC_TIMESTAMP_BASE    946684800u

/* CHS limits: 65535 cylinders x 16 heads x 255 sectors is the geometry
 * qemu writes when the size cannot be expressed in CHS (force_size, or
 * over ~127 GiB); such images are sized by current_size. */
#define VPC_CHS_MAX_C         65535u
#define VPC_CHS_MAX_H         16u
#define VPC_CHS_MAX_S         255u
#define VPC_MAX_GEOMETRY      ((uint64_t)VPC_CHS_MAX_C * VPC_CHS_MAX_H * VPC_CHS_MAX_S)
/* qemu's cap: 2040 GiB (the spec's 2 TiB less what CHS cannot reach). */
#define VPC_MAX_SECTORS       0xff000000ull

/* qemu writes 2 MiB blocks (Hyper-V's default too). Any power of two from
 * a sector up is valid; the maximum keeps the per-block bitmap (written
 * from a buffer of block_size / 4096 bytes) small. */
#define VPC_BLOCK_SIZE_DEFAULT (2u << 20)
#define VPC_BLOCK_SIZE_MIN     VPC_SECTOR
#define VPC_BLOCK_SIZE_MAX     (256u << 20)
/* Cap on max_table_entries: the BAT is held in memory (4 bytes per entry).
 * 2040 GiB in 2 MiB blocks is 1,044,480 entries and even 4 KiB blocks need
 * 2^29; 2^28 entries (a 1 GiB BAT) is far beyond anything real, and the
 * BAT must also lie inside the file, so a small file never makes us
 * allocate much. */
#define VPC_MAX_TABLE_ENTRIES  (1u << 28)

/* The footer in host order. The raw 512 bytes are kept in the state and
 * written back unchanged (the driver never edits the footer). */
struct vpc_footer {
    char cookie[8];
    uint32_t features;
    uint32_t version;
    uint64_t data_offset;
    uint32_t timestamp;
    char creator_app[4];
    uint32_t creator_version;
    char creator_os[4];
    uint64_t original_size;
    uint64_t current_size;
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
    uint32_t disk_type;
    uint32_t checksum;
    uint8_t uuid[VPC_UUID_LEN];
    uint8_t saved_state;
};

/* Parent locators of differencing disks (dynamic header offset 576, 8
 * entries of 24 bytes: u32 platform code, u32 data space, u32 data length,
 * u32 reserved, u64 data offset). Only "W2ru" (a path relative to the
 * child, UTF-16LE, Windows separators) is followed; "W2ku" (absolute
 * Windows path) and "Mac "/"MacX" mean nothing on this host. */
#define VPC_PARENT_NAME_OFF    64
#define VPC_PARENT_NAME_LEN    512
#define VPC_LOCATOR_OFF        576
#define VPC_LOCATOR_COUNT      8
#define VPC_LOCATOR_SIZE       24
#define VPC_PLATFORM_W2RU      0x57327275u  /* "W2ru" */
/* Longest locator we read: a 4096-character path in UTF-16. */
#define VPC_LOCATOR_MAX        8192u

/* The dynamic disk header in host order (the parent name and locators are
 * read from the raw header by vpc-parent.c). */
struct vpc_dyn_header {
    char cookie[8];
    uint64_t data_offset;
    uint64_t table_offset;
    uint32_t version;
    uint32_t max_table_entries;
    uint32_t block_size;
    uint32_t checksum;
    uint8_t parent_uuid[VPC_UUID_LEN];
    uint32_t parent_timestamp;
};

/* Driver state (img->priv).
 * Invariants:
 *  1. bat[] holds max_table_entries entries in host order and is the truth
 *     while the image is open. Entries changed since the last flush lie in
 *     [dirty_lo, dirty_hi) and reach the disk in vpc_flush after the data
 *     and bitmaps they point to (fdatasync in between), so a crash leaves
 *     at most unreferenced blocks at the end of the file.
 *  2. free_off is at or above the end of every block, the BAT and the
 *     dynamic header: a new block goes there, then the footer copy right
 *     after it, so the file always ends with a valid footer.
 *  3. Every allocated entry was checked at open: its block lies inside the
 *     file, after the footer copy at 0, clear of the header, the BAT and
 *     every other block. */
struct vpc_state {
    struct vpc_footer footer;
    uint8_t footer_raw[VPC_FOOTER_SIZE];
    struct vpc_dyn_header dyn;
    bool fixed;
    bool diff;                 /* differencing: read-only, bitmaps matter */
    bool parent_checked;       /* parent UUID compared with parent_uuid */
    uint32_t bm_block;         /* block whose bitmap is in bm_cache, or ~0 */
    uint8_t *bm_cache;         /* bitmap_size bytes */
    uint32_t *bat;
    uint32_t block_size;
    uint32_t bitmap_size;      /* bytes, a multiple of 512 */
    uint64_t file_size;        /* as far as we know it */
    uint64_t free_off;
    uint32_t dirty_lo, dirty_hi;
    uint8_t *bitmap;           /* bitmap_size bytes of 0xff, on demand */
};

/* ---------------------------------------------------------------- vpc.c */
uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t skip_off);
int vpc_footer_decode(const uint8_t *buf, size_t len, struct vpc_footer *f);
void vpc_footer_encode(const struct vpc_footer *f, uint8_t *buf);
int vpc_dyn_header_decode(const uint8_t *buf, size_t len, struct vpc_dyn_header *h);
void vpc_dyn_header_encode(const struct vpc_dyn_header *h, uint8_t *buf);
/* Guest size in bytes as qemu 7.2 computes it: the CHS geometry, unless the
 * creator app is one known to size by current_size or the geometry is the
 * 65535/16/255 maximum; then current_size rounded down to a sector. */
uint64_t vpc_guest_size(const struct vpc_footer *f);
/* True when the creator app makes qemu trust current_size. */
bool vpc_creator_uses_current_size(const char app[4]);
/* Checks the footer read AT (0 or the end) of a file of FILE_SIZE bytes,
 * whose checksum over RAW is already verified or not (CKSUM_OK). Returns
 * 0 or -errno with a one-line reason in MSG. */
int vpc_footer_validate(const struct vpc_footer *f, bool cksum_ok, bool at_start,
                        uint64_t file_size, char *msg, size_t msg_len);
/* Checks the dynamic header against the guest size and the file. */
int vpc_dyn_header_validate(const struct vpc_dyn_header *h, uint64_t guest_size,
                            uint64_t file_size, char *msg, size_t msg_len);
/* Checks the allocated BAT entries (invariant 3) and computes the first
 * free offset. Returns 0 or -errno with MSG. */
int vpc_bat_validate(const uint32_t *bat, uint32_t n, const struct vpc_dyn_header *h,
                     uint64_t header_off, uint64_t file_size, uint64_t *free_off,
                     char *msg, size_t msg_len);
static inline uint32_t vpc_bitmap_size(uint32_t block_size)
{
    return (uint32_t)dk_round_up(block_size / (8 * VPC_SECTOR), VPC_SECTOR);
}
/* The VHD spec's CHS geometry for TOTAL sectors (rounds down). */
void vpc_chs_geometry(uint64_t total, uint16_t *c, uint8_t *h, uint8_t *s);
/* Size qemu-img create gives a request of SIZE bytes: rounded up to a
 * sector, then up to the first CHS geometry that holds it (unless
 * FORCE_SIZE or beyond CHS). Fills the geometry. Returns 0 or -EFBIG. */
int vpc_rounded_size(uint64_t size, bool force_size, uint64_t *out,
                     uint16_t *c, uint8_t *h, uint8_t *s);

/* ---------------------------------------------------------- vpc-parent.c */
/* Decodes N UTF-16 code units at IN (big- or little-endian) into UTF-8 in
 * OUT (CAP bytes, NUL-terminated), stopping at a NUL unit. Returns the
 * length, or -EINVAL for a bad surrogate or an embedded control character,
 * -ENAMETOOLONG when OUT is too small. */
int vpc_utf16_to_utf8(const uint8_t *in, size_t n, bool big_endian, char *out, size_t cap);
/* Sets img->backing_name (relative to the child, '/' separators) and
 * backing_fmt "vpc" from the raw dynamic header HDR of a differencing
 * disk: the W2ru locator, else a parent name that is a bare file name. */
int vpc_parent_open(struct dk_image *img, const uint8_t *hdr);
/* Block status of allocated block B of a differencing disk from its
 * sector bitmap: data in this layer where the bit is set, else the
 * parent's (flags 0). */
int vpc_diff_status(struct dk_image *img, uint32_t b, uint64_t in, uint64_t len,
                    struct dk_extent *ext);
/* Before reporting unallocated blocks of a differencing disk as the
 * parent's: checks the parent's UUID once. Returns 0 or -errno. */
int vpc_diff_unallocated(struct dk_image *img);

/* -------------------------------------------------------------- vpc-io.c */
int vpc_read(struct dk_image *img, void *buf, size_t len, uint64_t off);
int vpc_write(struct dk_image *img, const void *buf, size_t len, uint64_t off);
int vpc_zero(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags);
int vpc_discard(struct dk_image *img, uint64_t off, uint64_t len);
int vpc_flush(struct dk_image *img);
int vpc_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                     struct dk_extent *ext);

/* ---------------------------------------------------------- vpc-create.c */
int vpc_create(const struct dk_create_ctx *ctx);
int vpc_info(struct dk_image *img, struct dk_info *info);

#endif
