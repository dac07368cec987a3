/* vhdx.c - Hyper-V VHDX images: open (headers, region table, metadata,
 * BAT), reads, block status, info and check; writes are in vhdx-write.c,
 * creation in vhdx-create.c.
 *
 * Spec: MS-VHDX 1.0; layout summary in vhdx.h, decoding and validation
 * in vhdx-parse.c, the log in vhdx-log.c. qemu 7.2 block/vhdx.c is the
 * reference for what is accepted.
 *
 * Invariants after a successful open:
 *  1. Every read of the file after the headers goes through vhdx_pread, so
 *     it sees the file as the replayed log (s->ovl, empty when the log is
 *     clean) leaves it; s->file_size is that file's size.
 *  2. s->bat holds lay.bat_entries host-order entries, read from inside the
 *     file; the payload entry of guest block b is bat[vhdx_bat_index(b)].
 *  3. Every payload entry that is FULLY_PRESENT and not marked bad points
 *     at a block lying wholly inside the file and outside the header
 *     section, log, BAT and metadata regions.
 *  4. Entries marked bad (past EOF, overlapping metadata, partially
 *     present or unknown states in a disk without parent) do not fail the
 *     open, so `check` can count them, but every read or block status
 *     touching one fails with a corruption error naming the entry.
 *
 * Known gaps: differencing images are refused; a log that needs replay is
 * replayed into memory only (vhdx-log.c): the file keeps needing a replay
 * and a read-write open of it is refused.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhdx.h"

static int vhdx_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && !memcmp(buf, VHDX_FILE_SIG, 8) ? 100 : 0;
}

/* ------------------------------------------------------------- open */

static int open_headers(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    static const uint32_t offs[2] = { VHDX_HEADER1_OFF, VHDX_HEADER2_OFF };
    struct vhdx_header h[2];
    bool valid[2];
    char why[2][128];
    uint8_t buf[VHDX_HEADER_SIZE];
    for (int i = 0; i < 2; i++) {
        int r = dk_file_pread_eof0(img->file, buf, sizeof(buf), offs[i]);
        if (r < 0)
            return dk_set_error(img, r, "vhdx: cannot read header %d: %s", i + 1,
                                strerror(-r));
        vhdx_header_decode(buf, sizeof(buf), &h[i]);
        valid[i] = vhdx_header_validate(buf, &h[i], why[i], sizeof(why[i])) == 0;
    }
    s->active = vhdx_header_pick(h, valid);
    if (s->active < 0) {
        if (valid[0])
            return dk_set_error(img, -EINVAL, "vhdx: both headers have sequence number "
                                "%" PRIu64 " but differ", h[0].sequence);
        return dk_set_error(img, -EINVAL, "vhdx: no valid header (header 1: %s; "
                            "header 2: %s)", why[0], why[1]);
    }
    s->hdr = h[s->active];
    char msg[256];
    int r = vhdx_log_fields_validate(&s->hdr, s->file_size, msg, sizeof(msg));
    return r < 0 ? dk_set_error(img, r, "vhdx: header %d: %s", s->active + 1, msg) : 0;
}

/* The first region table that parses is used (the two copies are equal
 * in a consistent file; qemu reads only the first). */
static int open_regions(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    uint8_t *buf = malloc(VHDX_REGION_SIZE);
    char msg[2][256];
    int r = -ENOMEM;
    if (!buf)
        return dk_set_error(img, -ENOMEM, "out of memory");
    for (int i = 0; i < 2; i++) {
        uint64_t off = i ? VHDX_REGION2_OFF : VHDX_REGION1_OFF;
        r = dk_file_pread_eof0(img->file, buf, VHDX_REGION_SIZE, off);
        vhdx_overlay_apply(&s->ovl, buf, VHDX_REGION_SIZE, off);
        if (r < 0) {
            free(buf);
            return dk_set_error(img, r, "vhdx: cannot read the region table: %s",
                                strerror(-r));
        }
        r = vhdx_region_parse(buf, VHDX_REGION_SIZE, s->file_size, &s->lay, msg[i],
                              sizeof(msg[i]));
        if (r == 0)
            break;
    }
    free(buf);
    if (r < 0)
        return dk_set_error(img, r, "vhdx: %s", msg[0]);
    const struct vhdx_header *h = &s->hdr;
    if (h->log_length && (dk_ranges_overlap(h->log_offset, h->log_length, s->lay.bat.offset,
                                            s->lay.bat.length) ||
                          dk_ranges_overlap(h->log_offset, h->log_length,
                                            s->lay.meta.offset, s->lay.meta.length)))
        return dk_set_error(img, -EINVAL, "vhdx: the log overlaps the BAT or metadata region");
    return 0;
}

