/* vhdx-log.c - the VHDX log: finding the active sequence of entries and
 * replaying it into memory (an overlay over the file), so an image whose
 * log needs replay can be read without writing to it.
 *
 * Spec: MS-VHDX 1.0 section 2.3 (the log). The log is a circular buffer
 * of 4 KiB sectors at a 1 MiB-aligned offset. An entry is:
 *   sector 0:  header (64 bytes: "loge", u32 checksum, u32 entry length,
 *              u32 tail, u64 sequence number, u32 descriptor count,
 *              u32 reserved, log GUID at 32, u64 flushed file offset at
 *              48, u64 last file offset at 56), then descriptors
 *   descriptors: 32 bytes, 126 in the first sector, 128 in the next ones;
 *              "zero": u32 reserved, u64 zero length, u64 file offset,
 *              u64 sequence; "desc": u32 trailing bytes, u64 leading
 *              bytes, u64 file offset, u64 sequence
 *   data sectors, one per "desc" in order: "data", u32 sequence high,
 *              4084 bytes, u32 sequence low; the 4 KiB written is the
 *              descriptor's 8 leading bytes, those 4084 and its 4
 *              trailing bytes.
 * CRC-32C over the whole entry with the checksum field zeroed.
 *
 * Rules (as qemu 7.2 applies them): the log is in use when the active
 * header's log GUID and log length are non-zero. An entry is valid when
 * its header fields hold (GUID of the header, length a multiple of 4 KiB
 * within the log, sequence non-zero, descriptors fit), every descriptor
 * has a known signature, a 4 KiB-aligned offset and the entry's sequence
 * number, every data sector has its signature and sequence number, and
 * the checksum matches. A sequence is a run of valid entries laid end to
 * end with sequence numbers rising by one; the active sequence is the one
 * with the highest sequence number. Replaying applies its entries in
 * order (re-applying ones already flushed is harmless); an entry whose
 * flushed file offset lies past the end of the file means the file was
 * truncated and the image is refused. A GUID with no valid entry behind
 * it means an empty log.
 *
 * qemu replays only on a read-write open and refuses a read-only one;
 * diskkit replays into memory and never writes the replay back: driver
 * reads of the file go through vhdx_pread, which patches the overlay in,
 * and a read-write open of such an image is refused.
 *
 * Known gaps: logs larger than VHDX_LOG_REPLAY_MAX are refused when in
 * use; the entries' tail field is not used to trim the sequence.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vhdx.h"

#define SECT VHDX_LOG_SECTOR

static bool guid_is_zero(const uint8_t *g)
{
    for (int i = 0; i < 16; i++)
        if (g[i])
            return false;
    return true;
}

/* Sector I of the entry at POS (sectors never straddle the wrap). */
static const uint8_t *sector(const uint8_t *log, uint32_t len, uint32_t pos, uint32_t i)
{
    return log + (uint32_t)(((uint64_t)pos + (uint64_t)i * SECT) % len);
}

static uint32_t desc_sectors(uint32_t count)
{
    return (uint32_t)dk_div_round_up((uint64_t)count + 2, 128);
}

static const uint8_t *descriptor(const uint8_t *log, uint32_t len, uint32_t pos, uint32_t i)
{
    uint64_t slot = (uint64_t)i + 2;        /* the header takes two slots */
    return sector(log, len, pos, (uint32_t)(slot / 128)) + (slot % 128) * 32;
}

/* Checks the entry at POS; on success fills E. *BUDGET bounds the bytes
 * checksummed over the whole search (a crafted log must not make it
 * quadratic). */
