/* check_qcow2_amend.c - qcow2 amend of compat and refcount_bits through the
 * public API: every refused option or precondition fails with a one-line
 * message and leaves the file byte-for-byte unchanged, damaged tables met
 * by the pre-scan are refused the same way (nothing written, no corrupt
 * bit), and round trips v3 -> v2 -> v3 and through every refcount width
 * keep the guest content (qemu-img check / compare when installed).
 */

#include <sys/stat.h>

#include "qcow2-test.h"

#define MIB (1u << 20)

/* Amends F with OPTS and expects failure with MSG, the file unchanged. */
static void expect_amend_error(const char *f, const char *opts, const char *msg)
{
    size_t l1, l2;
    uint8_t *before = slurp(f, &l1);
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_opts_parse(&o, opts, &e), 0);
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR | DK_OPEN_NO_BACKING);
    ck_assert_int_lt(dk_amend(img, o), 0);
    const char *m = dk_image_errmsg(img);
    ck_assert_msg(strstr(m, msg), "%s: expected '%s', got '%s'", opts, msg, m);
    ck_assert_ptr_null(strchr(m, '\n'));
    ck_assert_int_eq(dk_close(img), 0);
    dk_opts_free(o);
    uint8_t *after = slurp(f, &l2);
    ck_assert_uint_eq(l1, l2);
    ck_assert_msg(!memcmp(before, after, l1), "%s: refused amend changed the file", opts);
    free(before);
    free(after);
}

static void amend_ok(const char *f, const char *opts)
{
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_opts_parse(&o, opts, &e), 0);
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR | DK_OPEN_NO_BACKING);
    int r = dk_amend(img, o);
    ck_assert_msg(r == 0, "amend %s: %s", opts, dk_image_errmsg(img));
    ck_assert_int_eq(dk_close(img), 0);
    dk_opts_free(o);
}

static uint32_t header_u32(const char *f, uint64_t off)
{
    size_t n;
    uint8_t *b = slurp(f, &n);
    uint32_t v = dk_be32(b + off);
    free(b);
    return v;
}

START_TEST(option_errors)
{
    static const struct { const char *create, *amend, *msg; } c[] = {
        { NULL, "refcount_bits=3", "must be a power of two" },
        { NULL, "refcount_bits=16x", "must be a power of two" },
        { NULL, "refcount_bits=0", "must be a power of two" },
        { NULL, "refcount_bits=128", "may not exceed 64 bits" },
        { NULL, "compat=2.0", "Invalid compatibility level" },
        { NULL, "compat=0.10,lazy_refcounts=on", "Lazy refcounts only supported" },
        { NULL, "data_file=x.raw", "amending 'data_file' is not supported" },
        { "compat=0.10", "refcount_bits=8", "require compatibility level 1.1" },
        { "compat=0.10", "lazy_refcounts=on", "Lazy refcounts only supported" },
        { "refcount_bits=64", "compat=0.10", "compat=0.10 requires refcount_bits=16" },
        { "refcount_bits=8", "compat=v2,refcount_bits=4", "require compatibility level 1.1" },
    };
    const char *f = tmp("o.qcow2");
    create(f, MIB, c[_i].create);
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    uint8_t *ref = calloc(1, MIB);
    write_both(img, ref, 0, 70000, 3);
    ck_assert_int_eq(dk_pwrite_zeroes(img, 196608, 65536, 0), 0);
    ck_assert_int_eq(dk_close(img), 0);
    expect_amend_error(f, c[_i].amend, c[_i].msg);
    free(ref);
}
END_TEST

/* Snapshot table entry 0 of F: its L1 offset field. */
static uint64_t snap_l1_field(const char *f)
{
    size_t n;
    uint8_t *b = slurp(f, &n);
    uint64_t off = dk_be64(b + 64);
    free(b);
    return off;
}

