/* vhdx-parse.c - VHDX structure decoding and validation: CRC-32C, the two
 * headers, the region table, the metadata table and its items, and the
 * BAT index arithmetic. Pure functions over byte buffers (no I/O), so the
 * unit test drives every rule directly.
 *
 * Spec: MS-VHDX 1.0 sections 2.2 (headers), 2.3 (region table), 2.5
 * (BAT), 2.6 (metadata). What qemu 7.2 accepts is noted where it differs.
 *
 * Known gaps: the parent locator item is only recognised (differencing
 * disks are refused by the caller); unknown optional items are skipped.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vhdx.h"

/* GUIDs in their on-disk byte order (data1..3 little-endian). */
const uint8_t vhdx_guid_bat[16] = {
    0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
    0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };
const uint8_t vhdx_guid_meta[16] = {
    0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
    0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e };
static const uint8_t guid_file_params[16] = {
    0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
    0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b };
static const uint8_t guid_disk_size[16] = {
    0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
    0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8 };
static const uint8_t guid_page83[16] = {
    0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
    0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46 };
static const uint8_t guid_logical[16] = {
    0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
    0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f };
static const uint8_t guid_physical[16] = {
    0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44,
    0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56 };
static const uint8_t guid_parent_loc[16] = {
    0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
    0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c };

#define BAD(...) (snprintf(msg, msg_len, __VA_ARGS__), -EINVAL)
#define UNSUP(...) (snprintf(msg, msg_len, __VA_ARGS__), -ENOTSUP)

/* ------------------------------------------------------------ CRC-32C */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;   /* Castagnoli, reflected */
        crc_table[i] = c;
    }
}

/* Running CRC: start with 0, feed pieces in order. */
uint32_t vhdx_crc32c(uint32_t crc, const void *buf, size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    const uint8_t *p = buf;
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
    static const uint8_t zero[4];
    uint32_t c = vhdx_crc32c(0, buf, csum_off);
    c = vhdx_crc32c(c, zero, 4);
    return vhdx_crc32c(c, buf + csum_off + 4, len - csum_off - 4);
}

/* ------------------------------------------------------------- header */

int vhdx_header_decode(const uint8_t *buf, size_t len, struct vhdx_header *h)
{
    if (len < 80)
        return -EINVAL;
    memset(h, 0, sizeof(*h));
    h->signature = dk_le32(buf);
    h->checksum = dk_le32(buf + 4);
    h->sequence = dk_le64(buf + 8);
    memcpy(h->file_write_guid, buf + 16, 16);
    memcpy(h->data_write_guid, buf + 32, 16);
    memcpy(h->log_guid, buf + 48, 16);
    h->log_version = dk_le16(buf + 64);
    h->version = dk_le16(buf + 66);
    h->log_length = dk_le32(buf + 68);
    h->log_offset = dk_le64(buf + 72);
    return 0;
}

int vhdx_header_validate(const uint8_t *buf, const struct vhdx_header *h,
                         char *msg, size_t msg_len)
{
    if (h->signature != VHDX_HEADER_SIG)
        return BAD("bad signature 0x%08" PRIx32, h->signature);
    if (vhdx_checksum(buf, VHDX_HEADER_SIZE, 4) != h->checksum)
        return BAD("bad checksum");
    if (h->version != 1)
        return BAD("unsupported version %u", h->version);
    return 0;
}

int vhdx_header_pick(const struct vhdx_header *h, const bool valid[2])
{
    if (valid[0] && valid[1]) {
        if (h[0].sequence != h[1].sequence)
            return h[0].sequence > h[1].sequence ? 0 : 1;
        /* Disk2VHD writes two identical headers; anything else with equal
         * sequence numbers is ambiguous (qemu refuses it too). */
        return memcmp(&h[0], &h[1], sizeof(h[0])) ? -1 : 0;
    }
    return valid[0] ? 0 : valid[1] ? 1 : -1;
}

/* qemu validates these fields on every open, log in use or not. */
int vhdx_log_fields_validate(const struct vhdx_header *h, uint64_t file_size,
                             char *msg, size_t msg_len)
{
    if (h->log_version != 0)
        return UNSUP("unsupported log version %u", h->log_version);
    if (h->log_offset % VHDX_MIB || h->log_length % VHDX_MIB)
        return BAD("log offset 0x%" PRIx64 " or length %" PRIu32 " is not a multiple "
                   "of 1 MiB", h->log_offset, h->log_length);
    if (h->log_length && (h->log_offset < VHDX_MIB ||
                          !dk_range_inside(h->log_offset, h->log_length, file_size)))
        return BAD("log at 0x%" PRIx64 " (%" PRIu32 " bytes) lies outside the file "
                   "(%" PRIu64 " bytes)", h->log_offset, h->log_length, file_size);
    return 0;
}

