/* vpc-parent.c - differencing VHDs (disk type 4), read-only: the parent
 * locator, and block status from the per-block sector bitmaps.
 *
 * Spec: "Virtual Hard Disk Image Format Specification" 1.0, dynamic disk
 * header (parent UUID, parent Unicode name, parent locator entries) and
 * "Block Allocation Table and Data Blocks" (a set bit in a block's sector
 * bitmap means the sector is in this file; the most significant bit of
 * byte 0 is sector 0, as Virtual PC, Hyper-V, blktap and MiniVHD use it).
 *
 * Trust policy (INTERFACE.md): the parent's format is vpc, recorded by
 * the format itself (like a VMDK parent), never probed; its name is the
 * "W2ru" locator (relative to the child, '\' turned into '/'), or the
 * parent name field when that is a bare file name; absolute Windows paths
 * ("W2ku") are not followed. The core resolves the name like every backing
 * file (relative to the child's directory, chain depth and loop checks).
 * The parent's UUID must equal the child's parent_uuid; it is compared on
 * first use of the chain.
 *
 * Known gaps: writing to differencing disks (the child must be opened
 * read-only); qemu 7.2 has no differencing support at all (it reads a
 * child without its parent), so there is no oracle beyond the spec.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpc.h"

static size_t utf8_put(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

int vpc_utf16_to_utf8(const uint8_t *in, size_t n, bool big_endian, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return -ENAMETOOLONG;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = big_endian ? dk_be16(in + 2 * i) : dk_le16(in + 2 * i);
        if (c == 0)
            break;
        if (c >= 0xdc00 && c < 0xe000)
            return -EINVAL;                   /* lone low surrogate */
        if (c >= 0xd800 && c < 0xdc00) {
            uint32_t lo = i + 1 < n ? (big_endian ? dk_be16(in + 2 * i + 2)
                                                  : dk_le16(in + 2 * i + 2)) : 0;
            if (lo < 0xdc00 || lo >= 0xe000)
                return -EINVAL;
            c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
            i++;
        }
        if (c < 0x20 || c == 0x7f)
            return -EINVAL;
        char u[4];
        size_t k = utf8_put(u, c);
        if (k >= cap - o)
            return -ENAMETOOLONG;
        memcpy(out + o, u, k);
        o += k;
    }
    out[o] = '\0';
    return (int)o;
}

/* Turns a Windows relative path into ours in place: '\' to '/', leading
 * ".\" dropped. Refuses empty, absolute and drive-letter names. */
static bool relative_name(char *name)
{
    for (char *p = name; *p; p++)
        if (*p == '\\')
            *p = '/';
    while (name[0] == '.' && name[1] == '/')
        memmove(name, name + 2, strlen(name + 2) + 1);
    return name[0] && name[0] != '/' && !strchr(name, ':');
}

/* Reads the W2ru locator at entry I of HDR into NAME. Returns 1 when found
 * and usable, 0 when entry I is not W2ru, -errno on a bad locator. */
static int read_w2ru(struct dk_image *img, const uint8_t *hdr, int i, char *name, size_t cap)
{
    struct vpc_state *s = img->priv;
    const uint8_t *p = hdr + VPC_LOCATOR_OFF + i * VPC_LOCATOR_SIZE;
    uint32_t len = dk_be32(p + 8);
    uint64_t off = dk_be64(p + 16);
    if (dk_be32(p) != VPC_PLATFORM_W2RU)
        return 0;
    if (len == 0 || len % 2 || len > VPC_LOCATOR_MAX || !dk_range_inside(off, len, s->file_size))
        return dk_set_error(img, -EINVAL, "vpc: parent locator %d (W2ru, %" PRIu32 " bytes "
                            "at 0x%" PRIx64 ") is empty, too long or outside the file",
                            i, len, off);
    uint8_t *raw = malloc(len);
    if (!raw)
        return dk_set_error(img, -ENOMEM, "out of memory");
    int r = dk_file_pread(img->file, raw, len, off);
    if (r == 0)
        r = vpc_utf16_to_utf8(raw, len / 2, false, name, cap);
    free(raw);
    if (r < 0)
        return dk_set_error(img, r, "vpc: cannot read parent locator %d: %s", i, strerror(-r));
    return relative_name(name) ? 1 : dk_set_error(img, -EINVAL, "vpc: parent locator %d "
                                                  "is not a relative path", i);
}

