/* check_vdi.c - VDI header decode/encode, every validation rule, block map
 * entry classification (formats/vdi/vdi.c). Image-level tests through the
 * public API are in check_vdi_api.c. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/vdi/vdi.h"

/* A header as qemu-img creates it for a 10 MiB dynamic image. */
static void good_header(struct vdi_header *h)
{
    memset(h, 0, sizeof(*h));
    strcpy(h->text, "<<< QEMU VM Virtual Disk Image >>>\n");
    h->signature = VDI_SIGNATURE;
    h->version = VDI_VERSION_1_1;
    h->header_size = VDI_HEADER_V1_SIZE;
    h->image_type = VDI_TYPE_DYNAMIC;
    h->offset_bmap = 512;
    h->offset_data = 1024;
    h->sector_size = 512;
    h->disk_size = 10 << 20;
    h->block_size = 1 << 20;
    h->blocks_in_image = 10;
    h->uuid_image[0] = 0x42;
}

static int validate(const struct vdi_header *h, uint64_t fsize, char *msg)
{
    return vdi_header_validate(h, fsize, msg, 256);
}

START_TEST(decode_encode_round_trip)
{
    struct vdi_header h, d;
    good_header(&h);
    h.image_flags = 0x12345678;
    h.cylinders = 1, h.heads = 2, h.sectors = 3;
    h.disk_size = 0x0123456789abcdefull;
    h.block_extra = 0x200;
    h.blocks_allocated = 7;
    memset(h.description, 'd', sizeof(h.description));
    for (int i = 0; i < 16; i++) {
        h.uuid_image[i] = (uint8_t)i;
        h.uuid_last_snap[i] = (uint8_t)(0x10 + i);
        h.uuid_link[i] = (uint8_t)(0x20 + i);
        h.uuid_parent[i] = (uint8_t)(0x30 + i);
    }
    uint8_t buf[512];
    memset(buf, 0xa5, sizeof(buf));
    vdi_header_encode(&h, buf);
    /* Explicit little-endian placement of a few fields. */
    ck_assert_int_eq(buf[64], 0x7f);
    ck_assert_int_eq(buf[67], 0xbe);
    ck_assert_int_eq(buf[368], 0xef);
    ck_assert_int_eq(buf[375], 0x01);
    ck_assert_int_eq(buf[340], 0x00);
    ck_assert_int_eq(buf[341], 0x02);
    /* Bytes past the v1 header are left alone (kept unknowns). */
    ck_assert_int_eq(buf[456], 0xa5);
    ck_assert_int_eq(buf[511], 0xa5);
    ck_assert_int_eq(vdi_header_decode(buf, sizeof(buf), &d), 0);
    ck_assert(memcmp(&h, &d, sizeof(h)) == 0);
    ck_assert_int_eq(vdi_header_decode(buf, VDI_HEADER_V1_END - 1, &d), -EINVAL);
}
END_TEST

START_TEST(good_header_passes)
{
    struct vdi_header h;
    char msg[256];
    good_header(&h);
    ck_assert_int_eq(validate(&h, 1024, msg), 0);
    h.image_type = VDI_TYPE_STATIC;
    h.blocks_allocated = 10;
    ck_assert_int_eq(validate(&h, 1024 + (10 << 20), msg), 0);
    /* v1+ header (0x190) is fine too. */
    h.header_size = 0x190;
    ck_assert_int_eq(validate(&h, 1024, msg), 0);
}
END_TEST

START_TEST(odd_disk_size_accepted)
{
    struct vdi_header h;
    char msg[256];
    good_header(&h);
    h.disk_size = 10 * 1000 * 1000 + 1;     /* VBoxManage convertfromraw style */
    ck_assert_int_eq(validate(&h, 1024, msg), 0);
    ck_assert_uint_eq(vdi_guest_size(&h), 10000384);
    /* Rounding up must still fit in the blocks. */
    h.disk_size = (10 << 20) - 1;
    ck_assert_int_eq(validate(&h, 1024, msg), 0);
    ck_assert_uint_eq(vdi_guest_size(&h), 10 << 20);
    h.disk_size = (10 << 20) + 1;
    ck_assert_int_eq(validate(&h, 1024, msg), -EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "exceeds"));
}
END_TEST

