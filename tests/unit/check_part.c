/* check_part.c - partition tables (MBR, extended/logical, GPT with CRC and
 * backup fallback) and filesystem signatures, from synthetic disks in
 * memory: every validation path and cap. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "guest.h"
#include "util/endian.h"

#define DISK_SECTORS 4096u       /* 2 MiB */
static uint8_t disk[DISK_SECTORS * 512];
static int fail_reads;

static int mem_read(void *opaque, void *buf, size_t len, uint64_t off)
{
    uint64_t size = *(uint64_t *)opaque;
    if (fail_reads || off > size || len > size - off)
        return -EIO;
    memcpy(buf, disk + off, len);
    return 0;
}

static struct dk_part_table t;
static uint64_t disk_size = sizeof(disk);

static int scan(void)
{
    return dk_part_scan(mem_read, &disk_size, disk_size, 0, &t);
}

static void reset(void)
{
    memset(disk, 0, sizeof(disk));
    disk_size = sizeof(disk);
    fail_reads = 0;
}

static void mbr_entry(uint8_t *sector, int i, uint8_t flag, uint8_t type, uint32_t start,
                      uint32_t count)
{
    uint8_t *e = sector + 446 + 16 * i;
    e[0] = flag;
    e[4] = type;
    dk_put_le32(e + 8, start);
    dk_put_le32(e + 12, count);
    sector[510] = 0x55;
    sector[511] = 0xaa;
}

START_TEST(mbr_primaries)
{
    reset();
    dk_put_le32(disk + 440, 0xdeadbeef);
    mbr_entry(disk, 0, 0x80, 0x83, 2048, 1024);
    mbr_entry(disk, 2, 0x00, 0x07, 3072, 512);
    ck_assert_int_eq(scan(), 0);
    ck_assert_str_eq(t.scheme, "mbr");
    ck_assert_uint_eq(t.nparts, 2);
    ck_assert_str_eq(t.parts[0].device, "/dev/sda1");
    ck_assert_str_eq(t.parts[1].device, "/dev/sda3");
    ck_assert_uint_eq(t.parts[0].offset, 2048 * 512);
    ck_assert_uint_eq(t.parts[0].size, 1024 * 512);
    ck_assert_int_eq(t.parts[0].bootable, 1);
    ck_assert_uint_eq(t.parts[1].mbr_type, 0x07);
    ck_assert_str_eq(t.parts[1].part_uuid, "deadbeef-03");
    ck_assert_uint_eq(t.nwarnings, 0);
}
END_TEST

START_TEST(mbr_logicals)
{
    reset();
    mbr_entry(disk, 0, 0, 0x83, 64, 64);
    mbr_entry(disk, 1, 0, 0x05, 1024, 2048);          /* extended 1024..3071 */
    uint8_t *ebr1 = disk + 1024 * 512, *ebr2 = disk + 2048 * 512;
    mbr_entry(ebr1, 0, 0, 0x83, 32, 500);              /* sda5 at 1056 */
    mbr_entry(ebr1, 1, 0, 0x05, 1024, 1024);           /* next EBR at 2048 */
    mbr_entry(ebr2, 0, 0, 0x82, 16, 100);              /* sda6 at 2064 */
    ck_assert_int_eq(scan(), 0);
    ck_assert_uint_eq(t.nparts, 4);
    ck_assert_str_eq(t.parts[1].device, "/dev/sda2");
    ck_assert_str_eq(t.parts[2].device, "/dev/sda5");
    ck_assert_uint_eq(t.parts[2].offset, 1056 * 512);
    ck_assert_str_eq(t.parts[3].device, "/dev/sda6");
    ck_assert_uint_eq(t.parts[3].offset, 2064 * 512);
    ck_assert_uint_eq(t.parts[3].mbr_type, 0x82);
}
END_TEST

START_TEST(mbr_ebr_loop_and_escape)
{
    reset();
    mbr_entry(disk, 0, 0, 0x0f, 1024, 2048);
    uint8_t *ebr = disk + 1024 * 512;
    mbr_entry(ebr, 0, 0, 0x83, 32, 100);
    mbr_entry(ebr, 1, 0, 0x05, 0, 100);                /* points at itself: stop */
    ck_assert_int_eq(scan(), 0);
    ck_assert_uint_eq(t.nparts, 2);
    /* a loop through offset 0 ends the chain (next == 0 means "none") */
    mbr_entry(ebr, 1, 0, 0x05, 4000, 100);             /* outside the extended */
    ck_assert_int_eq(scan(), 0);
    ck_assert_uint_eq(t.nparts, 2);
    ck_assert_uint_eq(t.nwarnings, 1);
    ck_assert_ptr_nonnull(strstr(t.warnings[0], "outside the extended"));
    /* logical partition reaching outside its container */
    mbr_entry(ebr, 1, 0, 0, 0, 0);
    mbr_entry(ebr, 0, 0, 0x83, 32, 5000);
    ck_assert_int_eq(scan(), 0);
    ck_assert_uint_eq(t.nparts, 1);
    ck_assert_uint_eq(t.nwarnings, 1);
}
END_TEST