START_TEST(damaged_tables)
{
    /* make_victim: L1 at 0x30000, L2 at 0x40000, data cluster 0x50000. */
    const char *f = make_victim();
    switch (_i) {
    case 0:     /* a zero cluster beyond end of file */
        poke_be64(f, 0x40000 + 8, 0x7000000ull | 1);
        expect_amend_error(f, "compat=0.10", "zero cluster at 0x7000000");
        break;
    case 1:     /* a zero cluster inside the file but not counted */
        ck_assert_int_eq(truncate(f, 0x80000), 0);
        poke_be64(f, 0x40000 + 8, 0x70000ull | 1);
        expect_amend_error(f, "compat=0.10", "has refcount 0");
        break;
    case 2: {   /* a snapshot whose L1 table is not aligned */
        struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
        ck_assert_int_eq(dk_snapshot_create(img, "s"), 0);
        ck_assert_int_eq(dk_close(img), 0);
        poke_be64(f, snap_l1_field(f), 0x12345);
        expect_amend_error(f, "compat=0.10", "has an invalid L1 table");
        break;
    }
    case 3:     /* an unused refcount table entry beyond end of file */
        poke_be64(f, 0x10000 + 8, 0x7000000);
        expect_amend_error(f, "refcount_bits=8", "refcount block at 0x7000000");
        break;
    }
    free((void *)f);
}
END_TEST

/* A refcount past the end of file (a leak) does not push the new
 * refcount structure to a huge offset. */
START_TEST(refcount_past_eof)
{
    const char *f = make_victim();
    uint8_t one[2] = { 0, 1 };
    poke(f, 0x20000 + 2 * 30000, one, 2);
    amend_ok(f, "refcount_bits=8");
    struct stat st;
    ck_assert_int_eq(stat(f, &st), 0);
    ck_assert_uint_lt((uint64_t)st.st_size, MIB);
    ck_assert_uint_eq(header_u32(f, 96), 3);
    uint8_t *ref = calloc(1, MIB);
    fill(ref, 4096, 5);
    qemu_verify(f, ref, MIB);
    free(ref);
    free((void *)f);
}
END_TEST

START_TEST(round_trip)
{
    const char *f = tmp("rt.qcow2");
    create(f, 4 * MIB, "lazy_refcounts=on");
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    uint8_t *ref = calloc(1, 4 * MIB);
    write_both(img, ref, 0, MIB, 11);
    ck_assert_int_eq(dk_snapshot_create(img, "one"), 0);
    write_both(img, ref, 2 * MIB, 200000, 12);
    ck_assert_int_eq(dk_pwrite_zeroes(img, 0, 131072, 0), 0);
    memset(ref, 0, 131072);
    ck_assert_int_eq(dk_pwrite_zeroes(img, 3 * MIB, 65536, DK_ZERO_MAY_UNMAP), 0);
    ck_assert_int_eq(dk_close(img), 0);

    amend_ok(f, "compat=0.10");
    ck_assert_uint_eq(header_u32(f, 4), 2);
    qemu_verify(f, ref, 4 * MIB);
    amend_ok(f, "compat=1.1,lazy_refcounts=on");
    ck_assert_uint_eq(header_u32(f, 4), 3);
    ck_assert_uint_eq(header_u32(f, 100), 112);
    qemu_verify(f, ref, 4 * MIB);
    static const char *const widths[] = { "refcount_bits=2", "refcount_bits=4",
        "refcount_bits=8", "refcount_bits=32", "refcount_bits=64" };
    for (size_t i = 0; i < DK_ARRAY_SIZE(widths); i++) {
        amend_ok(f, widths[i]);
        qemu_verify(f, ref, 4 * MIB);
    }
    ck_assert_uint_eq(header_u32(f, 96), 6);
    amend_ok(f, "compat=0.10,refcount_bits=16");
    ck_assert_uint_eq(header_u32(f, 4), 2);
    img = open_img(f, "qcow2", 0);
    expect_content(img, ref, 4 * MIB);
    ck_assert_int_eq(dk_close(img), 0);
    qemu_verify(f, ref, 4 * MIB);
    free(ref);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("qcow2_amend");
    TCase *tc = tcase_create("amend");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, option_errors, 0, 11);
    tcase_add_loop_test(tc, damaged_tables, 0, 4);
    tcase_add_test(tc, refcount_past_eof);
    tcase_add_test(tc, round_trip);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
