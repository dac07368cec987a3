/* fsdetect.c - what a partition holds, by superblock magic (like blkid).
 *
 * ext2/3/4: superblock at byte 1024, magic 0xEF53 at +56; the name follows
 * blkid's rule: ext4 when any feature beyond what ext3 knows is set, ext3
 * with a journal, else ext2 (e2fsprogs lib/ext2fs/ext2_fs.h for offsets).
 * Other types are only named (diskkit cannot open them): Linux swap
 * (SWAPSPACE2 at 4086), XFS ("XFSB" at 0), btrfs ("_BHRfS_M" at 64 KiB +
 * 64), FAT (BPB at 0), NTFS ("NTFS    " at 3), LVM2 PV ("LABELONE" in
 * sectors 0-3), LUKS ("LUKS\xba\xbe" at 0) and ISO 9660 ("CD001" at 32769).
 * Labels and UUIDs are decoded as blkid prints them.
 *
 * Known gaps: no MD RAID, ZFS, bcache or other rarer signatures (they show
 * as "unknown"); only the primary ext superblock is read.
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "guest.h"
#include "util/endian.h"

void dk_uuid_format(char out[37], const uint8_t u[16], bool mixed)
{
    uint8_t b[16];
    memcpy(b, u, 16);
    if (mixed) {        /* GPT/EFI GUID: first three fields little-endian */
        uint8_t t;
        t = b[0]; b[0] = b[3]; b[3] = t;
        t = b[1]; b[1] = b[2]; b[2] = t;
        t = b[4]; b[4] = b[5]; b[5] = t;
        t = b[6]; b[6] = b[7]; b[7] = t;
    }
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
             b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Copies a fixed-size on-disk label: stops at NUL, drops trailing spaces,
 * replaces control bytes. */
static void copy_label(char *out, size_t outlen, const uint8_t *in, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && in[i] && k + 1 < outlen; i++)
        out[k++] = in[i] < 0x20 || in[i] == 0x7f ? '?' : (char)in[i];
    while (k > 0 && out[k - 1] == ' ')
        k--;
    out[k] = 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

struct probe {
    dk_disk_read_fn rd;
    void *opaque;
    uint64_t off, size;
    struct dk_fsinfo *info;
};

/* Reads LEN bytes at REL inside the device; 1 if the device is too small. */
static int pread_rel(struct probe *p, void *buf, size_t len, uint64_t rel)
{
    if (rel > p->size || len > p->size - rel)
        return 1;
    return p->rd(p->opaque, buf, len, p->off + rel);
}

static int probe_ext(struct probe *p)
{
    uint8_t sb[1024];
    int r = pread_rel(p, sb, sizeof(sb), 1024);
    if (r)
        return r;
    if (dk_le16(sb + 56) != 0xef53)
        return 1;
    uint32_t compat = dk_le32(sb + 92), incompat = dk_le32(sb + 96);
    uint32_t ro_compat = dk_le32(sb + 100);
    const char *type;
    if (incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV)
        type = "jbd";
    else if ((incompat & ~(uint32_t)(EXT2_FEATURE_INCOMPAT_FILETYPE |
                                     EXT3_FEATURE_INCOMPAT_RECOVER |
                                     EXT2_FEATURE_INCOMPAT_META_BG)) ||
             (ro_compat & ~(uint32_t)(EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER |
                                      EXT2_FEATURE_RO_COMPAT_LARGE_FILE |
                                      0x0004u /* BTREE_DIR */)))
        type = "ext4";
    else if (compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL)
        type = "ext3";
    else
        type = "ext2";
    snprintf(p->info->type, sizeof(p->info->type), "%s", type);
    if (!all_zero(sb + 104, 16))
        dk_uuid_format(p->info->uuid, sb + 104, false);
    copy_label(p->info->label, sizeof(p->info->label), sb + 120, 16);
    p->info->readable = strcmp(type, "jbd") != 0;
    return 0;
}

static int probe_swap(struct probe *p)
{
    uint8_t b[4096];
    int r = pread_rel(p, b, sizeof(b), 0);
    if (r)
        return r;
    if (memcmp(b + 4086, "SWAPSPACE2", 10) && memcmp(b + 4086, "SWAP-SPACE", 10))
        return 1;
    snprintf(p->info->type, sizeof(p->info->type), "swap");
    if (!memcmp(b + 4086, "SWAPSPACE2", 10)) {
        if (!all_zero(b + 1036, 16))
            dk_uuid_format(p->info->uuid, b + 1036, false);
        copy_label(p->info->label, sizeof(p->info->label), b + 1052, 16);
    }
    return 0;
}

