/* vdi.c - VirtualBox VDI images: header decoding and validation, open,
 * block map lookups, read/write/zero, block status and flush.
 *
 * Spec: VirtualBox src/VBox/Storage/VDICore.h (header v1.1) and qemu
 * block/vdi.c (what qemu accepts); layout summary in vdi.h.
 *
 * Writes: an unallocated block that receives non-zero data gets the next
 * data block index (a whole block is written, the rest zero-filled); the
 * map entry and blocks_allocated change in memory and reach the disk in
 * vdi_flush in the order data, fdatasync, map, header, so a crash leaves at
 * most unreferenced blocks past the last referenced one.
 *
 * Known gaps: version 0 headers, undo and differencing images (parent
 * UUID) are refused; 0xFFFFFFFE entries are written only when the last data
 * block is zeroed (freeing another block would need VirtualBox's block
 * compaction to keep blocks_allocated equal to the referenced count, which
 * qemu-img check requires); other zeroed blocks are punched, not freed.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdi.h"

/* ------------------------------------------------------------- header */

int vdi_header_decode(const uint8_t *buf, size_t len, struct vdi_header *h)
{
    if (len < VDI_HEADER_V1_END)
        return -EINVAL;
    memset(h, 0, sizeof(*h));
    memcpy(h->text, buf, VDI_TEXT_LEN);
    h->signature = dk_le32(buf + 64);
    h->version = dk_le32(buf + 68);
    h->header_size = dk_le32(buf + 72);
    h->image_type = dk_le32(buf + 76);
    h->image_flags = dk_le32(buf + 80);
    memcpy(h->description, buf + 84, VDI_DESC_LEN);
    h->offset_bmap = dk_le32(buf + 340);
    h->offset_data = dk_le32(buf + 344);
    h->cylinders = dk_le32(buf + 348);
    h->heads = dk_le32(buf + 352);
    h->sectors = dk_le32(buf + 356);
    h->sector_size = dk_le32(buf + 360);
    h->disk_size = dk_le64(buf + 368);
    h->block_size = dk_le32(buf + 376);
    h->block_extra = dk_le32(buf + 380);
    h->blocks_in_image = dk_le32(buf + 384);
    h->blocks_allocated = dk_le32(buf + 388);
    memcpy(h->uuid_image, buf + 392, VDI_UUID_LEN);
    memcpy(h->uuid_last_snap, buf + 408, VDI_UUID_LEN);
    memcpy(h->uuid_link, buf + 424, VDI_UUID_LEN);
    memcpy(h->uuid_parent, buf + 440, VDI_UUID_LEN);
    return 0;
}

/* Writes the known fields into BUF (at least VDI_HEADER_V1_END bytes),
 * leaving every other byte as it was. */
void vdi_header_encode(const struct vdi_header *h, uint8_t *buf)
{
    memcpy(buf, h->text, VDI_TEXT_LEN);
    dk_put_le32(buf + 64, h->signature);
    dk_put_le32(buf + 68, h->version);
    dk_put_le32(buf + 72, h->header_size);
    dk_put_le32(buf + 76, h->image_type);
    dk_put_le32(buf + 80, h->image_flags);
    memcpy(buf + 84, h->description, VDI_DESC_LEN);
    dk_put_le32(buf + 340, h->offset_bmap);
    dk_put_le32(buf + 344, h->offset_data);
    dk_put_le32(buf + 348, h->cylinders);
    dk_put_le32(buf + 352, h->heads);
    dk_put_le32(buf + 356, h->sectors);
    dk_put_le32(buf + 360, h->sector_size);
    dk_put_le64(buf + 368, h->disk_size);
    dk_put_le32(buf + 376, h->block_size);
    dk_put_le32(buf + 380, h->block_extra);
    dk_put_le32(buf + 384, h->blocks_in_image);
    dk_put_le32(buf + 388, h->blocks_allocated);
    memcpy(buf + 392, h->uuid_image, VDI_UUID_LEN);
    memcpy(buf + 408, h->uuid_last_snap, VDI_UUID_LEN);
    memcpy(buf + 424, h->uuid_link, VDI_UUID_LEN);
    memcpy(buf + 440, h->uuid_parent, VDI_UUID_LEN);
}

