/* part.c - partition tables: MBR (primary, extended and logical) and GPT.
 *
 * Implements: the classic MBR layout (4 entries of 16 bytes at 446, 0x55AA
 * at 510; extended partitions as a chain of EBRs whose first entry is a
 * logical partition relative to the EBR and whose second entry links to the
 * next EBR relative to the extended partition start) and the UEFI 2.x GPT
 * (chapter 5.3: header at LBA 1 with CRC32 over HeaderSize bytes, entry
 * array with its own CRC32, backup header at the last LBA). A GPT disk is
 * recognised by its protective MBR entry (type 0xEE).
 *
 * Names follow Linux and guestfish: primaries and GPT entries are numbered
 * by slot (1..), logical partitions from 5 in chain order; a disk with no
 * table is its own device (/dev/sda, partnum 0).
 *
 * Every on-disk field is checked: entry counts and sizes against named
 * caps, partitions against the disk end (dropped when they start past it,
 * clipped when they run over), overlapping partitions dropped. Problems that
 * do not stop reading become warnings in the table.
 *
 * Known gaps: 512-byte sectors only (4K-native disks are not probed);
 * hybrid MBRs are read as GPT; BSD/Solaris/LDM tables are not parsed.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "guest.h"
#include "util/endian.h"
#include "util/util.h"

#define SECTOR 512u
#define GPT_HEADER_MIN 92u

struct scan {
    dk_disk_read_fn rd;
    void *opaque;
    uint64_t size;              /* bytes */
    uint64_t nsectors;
    unsigned disk;
    struct dk_part_table *t;
};

static void warn(struct scan *s, const char *fmt, ...)
{
    struct dk_part_table *t = s->t;
    if (t->nwarnings >= sizeof(t->warnings) / sizeof(t->warnings[0]))
        return;
    char dev[DK_DEVNAME_MAX];
    dk_part_devname(dev, sizeof(dev), s->disk, 0);
    int n = snprintf(t->warnings[t->nwarnings], sizeof(t->warnings[0]), "%s: ", dev);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->warnings[t->nwarnings] + n, sizeof(t->warnings[0]) - (size_t)n, fmt, ap);
    va_end(ap);
    t->nwarnings++;
}

void dk_part_devname(char *buf, size_t len, unsigned disk, unsigned partnum)
{
    if (partnum)
        snprintf(buf, len, "/dev/sd%c%u", 'a' + (char)(disk % 26), partnum);
    else
        snprintf(buf, len, "/dev/sd%c", 'a' + (char)(disk % 26));
}

/* Adds a partition of START/COUNT sectors after the range checks. */
static void add_part(struct scan *s, unsigned num, uint64_t start, uint64_t count,
                     struct dk_partition *proto)
{
    struct dk_part_table *t = s->t;
    char dev[DK_DEVNAME_MAX];
    dk_part_devname(dev, sizeof(dev), s->disk, num);
    if (count == 0)
        return;
    if (start >= s->nsectors) {
        warn(s, "partition %u starts past the end of the disk; ignored", num);
        return;
    }
    if (count > s->nsectors - start) {
        warn(s, "partition %u runs past the end of the disk; clipped", num);
        count = s->nsectors - start;
    }
    for (size_t i = 0; i < t->nparts; i++) {
        const struct dk_partition *o = &t->parts[i];
        bool o_ext = o->mbr_type == 0x05 || o->mbr_type == 0x0f || o->mbr_type == 0x85;
        bool ext = proto->mbr_type == 0x05 || proto->mbr_type == 0x0f || proto->mbr_type == 0x85;
        if (o_ext || ext)       /* logicals lie inside their container */
            continue;
        if (dk_ranges_overlap(o->offset, o->size, start * SECTOR, count * SECTOR)) {
            warn(s, "partition %u overlaps %s; ignored", num, o->device);
            return;
        }
    }
    if (t->nparts >= DK_GUEST_MAX_PARTITIONS) {
        warn(s, "more than %u partitions; the rest are ignored", DK_GUEST_MAX_PARTITIONS);
        return;
    }
    struct dk_partition *p = &t->parts[t->nparts++];
    *p = *proto;
    memcpy(p->device, dev, sizeof(dev));
    p->disk = s->disk;
    p->partnum = num;
    p->offset = start * SECTOR;
    p->size = count * SECTOR;
    p->scheme = t->scheme;
}

