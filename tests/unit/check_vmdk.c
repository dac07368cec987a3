/* check_vmdk.c - VMDK driver: descriptor parser, sparse header validation,
 * markers, probing, and (with qemu-img installed) round trips through the
 * public API with qemu-img as the oracle, until the CLI interop test
 * (tests/interop/vmdk.sh) can take them over.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../formats/vmdk/vmdk.h"

/* ------------------------------------------------------------ descriptor */

static const char qemu_desc[] =
    "# Disk DescriptorFile\n"
    "version=1\n"
    "CID=ea0f9d87\n"
    "parentCID=ffffffff\n"
    "createType=\"twoGbMaxExtentSparse\"\n"
    "\n"
    "# Extent description\n"
    "RW 4194304 SPARSE \"a-s001.vmdk\"\n"
    "RW 2097152 SPARSE \"a-s002.vmdk\"\n"
    "\n"
    "#DDB\n"
    "ddb.adapterType = \"ide\"\n";

static int parse(const char *t, struct vmdk_desc *d, struct dk_error *e)
{
    memset(e, 0, sizeof(*e));
    return vmdk_desc_parse(d, t, strlen(t), e);
}

START_TEST(desc_qemu)
{
    struct vmdk_desc d;
    struct dk_error e;
    ck_assert_int_eq(parse(qemu_desc, &d, &e), 0);
    ck_assert_uint_eq(d.cid, 0xea0f9d87u);
    ck_assert_uint_eq(d.parent_cid, 0xffffffffu);
    ck_assert_str_eq(d.create_type, "twoGbMaxExtentSparse");
    ck_assert_ptr_null(d.parent_hint);
    ck_assert_uint_eq(d.n_ext, 2);
    ck_assert_uint_eq(d.ext[1].sectors, 2097152);
    ck_assert_str_eq(d.ext[0].fname, "a-s001.vmdk");
    ck_assert_int_eq(d.ext[0].type, VMDK_EXT_SPARSE);
    vmdk_desc_free(&d);
}
END_TEST

START_TEST(desc_spaces_crlf_comments_types)
{
    const char *t = "# Disk DescriptorFile\r\n  # indented comment\r\nCID=0000abcd\r\n"
                    "parentCID=12345678\r\nparentFileNameHint=\"my parent.vmdk\"\r\n"
                    "RW 100 FLAT \"disk with spaces-flat.vmdk\" 7\r\n"
                    "RDONLY 50 ZERO\r\nNOACCESS 8 VMFS \"v.vmdk\"\r\n"
                    "ddb.uuid = \"60 00 C2 9b\"\r\n";
    struct vmdk_desc d;
    struct dk_error e;
    ck_assert_int_eq(parse(t, &d, &e), 0);
    ck_assert_uint_eq(d.cid, 0xabcd);
    ck_assert_uint_eq(d.parent_cid, 0x12345678);
    ck_assert_str_eq(d.parent_hint, "my parent.vmdk");
    ck_assert_uint_eq(d.n_ext, 3);
    ck_assert_str_eq(d.ext[0].fname, "disk with spaces-flat.vmdk");
    ck_assert_uint_eq(d.ext[0].offset, 7);
    ck_assert_int_eq(d.ext[1].type, VMDK_EXT_ZERO);
    ck_assert_int_eq(d.ext[1].access, VMDK_RDONLY);
    ck_assert_ptr_null(d.ext[1].fname);
    ck_assert_int_eq(d.ext[2].type, VMDK_EXT_FLAT);
    ck_assert_int_eq(d.ext[2].access, VMDK_NOACCESS);
    /* CID rewrite keeps everything else byte for byte. */
    size_t len;
    char *n = vmdk_desc_with_cid(&d, 0xdeadbeef, &len);
    ck_assert_ptr_nonnull(n);
    ck_assert_ptr_nonnull(strstr(n, "CID=deadbeef\r\nparentCID=12345678\r\n"));
    ck_assert_ptr_nonnull(strstr(n, "ddb.uuid = \"60 00 C2 9b\"\r\n"));
    ck_assert_uint_eq(len, strlen(t));
    free(n);
    n = vmdk_desc_with_cid(&d, 0x1f, &len);   /* unpadded, like qemu */
    ck_assert_ptr_nonnull(strstr(n, "\r\nCID=1f\r\nparentCID=12345678\r\n"));
    ck_assert_uint_eq(len, strlen(t) - 6);
    free(n);
    vmdk_desc_free(&d);
}
END_TEST