#define EXPECT_FAIL(field_change, fsize, err, needle)                 \
    do {                                                              \
        struct vdi_header h;                                          \
        char msg[256] = "";                                           \
        good_header(&h);                                              \
        field_change;                                                 \
        ck_assert_int_eq(validate(&h, (fsize), msg), (err));          \
        ck_assert_msg(strstr(msg, (needle)), "message '%s' lacks '%s'", msg, (needle)); \
    } while (0)

START_TEST(rejects_small_file)
{
    EXPECT_FAIL((void)0, 100, -EINVAL, "too small");
}
END_TEST

START_TEST(rejects_signature)
{
    EXPECT_FAIL(h.signature = 0xbeda1080, 1024, -EINVAL, "bad signature 0xbeda1080");
}
END_TEST

START_TEST(rejects_version)
{
    EXPECT_FAIL(h.version = 0x00010000, 1024, -ENOTSUP, "version 1.0");
    EXPECT_FAIL(h.version = 0, 1024, -ENOTSUP, "version 0.0");
    EXPECT_FAIL(h.version = 0x00020001, 1024, -ENOTSUP, "version 2.1");
}
END_TEST

START_TEST(rejects_header_size)
{
    EXPECT_FAIL(h.header_size = 0x17f, 1024, -EINVAL, "header size 383");
    EXPECT_FAIL(h.header_size = 441, 1024, -EINVAL, "header size 441");
    EXPECT_FAIL(h.header_size = 0xffffffff, 1024, -EINVAL, "header size");
    /* A header size that reaches into the block map. */
    EXPECT_FAIL((h.header_size = 440, h.offset_bmap = 0, h.offset_data = 512), 1024,
                -EINVAL, "block map offset");
}
END_TEST

START_TEST(rejects_image_types)
{
    EXPECT_FAIL(h.image_type = VDI_TYPE_UNDO, 1024, -ENOTSUP, "undo");
    EXPECT_FAIL(h.image_type = VDI_TYPE_DIFF, 1024, -ENOTSUP, "differencing");
    EXPECT_FAIL(h.image_type = 0, 1024, -EINVAL, "unknown image type 0");
    EXPECT_FAIL(h.image_type = 5, 1024, -EINVAL, "unknown image type 5");
}
END_TEST

START_TEST(rejects_sector_size)
{
    EXPECT_FAIL(h.sector_size = 4096, 1024, -ENOTSUP, "sector size 4096");
}
END_TEST

START_TEST(rejects_block_size)
{
    EXPECT_FAIL(h.block_size = 0, 1024, -ENOTSUP, "block size 0");
    EXPECT_FAIL(h.block_size = 3 << 19, 1024, -ENOTSUP, "block size");
    EXPECT_FAIL(h.block_size = 256, 1024, -ENOTSUP, "block size 256");
    EXPECT_FAIL(h.block_size = 128u << 20, 1024, -ENOTSUP, "block size");
    EXPECT_FAIL(h.block_extra = 100, 1024, -ENOTSUP, "block extra");
    EXPECT_FAIL(h.block_extra = 2u << 20, 1024, -ENOTSUP, "block extra");
}
END_TEST

START_TEST(accepts_other_block_sizes)
{
    struct vdi_header h;
    char msg[256];
    good_header(&h);
    h.block_size = 64 << 10;
    h.blocks_in_image = 160;
    h.offset_data = 1536;
    ck_assert_int_eq(validate(&h, 1536, msg), 0);
}
END_TEST

START_TEST(rejects_block_counts)
{
    EXPECT_FAIL(h.blocks_in_image = VDI_MAX_BLOCKS + 1, 1ull << 40, -ENOTSUP, "too many blocks");
    EXPECT_FAIL(h.blocks_in_image = 9, 1024, -EINVAL, "exceeds the 9 blocks");
    EXPECT_FAIL(h.blocks_allocated = 11, 1024, -EINVAL, "blocks allocated (11)");
    EXPECT_FAIL(h.blocks_allocated = 0xffffffff, 1024, -EINVAL, "blocks allocated");
}
END_TEST

