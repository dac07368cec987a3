/* check_vpc.c - VHD footer and dynamic header decode/encode and checksum,
 * the size rules (CHS geometry, creator apps, force_size), every footer,
 * header and BAT validation rule (formats/vpc/vpc.c), UTF-16 parent names
 * (vpc-parent.c). Image-level tests
 * against qemu-img are in tests/interop/vpc.sh.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/vpc/vpc.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

/* The footer qemu-img 7.2 writes for `create -f vpc d.vhd 10M`. */
static void qemu_footer(struct vpc_footer *f)
{
    memset(f, 0, sizeof(*f));
    memcpy(f->cookie, "conectix", 8);
    f->features = 2;
    f->version = 0x00010000;
    f->data_offset = 512;
    f->timestamp = 0x32a7c45d;
    memcpy(f->creator_app, "qemu", 4);
    f->creator_version = 0x00050003;
    memcpy(f->creator_os, "Wi2k", 4);
    f->original_size = f->current_size = 10514432;
    f->cylinders = 302;
    f->heads = 4;
    f->sectors = 17;
    f->disk_type = VPC_TYPE_DYNAMIC;
    for (int i = 0; i < VPC_UUID_LEN; i++)
        f->uuid[i] = (uint8_t)(0xa0 + i);
}

static void good_dyn(struct vpc_dyn_header *h)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->cookie, "cxsparse", 8);
    h->data_offset = UINT64_MAX;
    h->table_offset = 1536;
    h->version = 0x00010000;
    h->max_table_entries = 6;
    h->block_size = 2 * MIB;
}

static int vfooter(const struct vpc_footer *f, bool ok, bool start, uint64_t fsize)
{
    char msg[256];
    return vpc_footer_validate(f, ok, start, fsize, msg, sizeof(msg));
}

static int vdyn(const struct vpc_dyn_header *h, uint64_t size, uint64_t fsize)
{
    char msg[256];
    return vpc_dyn_header_validate(h, size, fsize, msg, sizeof(msg));
}

START_TEST(checksum_rules)
{
    uint8_t b[512] = { 0 };
    ck_assert_uint_eq(vpc_checksum(b, sizeof(b), 64), 0xffffffffu);
    b[0] = 1;
    ck_assert_uint_eq(vpc_checksum(b, sizeof(b), 64), 0xfffffffeu);
    /* The checksum field itself is not summed. */
    memset(b + 64, 0xff, 4);
    ck_assert_uint_eq(vpc_checksum(b, sizeof(b), 64), 0xfffffffeu);
    /* 512 bytes of 0xff do not overflow the 32-bit sum. */
    memset(b, 0xff, sizeof(b));
    ck_assert_uint_eq(vpc_checksum(b, sizeof(b), 64), ~(508u * 255u));
}
END_TEST

START_TEST(footer_round_trip)
{
    struct vpc_footer f, d;
    uint8_t buf[512];
    qemu_footer(&f);
    f.saved_state = 1;
    memset(buf, 0xa5, sizeof(buf));
    vpc_footer_encode(&f, buf);
    /* Big-endian placement as in the file qemu wrote. */
    ck_assert(!memcmp(buf, "conectix", 8));
    ck_assert_int_eq(buf[11], 2);
    ck_assert_int_eq(buf[22], 2);             /* data offset 0x200 */
    ck_assert_int_eq(buf[23], 0);
    ck_assert(!memcmp(buf + 28, "qemu", 4));
    ck_assert_int_eq(buf[56], 0x01);
    ck_assert_int_eq(buf[57], 0x2e);
    ck_assert_int_eq(buf[58], 4);
    ck_assert_int_eq(buf[59], 17);
    ck_assert_int_eq(buf[63], 3);
    ck_assert_int_eq(buf[100], 0);            /* reserved tail zeroed */
    ck_assert_int_eq(vpc_footer_decode(buf, sizeof(buf), &d), 0);
    ck_assert_uint_eq(d.checksum, vpc_checksum(buf, 512, 64));
    f.checksum = d.checksum;
    ck_assert(!memcmp(&f, &d, sizeof(f)));
    ck_assert_int_eq(vpc_footer_decode(buf, 511, &d), -EINVAL);
}
END_TEST