/* ------------------------------------------------------------------ MBR */

static bool is_extended(unsigned type)
{
    return type == 0x05 || type == 0x0f || type == 0x85;
}

/* An MBR is valid when it has the 0x55AA signature and every entry's boot
 * flag is 0x00 or 0x80 (this rejects FAT/NTFS boot sectors, which carry the
 * same signature, as Linux's msdos.c does). */
static bool mbr_valid(const uint8_t *b)
{
    if (b[510] != 0x55 || b[511] != 0xaa)
        return false;
    for (int i = 0; i < 4; i++) {
        uint8_t flag = b[446 + 16 * i];
        if (flag != 0x00 && flag != 0x80)
            return false;
    }
    return true;
}

static void mbr_proto(struct dk_partition *p, const uint8_t *e, uint32_t sig, unsigned num)
{
    memset(p, 0, sizeof(*p));
    p->mbr_type = e[4];
    p->bootable = e[0] == 0x80;
    if (sig)
        snprintf(p->part_uuid, sizeof(p->part_uuid), "%08x-%02x", sig, num);
}

/* Walks the EBR chain of the extended partition at EXT_START (sectors). */
static int mbr_logicals(struct scan *s, uint64_t ext_start, uint64_t ext_count, uint32_t sig)
{
    uint8_t b[SECTOR];
    uint64_t ebr = ext_start;
    unsigned num = 5;
    for (unsigned depth = 0; ; depth++) {
        if (depth >= DK_MBR_MAX_LOGICAL) {
            warn(s, "extended partition chain longer than %u links; truncated",
                 DK_MBR_MAX_LOGICAL);
            return 0;
        }
        if (ebr >= s->nsectors || ebr - ext_start >= ext_count) {
            warn(s, "extended boot record at sector %llu lies outside the extended "
                 "partition; chain truncated", (unsigned long long)ebr);
            return 0;
        }
        int r = s->rd(s->opaque, b, SECTOR, ebr * SECTOR);
        if (r < 0)
            return r;
        if (b[510] != 0x55 || b[511] != 0xaa) {
            if (depth > 0)
                warn(s, "bad extended boot record at sector %llu; chain truncated",
                     (unsigned long long)ebr);
            return 0;
        }
        const uint8_t *e0 = b + 446, *e1 = b + 462;
        uint32_t lstart = dk_le32(e0 + 8), lcount = dk_le32(e0 + 12);
        if (e0[4] && lcount) {
            struct dk_partition proto;
            mbr_proto(&proto, e0, sig, num);
            uint64_t room = ext_count - (ebr - ext_start);   /* > 0, checked above */
            if (lstart > room || lcount > room - lstart)
                warn(s, "logical partition %u lies outside the extended partition; ignored",
                     num);
            else
                add_part(s, num, ebr + lstart, lcount, &proto);
            num++;
        }
        uint32_t next = dk_le32(e1 + 8);
        if (!is_extended(e1[4]) || next == 0)
            return 0;
        uint64_t nebr = ext_start + next;
        if (nebr <= ebr) {      /* chains only go forward: a loop otherwise */
            warn(s, "extended partition chain loops back; truncated");
            return 0;
        }
        ebr = nebr;
    }
}

