/* vhdx.h - private header of the Hyper-V VHDX driver: on-disk constants,
 * limits, host-order structures and the driver state.
 *
 * Layout (MS-VHDX 1.0, little-endian; 1 MiB-aligned objects):
 *   0       file type identifier: "vhdxfile", creator (UTF-16, ignored)
 *   64 KiB  header 1, 128 KiB header 2 (4 KiB each, CRC-32C over 4 KiB)
 *             0 "head"  4 u32 checksum  8 u64 sequence
 *             16 file write GUID  32 data write GUID  48 log GUID
 *             64 u16 log version (0)  66 u16 version (1)
 *             68 u32 log length  72 u64 log offset
 *   192 KiB region table 1, 256 KiB region table 2 (64 KiB, CRC-32C)
 *             0 "regi"  4 u32 checksum  8 u32 entry count (<= 2047)
 *             16.. entries of 32 bytes: GUID, u64 file offset,
 *                  u32 length, u32 flags (bit 0 required)
 *   metadata region: 64 KiB table "metadata", u16 entry count at 10,
 *             entries from 32 (32 bytes: item GUID, u32 offset from the
 *             region start, u32 length, u32 flags (bit 2 required));
 *             items: file parameters (u32 block size, u32 flags: bit 0
 *             leave blocks allocated, bit 1 has parent), u64 virtual
 *             disk size, u32 logical and physical sector size, page 83
 *             GUID, parent locator.
 *   BAT: u64 entries, state in bits 0-2, file offset in MiB in bits
 *        20-63; after every chunk_ratio payload entries one sector bitmap
 *        entry, chunk_ratio = 2^23 * logical sector size / block size.
 *   log: circular buffer of 4 KiB sectors ("loge" entry headers).
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_FORMATS_VHDX_H
#define DK_FORMATS_VHDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define VHDX_MIB               (1ull << 20)
#define VHDX_FILE_SIG          "vhdxfile"
#define VHDX_HEADER1_OFF       (64u << 10)
#define VHDX_HEADER2_OFF       (128u << 10)
#define VHDX_HEADER_SIZE       4096u
#define VHDX_HEADER_SIG        0x64616568u      /* "head" */
#define VHDX_REGION1_OFF       (192u << 10)
#define VHDX_REGION2_OFF       (256u << 10)
#define VHDX_REGION_SIZE       (64u << 10)
#define VHDX_REGION_SIG        0x69676572u      /* "regi" */
#define VHDX_REGION_MAX        2047u            /* spec limit on entries */
#define VHDX_REGION_REQUIRED   0x1u
#define VHDX_META_SIG          "metadata"
#define VHDX_META_TABLE_SIZE   (64u << 10)
#define VHDX_META_MAX          2047u
#define VHDX_META_REQUIRED     0x4u
#define VHDX_PARAM_LEAVE_ALLOC 0x1u
#define VHDX_PARAM_HAS_PARENT  0x2u
#define VHDX_LOG_SIG           0x65676f6cu      /* "loge" */
#define VHDX_LOG_SECTOR        4096u
#define VHDX_LOG_ENTRY_HDR     64u
/* A log in use is read into memory whole to be replayed: 64 MiB is 64
 * times the size Hyper-V and qemu create. The search checksums at most
 * VHDX_LOG_CRC_BUDGET bytes, so a crafted log cannot make it slow. */
#define VHDX_LOG_REPLAY_MAX    (64u << 20)
#define VHDX_LOG_CRC_BUDGET    (1ull << 30)

/* Spec ranges: block size a power of two from 1 to 256 MiB; at most
 * 64 TiB of virtual disk. The cap on the disk size bounds the BAT held in
 * memory: 2^26 payload entries of 1 MiB plus bitmaps, 512 MiB at most,
 * and the BAT must also lie inside the file, so a small file never makes
 * us allocate much. */
#define VHDX_BLOCK_MIN         (1u << 20)
#define VHDX_BLOCK_MAX         (256u << 20)
#define VHDX_MAX_DISK_SIZE     (64ull << 40)
#define VHDX_SECTORS_PER_CHUNK (1ull << 23)