static bool uuid_is_null(const uint8_t *u)
{
    for (int i = 0; i < VDI_UUID_LEN; i++)
        if (u[i])
            return false;
    return true;
}

uint64_t vdi_guest_size(const struct vdi_header *h)
{
    return dk_round_up(h->disk_size, VDI_SECTOR_SIZE);
}

#define BAD(...) (snprintf(msg, msg_len, __VA_ARGS__), -EINVAL)
#define UNSUP(...) (snprintf(msg, msg_len, __VA_ARGS__), -ENOTSUP)

/* One place for every header rule, in the order: size, magic, version,
 * then field ranges, then offsets against the file size. */
int vdi_header_validate(const struct vdi_header *h, uint64_t file_size,
                        char *msg, size_t msg_len)
{
    if (file_size < VDI_HEADER_V1_END)
        return BAD("file is too small for a VDI header (%" PRIu64 " bytes)", file_size);
    if (h->signature != VDI_SIGNATURE)
        return BAD("not a VDI image (bad signature 0x%08" PRIx32 ")", h->signature);
    if (h->version != VDI_VERSION_1_1)
        return UNSUP("unsupported VDI version %" PRIu32 ".%" PRIu32 " (only 1.1 is supported)",
                     h->version >> 16, h->version & 0xffff);
    if (h->header_size < VDI_HEADER_V1_SIZE ||
        h->header_size > VDI_HEADER_SECTOR - VDI_PREHEADER_SIZE)
        return BAD("invalid header size %" PRIu32 " (expected %u..%u)", h->header_size,
                   VDI_HEADER_V1_SIZE, VDI_HEADER_SECTOR - VDI_PREHEADER_SIZE);
    if (h->image_type == VDI_TYPE_UNDO)
        return UNSUP("undo images (type 3) are not supported");
    if (h->image_type == VDI_TYPE_DIFF)
        return UNSUP("differencing images (type 4) are not supported");
    if (h->image_type != VDI_TYPE_DYNAMIC && h->image_type != VDI_TYPE_STATIC)
        return BAD("unknown image type %" PRIu32, h->image_type);
    if (h->sector_size != VDI_SECTOR_SIZE)
        return UNSUP("unsupported sector size %" PRIu32 " (only 512)", h->sector_size);
    if (!dk_is_pow2(h->block_size) || h->block_size < VDI_BLOCK_SIZE_MIN ||
        h->block_size > VDI_BLOCK_SIZE_MAX)
        return UNSUP("unsupported block size %" PRIu32 " (a power of two from %u to %u)",
                     h->block_size, VDI_BLOCK_SIZE_MIN, VDI_BLOCK_SIZE_MAX);
    if (h->block_extra % VDI_SECTOR_SIZE || h->block_extra > VDI_BLOCK_EXTRA_MAX)
        return UNSUP("unsupported block extra size %" PRIu32, h->block_extra);
    if (h->blocks_in_image > VDI_MAX_BLOCKS)
        return UNSUP("too many blocks (%" PRIu32 ", at most %u)", h->blocks_in_image,
                     VDI_MAX_BLOCKS);
    uint64_t room = (uint64_t)h->blocks_in_image * h->block_size;
    if (vdi_guest_size(h) > room)
        return BAD("disk size %" PRIu64 " exceeds the %" PRIu32 " blocks of the block map "
                   "(%" PRIu64 " bytes)", h->disk_size, h->blocks_in_image, room);
    if (h->blocks_allocated > h->blocks_in_image)
        return BAD("blocks allocated (%" PRIu32 ") exceeds blocks in image (%" PRIu32 ")",
                   h->blocks_allocated, h->blocks_in_image);
    if (h->offset_bmap % VDI_SECTOR_SIZE ||
        h->offset_bmap < VDI_PREHEADER_SIZE + h->header_size)
        return BAD("invalid block map offset 0x%" PRIx32 " (unaligned or inside the header)",
                   h->offset_bmap);
    if (h->offset_data % VDI_SECTOR_SIZE || h->offset_data < h->offset_bmap ||
        (uint64_t)h->blocks_in_image * 4 > h->offset_data - h->offset_bmap)
        return BAD("invalid data offset 0x%" PRIx32 " (unaligned, or no room for the "
                   "%" PRIu32 "-entry block map at 0x%" PRIx32 ")",
                   h->offset_data, h->blocks_in_image, h->offset_bmap);
    if (h->offset_data > file_size)
        return BAD("data offset 0x%" PRIx32 " lies beyond the end of the file "
                   "(%" PRIu64 " bytes)", h->offset_data, file_size);
    if (!uuid_is_null(h->uuid_link) || !uuid_is_null(h->uuid_parent))
        return UNSUP("differencing images (non-null %s UUID) are not supported",
                     uuid_is_null(h->uuid_link) ? "parent" : "link");
    return 0;
}

