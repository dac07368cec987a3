/* check_qcow2_bad.c - qcow2 driver on damaged or hostile images and bad
 * create options: every case fails with a one-line message naming the
 * problem, a read-only open leaves the file unchanged, a writable one sets
 * the corrupt bit (qemu's behaviour); overlap checks refuse writes over
 * metadata; a backing rewrite keeps the other header extensions.
 */

#include "qcow2-test.h"

START_TEST(bad_truncated_header)
{
    const char *f = make_victim();
    ck_assert_int_eq(truncate(f, 50), 0);
    expect_open_error(f, DK_OPEN_RDWR, "too small for a qcow2 header");
    free((void *)f);
}
END_TEST

START_TEST(bad_header_fields)
{
    static const struct { uint64_t off; int width; uint64_t val; const char *msg; } c[] = {
        { 0, 4, 0x51464900, "bad magic" },
        { 20, 4, 30, "cluster_bits 30 out of range" },
        { 40, 8, 0x1000000, "L1 table at 0x1000000 lies beyond end of file" },
        { 36, 4, 0x10000000, "exceeds the 32 MiB limit" },
        { 72, 8, 1ull << 9, "unsupported incompatible feature(s): unknown feature bit 9" },
        { 72, 8, (1ull << 5) | (1ull << 63), "unknown feature bit 5 (bit 5), unknown feature bit 63" },
        { 8, 8, 0xfff0, "outside the header cluster" },
    };
    const char *f = make_victim();
    if (c[_i].off == 8)
        poke_be32(f, 16, 100);
    if (c[_i].width == 4)
        poke_be32(f, c[_i].off, (uint32_t)c[_i].val);
    else
        poke_be64(f, c[_i].off, c[_i].val);
    expect_open_error(f, 0, c[_i].msg);
    expect_open_error(f, DK_OPEN_RDWR, c[_i].msg);
    free((void *)f);
}
END_TEST

/* Entries pointing past the end: the read fails with a corruption message;
 * a read-only handle leaves the file alone, a writable one sets the
 * on-disk corrupt bit (qemu's behaviour) and later opens are read-only. */
START_TEST(bad_table_entries)
{
    static const struct { uint64_t off, val; const char *msg; } c[] = {
        { 0x30000, 0x7000000 | QCOW2_OFLAG_COPIED,
          "qcow2: L2 table at 0x7000000 lies beyond end of file" },
        { 0x40000, 0x9000000 | QCOW2_OFLAG_COPIED,
          "qcow2: data cluster at 0x9000000 lies beyond end of file" },
        { 0x40000, 0x50200 | QCOW2_OFLAG_COPIED, "unaligned host offset 0x50200" },
    };
    const char *f = make_victim();
    poke_be64(f, c[_i].off, c[_i].val);
    size_t l1, l2;
    uint8_t *before = slurp(f, &l1), buf[512];
    struct dk_image *img = open_img(f, "qcow2", 0);
    ck_assert_int_eq(dk_pread(img, buf, sizeof(buf), 0), -EIO);
    ck_assert_msg(strstr(dk_image_errmsg(img), c[_i].msg), "got '%s'", dk_image_errmsg(img));
    dk_close(img);
    uint8_t *after = slurp(f, &l2);
    ck_assert_mem_eq(before, after, l1);
    img = open_img(f, "qcow2", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_pwrite(img, buf, sizeof(buf), 0), -EIO);
    dk_close(img);
    img = open_img(f, "qcow2", DK_OPEN_RDWR);
    ck_assert(dk_image_read_only(img));
    ck_assert_int_lt(dk_pwrite(img, buf, sizeof(buf), 0), 0);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(img), "corrupt"));
    dk_close(img);
    free(before);
    free(after);
    free((void *)f);
}
END_TEST

/* An L2 entry pointing at the active L1 table: an in-place write would
 * overwrite metadata; the overlap check refuses it and marks corruption. */