static int open_metadata(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    uint8_t *table = malloc(VHDX_META_TABLE_SIZE);
    uint8_t item[VHDX_M_COUNT][16];
    uint32_t off[VHDX_M_COUNT];
    char msg[256];
    if (!table)
        return dk_set_error(img, -ENOMEM, "out of memory");
    int r = vhdx_pread(img, table, VHDX_META_TABLE_SIZE, s->lay.meta.offset);
    if (r < 0) {
        free(table);
        return dk_set_error(img, r, "vhdx: cannot read the metadata table: %s", strerror(-r));
    }
    r = vhdx_meta_table_parse(table, s->lay.meta.length, off, msg, sizeof(msg));
    free(table);
    if (r < 0)
        return dk_set_error(img, r, "vhdx: %s", msg);
    memset(item, 0, sizeof(item));
    for (int k = 0; k < VHDX_M_COUNT; k++) {
        if (off[k] == UINT32_MAX || !vhdx_meta_item_len[k])
            continue;
        r = vhdx_pread(img, item[k], vhdx_meta_item_len[k], s->lay.meta.offset + off[k]);
        if (r < 0)
            return dk_set_error(img, r, "vhdx: cannot read metadata: %s", strerror(-r));
    }
    r = vhdx_meta_decode(item, off, &s->lay, msg, sizeof(msg));
    return r < 0 ? dk_set_error(img, r, "vhdx: %s", msg) : 0;
}

static void set_bad(struct vhdx_state *s, uint64_t b)
{
    s->bad[b / 8] |= (uint8_t)(1u << (b % 8));
    s->nbad++;
}


/* Bytes of guest block B inside the disk (the last block may be short). */
static uint64_t block_need(const struct vhdx_layout *l, uint64_t b)
{
    return DK_MIN((uint64_t)l->block_size, l->disk_size - b * l->block_size);
}

/* Why payload block B's entry is unusable, or NULL when it is fine. */
static const char *entry_problem(const struct vhdx_state *s, uint64_t b)
{
    uint64_t e = s->bat[vhdx_bat_index(&s->lay, b)];
    uint64_t off = e & VHDX_BAT_OFF_MASK, need = block_need(&s->lay, b);
    switch (e & VHDX_BAT_STATE_MASK) {
    case VHDX_BAT_FULLY_PRESENT:
        if (off >= s->file_size)
            return "start offset points after end of file";
        if (!dk_range_inside(off, need, s->file_size))
            return "end offset points after end of file";
        if (vhdx_overlaps_metadata(s, off, need))
            return "block overlaps the header section, log, BAT or metadata region";
        return NULL;
    case VHDX_BAT_PARTIALLY_PRESENT:
        return "state partially present in an image without parent";
    case 4:
        return "unknown block state 4";
    default:
        return NULL;
    }
}

static int open_bat(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    struct vhdx_layout *l = &s->lay;
    if (l->bat_entries > l->bat.length / 8)
        return dk_set_error(img, -EINVAL, "vhdx: BAT region (%" PRIu32 " bytes) is too small "
                            "for the %" PRIu64 " entries of a %" PRIu64 "-byte disk",
                            l->bat.length, l->bat_entries, l->disk_size);
    size_t bytes = (size_t)l->bat_entries * 8;
    s->bat = malloc(bytes);
    s->bad = calloc(1, (size_t)(l->payload_blocks / 8 + 1));
    if (!s->bat || !s->bad)
        return dk_set_error(img, -ENOMEM, "out of memory for a %" PRIu64 "-entry BAT",
                            l->bat_entries);
    int r = vhdx_pread(img, s->bat, bytes, l->bat.offset);
    if (r < 0)
        return dk_set_error(img, r, "vhdx: cannot read the BAT: %s", strerror(-r));
    for (uint64_t i = 0; i < l->bat_entries; i++)
        s->bat[i] = dk_le64(&s->bat[i]);
    for (uint64_t b = 0; b < l->payload_blocks; b++)
        if (entry_problem(s, b))
            set_bad(s, b);
    return 0;
}