/* --------------------------------------------------------- block map */

uint64_t vdi_block_host(const struct vdi_state *s, uint32_t idx)
{
    return s->hdr.offset_data + (uint64_t)idx * s->stride + s->hdr.block_extra;
}

uint64_t vdi_block_need(const struct vdi_state *s, uint32_t b)
{
    uint64_t start = (uint64_t)b * s->hdr.block_size;
    uint64_t gsize = vdi_guest_size(&s->hdr);
    return start >= gsize ? 0 : DK_MIN((uint64_t)s->hdr.block_size, gsize - start);
}

static void set_bad(struct vdi_state *s, uint32_t b)
{
    s->bad[b / 8] |= (uint8_t)(1u << (b % 8));
    s->nbad++;
}

static bool is_bad(const struct vdi_state *s, uint32_t b)
{
    return s->bad && (s->bad[b / 8] >> (b % 8)) & 1;
}

int vdi_scan_map(struct dk_image *img)
{
    struct vdi_state *s = img->priv;
    uint32_t n = s->hdr.blocks_in_image;
    size_t bytes = (size_t)n / 8 + 1;
    uint8_t *used = calloc(1, bytes);
    free(s->bad);
    s->bad = calloc(1, bytes);
    s->nbad = 0;
    if (!used || !s->bad) {
        free(used);
        return dk_set_error(img, -ENOMEM, "out of memory");
    }
    uint32_t next = s->hdr.blocks_allocated;
    for (uint32_t b = 0; b < n; b++) {
        uint32_t e = s->map[b];
        if (!vdi_entry_allocated(e))
            continue;
        if (e >= n || (used[e / 8] >> (e % 8)) & 1 ||
            !dk_range_inside(vdi_block_host(s, e), vdi_block_need(s, b), s->file_size)) {
            set_bad(s, b);
            continue;
        }
        used[e / 8] |= (uint8_t)(1u << (e % 8));
        if (e >= next)
            next = e + 1;
    }
    free(used);
    s->next_index = next;
    if (!s->nbad) {
        free(s->bad);
        s->bad = NULL;
    }
    return 0;
}

/* The error for I/O on a bad entry, naming what is wrong with it. */
static int bad_entry(struct dk_image *img, uint32_t b)
{
    struct vdi_state *s = img->priv;
    uint32_t e = s->map[b];
    if (e >= s->hdr.blocks_in_image)
        return dk_corrupt(img, "vdi: block map entry %" PRIu32 " is %" PRIu32
                          ", beyond the %" PRIu32 " blocks of the image", b, e,
                          s->hdr.blocks_in_image);
    if (!dk_range_inside(vdi_block_host(s, e), vdi_block_need(s, b), s->file_size))
        return dk_corrupt(img, "vdi: data block %" PRIu32 " of block map entry %" PRIu32
                          " lies beyond the end of the file", e, b);
    return dk_corrupt(img, "vdi: block map entry %" PRIu32 " shares data block %" PRIu32
                      " with another entry", b, e);
}

