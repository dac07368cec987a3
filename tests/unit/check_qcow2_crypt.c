/* check_qcow2_crypt.c - encrypted qcow2 through the public API: create
 * (LUKS, AES), write/read round trips with unaligned requests and
 * copy-on-write of partial clusters, reopen with the right, a wrong and
 * no passphrase, info and measure. (qemu interop: tests/interop/qcow2-luks.sh) */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diskkit.h"

static char path[64];
static const unsigned char pw[] = "correct horse";

static void make(const char *opts)
{
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_opts_parse(&o, opts, &e), 0);
    struct dk_create_args a = { .filename = path, .format = "qcow2", .size = 4 << 20,
                                .opts = o, .secret = pw, .secret_len = sizeof(pw) - 1 };
    ck_assert_msg(dk_create(&a, &e) == 0, "%s", e.msg);
    dk_opts_free(o);
}

static struct dk_image *op(const unsigned char *secret, size_t len, bool rw, int *err)
{
    struct dk_open_opts o = { .format = "qcow2", .flags = rw ? DK_OPEN_RDWR : 0,
                              .secret = secret, .secret_len = len };
    struct dk_error e = { 0 };
    struct dk_image *img = dk_open(path, &o, &e);
    *err = e.code;
    return img;
}

static void round_trip(const char *opts)
{
    make(opts);
    int err;
    struct dk_image *img = op(pw, sizeof(pw) - 1, true, &err);
    ck_assert_ptr_nonnull(img);
    enum { N = 200000 };
    uint8_t *w = malloc(N), *r = malloc(N);
    for (int i = 0; i < N; i++)
        w[i] = (uint8_t)(i * 31 + (i >> 11));
    ck_assert_int_eq(dk_pwrite(img, w, N, 70000), 0);          /* partial clusters */
    ck_assert_int_eq(dk_pwrite(img, "abc", 3, 70001), 0);      /* in place, unaligned */
    memcpy(w + 1, "abc", 3);
    /* zeroing falls back to writing encrypted zeros */
    ck_assert_int_eq(dk_pwrite_zeroes(img, 70000 + 5000, 70000, 0), 0);
    memset(w + 5000, 0, 70000);
    ck_assert_int_eq(dk_pread(img, r, 5, 69999), 0);
    ck_assert_int_eq(r[0], 0);
    ck_assert_mem_eq(r + 1, w, 4);
    ck_assert_int_eq(dk_close(img), 0);

    img = op(pw, sizeof(pw) - 1, false, &err);
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(dk_pread(img, r, N, 70000), 0);
    ck_assert_mem_eq(r, w, N);
    ck_assert_int_eq(dk_pread(img, r, 100, 70000 + N), 0);     /* after: zeros */
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(r[i], 0);
    struct dk_info info;
    ck_assert_int_eq(dk_info(img, &info), 0);
    ck_assert(info.encrypted);
    dk_info_free(&info);
    dk_close(img);

    /* no passphrase: opens, data refused with a hint */
    img = op(NULL, 0, false, &err);
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(dk_pread(img, r, 512, 70000), -EACCES);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(img), "--passphrase-file"));
    dk_close(img);
    free(w);
    free(r);
}

START_TEST(luks_round_trip)
{
    round_trip("encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10");
    int err;
    ck_assert_ptr_null(op((const unsigned char *)"wrong", 5, false, &err));
    ck_assert_int_eq(err, -EACCES);
}
END_TEST

START_TEST(luks_essiv_round_trip)
{
    round_trip("encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,"
               "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,"
               "encrypt.hash-alg=sha512");
}
END_TEST

START_TEST(aes_round_trip)
{
    round_trip("encrypt.format=aes,encrypt.key-secret=s");
    /* a wrong AES key cannot be detected: data just decrypts differently */
    int err;
    struct dk_image *img = op((const unsigned char *)"wrong", 5, false, &err);
    ck_assert_ptr_nonnull(img);
    uint8_t r[512];
    ck_assert_int_eq(dk_pread(img, r, 512, 70144), 0);
    ck_assert(r[0] != (uint8_t)(144 * 31) || r[1] != (uint8_t)(145 * 31));
    dk_close(img);
}
END_TEST

/* Encrypted overlay over an encrypted base (one passphrase for the chain):
 * a partial-cluster write copies the decrypted backing data up. */