static void bad(const char *t, int err, const char *needle)
{
    struct vmdk_desc d;
    struct dk_error e;
    ck_assert_int_eq(parse(t, &d, &e), err);
    ck_assert_msg(strstr(e.msg, needle), "'%s' lacks '%s'", e.msg, needle);
}

START_TEST(desc_bad_lines)
{
    bad("RW 100 SPARSE \"unterminated\n", -EINVAL, "line 1: invalid extent line");
    bad("CID=1\nRW x SPARSE \"a\"\n", -EINVAL, "line 2");
    bad("RW 0 SPARSE \"a\"\n", -EINVAL, "invalid extent line");
    bad("RW 100 FLAT \"a\"\n", -EINVAL, "invalid extent line");      /* no offset */
    bad("RW 100 SPARSE \"a\" 5\n", -EINVAL, "invalid extent line");  /* offset on sparse */
    bad("RW 100 FLAT \"a\" 0 junk\n", -EINVAL, "invalid extent line");
    bad("RW 100 SPARSE \"\"\n", -EINVAL, "invalid extent line");
    bad("RW 100 SPARSE\n", -EINVAL, "invalid extent line");
    bad("RW 100 VMFSSPARSE \"a\"\n", -ENOTSUP, "VMFSSPARSE is not supported");
    bad("RW 100 BOGUS \"a\"\n", -EINVAL, "unknown extent type");
    bad("this is not a descriptor\n", -EINVAL, "cannot parse");
    bad("CID=xyz\n", -EINVAL, "invalid value for CID");
    bad("CID=123456789\n", -EINVAL, "invalid value for CID");
}
END_TEST

START_TEST(desc_huge_sizes)
{
    bad("RW 99999999999999999999999 SPARSE \"a\"\n", -EFBIG, "too large");
    bad("RW 70368744177665 SPARSE \"a\"\n", -EFBIG, "too large");   /* 2^46 + 1 */
    bad("RW 70368744177664 SPARSE \"a\"\nRW 1 SPARSE \"b\"\n", -EFBIG, "add up");
    bad("RW 10 FLAT \"a\" 99999999999999999999\n", -EINVAL, "invalid extent line");
    /* extent count cap */
    size_t cap = (VMDK_MAX_EXTENTS + 1) * 24 + 1, n = 0;
    char *t = malloc(cap);
    for (int i = 0; i <= VMDK_MAX_EXTENTS; i++)
        n += (size_t)snprintf(t + n, cap - n, "RW 1 SPARSE \"x%05d\"\n", i);
    bad(t, -EFBIG, "more than");
    free(t);
}
END_TEST

START_TEST(desc_escaping_names_parse)
{
    /* Names are only parsed here; the trust policy is applied at open
     * (see stream_bad_inputs for the open-time refusal). */
    struct vmdk_desc d;
    struct dk_error e;
    ck_assert_int_eq(parse("RW 8 FLAT \"../outside.raw\" 0\nRW 8 FLAT \"/etc/passwd\" 0\n",
                           &d, &e), 0);
    ck_assert_str_eq(d.ext[0].fname, "../outside.raw");
    ck_assert_str_eq(d.ext[1].fname, "/etc/passwd");
    vmdk_desc_free(&d);
}
END_TEST

START_TEST(desc_generate_like_qemu)
{
    struct vmdk_desc_gen g = { .cid = 0xea0f9d87, .parent_cid = 0xffffffff,
        .create_type = "monolithicSparse", .hw_version = "4", .adapter = "ide",
        .tools_version = "2147483647", .total_sectors = 10485760 };
    char *t = vmdk_desc_generate(&g, "RW 10485760 SPARSE \"m.vmdk\"\n");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t, "createType=\"monolithicSparse\"\n\n# Extent description\n"
                                    "RW 10485760 SPARSE \"m.vmdk\"\n\n# The Disk Data Base\n"
                                    "#DDB\n\nddb.virtualHWVersion = \"4\"\n"
                                    "ddb.geometry.cylinders = \"10402\"\n"
                                    "ddb.geometry.heads = \"16\"\n"));
    struct vmdk_desc d;
    struct dk_error e;
    ck_assert_int_eq(parse(t, &d, &e), 0);
    ck_assert_uint_eq(d.cid, 0xea0f9d87u);
    vmdk_desc_free(&d);
    free(t);
}
END_TEST

