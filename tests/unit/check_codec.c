/* check_codec.c - round trips and corrupt input for the cluster codecs. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
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

/* The codec keeps per-thread contexts (codec.c): whatever a thread did
 * before (other codecs, other levels, failed calls), a call must give the
 * same bytes as on a fresh thread. */
enum { RN = 65536 };
static const enum dk_codec codecs[] = { DK_CODEC_DEFLATE_RAW, DK_CODEC_ZLIB, DK_CODEC_ZSTD };

struct ref { unsigned char *in, *z[3]; ssize_t n[3]; };

static void *make_ref(void *opaque)
{
    struct ref *r = opaque;
    for (int i = 0; i < 3; i++)
        r->n[i] = dk_compress(codecs[i], 0, r->in, RN, r->z[i], RN);
    return NULL;
}

static void *check_against_ref(void *opaque)
{
    struct ref *r = opaque;
    unsigned char *z = malloc(RN), *out = malloc(RN);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 3; i++) {
            /* disturb: another level, a too-small buffer, corrupt input */
            ck_assert_int_ge(dk_compress(codecs[i], 9, r->in, RN, z, RN), 0);
            ck_assert_int_eq(dk_compress(codecs[i], 0, r->in, RN, z, 8), 0);
            memset(z, 0x5a, 512);
            ck_assert_int_lt(dk_decompress(codecs[i], z, 512, out, RN), 0);
            ssize_t n = dk_compress(codecs[i], 0, r->in, RN, z, RN);
            ck_assert_int_eq(n, r->n[i]);
            ck_assert_mem_eq(z, r->z[i], (size_t)n);
            ck_assert_int_eq(dk_decompress(codecs[i], z, (size_t)n, out, RN), 0);
            ck_assert_mem_eq(out, r->in, RN);
        }
    }
    free(z);
    free(out);
    return NULL;
}

START_TEST(reused_contexts_match_fresh)
{
    struct ref r;
    r.in = malloc(RN);
    fill(r.in, RN);
    for (int i = 0; i < 3; i++)
        r.z[i] = malloc(RN);
    pthread_t t[4];
    ck_assert_int_eq(pthread_create(&t[0], NULL, make_ref, &r), 0);
    pthread_join(t[0], NULL);
    for (int i = 0; i < 3; i++)
        ck_assert_int_gt(r.n[i], 0);
    check_against_ref(&r);                  /* this thread, reused */
    for (int i = 0; i < 4; i++)             /* concurrent threads */
        ck_assert_int_eq(pthread_create(&t[i], NULL, check_against_ref, &r), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        free(r.z[i]);
    free(r.in);
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
    tcase_add_test(t, reused_contexts_match_fresh);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