/* ---------------------------------------------------------------- open */

static int vdi_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < VDI_HEADER_V1_END || dk_le32(buf + 64) != VDI_SIGNATURE)
        return 0;
    return 100;
}

static int load_map(struct dk_image *img)
{
    struct vdi_state *s = img->priv;
    uint32_t n = s->hdr.blocks_in_image;
    size_t bytes = (size_t)n * 4;
    s->map = malloc(bytes ? bytes : 1);
    uint8_t *raw = malloc(bytes ? bytes : 1);
    if (!s->map || !raw) {
        free(raw);
        return dk_set_error(img, -ENOMEM, "out of memory for a %" PRIu32 "-entry block map", n);
    }
    int r = bytes ? dk_file_pread(img->file, raw, bytes, s->hdr.offset_bmap) : 0;
    for (uint32_t i = 0; r == 0 && i < n; i++)
        s->map[i] = dk_le32(raw + (size_t)i * 4);
    free(raw);
    if (r < 0)
        return dk_set_error(img, r, "vdi: cannot read the block map: %s", strerror(-r));
    return 0;
}

static int vdi_open(struct dk_image *img)
{
    struct vdi_state *s = img->priv;
    char msg[256];
    int r = dk_file_size(img->file, &s->file_size);
    if (r < 0)
        return dk_set_error(img, r, "cannot get size: %s", strerror(-r));
    r = dk_file_pread_eof0(img->file, s->hdr_raw, VDI_HEADER_SECTOR, 0);
    if (r < 0)
        return dk_set_error(img, r, "vdi: cannot read the header: %s", strerror(-r));
    vdi_header_decode(s->hdr_raw, VDI_HEADER_SECTOR, &s->hdr);
    r = vdi_header_validate(&s->hdr, s->file_size, msg, sizeof(msg));
    if (r < 0)
        return dk_set_error(img, r, "vdi: %s", msg);
    s->stride = (uint64_t)s->hdr.block_size + s->hdr.block_extra;
    img->size = vdi_guest_size(&s->hdr);
    if ((r = load_map(img)) < 0 || (r = vdi_scan_map(img)) < 0)
        return r;
    s->dirty_lo = UINT32_MAX;
    if (s->nbad && !img->read_only && !(img->flags & DK_OPEN_REPAIR))
        dk_corrupt(img, "vdi: %" PRIu64 " block map entries are invalid; "
                   "repair with 'diskkit check -r all'", s->nbad);
    return 0;
}

static void vdi_close(struct dk_image *img)
{
    struct vdi_state *s = img->priv;
    /* Also after dk_corrupt made the handle read-only: what is pending
     * describes blocks already written and is consistent. */
    if (s->map && !img->file->read_only && (s->hdr_dirty || s->trunc_pending))
        vdi_flush(img);
    free(s->map);
    free(s->bad);
    free(s->bounce);
}

/* ------------------------------------------------------------- flush */

void vdi_mark_dirty(struct vdi_state *s, uint32_t b)
{
    if (s->dirty_lo == UINT32_MAX) {
        s->dirty_lo = b;
        s->dirty_hi = b + 1;
    } else {
        s->dirty_lo = DK_MIN(s->dirty_lo, b);
        s->dirty_hi = DK_MAX(s->dirty_hi, b + 1);
    }
    s->hdr_dirty = true;
}

/* Writes map entries [LO, HI) to the file, little-endian. */
int vdi_write_map(struct dk_image *img, uint32_t lo, uint32_t hi)
{
    struct vdi_state *s = img->priv;
    uint8_t buf[16384];
    const uint32_t per = sizeof(buf) / 4;
    for (uint32_t b = lo; b < hi;) {
        uint32_t n = DK_MIN(per, hi - b);
        for (uint32_t i = 0; i < n; i++)
            dk_put_le32(buf + i * 4, s->map[b + i]);
        int r = dk_file_pwrite(img->file, buf, (size_t)n * 4,
                               s->hdr.offset_bmap + (uint64_t)b * 4);
        if (r < 0)
            return dk_set_error(img, r, "vdi: cannot write the block map: %s", strerror(-r));
        b += n;
    }
    return 0;
}