static int mbr_scan(struct scan *s, const uint8_t *b)
{
    uint32_t sig = dk_le32(b + 440);
    bool have_ext = false;
    s->t->scheme = "mbr";
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *e = b + 446 + 16 * i;
        uint32_t start = dk_le32(e + 8), count = dk_le32(e + 12);
        if (e[4] == 0 || count == 0)
            continue;
        struct dk_partition proto;
        mbr_proto(&proto, e, sig, i + 1);
        add_part(s, i + 1, start, count, &proto);
        if (is_extended(e[4]) && !have_ext) {
            have_ext = true;
            uint64_t c = count;
            if (start < s->nsectors && c > s->nsectors - start)
                c = s->nsectors - start;
            int r = mbr_logicals(s, start, c, sig);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ GPT */

struct gpt_hdr {
    uint64_t my_lba, alt_lba, first_usable, last_usable, entries_lba;
    uint32_t nentries, entry_size, entries_crc;
};

/* Checks a GPT header read from LBA: signature, size, CRC, self-pointer,
 * usable range and the entry array geometry against the caps and the
 * disk. Returns NULL when valid, else what is wrong. */
static const char *gpt_validate(struct scan *s, const uint8_t *b, uint64_t lba,
                                struct gpt_hdr *h)
{
    if (memcmp(b, "EFI PART", 8) != 0)
        return "no GPT signature";
    uint32_t hsize = dk_le32(b + 12);
    if (hsize < GPT_HEADER_MIN || hsize > SECTOR)
        return "header size out of range";
    uint8_t tmp[SECTOR];
    memcpy(tmp, b, hsize);
    memset(tmp + 16, 0, 4);
    if ((uint32_t)crc32(0, tmp, hsize) != dk_le32(b + 16))
        return "header CRC32 mismatch";
    h->my_lba = dk_le64(b + 24);
    h->alt_lba = dk_le64(b + 32);
    h->first_usable = dk_le64(b + 40);
    h->last_usable = dk_le64(b + 48);
    h->entries_lba = dk_le64(b + 72);
    h->nentries = dk_le32(b + 80);
    h->entry_size = dk_le32(b + 84);
    h->entries_crc = dk_le32(b + 88);
    if (h->my_lba != lba)
        return "header does not point at itself";
    if (h->first_usable > h->last_usable || h->last_usable >= s->nsectors)
        return "usable range out of the disk";
    if (h->entry_size < 128 || h->entry_size % 8 || h->entry_size > DK_GPT_MAX_ENTRY_SIZE)
        return "bad partition entry size";
    if (h->nentries == 0 || h->nentries > DK_GPT_MAX_ENTRIES)
        return "partition entry count out of range";
    uint64_t bytes = (uint64_t)h->nentries * h->entry_size;
    if (bytes > DK_GPT_MAX_ARRAY)
        return "partition entry array too large";
    if (h->entries_lba >= s->nsectors ||
        !dk_range_inside(h->entries_lba * SECTOR, bytes, s->size))
        return "partition entry array lies outside the disk";
    return NULL;
}

/* UTF-16LE (N code units) to UTF-8 into OUT (LEN bytes, NUL-terminated). */
static void utf16le_to_utf8(char *out, size_t len, const uint8_t *in, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = dk_le16(in + 2 * i);
        if (c == 0)
            break;
        if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
            uint32_t lo = dk_le16(in + 2 * (i + 1));
            if (lo >= 0xdc00 && lo < 0xe000) {
                c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                i++;
            } else {
                c = 0xfffd;
            }
        } else if (c >= 0xd800 && c < 0xe000) {
            c = 0xfffd;
        }
        char u[4];
        size_t k;
        if (c < 0x80) { u[0] = (char)c; k = 1; }
        else if (c < 0x800) { u[0] = (char)(0xc0 | c >> 6); u[1] = (char)(0x80 | (c & 0x3f)); k = 2; }
        else if (c < 0x10000) { u[0] = (char)(0xe0 | c >> 12); u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
                                u[2] = (char)(0x80 | (c & 0x3f)); k = 3; }
        else { u[0] = (char)(0xf0 | c >> 18); u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
               u[2] = (char)(0x80 | ((c >> 6) & 0x3f)); u[3] = (char)(0x80 | (c & 0x3f)); k = 4; }
        if (o + k >= len)
            break;
        memcpy(out + o, u, k);
        o += k;
    }
    out[o] = 0;
}