START_TEST(desc_grown)
{
    struct vmdk_desc d;
    struct dk_error e;
    /* qemu's twoGbMaxExtentFlat layout: last line grown, one line added. */
    const char *t = "# Disk DescriptorFile\nversion=1\nCID=ea0f9d87\nparentCID=ffffffff\n"
                    "createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\n"
                    "RW 4194304 FLAT \"a-f001.vmdk\" 0\nRW 1024 FLAT \"a-f002.vmdk\" 0\n\n"
                    "#DDB\n\nddb.geometry.cylinders = \"4161\"\nddb.geometry.heads = \"16\"\n"
                    "ddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n";
    ck_assert_int_eq(parse(t, &d, &e), 0);
    size_t len;
    char *n = vmdk_desc_grown(&d, 0x1f, 4194304, "RW 1048576 FLAT \"a-f003.vmdk\" 0\n",
                              4194304 * 2 + 1048576, &len);
    ck_assert_ptr_nonnull(n);
    ck_assert_uint_eq(len, strlen(n));
    ck_assert_ptr_nonnull(strstr(n, "\nCID=1f\nparentCID=ffffffff\n"));
    ck_assert_ptr_nonnull(strstr(n, "RW 4194304 FLAT \"a-f001.vmdk\" 0\n"
                                    "RW 4194304 FLAT \"a-f002.vmdk\" 0\n"
                                    "RW 1048576 FLAT \"a-f003.vmdk\" 0\n\n#DDB\n"));
    /* 4.5 GiB / (16 * 63 * 512), as qemu-img create computes it. */
    ck_assert_ptr_nonnull(strstr(n, "ddb.geometry.cylinders = \"9362\"\n"));
    struct vmdk_desc g;
    ck_assert_int_eq(parse(n, &g, &e), 0);
    ck_assert_uint_eq(g.n_ext, 3);
    ck_assert_uint_eq(g.cid, 0x1f);
    vmdk_desc_free(&g);
    free(n);
    vmdk_desc_free(&d);
    /* CRLF, 255 heads from the descriptor, comments kept, no new lines. */
    t = "CID=1\r\n# keep me\r\n  RW 100 SPARSE \"m.vmdk\"\r\n"
        "ddb.geometry.heads = \"255\"\r\nddb.geometry.cylinders = \"0\"\r\n";
    ck_assert_int_eq(parse(t, &d, &e), 0);
    n = vmdk_desc_grown(&d, 0xabc, 33554432, NULL, 33554432, &len);
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(n, "CID=abc\r\n# keep me\r\n  RW 33554432 SPARSE \"m.vmdk\"\r\n"
                        "ddb.geometry.heads = \"255\"\r\n"
                        "ddb.geometry.cylinders = \"2088\"\r\n");
    free(n);
    vmdk_desc_free(&d);
}
END_TEST

/* ------------------------------------------------------------ header */

static struct vmdk_header good_header(void)
{
    struct vmdk_header h = { .version = 1, .flags = 3, .capacity = 204800, .grain_size = 128,
        .desc_offset = 1, .desc_size = 20, .num_gtes = 512, .rgd_offset = 21,
        .gd_offset = 38, .overhead = 128 };
    return h;
}

static void bad_header(struct vmdk_header h, uint64_t fsize, int err, const char *needle)
{
    struct dk_error e = { 0 };
    ck_assert_int_eq(vmdk_header_validate(&h, fsize, &e), err);
    ck_assert_msg(strstr(e.msg, needle), "'%s' lacks '%s'", e.msg, needle);
}

START_TEST(header_round_trip)
{
    struct vmdk_header h = good_header(), h2;
    uint8_t b[512];
    h.compress = 1;
    vmdk_header_encode(&h, b);
    ck_assert_mem_eq(b, "KDMV", 4);
    ck_assert_mem_eq(b + 73, "\n \r\n", 4);
    vmdk_header_decode(b, &h2);
    ck_assert_uint_eq(h2.capacity, 204800);
    ck_assert_uint_eq(h2.gd_offset, 38);
    ck_assert_uint_eq(h2.compress, 1);
    struct dk_error e = { 0 };
    ck_assert_int_eq(vmdk_header_validate(&h, 65536, &e), 0);
}
END_TEST