int vdi_write_header(struct dk_image *img)
{
    struct vdi_state *s = img->priv;
    vdi_header_encode(&s->hdr, s->hdr_raw);
    size_t len = DK_MIN(VDI_HEADER_SECTOR, s->hdr.offset_bmap);
    int r = dk_file_pwrite(img->file, s->hdr_raw, len, 0);
    if (r < 0)
        return dk_set_error(img, r, "vdi: cannot write the header: %s", strerror(-r));
    return 0;
}

int vdi_flush(struct dk_image *img)
{
    struct vdi_state *s = img->priv;
    int r;
    if (s->hdr_dirty) {
        /* Data first, so no entry ever points at a block not yet written. */
        if ((r = dk_file_flush(img->file)) < 0)
            return dk_set_error(img, r, "flush: %s", strerror(-r));
        if (s->dirty_lo < s->dirty_hi && (r = vdi_write_map(img, s->dirty_lo, s->dirty_hi)) < 0)
            return r;
        if ((r = vdi_write_header(img)) < 0)
            return r;
        s->dirty_lo = UINT32_MAX;
        s->dirty_hi = 0;
        s->hdr_dirty = false;
    }
    if (s->trunc_pending) {
        uint64_t end = s->hdr.offset_data + (uint64_t)s->next_index * s->stride;
        if (end < s->file_size && (r = dk_file_truncate(img->file, end)) < 0)
            return dk_set_error(img, r, "vdi: cannot shrink the file: %s", strerror(-r));
        s->file_size = DK_MIN(end, s->file_size);
        s->trunc_pending = false;
    }
    r = dk_file_flush(img->file);
    return r < 0 ? dk_set_error(img, r, "flush: %s", strerror(-r)) : 0;
}

/* ------------------------------------------------------ block status */

/* Class of guest block B: DK_BS_DATA or DK_BS_ZERO. Both 0xFFFFFFFF and
 * 0xFFFFFFFE read as zeros and, VDI having no backing file, are reported
 * as allocated zeros in this layer: qemu-img map prints them that way
 * ("present": true, "zero": true). */
static unsigned block_class(const struct vdi_state *s, uint32_t b)
{
    return vdi_entry_allocated(s->map[b]) ? DK_BS_DATA : DK_BS_ZERO;
}

static int vdi_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                            struct dk_extent *ext)
{
    struct vdi_state *s = img->priv;
    uint64_t bs = s->hdr.block_size;
    uint32_t b = (uint32_t)(off / bs);
    if (is_bad(s, b))
        return bad_entry(img, b);
    unsigned cls = block_class(s, b);
    uint64_t in = off % bs, run = bs - in;
    /* Extend over following blocks of the same class; data blocks only
     * while their host offsets follow on (one contiguous host range). */
    for (uint32_t nb = b + 1; run < len && nb < s->hdr.blocks_in_image; nb++) {
        if (is_bad(s, nb) || block_class(s, nb) != cls)
            break;
        if (cls == DK_BS_DATA && (s->stride != bs || s->map[nb] != s->map[nb - 1] + 1))
            break;
        run += bs;
    }
    ext->length = DK_MIN(run, len);
    if (cls != DK_BS_DATA) {
        ext->flags = DK_BS_ZERO | DK_BS_ALLOCATED;
        return 0;
    }
    ext->flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID;
    ext->host_offset = vdi_block_host(s, s->map[b]) + in;
    ext->host_file = img->filename;
    /* Static images are preallocated sparse files: their holes read as
     * zeros and are reported as zero data. qemu looks at the file only
     * for static images (BDRV_BLOCK_RECURSE), and so do we, so that
     * `map` prints the same for both tools. */
    if (s->hdr.image_type != VDI_TYPE_STATIC)
        return 0;
    int r = dk_file_extent_clip(img->file, ext);
    return r < 0 ? dk_set_error(img, r, "vdi: block status: %s", strerror(-r)) : 0;
}