START_TEST(dyn_header_round_trip)
{
    struct vpc_dyn_header h, d;
    uint8_t buf[1024];
    good_dyn(&h);
    h.parent_timestamp = 0x01020304;
    h.parent_uuid[15] = 9;
    vpc_dyn_header_encode(&h, buf);
    ck_assert(!memcmp(buf, "cxsparse", 8));
    ck_assert_int_eq(buf[8], 0xff);
    ck_assert_int_eq(buf[22], 0x06);          /* table offset 0x600 */
    ck_assert_int_eq(buf[31], 6);
    ck_assert_int_eq(buf[33], 0x20);          /* 2 MiB */
    ck_assert_int_eq(vpc_dyn_header_decode(buf, sizeof(buf), &d), 0);
    ck_assert_uint_eq(d.checksum, vpc_checksum(buf, 1024, 36));
    h.checksum = d.checksum;
    ck_assert(!memcmp(&h, &d, sizeof(h)));
    ck_assert_int_eq(vpc_dyn_header_decode(buf, 1000, &d), -EINVAL);
}
END_TEST

START_TEST(chs_geometry)
{
    uint16_t c;
    uint8_t h, s;
    vpc_chs_geometry(20536, &c, &h, &s);      /* qemu's 10 MiB image */
    ck_assert_uint_eq(c, 302); ck_assert_uint_eq(h, 4); ck_assert_uint_eq(s, 17);
    vpc_chs_geometry(0, &c, &h, &s);
    ck_assert_uint_eq(c, 0); ck_assert_uint_eq(h, 4); ck_assert_uint_eq(s, 17);
    /* Past 65535 x 16 x 63 sectors: 255 sectors, 16 heads. */
    vpc_chs_geometry(65535ull * 16 * 63, &c, &h, &s);
    ck_assert_uint_eq(h, 16); ck_assert_uint_eq(s, 255);
    /* Capped at the maximum geometry. */
    vpc_chs_geometry(UINT64_MAX, &c, &h, &s);
    ck_assert_uint_eq(c, 65535); ck_assert_uint_eq(h, 16); ck_assert_uint_eq(s, 255);
}
END_TEST

START_TEST(rounded_sizes)
{
    uint64_t out;
    uint16_t c;
    uint8_t h, s;
    /* Sizes measured with qemu-img 7.2 create -f vpc. */
    ck_assert_int_eq(vpc_rounded_size(10 * MIB, false, &out, &c, &h, &s), 0);
    ck_assert_uint_eq(out, 10514432);
    ck_assert_uint_eq((uint64_t)c * h * s * 512, out);
    ck_assert_int_eq(vpc_rounded_size(GIB, false, &out, &c, &h, &s), 0);
    ck_assert_uint_eq(out, 1073995776);
    ck_assert_int_eq(vpc_rounded_size(1000 * MIB, false, &out, &c, &h, &s), 0);
    ck_assert_uint_eq(out, 1048707072);
    /* Never smaller than asked (a byte count is first rounded to 512). */
    ck_assert_int_eq(vpc_rounded_size(1000001, false, &out, &c, &h, &s), 0);
    ck_assert_uint_ge(out, 1000001);
    /* force_size keeps the size and writes the maximum geometry. */
    ck_assert_int_eq(vpc_rounded_size(GIB + 1, true, &out, &c, &h, &s), 0);
    ck_assert_uint_eq(out, GIB + 512);
    ck_assert_uint_eq(c, 65535); ck_assert_uint_eq(h, 16); ck_assert_uint_eq(s, 255);
    /* Beyond CHS: the maximum geometry and the size as given. */
    ck_assert_int_eq(vpc_rounded_size(130 * GIB, false, &out, &c, &h, &s), 0);
    ck_assert_uint_eq(out, 130 * GIB);
    ck_assert_uint_eq((uint64_t)c * h * s, VPC_MAX_GEOMETRY);
    /* 2040 GiB is the limit. */
    ck_assert_int_eq(vpc_rounded_size(2040 * GIB, true, &out, &c, &h, &s), 0);
    ck_assert_int_eq(vpc_rounded_size(2040 * GIB + 512, true, &out, &c, &h, &s), -EFBIG);
    ck_assert_int_eq(vpc_rounded_size(2041 * GIB, false, &out, &c, &h, &s), -EFBIG);
    ck_assert_int_eq(vpc_rounded_size(UINT64_MAX, false, &out, &c, &h, &s), -EFBIG);
    ck_assert_int_eq(vpc_rounded_size(0, false, &out, &c, &h, &s), 0);
    ck_assert_uint_eq(out, 0);
}
END_TEST