/* Reads and CRC-checks the entry array of H; *ARR is malloc'ed. */
static int gpt_entries(struct scan *s, const struct gpt_hdr *h, uint8_t **arr,
                       const char **why)
{
    size_t bytes = (size_t)h->nentries * h->entry_size;   /* <= cap */
    uint8_t *a = malloc(bytes);
    if (!a)
        return -ENOMEM;
    int r = s->rd(s->opaque, a, bytes, h->entries_lba * SECTOR);
    if (r < 0) {
        free(a);
        return r;
    }
    if ((uint32_t)crc32(0, a, (uInt)bytes) != h->entries_crc) {
        free(a);
        *why = "partition entry array CRC32 mismatch";
        return 1;
    }
    *arr = a;
    return 0;
}

static void gpt_add_entries(struct scan *s, const struct gpt_hdr *h, const uint8_t *a)
{
    static const uint8_t zero[16];
    for (uint32_t i = 0; i < h->nentries; i++) {
        const uint8_t *e = a + (size_t)i * h->entry_size;
        if (!memcmp(e, zero, 16))
            continue;
        if (i + 1 > DK_GUEST_MAX_PARTITIONS) {
            warn(s, "GPT entry %u is beyond the %u partitions diskkit names; ignored",
                 i + 1, DK_GUEST_MAX_PARTITIONS);
            continue;
        }
        uint64_t first = dk_le64(e + 32), last = dk_le64(e + 40);
        if (first > last || first < h->first_usable || last > h->last_usable) {
            warn(s, "GPT partition %u lies outside the usable area; ignored", i + 1);
            continue;
        }
        struct dk_partition proto;
        memset(&proto, 0, sizeof(proto));
        dk_uuid_format(proto.type_guid, e, true);
        dk_uuid_format(proto.part_uuid, e + 16, true);
        proto.bootable = (dk_le64(e + 48) >> 2) & 1;
        utf16le_to_utf8(proto.name, sizeof(proto.name), e + 56, 36);
        add_part(s, i + 1, first, last - first + 1, &proto);
    }
}

/* Tries the header at LBA; returns 0 and fills the table, 1 when this
 * header is unusable (*WHY says why), or -errno. */
static int gpt_try(struct scan *s, uint64_t lba, const char **why)
{
    uint8_t b[SECTOR];
    struct gpt_hdr h;
    int r = s->rd(s->opaque, b, SECTOR, lba * SECTOR);
    if (r < 0)
        return r;
    *why = gpt_validate(s, b, lba, &h);
    if (*why)
        return 1;
    uint8_t *arr = NULL;
    r = gpt_entries(s, &h, &arr, why);
    if (r)
        return r;
    s->t->scheme = "gpt";
    gpt_add_entries(s, &h, arr);
    free(arr);
    return 0;
}

static int gpt_scan(struct scan *s)
{
    const char *why1 = NULL, *why2 = NULL;
    int r = gpt_try(s, 1, &why1);
    if (r <= 0)
        return r;
    r = gpt_try(s, s->nsectors - 1, &why2);
    if (r < 0)
        return r;
    if (r == 0) {
        warn(s, "GPT primary header is damaged (%s); using the backup header at "
             "LBA %llu", why1, (unsigned long long)(s->nsectors - 1));
        return 0;
    }
    warn(s, "protective MBR but no usable GPT (primary: %s; backup: %s)", why1, why2);
    s->t->scheme = "none";
    return 0;
}

int dk_part_scan(dk_disk_read_fn rd, void *opaque, uint64_t size, unsigned disk,
                 struct dk_part_table *t)
{
    struct scan s = { rd, opaque, size, size / SECTOR, disk, t };
    memset(t, 0, sizeof(*t));
    t->scheme = "none";
    if (s.nsectors < 2)
        return 0;
    uint8_t b[SECTOR];
    int r = rd(opaque, b, SECTOR, 0);
    if (r < 0)
        return r;
    if (!mbr_valid(b))
        return 0;
    for (int i = 0; i < 4; i++)
        if (b[446 + 16 * i + 4] == 0xee)
            return gpt_scan(&s);
    return mbr_scan(&s, b);
}
