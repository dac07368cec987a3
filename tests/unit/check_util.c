/* check_util.c - size/bool parsing, option lists, endian helpers, ranges. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

START_TEST(size_plain_and_suffixes)
{
    uint64_t v;
    ck_assert_int_eq(dk_parse_size("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(dk_parse_size("512", &v), 0);
    ck_assert_uint_eq(v, 512);
    ck_assert_int_eq(dk_parse_size("1k", &v), 0);
    ck_assert_uint_eq(v, 1024);
    ck_assert_int_eq(dk_parse_size("1K", &v), 0);
    ck_assert_uint_eq(v, 1024);
    ck_assert_int_eq(dk_parse_size("10G", &v), 0);
    ck_assert_uint_eq(v, 10ull << 30);
    ck_assert_int_eq(dk_parse_size("1.5M", &v), 0);
    ck_assert_uint_eq(v, 3ull << 19);
    ck_assert_int_eq(dk_parse_size("2T", &v), 0);
    ck_assert_uint_eq(v, 2ull << 40);
    ck_assert_int_eq(dk_parse_size("1E", &v), 0);
    ck_assert_uint_eq(v, 1ull << 60);
}
END_TEST

START_TEST(size_rejects)
{
    uint64_t v = 7;
    ck_assert_int_eq(dk_parse_size("", &v), -EINVAL);
    ck_assert_int_eq(dk_parse_size("abc", &v), -EINVAL);
    ck_assert_int_eq(dk_parse_size("-1", &v), -EINVAL);
    ck_assert_int_eq(dk_parse_size("+1", &v), -EINVAL);
    ck_assert_int_eq(dk_parse_size("1X", &v), -EINVAL);
    ck_assert_int_eq(dk_parse_size("1GG", &v), -EINVAL);
    ck_assert_int_eq(dk_parse_size("1.5", &v), -EINVAL);
    ck_assert_int_eq(dk_parse_size(" 1", &v), -EINVAL);
    ck_assert_int_eq(dk_parse_size("8E", &v), -ERANGE);
    ck_assert_int_eq(dk_parse_size("99999999999999999999", &v), -ERANGE);
    ck_assert_int_eq(dk_parse_size("9223372036854775808", &v), -ERANGE);
    ck_assert_uint_eq(v, 7);   /* untouched on failure */
}
END_TEST

START_TEST(bools)
{
    ck_assert_int_eq(dk_parse_bool("on"), 1);
    ck_assert_int_eq(dk_parse_bool("TRUE"), 1);
    ck_assert_int_eq(dk_parse_bool("off"), 0);
    ck_assert_int_eq(dk_parse_bool("no"), 0);
    ck_assert_int_eq(dk_parse_bool("maybe"), -EINVAL);
    ck_assert_int_eq(dk_parse_bool(NULL), -EINVAL);
}
END_TEST

START_TEST(opts_parse)
{
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_opts_parse(&o, "cluster_size=64k,lazy_refcounts,name=a,,b", &e), 0);
    ck_assert_uint_eq(dk_opts_count(o), 3);
    ck_assert_str_eq(dk_opts_get(o, "cluster_size"), "64k");
    ck_assert_str_eq(dk_opts_get(o, "lazy_refcounts"), "on");
    ck_assert_str_eq(dk_opts_get(o, "name"), "a,b");
    ck_assert_ptr_null(dk_opts_get(o, "nope"));
    ck_assert_int_eq(dk_opts_parse(&o, "cluster_size=2M", &e), 0);   /* later wins */
    ck_assert_str_eq(dk_opts_get(o, "cluster_size"), "2M");
    dk_opts_del(o, "name");
    ck_assert_uint_eq(dk_opts_count(o), 2);
    ck_assert_int_eq(dk_opts_parse(&o, "=x", &e), -EINVAL);
    ck_assert_int_eq(dk_opts_parse(&o, "", &e), -EINVAL);
    dk_opts_free(o);
}
END_TEST