START_TEST(guest_size_rules)
{
    struct vpc_footer f;
    qemu_footer(&f);
    f.current_size = 10 * MIB + 1000;          /* disagrees with the CHS */
    ck_assert_uint_eq(vpc_guest_size(&f), 10514432);
    static const char *cur[] = { "win ", "qem2", "d2v ", "CTXS" };
    for (size_t i = 0; i < 4; i++) {
        memcpy(f.creator_app, cur[i], 4);
        ck_assert_uint_eq(vpc_guest_size(&f), 10 * MIB + 512);  /* rounded down */
    }
    memcpy(f.creator_app, "tap", 4);          /* "tap\0" */
    ck_assert_uint_eq(vpc_guest_size(&f), 10 * MIB + 512);
    memcpy(f.creator_app, "tap ", 4);
    ck_assert_uint_eq(vpc_guest_size(&f), 10514432);
    memcpy(f.creator_app, "vpc ", 4);
    ck_assert_uint_eq(vpc_guest_size(&f), 10514432);
    memcpy(f.creator_app, "wa\0\0", 4);       /* Azure: CHS in qemu 7.2 */
    ck_assert_uint_eq(vpc_guest_size(&f), 10514432);
    /* The maximum geometry means current_size, whatever the creator. */
    f.cylinders = 65535, f.heads = 16, f.sectors = 255;
    ck_assert_uint_eq(vpc_guest_size(&f), 10 * MIB + 512);
}
END_TEST

START_TEST(footer_validation)
{
    struct vpc_footer f;
    qemu_footer(&f);
    uint64_t fsize = 2560;
    ck_assert_int_eq(vfooter(&f, true, true, fsize), 0);
    ck_assert_int_eq(vfooter(&f, true, true, 511), -EINVAL);
    ck_assert_int_eq(vfooter(&f, false, true, fsize), -EINVAL);
    f.cookie[0] = 'C';
    ck_assert_int_eq(vfooter(&f, true, true, fsize), -EINVAL);
    qemu_footer(&f);
    f.disk_type = VPC_TYPE_DIFF;              /* differencing: like dynamic */
    ck_assert_int_eq(vfooter(&f, true, true, fsize), 0);
    ck_assert_int_eq(vfooter(&f, true, false, fsize), -EINVAL);
    f.disk_type = 7;
    ck_assert_int_eq(vfooter(&f, true, true, fsize), -EINVAL);
    f.disk_type = VPC_TYPE_FIXED;             /* fixed, but a copy at 0 */
    ck_assert_int_eq(vfooter(&f, true, true, fsize), -EINVAL);
    f.disk_type = VPC_TYPE_DYNAMIC;           /* dynamic, only at the end */
    ck_assert_int_eq(vfooter(&f, true, false, fsize), -EINVAL);
    /* Dynamic header outside the file, or over the footer copy. */
    f.data_offset = fsize - 1023;
    ck_assert_int_eq(vfooter(&f, true, true, fsize), -EINVAL);
    f.data_offset = UINT64_MAX;
    ck_assert_int_eq(vfooter(&f, true, true, fsize), -EINVAL);
    f.data_offset = 0;
    ck_assert_int_eq(vfooter(&f, true, true, fsize), -EINVAL);
    /* Fixed: the guest data and the footer must fit in the file. */
    qemu_footer(&f);
    f.disk_type = VPC_TYPE_FIXED;
    f.data_offset = UINT64_MAX;
    ck_assert_int_eq(vfooter(&f, true, false, 10514432 + 512), 0);
    ck_assert_int_eq(vfooter(&f, true, false, 10514432 + 511), -EINVAL);
    /* At most 2040 GiB. */
    memcpy(f.creator_app, "win ", 4);
    f.current_size = 2040 * GIB + 512;
    ck_assert_int_eq(vfooter(&f, true, false, UINT64_MAX), -ENOTSUP);
    f.current_size = 2040 * GIB;
    ck_assert_int_eq(vfooter(&f, true, false, UINT64_MAX), 0);
}
END_TEST