static int probe_sector0(struct probe *p)
{
    uint8_t b[512];
    int r = pread_rel(p, b, sizeof(b), 0);
    if (r)
        return r;
    struct dk_fsinfo *in = p->info;
    if (!memcmp(b, "XFSB", 4)) {
        snprintf(in->type, sizeof(in->type), "xfs");
        dk_uuid_format(in->uuid, b + 32, false);
        copy_label(in->label, sizeof(in->label), b + 108, 12);
        return 0;
    }
    if (!memcmp(b, "LUKS\xba\xbe", 6)) {
        snprintf(in->type, sizeof(in->type), "crypto_LUKS");
        copy_label(in->uuid, sizeof(in->uuid), b + 168, 36);
        if (dk_be16(b + 6) == 2)
            copy_label(in->label, sizeof(in->label), b + 24, 48);
        return 0;
    }
    if (!memcmp(b + 3, "NTFS    ", 8)) {
        snprintf(in->type, sizeof(in->type), "ntfs");
        snprintf(in->uuid, sizeof(in->uuid), "%016llX",
                 (unsigned long long)dk_le64(b + 72));
        return 0;
    }
    bool fat32 = !memcmp(b + 82, "FAT32   ", 8);
    bool fat16 = !memcmp(b + 54, "FAT12   ", 8) || !memcmp(b + 54, "FAT16   ", 8);
    uint16_t bps = dk_le16(b + 11);
    if ((fat32 || fat16) && b[510] == 0x55 && b[511] == 0xaa &&
        (bps == 512 || bps == 1024 || bps == 2048 || bps == 4096)) {
        snprintf(in->type, sizeof(in->type), "vfat");
        const uint8_t *serial = b + (fat32 ? 67 : 39);
        snprintf(in->uuid, sizeof(in->uuid), "%02X%02X-%02X%02X",
                 serial[3], serial[2], serial[1], serial[0]);
        copy_label(in->label, sizeof(in->label), b + (fat32 ? 71 : 43), 11);
        if (!strcmp(in->label, "NO NAME"))
            in->label[0] = 0;
        return 0;
    }
    return 1;
}

static int probe_lvm(struct probe *p)
{
    uint8_t b[512];
    for (uint64_t s = 0; s < 4; s++) {
        int r = pread_rel(p, b, sizeof(b), s * 512);
        if (r)
            return r;
        if (memcmp(b, "LABELONE", 8) || memcmp(b + 24, "LVM2 001", 8))
            continue;
        snprintf(p->info->type, sizeof(p->info->type), "LVM2_member");
        uint32_t hoff = dk_le32(b + 20);
        if (hoff <= 512 - 64) {     /* PV UUID: 32 chars, printed 6-4-4-4-4-4-6 */
            const uint8_t *u = b + hoff;
            static const int groups[] = { 6, 4, 4, 4, 4, 4, 6 };
            size_t k = 0, i = 0;
            for (int g = 0; g < 7; g++) {
                for (int j = 0; j < groups[g]; j++)
                    p->info->uuid[k++] = isprint(u[i]) ? (char)u[i] : '?', i++;
                if (g < 6)
                    p->info->uuid[k++] = '-';
            }
            p->info->uuid[k] = 0;
        }
        return 0;
    }
    return 1;
}

static int probe_far(struct probe *p)
{
    uint8_t b[512];
    int r = pread_rel(p, b, sizeof(b), 65536);
    if (r < 0)
        return r;
    if (r == 0 && !memcmp(b + 64, "_BHRfS_M", 8)) {
        snprintf(p->info->type, sizeof(p->info->type), "btrfs");
        dk_uuid_format(p->info->uuid, b + 32, false);
        copy_label(p->info->label, sizeof(p->info->label), b + 299, 64);
        return 0;
    }
    r = pread_rel(p, b, sizeof(b), 32768);
    if (r)
        return r;
    if (!memcmp(b + 1, "CD001", 5)) {
        snprintf(p->info->type, sizeof(p->info->type), "iso9660");
        copy_label(p->info->label, sizeof(p->info->label), b + 40, 32);
        return 0;
    }
    return 1;
}

int dk_fsdetect(dk_disk_read_fn rd, void *opaque, uint64_t off, uint64_t size,
                struct dk_fsinfo *info)
{
    struct probe p = { rd, opaque, off, size, info };
    int (*const probes[])(struct probe *) = {
        probe_ext, probe_sector0, probe_swap, probe_lvm, probe_far,
    };
    info->type[0] = info->label[0] = info->uuid[0] = 0;
    info->readable = 0;
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        int r = probes[i](&p);
        if (r <= 0)
            return r;
        info->type[0] = info->label[0] = info->uuid[0] = 0;
    }
    snprintf(info->type, sizeof(info->type), "unknown");
    return 0;
}