static bool entry_valid(const uint8_t *log, uint32_t len, uint32_t pos, const uint8_t *guid,
                        struct vhdx_log_entry *e, uint64_t *budget)
{
    const uint8_t *h = log + pos;
    uint32_t elen = dk_le32(h + 8), n = dk_le32(h + 24);
    uint64_t seq = dk_le64(h + 16);
    if (dk_le32(h) != VHDX_LOG_SIG || elen == 0 || elen % SECT || elen > len || seq == 0 ||
        memcmp(h + 32, guid, 16) || n > elen / 32 || desc_sectors(n) > elen / SECT)
        return false;
    uint32_t data = desc_sectors(n), nsect = elen / SECT;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *d = descriptor(log, len, pos, i);
        if (dk_le64(d + 24) != seq || dk_le64(d + 16) % SECT)
            return false;
        if (!memcmp(d, "zero", 4)) {
            if (dk_le64(d + 8) % SECT)
                return false;
        } else if (!memcmp(d, "desc", 4)) {
            if (data >= nsect)
                return false;
            const uint8_t *s = sector(log, len, pos, data++);
            if (memcmp(s, "data", 4) ||
                (((uint64_t)dk_le32(s + 4) << 32) | dk_le32(s + SECT - 4)) != seq)
                return false;
        } else {
            return false;
        }
    }
    if (*budget < elen) {
        *budget = 0;            /* tells vhdx_log_find to give up */
        return false;
    }
    *budget -= elen;
    uint32_t crc = vhdx_checksum(h, SECT, 4);
    for (uint32_t i = 1; i < nsect; i++)
        crc = vhdx_crc32c(crc, sector(log, len, pos, i), SECT);
    if (crc != dk_le32(h + 4))
        return false;
    e->pos = pos;
    e->length = elen;
    e->sequence = seq;
    e->descriptors = n;
    e->flushed_offset = dk_le64(h + 48);
    e->last_offset = dk_le64(h + 56);
    return true;
}

int vhdx_log_find(const uint8_t *log, uint32_t len, const uint8_t *guid,
                  struct vhdx_log_seq *best)
{
    uint64_t budget = VHDX_LOG_CRC_BUDGET;
    uint32_t nsect = len / SECT;
    /* Entries already inside a sequence are not tried as starts again: a
     * sequence starting there ends at the same entry, so it is no better,
     * and skipping them keeps the search linear. */
    uint8_t *seen = calloc(1, nsect / 8 + 1);
    if (!seen)
        return -ENOMEM;
    memset(best, 0, sizeof(*best));
    for (uint32_t pos = 0; pos < len && budget; pos += SECT) {
        struct vhdx_log_entry e;
        if ((seen[pos / SECT / 8] >> (pos / SECT % 8)) & 1 ||
            !entry_valid(log, len, pos, guid, &e, &budget))
            continue;
        struct vhdx_log_seq cur = { .start = pos, .count = 1, .last = e };
        uint32_t next = (uint32_t)(((uint64_t)pos + e.length) % len);
        while (cur.count < nsect && entry_valid(log, len, next, guid, &e, &budget) &&
               e.sequence == cur.last.sequence + 1) {
            seen[next / SECT / 8] |= (uint8_t)(1u << (next / SECT % 8));
            cur.count++;
            cur.last = e;
            next = (uint32_t)(((uint64_t)next + e.length) % len);
        }
        /* The highest sequence number wins; of two sequences ending in the
         * same entry, the longer one (a start found before its head). */
        if (!best->count || cur.last.sequence > best->last.sequence ||
            (cur.last.sequence == best->last.sequence && cur.count > best->count))
            *best = cur;
    }
    free(seen);
    return budget == 0 ? -E2BIG : 0;
}

static int ovl_add(struct vhdx_overlay *o, uint64_t off, uint64_t len, const uint8_t *lead,
                   const uint8_t *mid, const uint8_t *trail)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        struct vhdx_ovl_item *p = realloc(o->items, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        o->items = p;
        o->cap = cap;
    }
    struct vhdx_ovl_item *it = &o->items[o->n];
    it->off = off;
    it->len = len;
    it->data = NULL;
    if (mid) {
        if (!(it->data = malloc(SECT)))
            return -ENOMEM;
        memcpy(it->data, lead, 8);
        memcpy(it->data + 8, mid + 8, SECT - 12);
        memcpy(it->data + SECT - 4, trail, 4);
    }
    o->n++;
    return 0;
}