/* ---------------------------------------------------------------- I/O */

static int vdi_read(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    struct vdi_state *s = img->priv;
    uint64_t bs = s->hdr.block_size;
    uint8_t *p = buf;
    while (len) {
        uint32_t b = (uint32_t)(off / bs);
        uint64_t in = off % bs;
        size_t n = (size_t)DK_MIN((uint64_t)len, bs - in);
        if (is_bad(s, b))
            return bad_entry(img, b);
        if (vdi_entry_allocated(s->map[b])) {
            uint64_t host = vdi_block_host(s, s->map[b]) + in;
            int r = dk_file_pread(img->file, p, n, host);
            if (r < 0)
                return dk_set_error(img, r, "vdi: read at host offset %" PRIu64 ": %s",
                                    host, strerror(-r));
        } else {
            memset(p, 0, n);
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Picks the data block index for a new block: next_index, or, when the map
 * has used the top index, the lowest index no entry refers to. */
static int new_index(struct dk_image *img, uint32_t *out)
{
    struct vdi_state *s = img->priv;
    uint32_t n = s->hdr.blocks_in_image;
    if (s->next_index < n) {
        *out = s->next_index++;
        return 0;
    }
    uint8_t *used = calloc(1, (size_t)n / 8 + 1);
    if (!used)
        return dk_set_error(img, -ENOMEM, "out of memory");
    for (uint32_t b = 0; b < n; b++)
        if (vdi_entry_allocated(s->map[b]) && s->map[b] < n)
            used[s->map[b] / 8] |= (uint8_t)(1u << (s->map[b] % 8));
    uint32_t i = 0;
    while (i < n && (used[i / 8] >> (i % 8)) & 1)
        i++;
    free(used);
    if (i == n)
        return dk_corrupt(img, "vdi: no free data block although block map entries "
                          "are unallocated");
    *out = i;
    return 0;
}

/* Allocates guest block B and writes N bytes of BUF at IN inside it; the
 * rest of the block must read as zeros. A block past the end of the file
 * (the usual case: blocks are appended) already does once the file is
 * extended over it, so only the data is written and copy-style writes in
 * pieces cost no extra I/O; a reused index gets a zero-filled whole block. */
static int alloc_write(struct dk_image *img, uint32_t b, const uint8_t *buf,
                       size_t n, uint64_t in)
{
    struct vdi_state *s = img->priv;
    size_t bs = s->hdr.block_size;
    uint32_t idx = 0;
    int r = new_index(img, &idx);
    if (r < 0)
        return r;
    uint64_t host = vdi_block_host(s, idx);
    bool fresh = host - s->hdr.block_extra >= s->file_size;
    const uint8_t *src = buf;
    uint64_t at = host + in;
    size_t len = n;
    if (!fresh && n != bs) {
        if (!s->bounce && !(s->bounce = malloc(bs)))
            return dk_set_error(img, -ENOMEM, "out of memory");
        memset(s->bounce, 0, bs);
        memcpy(s->bounce + in, buf, n);
        src = s->bounce;
        at = host;
        len = bs;
    }
    r = dk_file_pwrite(img->file, src, len, at);
    if (r == 0 && at + len < host + bs)
        r = dk_file_truncate(img->file, host + bs);
    if (r < 0)
        return dk_set_error(img, r, "vdi: write at host offset %" PRIu64 ": %s", at,
                            strerror(-r));
    s->file_size = DK_MAX(s->file_size, host + bs);
    s->map[b] = idx;
    s->hdr.blocks_allocated++;
    vdi_mark_dirty(s, b);
    return 0;
}

static int vdi_write(struct dk_image *img, const void *buf, size_t len, uint64_t off)
{
    struct vdi_state *s = img->priv;
    uint64_t bs = s->hdr.block_size;
    const uint8_t *p = buf;
    while (len) {
        uint32_t b = (uint32_t)(off / bs);
        uint64_t in = off % bs;
        size_t n = (size_t)DK_MIN((uint64_t)len, bs - in);
        int r = 0;
        if (is_bad(s, b))
            return bad_entry(img, b);
        if (vdi_entry_allocated(s->map[b])) {
            uint64_t host = vdi_block_host(s, s->map[b]) + in;
            r = dk_file_pwrite(img->file, p, n, host);
            if (r < 0)
                return dk_set_error(img, r, "vdi: write at host offset %" PRIu64 ": %s",
                                    host, strerror(-r));
        } else if (!dk_is_zero(p, n)) {
            /* Zeros into an unallocated block: it already reads so. */
            r = alloc_write(img, b, p, n, in);
        }
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Zeroes [IN, IN+N) of allocated guest block B. The last data block of a
 * dynamic image, zeroed whole with MAY_UNMAP, is freed (entry 0xFFFFFFFE,
 * count down, file shrunk at flush); other ranges are zeroed in place,
 * punching a hole in the file when allowed. */
static int zero_in_block(struct dk_image *img, uint32_t b, uint64_t in, uint64_t n,
                         unsigned flags)
{
    struct vdi_state *s = img->priv;
    uint32_t e = s->map[b];
    bool whole = in == 0 && n >= vdi_block_need(s, b);
    if (whole && (flags & DK_ZERO_MAY_UNMAP) && s->hdr.image_type == VDI_TYPE_DYNAMIC &&
        e + 1 == s->next_index && e + 1 == s->hdr.blocks_allocated) {
        s->map[b] = VDI_MAP_ZERO;
        s->hdr.blocks_allocated--;
        s->next_index--;
        s->trunc_pending = true;
        vdi_mark_dirty(s, b);
        return 0;
    }
    uint64_t host = vdi_block_host(s, e) + in;
    int r = dk_file_zero(img->file, host, n, flags & DK_ZERO_MAY_UNMAP);
    return r < 0 ? dk_set_error(img, r, "vdi: zeroing at host offset %" PRIu64 ": %s",
                                host, strerror(-r)) : 0;
}

static int vdi_zero(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vdi_state *s = img->priv;
    uint64_t bs = s->hdr.block_size;
    while (len) {
        uint32_t b = (uint32_t)(off / bs);
        uint64_t in = off % bs, n = DK_MIN(len, bs - in);
        if (is_bad(s, b))
            return bad_entry(img, b);
        if (vdi_entry_allocated(s->map[b])) {
            int r = zero_in_block(img, b, in, n, flags);
            if (r < 0)
                return r;
        }
        off += n;
        len -= n;
    }
    return 0;
}

static int vdi_discard(struct dk_image *img, uint64_t off, uint64_t len)
{
    return vdi_zero(img, off, len, DK_ZERO_MAY_UNMAP);
}

static const struct dk_optdesc vdi_opts[] = {
    { "size", DK_OPT_SIZE, "Virtual disk size", NULL },
    { "static", DK_OPT_BOOL, "VDI static (pre-allocated) image", "off" },
    { "preallocation", DK_OPT_STRING,
      "Preallocation mode (allowed values: off, falloc, full)", "off" },
    { 0 }
};

const struct dk_driver dk_drv_vdi = {
    .struct_size = sizeof(struct dk_driver),
    .name = "vdi",
    .state_size = sizeof(struct vdi_state),
    .features = 0,
    .create_opts = vdi_opts,
    .probe = vdi_probe,
    .open = vdi_open,
    .close = vdi_close,
    .read = vdi_read,
    .write = vdi_write,
    .zero = vdi_zero,
    .discard = vdi_discard,
    .flush = vdi_flush,
    .block_status = vdi_block_status,
    .truncate = vdi_truncate,
    .create = vdi_create,
    .info = vdi_info,
    .check = vdi_check,
};