/* BAT entry states (payload blocks; 5 is the v0.95 spelling of unmapped). */
enum {
    VHDX_BAT_NOT_PRESENT = 0,
    VHDX_BAT_UNDEFINED = 1,
    VHDX_BAT_ZERO = 2,
    VHDX_BAT_UNMAPPED = 3,
    VHDX_BAT_UNMAPPED_V095 = 5,
    VHDX_BAT_FULLY_PRESENT = 6,
    VHDX_BAT_PARTIALLY_PRESENT = 7,
};
#define VHDX_BAT_STATE_MASK    0x7ull
#define VHDX_BAT_OFF_MASK      (~0xfffffull)

struct vhdx_header {
    uint32_t signature;
    uint32_t checksum;
    uint64_t sequence;
    uint8_t file_write_guid[16];
    uint8_t data_write_guid[16];
    uint8_t log_guid[16];
    uint16_t log_version;
    uint16_t version;
    uint32_t log_length;
    uint64_t log_offset;
};

struct vhdx_region {
    uint64_t offset;
    uint32_t length;
};

/* What the region table and metadata describe, in host order. */
struct vhdx_layout {
    struct vhdx_region bat, meta;
    uint32_t block_size;
    uint32_t param_flags;
    uint64_t disk_size;
    uint32_t logical_sector;
    uint32_t physical_sector;
    uint8_t page83[16];
    bool has_page83;
    uint64_t chunk_ratio;        /* payload entries per sector bitmap */
    uint64_t payload_blocks;     /* ceil(disk_size / block_size) */
    uint64_t bat_entries;        /* including interleaved bitmap entries */
};

/* One valid log entry, and a sequence of them laid end to end. */
struct vhdx_log_entry {
    uint32_t pos, length;
    uint64_t sequence;
    uint32_t descriptors;
    uint64_t flushed_offset, last_offset;
};
struct vhdx_log_seq {
    uint32_t start, count;       /* count 0: no valid sequence */
    struct vhdx_log_entry last;
};

/* The replayed log: file ranges that read as DATA (4 KiB) or zeros,
 * applied in order over what the file holds. */
struct vhdx_ovl_item {
    uint64_t off, len;
    uint8_t *data;               /* NULL: zeros */
};
struct vhdx_overlay {
    struct vhdx_ovl_item *items;
    size_t n, cap;
};

struct vhdx_state {
    uint64_t file_size;          /* as the replayed log leaves it */
    uint64_t real_file_size;     /* as on disk */
    struct vhdx_header hdr;      /* the active header */
    int active;                  /* 0 or 1: which copy */
    struct vhdx_layout lay;
    uint64_t *bat;               /* bat_entries, host order */
    uint8_t *bad;                /* one bit per payload block, NULL if none */
    uint64_t nbad;
    struct vhdx_overlay ovl;     /* the replayed log, empty when clean */
    uint32_t replayed;           /* log entries replayed into ovl */
    /* Writes (vhdx-write.c): BAT entries [dirty_lo, dirty_hi) changed in
     * memory; headers_done once this session's header update is on disk. */
    uint64_t dirty_lo, dirty_hi;
    bool headers_done;
};

/* ------------------------------------------------ vhdx-parse.c */
extern const uint8_t vhdx_guid_bat[16], vhdx_guid_meta[16];
uint32_t vhdx_crc32c(uint32_t crc, const void *buf, size_t len);
/* CRC-32C of LEN bytes with the 4-byte field at CSUM_OFF taken as zero. */
uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t csum_off);
int vhdx_header_decode(const uint8_t *buf, size_t len, struct vhdx_header *h);
/* 0 when BUF (4 KiB) holds a header with a good signature, checksum and
 * version; -EINVAL otherwise (MSG says why). */
int vhdx_header_validate(const uint8_t *buf, const struct vhdx_header *h,
                         char *msg, size_t msg_len);
/* Picks the active header of two candidates (-1 when invalid): the valid
 * one with the higher sequence; equal sequences need identical headers. */
int vhdx_header_pick(const struct vhdx_header *h, const bool valid[2]);
int vhdx_log_fields_validate(const struct vhdx_header *h, uint64_t file_size,
                             char *msg, size_t msg_len);