START_TEST(mbr_bounds_and_overlap)
{
    reset();
    mbr_entry(disk, 0, 0, 0x83, 100, 200);
    mbr_entry(disk, 1, 0, 0x83, 250, 100);             /* overlaps sda1 */
    mbr_entry(disk, 2, 0, 0x83, 5000, 100);            /* past the end */
    mbr_entry(disk, 3, 0, 0x83, 4000, 500);            /* runs over: clipped */
    ck_assert_int_eq(scan(), 0);
    ck_assert_uint_eq(t.nparts, 2);
    ck_assert_str_eq(t.parts[1].device, "/dev/sda4");
    ck_assert_uint_eq(t.parts[1].size, 96 * 512);
    ck_assert_uint_eq(t.nwarnings, 3);
}
END_TEST

START_TEST(not_an_mbr)
{
    reset();
    ck_assert_int_eq(scan(), 0);
    ck_assert_str_eq(t.scheme, "none");
    mbr_entry(disk, 0, 0x29, 0x83, 100, 100);          /* FAT-like garbage flag */
    ck_assert_int_eq(scan(), 0);
    ck_assert_str_eq(t.scheme, "none");
    ck_assert_uint_eq(t.nparts, 0);
    fail_reads = 1;
    ck_assert_int_eq(scan(), -EIO);
}
END_TEST

/* ----------------------------------------------------------------- GPT */

static const uint8_t linux_type[16] = {   /* 0FC63DAF-8483-4772-8E79-3D69D8477DE4 */
    0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
    0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
};

static void gpt_header(uint64_t lba, uint64_t alt, uint64_t entries_lba, uint32_t n,
                       uint32_t esize)
{
    uint8_t *h = disk + lba * 512;
    memset(h, 0, 512);
    memcpy(h, "EFI PART", 8);
    dk_put_le32(h + 8, 0x00010000);
    dk_put_le32(h + 12, 92);
    dk_put_le64(h + 24, lba);
    dk_put_le64(h + 32, alt);
    dk_put_le64(h + 40, 34);
    dk_put_le64(h + 48, DISK_SECTORS - 34);
    dk_put_le64(h + 72, entries_lba);
    dk_put_le32(h + 80, n);
    dk_put_le32(h + 84, esize);
    size_t bytes = (size_t)n * esize;
    if (entries_lba * 512 + bytes <= sizeof(disk))
        dk_put_le32(h + 88, (uint32_t)crc32(0, disk + entries_lba * 512, (uInt)bytes));
    dk_put_le32(h + 16, (uint32_t)crc32(0, h, 92));
}

static void gpt_entry(uint64_t entries_lba, int i, uint64_t first, uint64_t last,
                      const char *name)
{
    uint8_t *e = disk + entries_lba * 512 + 128 * i;
    memcpy(e, linux_type, 16);
    memset(e + 16, 0x11 * (i + 1), 16);
    dk_put_le64(e + 32, first);
    dk_put_le64(e + 40, last);
    dk_put_le64(e + 48, 4);                            /* legacy BIOS bootable */
    for (size_t k = 0; name[k]; k++)
        dk_put_le16(e + 56 + 2 * k, (uint8_t)name[k]);
}

static void make_gpt(void)
{
    reset();
    mbr_entry(disk, 0, 0, 0xee, 1, DISK_SECTORS - 1);
    gpt_entry(2, 0, 100, 199, "boot");
    gpt_entry(2, 2, 200, 999, "root");
    memcpy(disk + (DISK_SECTORS - 33) * 512, disk + 2 * 512, 32 * 512);
    gpt_header(1, DISK_SECTORS - 1, 2, 128, 128);
    gpt_header(DISK_SECTORS - 1, 1, DISK_SECTORS - 33, 128, 128);
}

START_TEST(gpt_ok)
{
    make_gpt();
    ck_assert_int_eq(scan(), 0);
    ck_assert_str_eq(t.scheme, "gpt");
    ck_assert_uint_eq(t.nparts, 2);
    ck_assert_str_eq(t.parts[0].device, "/dev/sda1");
    ck_assert_str_eq(t.parts[1].device, "/dev/sda3");
    ck_assert_uint_eq(t.parts[1].offset, 200 * 512);
    ck_assert_uint_eq(t.parts[1].size, 800 * 512);
    ck_assert_str_eq(t.parts[0].type_guid, "0fc63daf-8483-4772-8e79-3d69d8477de4");
    ck_assert_str_eq(t.parts[0].part_uuid, "11111111-1111-1111-1111-111111111111");
    ck_assert_str_eq(t.parts[1].name, "root");
    ck_assert_int_eq(t.parts[0].bootable, 1);
    ck_assert_uint_eq(t.nwarnings, 0);
}
END_TEST

