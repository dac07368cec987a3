/* vpc.c - VHD ("vpc") images: footer and dynamic header decoding and
 * validation, the size and CHS geometry rules, probe, open and close.
 *
 * Spec: Microsoft "Virtual Hard Disk Image Format Specification" 1.0
 * (footer, dynamic header, BAT, CHS algorithm of appendix "CHS
 * calculation"); what qemu 7.2 block/vpc.c accepts and computes:
 *  - probe: "conectix" at offset 0 only, so fixed VHDs (footer at the end
 *    only) probe as raw, as in qemu; `-f vpc` opens them.
 *  - the footer is taken from offset 0 when its cookie is there (the image
 *    is then dynamic), else from the last 512 bytes, which must then be a
 *    fixed disk. A bad footer checksum is an error; the dynamic header's
 *    checksum is not checked (qemu ignores it).
 *  - size: CHS geometry x 512, except for creator apps "win ", "qem2",
 *    "d2v ", "CTXS" and "tap\0" and for the 65535/16/255 geometry, which
 *    use current_size; at most 2040 GiB.
 *
 * Differencing disks (type 4) are read through their parent (vpc-parent.c);
 * qemu 7.2 opens them without it, i.e. reads the wrong data.
 * Known gaps: differencing disks are read-only; the sector bitmaps of
 * dynamic disks are not read (qemu ignores them too: an allocated block is
 * wholly present).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpc.h"

/* ------------------------------------------------------------ decoding */

uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t skip_off)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < skip_off || i >= skip_off + 4)
            sum += buf[i];
    return ~sum;
}

int vpc_footer_decode(const uint8_t *buf, size_t len, struct vpc_footer *f)
{
    if (len < VPC_FOOTER_SIZE)
        return -EINVAL;
    memset(f, 0, sizeof(*f));
    memcpy(f->cookie, buf, 8);
    f->features = dk_be32(buf + 8);
    f->version = dk_be32(buf + 12);
    f->data_offset = dk_be64(buf + 16);
    f->timestamp = dk_be32(buf + 24);
    memcpy(f->creator_app, buf + 28, 4);
    f->creator_version = dk_be32(buf + 32);
    memcpy(f->creator_os, buf + 36, 4);
    f->original_size = dk_be64(buf + 40);
    f->current_size = dk_be64(buf + 48);
    f->cylinders = dk_be16(buf + 56);
    f->heads = buf[58];
    f->sectors = buf[59];
    f->disk_type = dk_be32(buf + 60);
    f->checksum = dk_be32(buf + 64);
    memcpy(f->uuid, buf + 68, VPC_UUID_LEN);
    f->saved_state = buf[84];
    return 0;
}

/* Writes every field into BUF (512 bytes; the reserved tail is zeroed) and
 * stores the checksum of the result, whatever F->checksum says. */
void vpc_footer_encode(const struct vpc_footer *f, uint8_t *buf)
{
    memset(buf, 0, VPC_FOOTER_SIZE);
    memcpy(buf, f->cookie, 8);
    dk_put_be32(buf + 8, f->features);
    dk_put_be32(buf + 12, f->version);
    dk_put_be64(buf + 16, f->data_offset);
    dk_put_be32(buf + 24, f->timestamp);
    memcpy(buf + 28, f->creator_app, 4);
    dk_put_be32(buf + 32, f->creator_version);
    memcpy(buf + 36, f->creator_os, 4);
    dk_put_be64(buf + 40, f->original_size);
    dk_put_be64(buf + 48, f->current_size);
    dk_put_be16(buf + 56, f->cylinders);
    buf[58] = f->heads;
    buf[59] = f->sectors;
    dk_put_be32(buf + 60, f->disk_type);
    memcpy(buf + 68, f->uuid, VPC_UUID_LEN);
    buf[84] = f->saved_state;
    dk_put_be32(buf + 64, vpc_checksum(buf, VPC_FOOTER_SIZE, 64));
}