START_TEST(dyn_header_validation)
{
    struct vpc_dyn_header h;
    uint64_t size = 10514432, fsize = 2560;
    good_dyn(&h);
    ck_assert_int_eq(vdyn(&h, size, fsize), 0);
    h.cookie[7] = 'x';
    ck_assert_int_eq(vdyn(&h, size, fsize), -EINVAL);
    good_dyn(&h);
    static const uint32_t bad_bs[] = { 0, 256, 3000000, 3 * MIB, 512 * MIB, 0x80000000u };
    for (size_t i = 0; i < DK_ARRAY_SIZE(bad_bs); i++) {
        h.block_size = bad_bs[i];
        ck_assert_int_eq(vdyn(&h, size, UINT64_MAX), -EINVAL);
    }
    h.block_size = 512;                       /* small blocks are fine */
    h.max_table_entries = 20536;
    ck_assert_int_eq(vdyn(&h, size, 1536 + 20536 * 4), 0);
    good_dyn(&h);
    h.max_table_entries = 5;                  /* 10 MiB < 10514432 */
    ck_assert_int_eq(vdyn(&h, size, fsize), -EINVAL);
    h.max_table_entries = 0xfffffff0u;        /* huge: refused before any use */
    ck_assert_int_eq(vdyn(&h, size, UINT64_MAX), -EINVAL);
    h.max_table_entries = VPC_MAX_TABLE_ENTRIES;
    ck_assert_int_eq(vdyn(&h, size, UINT64_MAX), 0);
    ck_assert_int_eq(vdyn(&h, size, fsize), -EINVAL);   /* BAT past EOF */
    good_dyn(&h);
    h.table_offset = 100;                     /* over the footer copy */
    ck_assert_int_eq(vdyn(&h, size, fsize), -EINVAL);
    h.table_offset = UINT64_MAX - 8;          /* overflow-safe */
    ck_assert_int_eq(vdyn(&h, size, fsize), -EINVAL);
}
END_TEST

static int vbat(const uint32_t *bat, uint32_t n, uint64_t fsize, uint64_t *free_off)
{
    struct vpc_dyn_header h;
    char msg[256];
    good_dyn(&h);
    h.max_table_entries = n;
    return vpc_bat_validate(bat, n, &h, 512, fsize, free_off, msg, sizeof(msg));
}