static int vhdx_open(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    uint8_t sig[8];
    int r = dk_file_size(img->file, &s->file_size);
    if (r < 0)
        return dk_set_error(img, r, "cannot get size: %s", strerror(-r));
    if ((r = dk_file_pread_eof0(img->file, sig, sizeof(sig), 0)) < 0)
        return dk_set_error(img, r, "vhdx: cannot read the file identifier: %s", strerror(-r));
    if (memcmp(sig, VHDX_FILE_SIG, 8))
        return dk_set_error(img, -EINVAL, "vhdx: not a VHDX image (no \"vhdxfile\" "
                            "identifier)");
    s->real_file_size = s->file_size;
    if ((r = open_headers(img)) < 0 || (r = vhdx_log_replay(img)) < 0 ||
        (r = open_regions(img)) < 0 || (r = open_metadata(img)) < 0 ||
        (r = open_bat(img)) < 0)
        return r;
    img->size = s->lay.disk_size;
    if (img->read_only)
        return 0;
    if (s->ovl.n)
        return dk_set_error(img, -EROFS, "vhdx: the log needs replay: cannot open for "
                            "writing (diskkit replays the log in memory for reading only)");
    if (s->nbad && !(img->flags & DK_OPEN_REPAIR))
        dk_corrupt(img, "vhdx: %" PRIu64 " BAT entries are invalid; the image is read-only",
                   s->nbad);
    return 0;
}

static void vhdx_close(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    /* Also after dk_corrupt: entries pending describe blocks written. */
    if (s->bat && s->dirty_lo < s->dirty_hi && !img->file->read_only)
        vhdx_flush(img);
    free(s->bat);
    free(s->bad);
    vhdx_overlay_free(&s->ovl);
}

int vhdx_pread(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    struct vhdx_state *s = img->priv;
    if (!s->ovl.n)
        return dk_file_pread(img->file, buf, len, off);
    /* The log may have grown the file: what lies past its end reads as
     * zeros unless the log wrote it. */
    int r = dk_file_pread_eof0(img->file, buf, len, off);
    if (r == 0)
        vhdx_overlay_apply(&s->ovl, buf, len, off);
    return r;
}

/* ----------------------------------------------------------- reading */

static int bad_entry(struct dk_image *img, uint64_t b)
{
    struct vhdx_state *s = img->priv;
    uint64_t i = vhdx_bat_index(&s->lay, b);
    return dk_corrupt(img, "vhdx: BAT entry %" PRIu64 " (0x%016" PRIx64 "): %s", i,
                      s->bat[i], entry_problem(s, b));
}

static bool block_present(const struct vhdx_state *s, uint64_t b)
{
    uint64_t e = s->bat[vhdx_bat_index(&s->lay, b)];
    return (e & VHDX_BAT_STATE_MASK) == VHDX_BAT_FULLY_PRESENT;
}

static uint64_t block_host(const struct vhdx_state *s, uint64_t b)
{
    return s->bat[vhdx_bat_index(&s->lay, b)] & VHDX_BAT_OFF_MASK;
}

/* Present blocks are data at their host offset (holes of the host file
 * inside them are reported as zero data); every other state reads as
 * zeros and, with no parent, is a present zero range of this layer.
 * qemu 7.2 has no block status for VHDX and maps the whole disk as one
 * data extent without offsets; this is more precise (docs/vhdx.md). */