int vhdx_log_build(const uint8_t *log, uint32_t len, const uint8_t *guid,
                   const struct vhdx_log_seq *seq, struct vhdx_overlay *o)
{
    uint64_t budget = VHDX_LOG_CRC_BUDGET;
    uint32_t pos = seq->start;
    for (uint32_t k = 0; k < seq->count; k++) {
        struct vhdx_log_entry e;
        if (!entry_valid(log, len, pos, guid, &e, &budget))
            return -EINVAL;     /* cannot happen: vhdx_log_find saw it */
        uint32_t data = desc_sectors(e.descriptors);
        for (uint32_t i = 0; i < e.descriptors; i++) {
            const uint8_t *d = descriptor(log, len, pos, i);
            int r;
            if (!memcmp(d, "zero", 4))
                r = dk_le64(d + 8) ? ovl_add(o, dk_le64(d + 16), dk_le64(d + 8),
                                             NULL, NULL, NULL) : 0;
            else
                r = ovl_add(o, dk_le64(d + 16), SECT, d + 8,
                            sector(log, len, pos, data++), d + 4);
            if (r < 0)
                return r;
        }
        pos = (uint32_t)(((uint64_t)pos + e.length) % len);
    }
    return 0;
}

void vhdx_overlay_apply(const struct vhdx_overlay *o, uint8_t *buf, size_t len, uint64_t off)
{
    /* In log order, so later entries win. */
    for (size_t i = 0; i < o->n; i++) {
        const struct vhdx_ovl_item *it = &o->items[i];
        if (!dk_ranges_overlap(it->off, it->len, off, len))
            continue;
        uint64_t lo = DK_MAX(it->off, off);
        uint64_t hi = DK_MIN(it->off + DK_MIN(it->len, UINT64_MAX - it->off), off + len);
        if (it->data)
            memcpy(buf + (lo - off), it->data + (lo - it->off), hi - lo);
        else
            memset(buf + (lo - off), 0, hi - lo);
    }
}

bool vhdx_overlay_touches(const struct vhdx_overlay *o, uint64_t off, uint64_t len)
{
    for (size_t i = 0; i < o->n; i++)
        if (dk_ranges_overlap(o->items[i].off, o->items[i].len, off, len))
            return true;
    return false;
}

void vhdx_overlay_free(struct vhdx_overlay *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->items[i].data);
    free(o->items);
    memset(o, 0, sizeof(*o));
}

/* Reads the log, finds the active sequence and builds the overlay. */
int vhdx_log_replay(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    const struct vhdx_header *h = &s->hdr;
    if (guid_is_zero(h->log_guid) || h->log_length == 0)
        return 0;
    if (h->log_length > VHDX_LOG_REPLAY_MAX)
        return dk_set_error(img, -ENOTSUP, "vhdx: the log is in use and too large to replay "
                            "in memory (%" PRIu32 " bytes, at most %u)", h->log_length,
                            VHDX_LOG_REPLAY_MAX);
    uint8_t *log = malloc(h->log_length);
    if (!log)
        return dk_set_error(img, -ENOMEM, "out of memory for the log");
    struct vhdx_log_seq seq;
    int r = dk_file_pread(img->file, log, h->log_length, h->log_offset);
    if (r < 0) {
        free(log);
        return dk_set_error(img, r, "vhdx: cannot read the log: %s", strerror(-r));
    }
    r = vhdx_log_find(log, h->log_length, h->log_guid, &seq);
    if (r == 0 && seq.count)
        r = vhdx_log_build(log, h->log_length, h->log_guid, &seq, &s->ovl);
    free(log);
    if (r == -E2BIG)
        return dk_set_error(img, -EINVAL, "vhdx: the log is too damaged to search");
    if (r < 0)
        return dk_set_error(img, r, "vhdx: cannot replay the log: %s", strerror(-r));
    if (!seq.count)
        return 0;
    if (seq.last.flushed_offset > s->file_size)
        return dk_set_error(img, -EINVAL, "vhdx: the log says the file was %" PRIu64
                            " bytes long, it has %" PRIu64 " (truncated)",
                            seq.last.flushed_offset, s->file_size);
    s->replayed = seq.count;
    s->file_size = DK_MAX(s->file_size, dk_round_up(seq.last.last_offset, VHDX_MIB));
    return 0;
}