int vpc_dyn_header_decode(const uint8_t *buf, size_t len, struct vpc_dyn_header *h)
{
    if (len < VPC_DYN_HEADER_SIZE)
        return -EINVAL;
    memset(h, 0, sizeof(*h));
    memcpy(h->cookie, buf, 8);
    h->data_offset = dk_be64(buf + 8);
    h->table_offset = dk_be64(buf + 16);
    h->version = dk_be32(buf + 24);
    h->max_table_entries = dk_be32(buf + 28);
    h->block_size = dk_be32(buf + 32);
    h->checksum = dk_be32(buf + 36);
    memcpy(h->parent_uuid, buf + 40, VPC_UUID_LEN);
    h->parent_timestamp = dk_be32(buf + 56);
    return 0;
}

/* Writes the header into BUF (1024 bytes; parent name and locators zero)
 * with its checksum. */
void vpc_dyn_header_encode(const struct vpc_dyn_header *h, uint8_t *buf)
{
    memset(buf, 0, VPC_DYN_HEADER_SIZE);
    memcpy(buf, h->cookie, 8);
    dk_put_be64(buf + 8, h->data_offset);
    dk_put_be64(buf + 16, h->table_offset);
    dk_put_be32(buf + 24, h->version);
    dk_put_be32(buf + 28, h->max_table_entries);
    dk_put_be32(buf + 32, h->block_size);
    memcpy(buf + 40, h->parent_uuid, VPC_UUID_LEN);
    dk_put_be32(buf + 56, h->parent_timestamp);
    dk_put_be32(buf + 36, vpc_checksum(buf, VPC_DYN_HEADER_SIZE, 36));
}

/* ------------------------------------------------------------- sizing */

bool vpc_creator_uses_current_size(const char app[4])
{
    /* Hyper-V, qemu with force_size, Disk2vhd, XenConverter, XenServer. */
    static const char apps[][4] = { "win ", "qem2", "d2v ", "CTXS", { 't', 'a', 'p', 0 } };
    for (size_t i = 0; i < DK_ARRAY_SIZE(apps); i++)
        if (!memcmp(app, apps[i], 4))
            return true;
    return false;
}

uint64_t vpc_guest_size(const struct vpc_footer *f)
{
    uint64_t chs = (uint64_t)f->cylinders * f->heads * f->sectors;
    if (vpc_creator_uses_current_size(f->creator_app) || chs == VPC_MAX_GEOMETRY)
        return f->current_size / VPC_SECTOR * VPC_SECTOR;
    return chs * VPC_SECTOR;
}