START_TEST(overlap_refused)
{
    const char *f = make_victim();
    poke_be64(f, 0x40000, 0x30000 | QCOW2_OFLAG_COPIED);
    uint8_t buf[512];
    memset(buf, 0xee, sizeof(buf));
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_pwrite(img, buf, sizeof(buf), 0), -EIO);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(img), "over the active L1 table"));
    dk_close(img);
    size_t n;
    uint8_t *after = slurp(f, &n);
    ck_assert_uint_eq(after[0x30000], 0x80);      /* L1 intact */
    ck_assert(dk_be64(after + 72) & QCOW2_INCOMPAT_CORRUPT);
    free(after);
    free((void *)f);
}
END_TEST

/* set_backing rewrites cluster 0 and keeps the other extensions. */
START_TEST(set_backing_keeps_extensions)
{
    char base[600];
    snprintf(base, sizeof(base), "%s/base.raw", tmpdir);
    FILE *bf = fopen(base, "wb");
    ck_assert_ptr_nonnull(bf);
    fclose(bf);
    ck_assert_int_eq(truncate(base, 1 << 20), 0);
    const char *f = strdup(tmp("sb.qcow2"));
    create(f, 1 << 20, NULL);
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_set_backing(img, "base.raw", "raw"), 0);
    dk_close(img);
    size_t n;
    uint8_t *b = slurp(f, &n);
    ck_assert_uint_eq(dk_be32(b + 112), QCOW2_EXT_BACKING_FMT);
    ck_assert_uint_eq(dk_be32(b + 128), QCOW2_EXT_FEATURES);   /* still there */
    free(b);
    img = open_img(f, "qcow2", 0);
    struct dk_info info;
    ck_assert_int_eq(dk_info(img, &info), 0);
    ck_assert_str_eq(info.backing_filename, "base.raw");
    ck_assert_str_eq(info.backing_format, "raw");
    dk_info_free(&info);
    dk_close(img);
    img = open_img(f, "qcow2", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_set_backing(img, NULL, NULL), 0);
    dk_close(img);
    img = open_img(f, "qcow2", 0);
    ck_assert_ptr_null(dk_image_backing(img));
    dk_close(img);
    if (have_qemu_img()) {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", f);
        ck_assert_int_eq(system(cmd), 0);
    }
    free((void *)f);
}
END_TEST

START_TEST(create_option_errors)
{
    static const struct { const char *opts, *msg; } c[] = {
        { "cluster_size=1000", "Cluster size must be a power of two" },
        { "cluster_size=4M", "Cluster size must be a power of two" },
        { "refcount_bits=3", "Refcount width must be a power of two" },
        { "refcount_bits=128", "may not exceed 64 bits" },
        { "compat=0.10,refcount_bits=8", "require compatibility level 1.1" },
        { "compat=0.10,lazy_refcounts=on", "Lazy refcounts only supported" },
        { "compat=2.0", "Invalid compatibility level" },
        { "compression_type=lz4", "Invalid compression_type" },
        { "compat=v2,compression_type=zstd", "Non-zlib compression type" },
        { "preallocation=some", "Invalid preallocation mode" },
        { "extended_l2=on", "extended_l2 (subclusters) is not supported" },
        { "data_file=x.raw", "external data files are not supported" },
        { "backing_fmt=raw", "Backing format cannot be used without backing file" },
    };
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_opts_parse(&o, c[_i].opts, &e), 0);
    const char *f = tmp("o.qcow2");
    struct dk_create_args a = { .filename = f, .format = "qcow2", .size = 1 << 20, .opts = o };
    ck_assert_int_lt(dk_create(&a, &e), 0);
    ck_assert_msg(strstr(e.msg, c[_i].msg), "%s: got '%s'", c[_i].opts, e.msg);
    ck_assert_int_ne(access(f, F_OK), 0);
    dk_opts_free(o);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("qcow2_bad");
    TCase *bad = tcase_create("bad");
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_set_timeout(bad, 60);
    tcase_add_test(bad, bad_truncated_header);
    tcase_add_loop_test(bad, bad_header_fields, 0, 7);
    tcase_add_loop_test(bad, bad_table_entries, 0, 3);
    tcase_add_loop_test(bad, create_option_errors, 0, 13);
    tcase_add_test(bad, overlap_refused);
    tcase_add_test(bad, set_backing_keeps_extensions);
    suite_add_tcase(s, bad);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