START_TEST(overlay_cow)
{
    make("encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10");
    int err;
    struct dk_image *img = op(pw, sizeof(pw) - 1, true, &err);
    uint8_t b[65536], r[65536];
    memset(b, 0x61, sizeof(b));
    ck_assert_int_eq(dk_pwrite(img, b, sizeof(b), 0), 0);
    ck_assert_int_eq(dk_close(img), 0);
    char base[80], opts[256];
    snprintf(base, sizeof(base), "%s.base", path);
    ck_assert_int_eq(rename(path, base), 0);
    snprintf(opts, sizeof(opts), "backing_file=%s,backing_fmt=qcow2,encrypt.format=luks,"
             "encrypt.key-secret=s,encrypt.iter-time=10", base);
    make(opts);
    img = op(pw, sizeof(pw) - 1, true, &err);
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(dk_pwrite(img, "XYZ", 3, 1000), 0);
    ck_assert_int_eq(dk_close(img), 0);
    img = op(pw, sizeof(pw) - 1, false, &err);
    ck_assert_int_eq(dk_pread(img, r, sizeof(r), 0), 0);
    memcpy(b + 1000, "XYZ", 3);
    ck_assert_mem_eq(r, b, sizeof(b));
    dk_close(img);
    unlink(base);
}
END_TEST

static int create_err(const char *opts, bool secret, char *msg)
{
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_opts_parse(&o, opts, &e), 0);
    struct dk_create_args a = { .filename = path, .format = "qcow2", .size = 1 << 20,
                                .opts = o, .secret = secret ? pw : NULL,
                                .secret_len = secret ? sizeof(pw) - 1 : 0 };
    unlink(path);
    int r = dk_create(&a, &e);
    dk_opts_free(o);
    strcpy(msg, e.msg);
    ck_assert_int_ne(access(path, F_OK), 0);   /* nothing left behind */
    return r;
}

START_TEST(create_errors)
{
    char m[1024];
    ck_assert_int_lt(create_err("encrypt.format=luks", false, m), 0);
    ck_assert_ptr_nonnull(strstr(m, "passphrase"));
    ck_assert_int_lt(create_err("encrypt.format=rot13", true, m), 0);
    ck_assert_ptr_nonnull(strstr(m, "rot13"));
    ck_assert_int_lt(create_err("encrypt.format=aes,encrypt.cipher-alg=aes-128", true, m), 0);
    ck_assert_ptr_nonnull(strstr(m, "only valid with encrypt.format=luks"));
    ck_assert_int_lt(create_err("encrypt.format=luks,encrypt.cipher-alg=serpent-128", true, m),
                     0);
    ck_assert_ptr_nonnull(strstr(m, "serpent-128"));
    ck_assert_int_lt(create_err("encrypt.format=luks,encrypt.hash-alg=sha3", true, m), 0);
    ck_assert_int_lt(create_err("encrypt.format=luks,encrypt.iter-time=0", true, m), 0);
    ck_assert_int_lt(create_err("encrypt.format=luks,preallocation=metadata", true, m), 0);
    ck_assert_ptr_nonnull(strstr(m, "preallocation"));
}
END_TEST

/* qemu-img 7.2 measure -O qcow2 --size 1G with -o encrypt.format=luks adds
 * 2097152 bytes (aes-256-xts: 4 KiB + 8 * 252 KiB in 32 clusters), with
 * encrypt.cipher-alg=aes-128 1114112 (17 clusters), with aes nothing. */
static void measure_delta(const char *opts, uint64_t want)
{
    struct dk_opts *o = NULL, *plain = NULL;
    struct dk_error e = { 0 };
    struct dk_measure m, p;
    ck_assert_int_eq(dk_opts_parse(&o, opts, &e), 0);
    ck_assert_int_eq(dk_opts_parse(&plain, "cluster_size=65536", &e), 0);
    ck_assert_int_eq(dk_measure("qcow2", o, 1ull << 30, NULL, &m, &e), 0);
    ck_assert_int_eq(dk_measure("qcow2", plain, 1ull << 30, NULL, &p, &e), 0);
    ck_assert_uint_eq(m.required - p.required, want);
    ck_assert_uint_eq(m.fully_allocated - p.fully_allocated, want);
    ck_assert_uint_eq(m.fully_allocated, 1074135040 + want);
    ck_assert_uint_eq(m.required, 393216 + want);   /* qemu: 2490368 for luks */
    dk_opts_free(o);
    dk_opts_free(plain);
}

START_TEST(measure_luks)
{
    measure_delta("encrypt.format=luks", 2097152);
    measure_delta("encrypt.format=luks,encrypt.cipher-alg=aes-128", 1114112);
    measure_delta("encrypt.format=aes", 0);
}
END_TEST

int main(void)
{
    snprintf(path, sizeof(path), "/tmp/dk-qcrypt-%d.qcow2", (int)getpid());
    Suite *s = suite_create("qcow2_crypt");
    TCase *t = tcase_create("qcow2_crypt");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, luks_round_trip);
    tcase_add_test(t, luks_essiv_round_trip);
    tcase_add_test(t, aes_round_trip);
    tcase_add_test(t, overlay_cow);
    tcase_add_test(t, create_errors);
    tcase_add_test(t, measure_luks);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    unlink(path);
    return failed ? 1 : 0;
}
