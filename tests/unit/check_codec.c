/* check_codec.c - round trips and corrupt input for the cluster codecs. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static void fill(unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 7) ^ (i >> 9));
}

static void round_trip(enum dk_codec c)
{
    enum { N = 65536 };
    unsigned char *in = malloc(N), *z = malloc(N), *out = malloc(N);
    fill(in, N);
    ssize_t n = dk_compress(c, 0, in, N, z, N);
    ck_assert_int_gt(n, 0);
    ck_assert_int_lt(n, N);
    ck_assert_int_eq(dk_decompress(c, z, (size_t)n, out, N), 0);
    ck_assert_mem_eq(in, out, N);
    /* trailing bytes after the stream are ignored */
    memset(z + n, 0xaa, 16);
    ck_assert_int_eq(dk_decompress(c, z, (size_t)n + 16, out, N), 0);
    ck_assert_mem_eq(in, out, N);
    /* truncated input fails */
    ck_assert_int_lt(dk_decompress(c, z, (size_t)n / 2, out, N), 0);
    /* garbage fails, never crashes */
    memset(z, 0x5a, 512);
    ck_assert_int_lt(dk_decompress(c, z, 512, out, N), 0);
    free(in); free(z); free(out);
}

START_TEST(deflate_raw) { round_trip(DK_CODEC_DEFLATE_RAW); } END_TEST
START_TEST(zlib_stream) { round_trip(DK_CODEC_ZLIB); } END_TEST
START_TEST(zstd_frames) { round_trip(DK_CODEC_ZSTD); } END_TEST

START_TEST(incompressible_returns_zero)
{
    enum { N = 4096 };
    unsigned char in[N], out[N];
    unsigned x = 12345;
    for (size_t i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        in[i] = (unsigned char)(x >> 16);
    }
    ck_assert_int_eq(dk_compress(DK_CODEC_DEFLATE_RAW, 0, in, N, out, N - 512), 0);
    ck_assert_int_eq(dk_compress(DK_CODEC_ZSTD, 0, in, N, out, N - 512), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("codec");
    TCase *t = tcase_create("codec");
    tcase_add_test(t, deflate_raw);
    tcase_add_test(t, zlib_stream);
    tcase_add_test(t, zstd_frames);
    tcase_add_test(t, incompressible_returns_zero);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