START_TEST(gpt_backup_fallback)
{
    make_gpt();
    disk[512 + 40] ^= 1;                               /* header CRC now wrong */
    ck_assert_int_eq(scan(), 0);
    ck_assert_str_eq(t.scheme, "gpt");
    ck_assert_uint_eq(t.nparts, 2);
    ck_assert_uint_eq(t.nwarnings, 1);
    ck_assert_ptr_nonnull(strstr(t.warnings[0], "header CRC32 mismatch"));
    ck_assert_ptr_nonnull(strstr(t.warnings[0], "backup"));
    make_gpt();
    disk[2 * 512 + 33] ^= 1;                           /* primary entries damaged */
    ck_assert_int_eq(scan(), 0);
    ck_assert_uint_eq(t.nparts, 2);
    ck_assert_uint_eq(t.parts[0].offset, 100 * 512);   /* from the backup array */
    ck_assert_ptr_nonnull(strstr(t.warnings[0], "entry array CRC32"));
}
END_TEST

START_TEST(gpt_both_bad)
{
    make_gpt();
    disk[512] = 'X';
    disk[(DISK_SECTORS - 1) * 512] = 'X';
    ck_assert_int_eq(scan(), 0);
    ck_assert_str_eq(t.scheme, "none");
    ck_assert_uint_eq(t.nparts, 0);
    ck_assert_uint_eq(t.nwarnings, 1);
    ck_assert_ptr_nonnull(strstr(t.warnings[0], "no usable GPT"));
}
END_TEST