/* Parses a 64 KiB region table into LAY->bat and LAY->meta. */
int vhdx_region_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                      struct vhdx_layout *lay, char *msg, size_t msg_len);
/* Metadata items by index, and the bytes of each that are decoded. */
enum { VHDX_M_PARAMS, VHDX_M_SIZE, VHDX_M_PAGE83, VHDX_M_LOGICAL, VHDX_M_PHYSICAL,
       VHDX_M_PARENT, VHDX_M_COUNT };
extern const uint32_t vhdx_meta_item_len[VHDX_M_COUNT];
const uint8_t *vhdx_meta_guid(int k);      /* item GUID, on-disk order */
/* Parses the 64 KiB metadata table of a region of REGION_LEN bytes: OFF
 * gets each item's offset in the region (UINT32_MAX when absent). */
int vhdx_meta_table_parse(const uint8_t *table, uint32_t region_len,
                          uint32_t off[VHDX_M_COUNT], char *msg, size_t msg_len);
/* Decodes and range-checks the items (ITEM[k] holds the first
 * vhdx_meta_item_len[k] bytes of item k) into the rest of LAY. */
int vhdx_meta_decode(const uint8_t item[VHDX_M_COUNT][16], const uint32_t off[VHDX_M_COUNT],
                     struct vhdx_layout *lay, char *msg, size_t msg_len);
/* BAT index of payload block B. */
uint64_t vhdx_bat_index(const struct vhdx_layout *lay, uint64_t b);
/* BAT index of the sector bitmap entry covering payload block B. */
uint64_t vhdx_bitmap_index(const struct vhdx_layout *lay, uint64_t b);
/* Ranges of the file that payload blocks must not overlap. */
bool vhdx_overlaps_metadata(const struct vhdx_state *s, uint64_t off, uint64_t len);

/* ------------------------------------------------ vhdx-log.c */
/* Finds the active sequence in the LEN-byte log LOG written under GUID
 * (BEST->count 0: none). -E2BIG when the search gave up. */
int vhdx_log_find(const uint8_t *log, uint32_t len, const uint8_t *guid,
                  struct vhdx_log_seq *best);
/* Appends the writes of SEQ to O, in order. */
int vhdx_log_build(const uint8_t *log, uint32_t len, const uint8_t *guid,
                   const struct vhdx_log_seq *seq, struct vhdx_overlay *o);
/* Patches BUF (file bytes OFF..OFF+LEN) with the overlay. */
void vhdx_overlay_apply(const struct vhdx_overlay *o, uint8_t *buf, size_t len, uint64_t off);
bool vhdx_overlay_touches(const struct vhdx_overlay *o, uint64_t off, uint64_t len);
void vhdx_overlay_free(struct vhdx_overlay *o);
/* Replays a log in use into s->ovl (and may raise s->file_size to the
 * size the log gives the file). 0 when clean or replayed. */
int vhdx_log_replay(struct dk_image *img);

/* ------------------------------------------------ vhdx-create.c */
int vhdx_random(void *buf, size_t len);
int vhdx_new_guid(uint8_t *g);             /* random, version 4 */
/* Encodes H into a zeroed 4 KiB BUF, checksum included. */
void vhdx_header_encode(const struct vhdx_header *h, uint8_t *buf);
int vhdx_create(const struct dk_create_ctx *c);
extern const struct dk_optdesc vhdx_create_opts[];

/* ------------------------------------------------ vhdx-write.c */
int vhdx_write(struct dk_image *img, const void *buf, size_t len, uint64_t off);
int vhdx_flush(struct dk_image *img);

/* ------------------------------------------------ vhdx.c */
/* Reads file bytes as they are after the log replay. */
int vhdx_pread(struct dk_image *img, void *buf, size_t len, uint64_t off);
int vhdx_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
               dk_report_fn report, void *opaque);

/* True when payload block B has an invalid BAT entry (found at open). */
static inline bool vhdx_is_bad(const struct vhdx_state *s, uint64_t b)
{
    return s->nbad && (s->bad[b / 8] >> (b % 8)) & 1;
}

#endif /* DK_FORMATS_VHDX_H */