/* ------------------------------------------------------- region table */

static int region_take(const uint8_t *e, uint64_t file_size, struct vhdx_region *r,
                       bool *seen, const char *what, char *msg, size_t msg_len)
{
    if (*seen)
        return BAD("region table lists the %s region twice", what);
    *seen = true;
    r->offset = dk_le64(e + 16);
    r->length = dk_le32(e + 24);
    if (r->offset % VHDX_MIB || r->length % VHDX_MIB || r->length == 0 ||
        r->offset < VHDX_MIB)
        return BAD("%s region at 0x%" PRIx64 " (%" PRIu32 " bytes) is not 1 MiB-aligned "
                   "past the header section", what, r->offset, r->length);
    if (!dk_range_inside(r->offset, r->length, file_size))
        return BAD("%s region at 0x%" PRIx64 " (%" PRIu32 " bytes) lies beyond the end "
                   "of the file (%" PRIu64 " bytes)", what, r->offset, r->length, file_size);
    return 0;
}

int vhdx_region_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                      struct vhdx_layout *lay, char *msg, size_t msg_len)
{
    if (len < VHDX_REGION_SIZE)
        return BAD("region table truncated");
    if (dk_le32(buf) != VHDX_REGION_SIG)
        return BAD("region table: bad signature");
    if (vhdx_checksum(buf, VHDX_REGION_SIZE, 4) != dk_le32(buf + 4))
        return BAD("region table: bad checksum");
    uint32_t n = dk_le32(buf + 8);
    if (n > VHDX_REGION_MAX)
        return BAD("region table: %" PRIu32 " entries (at most %u)", n, VHDX_REGION_MAX);
    bool bat = false, meta = false;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = buf + 16 + (size_t)i * 32;
        int r = 0;
        if (!memcmp(e, vhdx_guid_bat, 16))
            r = region_take(e, file_size, &lay->bat, &bat, "BAT", msg, msg_len);
        else if (!memcmp(e, vhdx_guid_meta, 16))
            r = region_take(e, file_size, &lay->meta, &meta, "metadata", msg, msg_len);
        else if (dk_le32(e + 28) & VHDX_REGION_REQUIRED)
            return UNSUP("unknown required region (entry %" PRIu32 ")", i);
        if (r < 0)
            return r;
    }
    if (!bat || !meta)
        return BAD("region table has no %s region", bat ? "metadata" : "BAT");
    if (dk_ranges_overlap(lay->bat.offset, lay->bat.length, lay->meta.offset,
                          lay->meta.length))
        return BAD("BAT and metadata regions overlap");
    return 0;
}

/* ---------------------------------------------------------- metadata */

static const uint8_t *const meta_guids[VHDX_M_COUNT] = {
    guid_file_params, guid_disk_size, guid_page83, guid_logical, guid_physical,
    guid_parent_loc };
static const char *const meta_names[VHDX_M_COUNT] = {
    "file parameters", "virtual disk size", "page 83 data", "logical sector size",
    "physical sector size", "parent locator" };
const uint32_t vhdx_meta_item_len[VHDX_M_COUNT] = { 8, 8, 16, 4, 4, 0 };

const uint8_t *vhdx_meta_guid(int k)
{
    return meta_guids[k];
}