static int vhdx_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                             struct dk_extent *ext)
{
    struct vhdx_state *s = img->priv;
    uint64_t bs = s->lay.block_size, b = off / bs, in = off % bs, run = bs - in;
    if (vhdx_is_bad(s, b))
        return bad_entry(img, b);
    bool data = block_present(s, b);
    for (uint64_t nb = b + 1; run < len && nb < s->lay.payload_blocks; nb++) {
        if (vhdx_is_bad(s, nb) || block_present(s, nb) != data)
            break;
        if (data && block_host(s, nb) != block_host(s, nb - 1) + bs)
            break;
        run += bs;
    }
    ext->length = DK_MIN(run, len);
    if (!data) {
        ext->flags = DK_BS_ZERO | DK_BS_ALLOCATED;
        return 0;
    }
    ext->flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID;
    ext->host_offset = block_host(s, b) + in;
    ext->host_file = img->filename;
    if (s->ovl.n && (vhdx_overlay_touches(&s->ovl, ext->host_offset, ext->length) ||
                     !dk_range_inside(ext->host_offset, ext->length, s->real_file_size))) {
        /* Patched by the replayed log: the file does not hold these bytes. */
        ext->flags &= ~DK_BS_OFFSET_VALID;
        return 0;
    }
    int r = dk_file_extent_clip(img->file, ext);
    return r < 0 ? dk_set_error(img, r, "vhdx: block status: %s", strerror(-r)) : 0;
}

static int vhdx_read(struct dk_image *img, void *buf, size_t len, uint64_t off)
{
    struct vhdx_state *s = img->priv;
    uint64_t bs = s->lay.block_size;
    uint8_t *p = buf;
    while (len) {
        uint64_t b = off / bs, in = off % bs;
        size_t n = (size_t)DK_MIN((uint64_t)len, bs - in);
        if (vhdx_is_bad(s, b))
            return bad_entry(img, b);
        if (block_present(s, b)) {
            uint64_t host = block_host(s, b) + in;
            int r = vhdx_pread(img, p, n, host);
            if (r < 0)
                return dk_set_error(img, r, "vhdx: read at host offset %" PRIu64 ": %s",
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

/* ------------------------------------------------------ info, check */

static int vhdx_info(struct dk_image *img, struct dk_info *info)
{
    struct vhdx_state *s = img->priv;
    /* qemu-img 7.2 shows the block size as cluster-size and prints no
     * format-specific section for VHDX. */
    info->cluster_size = s->lay.block_size;
    return 0;
}

/* What qemu 7.2's check does: each payload entry that is fully present but
 * lies (partly) past the end of the file or over the metadata is a
 * corruption. qemu counts a log it replayed into the file on a read-write
 * open as a fixed corruption; diskkit replays only into memory and notes
 * it. Entries in states that make reads fail are counted too (qemu does
 * not look at them). Nothing is repaired: the image cannot be opened for
 * writing. */
int vhdx_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
               dk_report_fn report, void *opaque)
{
    struct vhdx_state *s = img->priv;
    (void)fix;
    if (s->replayed && report) {
        /* Not a corruption: a log in use is what a crash leaves behind. */
        char line[160];
        snprintf(line, sizeof(line), "Note: the log needs replay; %" PRIu32 " log entries "
                 "were replayed in memory (the file is unchanged)", s->replayed);
        report(opaque, line);
    }
    for (uint64_t b = 0; b < s->lay.payload_blocks; b++) {
        const char *why = entry_problem(s, b);
        if (!why)
            continue;
        res->corruptions++;
        if (report) {
            char line[256];
            uint64_t i = vhdx_bat_index(&s->lay, b);
            snprintf(line, sizeof(line), "ERROR: VHDX BAT entry %" PRIu64 " (offset %" PRIu64
                     "): %s (file size %" PRIu64 ")", i, (uint64_t)(s->bat[i] & VHDX_BAT_OFF_MASK),
                     why, s->file_size);
            report(opaque, line);
        }
    }
    return 0;
}

const struct dk_driver dk_drv_vhdx = {
    .struct_size = sizeof(struct dk_driver),
    .name = "vhdx",
    .state_size = sizeof(struct vhdx_state),
    .features = 0,
    .create_opts = vhdx_create_opts,
    .probe = vhdx_probe,
    .open = vhdx_open,
    .close = vhdx_close,
    .read = vhdx_read,
    .write = vhdx_write,
    .flush = vhdx_flush,
    .create = vhdx_create,
    .block_status = vhdx_block_status,
    .info = vhdx_info,
    .check = vhdx_check,
};