void vpc_chs_geometry(uint64_t total, uint16_t *c, uint8_t *h, uint8_t *s)
{
    uint64_t spt, heads, cth;
    total = DK_MIN(total, VPC_MAX_GEOMETRY);
    if (total >= (uint64_t)VPC_CHS_MAX_C * 16 * 63) {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        spt = 17;
        cth = total / spt;
        heads = DK_MAX(dk_div_round_up(cth, 1024), 4);
        if (cth >= heads * 1024 || heads > 16) {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if (cth >= heads * 1024) {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
    }
    *c = (uint16_t)(cth / heads);
    *h = (uint8_t)heads;
    *s = (uint8_t)spt;
}

int vpc_rounded_size(uint64_t size, bool force_size, uint64_t *out,
                     uint16_t *c, uint8_t *h, uint8_t *s)
{
    uint64_t bytes = dk_round_up(size, VPC_SECTOR);
    if (bytes < size)
        return -EFBIG;
    uint64_t total = bytes / VPC_SECTOR;
    *c = 0, *h = 0, *s = 0;
    if (force_size) {
        *c = VPC_CHS_MAX_C, *h = VPC_CHS_MAX_H, *s = VPC_CHS_MAX_S;
    } else {
        /* The first geometry at or above the request: convert must never
         * truncate. Rounding down loses less than heads x spt sectors, so
         * this ends within ~4096 steps. */
        uint64_t want = DK_MIN(VPC_MAX_GEOMETRY, total);
        for (uint64_t i = 0; want > (uint64_t)*c * *h * *s; i++)
            vpc_chs_geometry(want + i, c, h, s);
    }
    if ((uint64_t)*c * *h * *s == VPC_MAX_GEOMETRY) {
        if (total > VPC_MAX_SECTORS)
            return -EFBIG;
    } else {
        total = (uint64_t)*c * *h * *s;
    }
    *out = total * VPC_SECTOR;
    return 0;
}

/* ---------------------------------------------------------- validation */

#define BAD(...) (snprintf(msg, msg_len, __VA_ARGS__), -EINVAL)
#define UNSUP(...) (snprintf(msg, msg_len, __VA_ARGS__), -ENOTSUP)

int vpc_footer_validate(const struct vpc_footer *f, bool cksum_ok, bool at_start,
                        uint64_t file_size, char *msg, size_t msg_len)
{
    if (file_size < VPC_FOOTER_SIZE)
        return BAD("file is too small for a VHD footer (%" PRIu64 " bytes)", file_size);
    if (memcmp(f->cookie, VPC_COOKIE, 8))
        return BAD("not a VHD image (no \"conectix\" footer at the start or the end)");
    if (!cksum_ok)
        return BAD("footer checksum mismatch (stored 0x%08" PRIx32 ")", f->checksum);
    if (at_start && f->disk_type != VPC_TYPE_DYNAMIC && f->disk_type != VPC_TYPE_DIFF)
        return BAD("footer copy at offset 0 has disk type %" PRIu32 " (expected 3, dynamic, "
                   "or 4, differencing)", f->disk_type);
    if (!at_start && f->disk_type != VPC_TYPE_FIXED)
        return BAD("footer at the end of the file has disk type %" PRIu32 " and there "
                   "is no copy at offset 0 (expected a fixed disk, type 2)", f->disk_type);
    uint64_t size = vpc_guest_size(f);
    if (size / VPC_SECTOR > VPC_MAX_SECTORS)
        return UNSUP("virtual size %" PRIu64 " is larger than the 2040 GiB maximum", size);
    if (!at_start && size > file_size - VPC_FOOTER_SIZE)
        return BAD("fixed disk of %" PRIu64 " bytes does not fit in the file (%" PRIu64
                   " bytes with the footer); the image is truncated", size, file_size);
    if (at_start && (f->data_offset < VPC_FOOTER_SIZE ||
                     !dk_range_inside(f->data_offset, VPC_DYN_HEADER_SIZE, file_size)))
        return BAD("dynamic header offset 0x%" PRIx64 " lies outside the file "
                   "(%" PRIu64 " bytes)", f->data_offset, file_size);
    return 0;
}

int vpc_dyn_header_validate(const struct vpc_dyn_header *h, uint64_t guest_size,
                            uint64_t file_size, char *msg, size_t msg_len)
{
    if (memcmp(h->cookie, VPC_DYN_COOKIE, 8))
        return BAD("bad dynamic header magic (expected \"cxsparse\")");
    if (!dk_is_pow2(h->block_size) || h->block_size < VPC_BLOCK_SIZE_MIN ||
        h->block_size > VPC_BLOCK_SIZE_MAX)
        return BAD("invalid block size %" PRIu32 " (a power of two from %u to %u)",
                   h->block_size, VPC_BLOCK_SIZE_MIN, VPC_BLOCK_SIZE_MAX);
    if (h->max_table_entries > VPC_MAX_TABLE_ENTRIES)
        return BAD("BAT has too many entries (%" PRIu32 ", at most %u)",
                   h->max_table_entries, VPC_MAX_TABLE_ENTRIES);
    uint64_t room = (uint64_t)h->max_table_entries * h->block_size;
    if (room < guest_size)
        return BAD("BAT of %" PRIu32 " entries covers %" PRIu64 " bytes, less than the "
                   "virtual size %" PRIu64, h->max_table_entries, room, guest_size);
    uint64_t bat_len = (uint64_t)h->max_table_entries * 4;
    if (h->table_offset < VPC_FOOTER_SIZE ||
        !dk_range_inside(h->table_offset, bat_len, file_size))
        return BAD("BAT at 0x%" PRIx64 " (%" PRIu64 " bytes) lies outside the file "
                   "(%" PRIu64 " bytes)", h->table_offset, bat_len, file_size);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int vpc_bat_validate(const uint32_t *bat, uint32_t n, const struct vpc_dyn_header *h,
                     uint64_t header_off, uint64_t file_size, uint64_t *free_off,
                     char *msg, size_t msg_len)
{
    uint64_t blk = vpc_bitmap_size(h->block_size) + (uint64_t)h->block_size;
    uint64_t bat_len = (uint64_t)n * 4;
    uint64_t end = DK_MAX(dk_round_up(h->table_offset + bat_len, VPC_SECTOR),
                          dk_round_up(header_off + VPC_DYN_HEADER_SIZE, VPC_SECTOR));
    uint32_t *sorted = malloc((size_t)n * 4 + 4);
    if (!sorted)
        return BAD("out of memory for a %" PRIu32 "-entry BAT", n);
    uint32_t k = 0;
    int r = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        if (bat[i] == VPC_BAT_UNALLOCATED)
            continue;
        uint64_t off = (uint64_t)bat[i] * VPC_SECTOR;
        if (!dk_range_inside(off, blk, file_size))
            r = BAD("block %" PRIu32 " at 0x%" PRIx64 " lies beyond the end of the file "
                    "(%" PRIu64 " bytes); the image is truncated or damaged", i, off,
                    file_size);
        else if (off < VPC_FOOTER_SIZE)
            r = BAD("block %" PRIu32 " at 0x%" PRIx64 " overlaps the footer copy", i, off);
        else if (dk_ranges_overlap(off, blk, h->table_offset, bat_len) ||
                 dk_ranges_overlap(off, blk, header_off, VPC_DYN_HEADER_SIZE))
            r = BAD("block %" PRIu32 " at 0x%" PRIx64 " overlaps the BAT or the dynamic "
                    "header", i, off);
        end = DK_MAX(end, off + blk);
        sorted[k++] = bat[i];
    }
    qsort(sorted, k, 4, cmp_u32);
    for (uint32_t i = 1; i < k && r == 0; i++)
        if ((uint64_t)(sorted[i] - sorted[i - 1]) * VPC_SECTOR < blk)
            r = BAD("blocks at 0x%" PRIx64 " and 0x%" PRIx64 " overlap",
                    (uint64_t)sorted[i - 1] * VPC_SECTOR, (uint64_t)sorted[i] * VPC_SECTOR);
    free(sorted);
    *free_off = end;
    return r;
}

/* ---------------------------------------------------------------- open */

static int vpc_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && !memcmp(buf, VPC_COOKIE, 8) ? 100 : 0;
}

/* Reads the footer: the copy at 0 when present, else the last sector. */
static int read_footer(struct dk_image *img, bool *at_start)
{
    struct vpc_state *s = img->priv;
    char msg[256];
    int r = dk_file_pread_eof0(img->file, s->footer_raw, VPC_FOOTER_SIZE, 0);
    *at_start = r == 0 && !memcmp(s->footer_raw, VPC_COOKIE, 8);
    if (r == 0 && !*at_start && s->file_size >= VPC_FOOTER_SIZE)
        r = dk_file_pread(img->file, s->footer_raw, VPC_FOOTER_SIZE,
                          s->file_size - VPC_FOOTER_SIZE);
    if (r < 0)
        return dk_set_error(img, r, "vpc: cannot read the footer: %s", strerror(-r));
    vpc_footer_decode(s->footer_raw, VPC_FOOTER_SIZE, &s->footer);
    bool ok = vpc_checksum(s->footer_raw, VPC_FOOTER_SIZE, 64) == s->footer.checksum;
    r = vpc_footer_validate(&s->footer, ok, *at_start, s->file_size, msg, sizeof(msg));
    return r < 0 ? dk_set_error(img, r, "vpc: %s", msg) : 0;
}

static int load_bat(struct dk_image *img)
{
    struct vpc_state *s = img->priv;
    uint32_t n = s->dyn.max_table_entries;
    size_t bytes = (size_t)n * 4;
    char msg[256];
    s->bat = malloc(bytes ? bytes : 1);
    if (!s->bat)
        return dk_set_error(img, -ENOMEM, "out of memory for a %" PRIu32 "-entry BAT", n);
    int r = bytes ? dk_file_pread(img->file, s->bat, bytes, s->dyn.table_offset) : 0;
    if (r < 0)
        return dk_set_error(img, r, "vpc: cannot read the BAT: %s", strerror(-r));
    for (uint32_t i = 0; i < n; i++)
        s->bat[i] = dk_be32((uint8_t *)s->bat + (size_t)i * 4);
    r = vpc_bat_validate(s->bat, n, &s->dyn, s->footer.data_offset, s->file_size,
                         &s->free_off, msg, sizeof(msg));
    return r < 0 ? dk_set_error(img, r, "vpc: %s", msg) : 0;
}

static int vpc_open(struct dk_image *img)
{
    struct vpc_state *s = img->priv;
    uint8_t hdr[VPC_DYN_HEADER_SIZE];
    char msg[256];
    bool at_start;
    int r = dk_file_size(img->file, &s->file_size);
    if (r < 0)
        return dk_set_error(img, r, "cannot get size: %s", strerror(-r));
    if ((r = read_footer(img, &at_start)) < 0)
        return r;
    img->size = vpc_guest_size(&s->footer);
    s->fixed = !at_start;
    s->dirty_lo = UINT32_MAX;
    if (s->fixed)
        return 0;
    r = dk_file_pread(img->file, hdr, sizeof(hdr), s->footer.data_offset);
    if (r < 0)
        return dk_set_error(img, r, "vpc: cannot read the dynamic header: %s", strerror(-r));
    vpc_dyn_header_decode(hdr, sizeof(hdr), &s->dyn);
    r = vpc_dyn_header_validate(&s->dyn, img->size, s->file_size, msg, sizeof(msg));
    if (r < 0)
        return dk_set_error(img, r, "vpc: %s", msg);
    s->block_size = s->dyn.block_size;
    s->bitmap_size = vpc_bitmap_size(s->block_size);
    s->bm_block = UINT32_MAX;
    if ((r = load_bat(img)) < 0 || s->footer.disk_type != VPC_TYPE_DIFF)
        return r;
    s->diff = true;
    if (!img->read_only)
        return dk_set_error(img, -ENOTSUP, "vpc: differencing disks can only be opened "
                            "read-only (writing to them is not supported)");
    return vpc_parent_open(img, hdr);
}

static void vpc_close(struct dk_image *img)
{
    struct vpc_state *s = img->priv;
    /* Pending BAT entries point at blocks already written: keep them. */
    if (s->bat && !img->file->read_only && s->dirty_lo < s->dirty_hi)
        vpc_flush(img);
    free(s->bat);
    free(s->bitmap);
    free(s->bm_cache);
}

static const struct dk_optdesc vpc_opts[] = {
    { "size", DK_OPT_SIZE, "Virtual disk size", NULL },
    { "subformat", DK_OPT_STRING, "Type of virtual hard disk format. Supported formats "
      "are {dynamic (default) | fixed} ", NULL },
    { "force_size", DK_OPT_BOOL, "Force disk size calculation to use the actual size "
      "specified, rather than using the nearest CHS-based calculation", NULL },
    { 0 }
};

const struct dk_driver dk_drv_vpc = {
    .struct_size = sizeof(struct dk_driver),
    .name = "vpc",
    .state_size = sizeof(struct vpc_state),
    .features = 0,
    .create_opts = vpc_opts,
    .probe = vpc_probe,
    .open = vpc_open,
    .close = vpc_close,
    .read = vpc_read,
    .write = vpc_write,
    .zero = vpc_zero,
    .discard = vpc_discard,
    .flush = vpc_flush,
    .block_status = vpc_block_status,
    .create = vpc_create,
    .info = vpc_info,
};