START_TEST(gpt_caps)
{
    static const struct { uint32_t n, esize; uint64_t elba; const char *why; } cases[] = {
        { 0, 128, 2, "entry count" },
        { DK_GPT_MAX_ENTRIES + 1, 128, 2, "entry count" },
        { 128, 64, 2, "entry size" },
        { 128, 130, 2, "entry size" },
        { 128, DK_GPT_MAX_ENTRY_SIZE * 2, 2, "entry size" },
        { 1024, 4096, 2, "too large" },
        { 128, 128, DISK_SECTORS - 2, "outside the disk" },
        { 128, 128, (uint64_t)1 << 60, "outside the disk" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_gpt();
        gpt_header(1, DISK_SECTORS - 1, cases[i].elba, cases[i].n, cases[i].esize);
        disk[(DISK_SECTORS - 1) * 512] = 'X';
        ck_assert_int_eq(scan(), 0);
        ck_assert_uint_eq(t.nparts, 0);
        ck_assert_msg(strstr(t.warnings[0], cases[i].why), "case %zu: %s", i, t.warnings[0]);
    }
    make_gpt();                                        /* self pointer wrong */
    gpt_header(1, DISK_SECTORS - 1, 2, 128, 128);
    dk_put_le64(disk + 512 + 24, 7);
    dk_put_le32(disk + 512 + 16, 0);
    dk_put_le32(disk + 512 + 16, (uint32_t)crc32(0, disk + 512, 92));
    ck_assert_int_eq(scan(), 0);
    ck_assert_ptr_nonnull(strstr(t.warnings[0], "point at itself"));
}
END_TEST

START_TEST(gpt_entry_checks)
{
    make_gpt();
    gpt_entry(2, 3, 10, 20, "low");                    /* before first usable */
    gpt_entry(2, 4, 500, 400, "rev");                  /* first > last */
    gpt_entry(2, 5, 150, 250, "ovl");                  /* overlaps sda1 and sda3 */
    gpt_header(1, DISK_SECTORS - 1, 2, 128, 128);
    ck_assert_int_eq(scan(), 0);
    ck_assert_uint_eq(t.nparts, 2);
    ck_assert_uint_eq(t.nwarnings, 3);
}
END_TEST

/* ----------------------------------------------------------- fsdetect */

static struct dk_fsinfo probe_at(uint64_t off, uint64_t size)
{
    struct dk_fsinfo f;
    memset(&f, 0, sizeof(f));
    ck_assert_int_eq(dk_fsdetect(mem_read, &disk_size, off, size, &f), 0);
    return f;
}

START_TEST(detect_ext)
{
    reset();
    uint8_t *sb = disk + 4096 + 1024;
    dk_put_le16(sb + 56, 0xef53);
    memset(sb + 104, 0xab, 16);
    memcpy(sb + 120, "rootfs", 6);
    struct dk_fsinfo f = probe_at(4096, 65536);
    ck_assert_str_eq(f.type, "ext2");
    ck_assert_str_eq(f.label, "rootfs");
    ck_assert_str_eq(f.uuid, "abababab-abab-abab-abab-abababababab");
    ck_assert_int_eq(f.readable, 1);
    dk_put_le32(sb + 92, EXT3_FEATURE_COMPAT_HAS_JOURNAL);
    ck_assert_str_eq(probe_at(4096, 65536).type, "ext3");
    dk_put_le32(sb + 96, EXT3_FEATURE_INCOMPAT_EXTENTS | EXT2_FEATURE_INCOMPAT_FILETYPE);
    ck_assert_str_eq(probe_at(4096, 65536).type, "ext4");
    dk_put_le32(sb + 96, EXT2_FEATURE_INCOMPAT_FILETYPE);
    dk_put_le32(sb + 100, EXT4_FEATURE_RO_COMPAT_METADATA_CSUM);
    ck_assert_str_eq(probe_at(4096, 65536).type, "ext4");
    /* a partition too small to hold the superblock is not probed past its end */
    ck_assert_str_eq(probe_at(4096, 1500).type, "unknown");
}
END_TEST

START_TEST(detect_others)
{
    reset();
    memcpy(disk + 4086, "SWAPSPACE2", 10);
    memcpy(disk + 1052, "swp", 3);
    struct dk_fsinfo f = probe_at(0, 65536);
    ck_assert_str_eq(f.type, "swap");
    ck_assert_str_eq(f.label, "swp");
    ck_assert_int_eq(f.readable, 0);
    reset();
    disk[0] = 0xeb;
    dk_put_le16(disk + 11, 512);
    memcpy(disk + 82, "FAT32   ", 8);
    memcpy(disk + 71, "MYDISK     ", 11);
    dk_put_le32(disk + 67, 0x1234abcd);
    disk[510] = 0x55, disk[511] = 0xaa;
    f = probe_at(0, 65536);
    ck_assert_str_eq(f.type, "vfat");
    ck_assert_str_eq(f.label, "MYDISK");
    ck_assert_str_eq(f.uuid, "1234-ABCD");
    reset();
    memcpy(disk, "XFSB", 4);
    ck_assert_str_eq(probe_at(0, 65536).type, "xfs");
    reset();
    memcpy(disk + 512, "LABELONE", 8);
    memcpy(disk + 512 + 24, "LVM2 001", 8);
    dk_put_le32(disk + 512 + 20, 32);
    memset(disk + 512 + 32, 'A', 32);
    f = probe_at(0, 65536);
    ck_assert_str_eq(f.type, "LVM2_member");
    ck_assert_str_eq(f.uuid, "AAAAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAAAA");
    reset();
    memcpy(disk, "LUKS\xba\xbe", 6);
    ck_assert_str_eq(probe_at(0, 65536).type, "crypto_LUKS");
    reset();
    memcpy(disk + 65536 + 64, "_BHRfS_M", 8);
    ck_assert_str_eq(probe_at(0, 1 << 20).type, "btrfs");
    reset();
    memcpy(disk + 32769, "CD001", 5);
    ck_assert_str_eq(probe_at(0, 1 << 20).type, "iso9660");
    reset();
    ck_assert_str_eq(probe_at(0, 1 << 20).type, "unknown");
    fail_reads = 1;
    struct dk_fsinfo g;
    ck_assert_int_eq(dk_fsdetect(mem_read, &disk_size, 0, 65536, &g), -EIO);
}
END_TEST

START_TEST(uuid_orders)
{
    uint8_t u[16];
    for (int i = 0; i < 16; i++)
        u[i] = (uint8_t)i;
    char s[37];
    dk_uuid_format(s, u, false);
    ck_assert_str_eq(s, "00010203-0405-0607-0809-0a0b0c0d0e0f");
    dk_uuid_format(s, u, true);
    ck_assert_str_eq(s, "03020100-0504-0706-0809-0a0b0c0d0e0f");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("part");
    TCase *t1 = tcase_create("mbr");
    tcase_add_test(t1, mbr_primaries);
    tcase_add_test(t1, mbr_logicals);
    tcase_add_test(t1, mbr_ebr_loop_and_escape);
    tcase_add_test(t1, mbr_bounds_and_overlap);
    tcase_add_test(t1, not_an_mbr);
    suite_add_tcase(s, t1);
    TCase *t2 = tcase_create("gpt");
    tcase_add_test(t2, gpt_ok);
    tcase_add_test(t2, gpt_backup_fallback);
    tcase_add_test(t2, gpt_both_bad);
    tcase_add_test(t2, gpt_caps);
    tcase_add_test(t2, gpt_entry_checks);
    suite_add_tcase(s, t2);
    TCase *t3 = tcase_create("fsdetect");
    tcase_add_test(t3, detect_ext);
    tcase_add_test(t3, detect_others);
    tcase_add_test(t3, uuid_orders);
    suite_add_tcase(s, t3);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