START_TEST(header_validation)
{
    struct vmdk_header h = good_header();
    h.grain_size = 96;
    bad_header(h, 65536, -EINVAL, "power of two");
    h.grain_size = 0x400000;
    bad_header(h, 65536, -EINVAL, "grain size");
    h = good_header(), h.num_gtes = 0;
    bad_header(h, 65536, -EINVAL, "grain table entries");
    h.num_gtes = 513;
    bad_header(h, 65536, -EINVAL, "grain table entries");
    h = good_header(), h.version = 4;
    bad_header(h, 65536, -ENOTSUP, "version 4");
    h = good_header(), h.capacity = UINT64_MAX;
    bad_header(h, 65536, -EFBIG, "capacity");
    h = good_header(), h.gd_offset = 1000;
    bad_header(h, 65536, -EINVAL, "grain directory at sector 1000");
    h = good_header(), h.gd_offset = UINT64_MAX / 2;
    bad_header(h, 65536, -EINVAL, "beyond end of file");
    h = good_header(), h.rgd_offset = 200;
    bad_header(h, 65536, -EINVAL, "redundant");
    h = good_header(), h.desc_size = 1u << 20;
    bad_header(h, 65536, -EINVAL, "descriptor");
    h = good_header(), h.overhead = 1000;
    bad_header(h, 65536, -EINVAL, "truncated");
    h = good_header(), h.flags |= VMDK_FLAG_COMPRESSED, h.compress = 2;
    bad_header(h, 65536, -ENOTSUP, "compression");
    /* A GD sized by the capacity over the cap. */
    h = good_header(), h.grain_size = 1, h.num_gtes = 1, h.capacity = 1ull << 40;
    bad_header(h, 65536, -EFBIG, "grain directory");
}
END_TEST

START_TEST(markers)
{
    uint8_t s[512] = { 0 };
    uint64_t v;
    uint32_t sz;
    dk_put_le64(s, 4);
    dk_put_le32(s + 12, VMDK_MARKER_GT);
    ck_assert_int_eq(vmdk_marker_decode(s, &v, &sz), VMDK_MARKER_GT);
    ck_assert_uint_eq(v, 4);
    dk_put_le32(s + 12, VMDK_MARKER_FOOTER);
    ck_assert_int_eq(vmdk_marker_decode(s, &v, &sz), VMDK_MARKER_FOOTER);
    dk_put_le32(s + 8, 77);   /* a grain: LBA + size */
    ck_assert_int_eq(vmdk_marker_decode(s, &v, &sz), -1);
    ck_assert_uint_eq(sz, 77);
    memset(s, 0, sizeof(s));
    ck_assert_int_eq(vmdk_marker_decode(s, &v, &sz), VMDK_MARKER_EOS);
}
END_TEST

START_TEST(probe)
{
    uint8_t b[4096] = { 0 };
    ck_assert_int_eq(dk_drv_vmdk.probe(b, sizeof(b), "x"), 0);
    memcpy(b, "KDMV", 4);
    ck_assert_int_eq(dk_drv_vmdk.probe(b, sizeof(b), "x"), 100);
    memset(b, 0, sizeof(b));
    strcpy((char *)b, "# Disk DescriptorFile\nversion=1\nCID=1\n");
    ck_assert_int_eq(dk_drv_vmdk.probe(b, sizeof(b), "x"), 100);
    strcpy((char *)b, "version=9\n");
    ck_assert_int_eq(dk_drv_vmdk.probe(b, sizeof(b), "x"), 0);
}
END_TEST

/* Round trips through the public API with qemu-img: check_vmdk_io.c. */

int main(void)
{
    Suite *s = suite_create("vmdk");
    TCase *t = tcase_create("parse");
    tcase_set_timeout(t, 60);   /* the extent-cap case is slow under ASan */
    tcase_add_test(t, desc_qemu);
    tcase_add_test(t, desc_spaces_crlf_comments_types);
    tcase_add_test(t, desc_bad_lines);
    tcase_add_test(t, desc_huge_sizes);
    tcase_add_test(t, desc_escaping_names_parse);
    tcase_add_test(t, desc_generate_like_qemu);
    tcase_add_test(t, desc_grown);
    tcase_add_test(t, header_round_trip);
    tcase_add_test(t, header_validation);
    tcase_add_test(t, markers);
    tcase_add_test(t, probe);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