int vhdx_meta_table_parse(const uint8_t *t, uint32_t region_len,
                          uint32_t off[VHDX_M_COUNT], char *msg, size_t msg_len)
{
    if (region_len < VHDX_META_TABLE_SIZE)
        return BAD("metadata region too small (%" PRIu32 " bytes)", region_len);
    if (memcmp(t, VHDX_META_SIG, 8))
        return BAD("metadata table: bad signature");
    uint16_t n = dk_le16(t + 10);
    if (n > VHDX_META_MAX)
        return BAD("metadata table: %u entries (at most %u)", n, VHDX_META_MAX);
    for (int k = 0; k < VHDX_M_COUNT; k++)
        off[k] = UINT32_MAX;
    for (uint16_t i = 0; i < n; i++) {
        const uint8_t *e = t + 32 + (size_t)i * 32;
        uint32_t o = dk_le32(e + 16), l = dk_le32(e + 20), fl = dk_le32(e + 24);
        int k = 0;
        while (k < VHDX_M_COUNT && memcmp(e, meta_guids[k], 16))
            k++;
        if (k == VHDX_M_COUNT) {
            if (fl & VHDX_META_REQUIRED)
                return UNSUP("unknown required metadata item (entry %u)", i);
            continue;
        }
        if (off[k] != UINT32_MAX)
            return BAD("metadata item %s listed twice", meta_names[k]);
        if (l < vhdx_meta_item_len[k] || o < VHDX_META_TABLE_SIZE ||
            !dk_range_inside(o, l, region_len))
            return BAD("metadata item %s at 0x%" PRIx32 " (%" PRIu32 " bytes) lies outside "
                       "the metadata region", meta_names[k], o, l);
        off[k] = o;
    }
    /* Page 83 data is required by the spec but unused here, as in qemu
     * (which requires it); its absence is tolerated. */
    for (int k = 0; k < VHDX_M_PARENT; k++)
        if (off[k] == UINT32_MAX && k != VHDX_M_PAGE83)
            return BAD("metadata item %s is missing", meta_names[k]);
    return 0;
}

int vhdx_meta_decode(const uint8_t item[VHDX_M_COUNT][16], const uint32_t off[VHDX_M_COUNT],
                     struct vhdx_layout *lay, char *msg, size_t msg_len)
{
    lay->block_size = dk_le32(item[VHDX_M_PARAMS]);
    lay->param_flags = dk_le32(item[VHDX_M_PARAMS] + 4);
    lay->disk_size = dk_le64(item[VHDX_M_SIZE]);
    lay->logical_sector = dk_le32(item[VHDX_M_LOGICAL]);
    lay->physical_sector = dk_le32(item[VHDX_M_PHYSICAL]);
    lay->has_page83 = off[VHDX_M_PAGE83] != UINT32_MAX;
    if (lay->has_page83)
        memcpy(lay->page83, item[VHDX_M_PAGE83], 16);
    if (!dk_is_pow2(lay->block_size) || lay->block_size < VHDX_BLOCK_MIN ||
        lay->block_size > VHDX_BLOCK_MAX)
        return BAD("invalid block size %" PRIu32 " (a power of two from 1 MiB to 256 MiB)",
                   lay->block_size);
    if (lay->logical_sector != 512 && lay->logical_sector != 4096)
        return BAD("invalid logical sector size %" PRIu32 " (512 or 4096)",
                   lay->logical_sector);
    if (lay->physical_sector != 512 && lay->physical_sector != 4096)
        return BAD("invalid physical sector size %" PRIu32 " (512 or 4096)",
                   lay->physical_sector);
    if (lay->disk_size == 0 || lay->disk_size % lay->logical_sector ||
        lay->disk_size > VHDX_MAX_DISK_SIZE)
        return BAD("invalid virtual disk size %" PRIu64 " (a multiple of the %" PRIu32
                   "-byte sector, at most 64 TiB)", lay->disk_size, lay->logical_sector);
    if (lay->param_flags & VHDX_PARAM_HAS_PARENT) {
        if (off[VHDX_M_PARENT] == UINT32_MAX)
            return BAD("differencing image without a parent locator");
        return UNSUP("differencing images (has-parent) are not supported");
    }
    lay->chunk_ratio = VHDX_SECTORS_PER_CHUNK * lay->logical_sector / lay->block_size;
    lay->payload_blocks = dk_div_round_up(lay->disk_size, lay->block_size);
    lay->bat_entries = lay->payload_blocks + (lay->payload_blocks - 1) / lay->chunk_ratio;
    return 0;
}

/* --------------------------------------------------------------- BAT */

uint64_t vhdx_bat_index(const struct vhdx_layout *lay, uint64_t b)
{
    return b + b / lay->chunk_ratio;
}

uint64_t vhdx_bitmap_index(const struct vhdx_layout *lay, uint64_t b)
{
    uint64_t chunk = b / lay->chunk_ratio;
    return chunk * (lay->chunk_ratio + 1) + lay->chunk_ratio;
}

bool vhdx_overlaps_metadata(const struct vhdx_state *s, uint64_t off, uint64_t len)
{
    const struct vhdx_layout *l = &s->lay;
    return dk_ranges_overlap(off, len, 0, VHDX_MIB) ||
           (s->hdr.log_length && dk_ranges_overlap(off, len, s->hdr.log_offset,
                                                   s->hdr.log_length)) ||
           dk_ranges_overlap(off, len, l->bat.offset, l->bat.length) ||
           dk_ranges_overlap(off, len, l->meta.offset, l->meta.length);
}