START_TEST(rejects_offsets)
{
    EXPECT_FAIL(h.offset_bmap = 513, 1024, -EINVAL, "block map offset 0x201");
    EXPECT_FAIL(h.offset_data = 1000, 1024, -EINVAL, "data offset 0x3e8");
    EXPECT_FAIL(h.offset_data = 0, 1024, -EINVAL, "data offset 0x0");
    EXPECT_FAIL((h.blocks_in_image = 200, h.disk_size = 200ull << 20), 1024, -EINVAL,
                "no room for the 200-entry block map");
    EXPECT_FAIL(h.offset_data = 1536, 1024, -EINVAL, "beyond the end of the file");
    EXPECT_FAIL(h.offset_data = 0xfffffe00, 1024, -EINVAL, "beyond the end of the file");
    EXPECT_FAIL(h.offset_bmap = 0xfffffe00, 1024, -EINVAL, "data offset");
}
END_TEST

START_TEST(rejects_uuids)
{
    EXPECT_FAIL(h.uuid_link[3] = 1, 1024, -ENOTSUP, "non-null link UUID");
    EXPECT_FAIL(h.uuid_parent[15] = 1, 1024, -ENOTSUP, "non-null parent UUID");
}
END_TEST

START_TEST(entry_classes)
{
    ck_assert(vdi_entry_allocated(0));
    ck_assert(vdi_entry_allocated(12345));
    ck_assert(vdi_entry_allocated(0xfffffffd));
    ck_assert(!vdi_entry_allocated(VDI_MAP_ZERO));
    ck_assert(!vdi_entry_allocated(VDI_MAP_UNALLOCATED));
}
END_TEST

START_TEST(host_offsets)
{
    struct vdi_state s;
    memset(&s, 0, sizeof(s));
    good_header(&s.hdr);
    s.stride = s.hdr.block_size;
    ck_assert_uint_eq(vdi_block_host(&s, 0), 1024);
    ck_assert_uint_eq(vdi_block_host(&s, 3), 1024 + (3ull << 20));
    /* With block extra: data block i at data + i*(size+extra) + extra. */
    s.hdr.block_extra = 512;
    s.stride = s.hdr.block_size + 512;
    ck_assert_uint_eq(vdi_block_host(&s, 2), 1024 + 2 * ((1ull << 20) + 512) + 512);
    /* The largest index does not overflow. */
    ck_assert_uint_eq(vdi_block_host(&s, 0xfffffffd),
                      1024 + 0xfffffffdull * ((1ull << 20) + 512) + 512);
    /* Bytes of a guest block that must be in the file: the tail block of an
     * odd-sized disk needs only its guest part. */
    s.hdr.disk_size = (2 << 20) + 1000;
    ck_assert_uint_eq(vdi_block_need(&s, 0), 1 << 20);
    ck_assert_uint_eq(vdi_block_need(&s, 2), 1024);
    ck_assert_uint_eq(vdi_block_need(&s, 3), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vdi");
    TCase *tc = tcase_create("header");
    tcase_add_test(tc, decode_encode_round_trip);
    tcase_add_test(tc, good_header_passes);
    tcase_add_test(tc, odd_disk_size_accepted);
    tcase_add_test(tc, rejects_small_file);
    tcase_add_test(tc, rejects_signature);
    tcase_add_test(tc, rejects_version);
    tcase_add_test(tc, rejects_header_size);
    tcase_add_test(tc, rejects_image_types);
    tcase_add_test(tc, rejects_sector_size);
    tcase_add_test(tc, rejects_block_size);
    tcase_add_test(tc, accepts_other_block_sizes);
    tcase_add_test(tc, rejects_block_counts);
    tcase_add_test(tc, rejects_offsets);
    tcase_add_test(tc, rejects_uuids);
    tcase_add_test(tc, entry_classes);
    tcase_add_test(tc, host_offsets);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