START_TEST(bat_validation)
{
    const uint64_t blk = 512 + 2 * MIB;       /* bitmap + data */
    uint32_t bat[6];
    uint64_t free_off;
    memset(bat, 0xff, sizeof(bat));
    ck_assert_int_eq(vbat(bat, 6, 2560, &free_off), 0);
    ck_assert_uint_eq(free_off, 2048);        /* after the BAT, rounded */
    bat[0] = 4;                               /* 0x800, as qemu allocates */
    bat[3] = (uint32_t)((2048 + blk) / 512);  /* right after it */
    ck_assert_int_eq(vbat(bat, 6, 2048 + 2 * blk + 512, &free_off), 0);
    ck_assert_uint_eq(free_off, 2048 + 2 * blk);
    /* Past the end of the file (truncated image). */
    ck_assert_int_eq(vbat(bat, 6, 2048 + 2 * blk - 1, &free_off), -EINVAL);
    /* Overlapping blocks, same block twice. */
    bat[3] = 5;
    ck_assert_int_eq(vbat(bat, 6, UINT32_MAX, &free_off), -EINVAL);
    bat[3] = 4;
    ck_assert_int_eq(vbat(bat, 6, UINT32_MAX, &free_off), -EINVAL);
    /* Over the footer copy, the header or the BAT. */
    memset(bat, 0xff, sizeof(bat));
    bat[1] = 0;
    ck_assert_int_eq(vbat(bat, 6, UINT32_MAX, &free_off), -EINVAL);
    bat[1] = 1;
    ck_assert_int_eq(vbat(bat, 6, UINT32_MAX, &free_off), -EINVAL);
    bat[1] = 3;
    ck_assert_int_eq(vbat(bat, 6, UINT32_MAX, &free_off), -EINVAL);
    /* The last sector number does not overflow. */
    bat[1] = 0xfffffffeu;
    ck_assert_int_eq(vbat(bat, 6, UINT64_MAX, &free_off), 0);
    ck_assert_uint_eq(free_off, 0xfffffffeull * 512 + blk);
}
END_TEST

START_TEST(utf16_names)
{
    char out[16];
    /* ".\\b.vhd" little-endian, then a NUL unit and junk after it. */
    const uint8_t le[] = { '.', 0, '\\', 0, 'b', 0, '.', 0, 'v', 0, 'h', 0, 'd', 0, 0, 0, 'x', 0 };
    ck_assert_int_eq(vpc_utf16_to_utf8(le, 9, false, out, sizeof(out)), 7);
    ck_assert_str_eq(out, ".\\b.vhd");
    /* Big-endian, with a 2-byte, a 3-byte and a 4-byte (surrogate) char. */
    const uint8_t be[] = { 0, 0xe9, 0x20, 0xac, 0xd8, 0x3d, 0xde, 0x00 };
    ck_assert_int_eq(vpc_utf16_to_utf8(be, 4, true, out, sizeof(out)), 9);
    ck_assert_str_eq(out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    /* Lone surrogates, control characters, too small a buffer. */
    const uint8_t lone[] = { 0xde, 0x00, 0, 'a' };
    ck_assert_int_eq(vpc_utf16_to_utf8(lone, 2, true, out, sizeof(out)), -EINVAL);
    const uint8_t hi_end[] = { 0xd8, 0x3d };
    ck_assert_int_eq(vpc_utf16_to_utf8(hi_end, 1, true, out, sizeof(out)), -EINVAL);
    const uint8_t ctl[] = { 0, 'a', 0, '\n' };
    ck_assert_int_eq(vpc_utf16_to_utf8(ctl, 2, true, out, sizeof(out)), -EINVAL);
    ck_assert_int_eq(vpc_utf16_to_utf8(le, 9, false, out, 7), -ENAMETOOLONG);
    ck_assert_int_eq(vpc_utf16_to_utf8(le, 0, false, out, 1), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vpc");
    TCase *tc = tcase_create("footer");
    tcase_add_test(tc, checksum_rules);
    tcase_add_test(tc, footer_round_trip);
    tcase_add_test(tc, dyn_header_round_trip);
    tcase_add_test(tc, chs_geometry);
    tcase_add_test(tc, rounded_sizes);
    tcase_add_test(tc, guest_size_rules);
    tcase_add_test(tc, footer_validation);
    tcase_add_test(tc, dyn_header_validation);
    tcase_add_test(tc, bat_validation);
    tcase_add_test(tc, utf16_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