START_TEST(endian_round_trip)
{
    uint8_t b[8];
    dk_put_be64(b, 0x0102030405060708ull);
    ck_assert_uint_eq(b[0], 1);
    ck_assert_uint_eq(b[7], 8);
    ck_assert_uint_eq(dk_be64(b), 0x0102030405060708ull);
    ck_assert_uint_eq(dk_be32(b), 0x01020304u);
    ck_assert_uint_eq(dk_be16(b), 0x0102u);
    dk_put_le64(b, 0x0102030405060708ull);
    ck_assert_uint_eq(b[0], 8);
    ck_assert_uint_eq(dk_le64(b), 0x0102030405060708ull);
    ck_assert_uint_eq(dk_le32(b), 0x05060708u);
    dk_put_be32(b, 0xffffffffu);
    ck_assert_uint_eq(dk_be32(b), 0xffffffffu);
    dk_put_le16(b, 0xbeef);
    ck_assert_uint_eq(dk_le16(b), 0xbeef);
}
END_TEST

START_TEST(ranges_and_rounding)
{
    ck_assert(dk_range_inside(0, 10, 10));
    ck_assert(!dk_range_inside(1, 10, 10));
    ck_assert(!dk_range_inside(UINT64_MAX, 2, UINT64_MAX));   /* no wrap */
    ck_assert(!dk_range_inside(11, 0, 10));
    ck_assert(dk_ranges_overlap(0, 10, 9, 1));
    ck_assert(!dk_ranges_overlap(0, 10, 10, 1));
    ck_assert(!dk_ranges_overlap(0, 0, 0, 1));
    ck_assert_uint_eq(dk_round_up(65537, 65536), 131072);
    ck_assert_uint_eq(dk_round_down(65537, 65536), 65536);
    ck_assert_uint_eq(dk_div_round_up(10, 3), 4);
    ck_assert(dk_is_pow2(4096));
    ck_assert(!dk_is_pow2(0));
    ck_assert(!dk_is_pow2(12));
    char buf[300];
    memset(buf, 0, sizeof(buf));
    ck_assert(dk_is_zero(buf + 1, 299));
    buf[257] = 1;
    ck_assert(!dk_is_zero(buf + 1, 299));
    ck_assert(dk_is_zero(buf + 1, 256));
}
END_TEST

START_TEST(values_tree)
{
    struct dk_val *o = dk_val_new_obj();
    dk_val_add_str(o, "compat", "1.1");
    struct dk_val *d = dk_val_add_obj(o, "data");
    dk_val_add_bool(d, "lazy-refcounts", 0);
    dk_val_add_uint(d, "refcount-bits", 16);
    ck_assert_str_eq(dk_val_get(o, "compat")->v.s, "1.1");
    ck_assert_uint_eq(dk_val_get(dk_val_get(o, "data"), "refcount-bits")->v.u, 16);
    ck_assert_ptr_null(dk_val_get(o, "missing"));
    dk_val_free(o);
}
END_TEST

START_TEST(random_uuids)
{
    uint8_t a[16], b[16];
    ck_assert_int_eq(dk_random_uuid(a, false), 0);
    ck_assert_int_eq(dk_random_uuid(b, false), 0);
    ck_assert(memcmp(a, b, 16) != 0);
    ck_assert_int_eq(a[6] >> 4, 4);           /* RFC order: version in byte 6 */
    ck_assert_int_eq(a[8] >> 6, 2);           /* RFC 4122 variant */
    ck_assert_int_eq(dk_random_uuid(a, true), 0);
    ck_assert_int_eq(a[7] >> 4, 4);           /* GUID order: byte 7 */
    ck_assert_int_eq(a[8] >> 6, 2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("util");
    TCase *t = tcase_create("core");
    tcase_add_test(t, size_plain_and_suffixes);
    tcase_add_test(t, size_rejects);
    tcase_add_test(t, bools);
    tcase_add_test(t, opts_parse);
    tcase_add_test(t, endian_round_trip);
    tcase_add_test(t, ranges_and_rounding);
    tcase_add_test(t, values_tree);
    tcase_add_test(t, random_uuids);
    suite_add_tcase(s, t);
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