int vpc_parent_open(struct dk_image *img, const uint8_t *hdr)
{
    size_t cap = (size_t)VPC_LOCATOR_MAX / 2 * 3 + 1;
    char *name = malloc(cap);
    if (!name)
        return dk_set_error(img, -ENOMEM, "out of memory");
    int r = 0;
    for (int i = 0; i < VPC_LOCATOR_COUNT && r == 0; i++)
        r = read_w2ru(img, hdr, i, name, cap);
    if (r == 0) {
        /* No W2ru: the parent name field, when it is a bare file name. */
        r = vpc_utf16_to_utf8(hdr + VPC_PARENT_NAME_OFF, VPC_PARENT_NAME_LEN / 2, true,
                              name, cap);
        if (r <= 0 || strpbrk(name, "/\\:"))
            r = dk_set_error(img, -ENOTSUP, "vpc: differencing disk without a usable "
                             "parent: no relative (W2ru) locator, and the parent name "
                             "is not a plain file name");
    }
    if (r > 0) {
        img->backing_name = strdup(name);
        img->backing_fmt = strdup("vpc");
        r = img->backing_name && img->backing_fmt ? 0 : dk_set_error(img, -ENOMEM,
                                                                     "out of memory");
    }
    free(name);
    return r;
}

/* The parent must be the disk the child was made from. */
static int check_parent(struct dk_image *img)
{
    struct vpc_state *s = img->priv;
    struct dk_image *b = img->backing;
    if (s->parent_checked || !b)
        return 0;
    if (b->drv != &dk_drv_vpc)
        return dk_set_error(img, -EINVAL, "vpc: parent %s is not a VHD", b->filename);
    const struct vpc_state *ps = b->priv;
    if (memcmp(ps->footer.uuid, s->dyn.parent_uuid, VPC_UUID_LEN))
        return dk_set_error(img, -EINVAL, "vpc: parent %s is not the disk this differencing "
                            "disk was made from (UUID mismatch)", b->filename);
    s->parent_checked = true;
    return 0;
}

static inline bool sector_bit(const uint8_t *bm, uint64_t k)
{
    return (bm[k / 8] >> (7 - k % 8)) & 1;
}

int vpc_diff_status(struct dk_image *img, uint32_t b, uint64_t in, uint64_t len,
                    struct dk_extent *ext)
{
    struct vpc_state *s = img->priv;
    int r = check_parent(img);
    if (r < 0)
        return r;
    if (s->bm_block != b) {
        if (!s->bm_cache && !(s->bm_cache = malloc(s->bitmap_size)))
            return dk_set_error(img, -ENOMEM, "out of memory");
        uint64_t at = (uint64_t)s->bat[b] * VPC_SECTOR;
        s->bm_block = UINT32_MAX;
        if ((r = dk_file_pread(img->file, s->bm_cache, s->bitmap_size, at)) < 0)
            return dk_set_error(img, r, "vpc: cannot read the sector bitmap at 0x%" PRIx64
                                ": %s", at, strerror(-r));
        s->bm_block = b;
    }
    uint64_t sec = in / VPC_SECTOR, nsec = s->block_size / VPC_SECTOR;
    bool set = sector_bit(s->bm_cache, sec);
    uint64_t run = VPC_SECTOR - in % VPC_SECTOR;
    for (uint64_t k = sec + 1; k < nsec && run < len && sector_bit(s->bm_cache, k) == set; k++)
        run += VPC_SECTOR;
    ext->length = DK_MIN(run, len);
    ext->flags = 0;                           /* the parent's */
    if (set) {
        ext->flags = DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID;
        ext->host_offset = (uint64_t)s->bat[b] * VPC_SECTOR + s->bitmap_size + in;
        ext->host_file = img->filename;
    }
    return 0;
}

/* Unallocated blocks of a differencing disk: the parent's, after the
 * parent check (the core reads them from img->backing). */
int vpc_diff_unallocated(struct dk_image *img)
{
    return check_parent(img);
}
