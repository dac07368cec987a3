/* check_copy.c - the copy engine (dk_copy) and dk_compare, on raw images in
 * a temporary directory, through the public API: sparse detection,
 * concatenation, the dst_backing diff logic, targets that are not zero,
 * odd sizes, error paths, and compare verdicts and messages.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diskkit.h"
#include "internal.h"   /* the compression test swaps in a fake driver */

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/check_copy.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *path(const char *name)
{
    static char p[4][320];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
    return p[k];
}

/* Makes a sparse file of SIZE bytes; fills [OFF, OFF+LEN) with BYTE. */
static void make_file(const char *name, uint64_t size)
{
    int fd = open(path(name), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static void fill(const char *name, uint64_t off, size_t len, int byte)
{
    int fd = open(path(name), O_RDWR);
    ck_assert_int_ge(fd, 0);
    char *b = malloc(len);
    memset(b, byte, len);
    ck_assert_int_eq(pwrite(fd, b, len, (off_t)off), (ssize_t)len);
    free(b);
    close(fd);
}

static struct dk_image *open_raw(const char *name, int rw)
{
    struct dk_open_opts o = { .format = "raw", .flags = rw ? DK_OPEN_RDWR : 0 };
    struct dk_error e = { 0 };
    struct dk_image *img = dk_open(path(name), &o, &e);
    ck_assert_msg(img != NULL, "open %s: %s", name, e.msg);
    return img;
}

static uint8_t *slurp(const char *name, size_t *len)
{
    struct stat st;
    ck_assert_int_eq(stat(path(name), &st), 0);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    int fd = open(path(name), O_RDONLY);
    ck_assert_int_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static uint64_t allocated(const char *name)
{
    struct stat st;
    ck_assert_int_eq(stat(path(name), &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static int copy_files(const char *const *srcs, size_t n, const char *dst, const char *backing,
                      unsigned flags, uint64_t sparse, unsigned threads, struct dk_error *e)
{
    struct dk_image *s[8];
    for (size_t i = 0; i < n; i++)
        s[i] = open_raw(srcs[i], 0);
    struct dk_image *d = open_raw(dst, 1);
    struct dk_image *b = backing ? open_raw(backing, 0) : NULL;
    struct dk_copy_args a = { .src = s, .nsrc = n, .dst = d, .dst_backing = b,
                              .flags = flags, .sparse_size = sparse, .threads = threads };
    int r = dk_copy(&a, e);
    ck_assert_int_eq(dk_close(d), 0);
    dk_close(b);
    for (size_t i = 0; i < n; i++)
        dk_close(s[i]);
    return r;
}

START_TEST(sparse_detection)
{
    /* 1 MiB: data at 0..64k, explicit zeros at 64k..192k, hole after,
     * one data byte at 700000, a 1k zero run inside data at 8k. */
    make_file("src", 1 << 20);
    fill("src", 0, 65536, 0x5a);
    fill("src", 8192, 1024, 0);
    fill("src", 65536, 131072, 0);
    fill("src", 700000, 1, 1);
    make_file("dst", 1 << 20);
    const char *srcs[] = { "src" };
    struct dk_error e;
    ck_assert_int_eq(copy_files(srcs, 1, "dst", NULL, DK_COPY_TARGET_ZERO, 0, 0, &e), 0);
    size_t la, lb;
    uint8_t *a = slurp("src", &la), *b = slurp("dst", &lb);
    ck_assert_uint_eq(la, lb);
    ck_assert(memcmp(a, b, la) == 0);
    /* 64 KiB of data plus one 4 KiB block around byte 700000 at most. */
    ck_assert_uint_le(allocated("dst"), 65536 + 4096);
    ck_assert_uint_ge(allocated("dst"), 65536);
    free(a);
    free(b);

    /* -S 0: everything is written (the file is fully allocated). */
    make_file("full", 1 << 20);
    ck_assert_int_eq(copy_files(srcs, 1, "full", NULL, DK_COPY_TARGET_ZERO | DK_COPY_NO_SPARSE,
                                0, 0, &e), 0);
    ck_assert_uint_ge(allocated("full"), 1 << 20);

    /* -S 64k: the 1k zero run inside data stays data, the 128k run a hole. */
    make_file("s64", 1 << 20);
    ck_assert_int_eq(copy_files(srcs, 1, "s64", NULL, DK_COPY_TARGET_ZERO, 65536, 0, &e), 0);
    ck_assert_uint_le(allocated("s64"), 65536 * 2);
}
END_TEST

START_TEST(target_not_zero)
{
    /* A target full of 0xff: zero ranges of the source must be written. */
    make_file("src", 300000);
    fill("src", 100000, 5000, 0x11);
    make_file("dst", 300000);
    fill("dst", 0, 300000, 0xff);
    const char *srcs[] = { "src" };
    struct dk_error e;
    ck_assert_int_eq(copy_files(srcs, 1, "dst", NULL, 0, 0, 2, &e), 0);
    size_t la, lb;
    uint8_t *a = slurp("src", &la), *b = slurp("dst", &lb);
    ck_assert(memcmp(a, b, la) == 0);
    free(a);
    free(b);
}
END_TEST

START_TEST(concatenation_odd_sizes)
{
    /* Sizes not multiples of 512; the boundary falls inside a granule. */
    make_file("a", 1000);
    fill("a", 0, 1000, 0xa1);
    make_file("b", 3 << 20 | 7);
    fill("b", 5, 10, 0xb2);
    fill("b", (3 << 20) + 1, 6, 0xb3);
    make_file("c", 513);
    make_file("dst", 1000 + (3 << 20 | 7) + 513);
    const char *srcs[] = { "a", "b", "c" };
    struct dk_error e;
    ck_assert_int_eq(copy_files(srcs, 3, "dst", NULL,
                                DK_COPY_TARGET_ZERO | DK_COPY_OUT_OF_ORDER, 0, 4, &e), 0);
    size_t n, la, lb, lc;
    uint8_t *d = slurp("dst", &n), *a = slurp("a", &la), *b = slurp("b", &lb),
            *c = slurp("c", &lc);
    ck_assert_uint_eq(n, la + lb + lc);
    ck_assert(memcmp(d, a, la) == 0);
    ck_assert(memcmp(d + la, b, lb) == 0);
    ck_assert(memcmp(d + la + lb, c, lc) == 0);
    free(a); free(b); free(c); free(d);
}
END_TEST

START_TEST(backing_diff)
{
    /* Raw clusters are 512 bytes: only sectors that differ from the
     * backing are written; the destination starts as 0xee so unwritten
     * sectors are visible. */
    make_file("base", 8192);
    fill("base", 0, 4096, 0x42);         /* sectors 0-7: 0x42 */
    make_file("src", 8192);
    fill("src", 0, 4096, 0x42);          /* same as base ... */
    fill("src", 1024, 512, 0x43);        /* ... except sector 2 */
    fill("src", 3072, 512, 0);           /* sector 6 zero where base has data */
    fill("src", 6144, 512, 0x44);        /* sector 12 data where base is zero */
    make_file("dst", 8192);
    fill("dst", 0, 8192, 0xee);
    const char *srcs[] = { "src" };
    struct dk_error e;
    ck_assert_int_eq(copy_files(srcs, 1, "dst", "base", DK_COPY_TARGET_ZERO, 0, 0, &e), 0);
    size_t n;
    uint8_t *d = slurp("dst", &n);
    for (int s = 0; s < 16; s++) {
        int want = s == 2 ? 0x43 : s == 6 ? 0 : s == 12 ? 0x44 : 0xee;
        for (int i = 0; i < 512; i++)
            ck_assert_msg(d[s * 512 + i] == want, "sector %d byte %d: %x != %x", s, i,
                          d[s * 512 + i], want);
    }
    free(d);
}
END_TEST

START_TEST(errors)
{
    make_file("src", 4096);
    make_file("small", 2048);
    const char *srcs[] = { "src" };
    struct dk_error e;
    ck_assert_int_eq(copy_files(srcs, 1, "small", NULL, 0, 0, 0, &e), -ENOSPC);
    ck_assert_ptr_nonnull(strstr(e.msg, "smaller than the source"));
    make_file("dst", 4096);
    ck_assert_int_eq(copy_files(srcs, 1, "dst", NULL, DK_COPY_COMPRESS, 0, 0, &e), -ENOTSUP);
    ck_assert_str_eq(e.msg, "Compression not supported for this file format");
    ck_assert_int_eq(copy_files(srcs, 1, "dst", NULL, 0, 1000, 0, &e), -EINVAL);
}
END_TEST

static void progress_cb(void *o, uint64_t done, uint64_t total)
{
    uint64_t *l = o;
    ck_assert_uint_ge(done, l[0]);
    l[0] = done;
    l[1] = total;
}

START_TEST(progress_reaches_total)
{
    make_file("src", 5 << 20);
    fill("src", 3 << 20, 100, 9);
    make_file("dst", 5 << 20);
    struct dk_image *s = open_raw("src", 0), *d = open_raw("dst", 1);
    uint64_t last[2] = { 0, 0 };
    struct dk_copy_args a = { .src = &s, .nsrc = 1, .dst = d, .flags = DK_COPY_TARGET_ZERO };
    struct dk_error e;
    a.progress = progress_cb;
    a.progress_opaque = last;
    ck_assert_int_eq(dk_copy(&a, &e), 0);
    ck_assert_uint_eq(last[0], 5 << 20);
    ck_assert_uint_eq(last[1], 5 << 20);
    dk_close(d);
    dk_close(s);
}
END_TEST

/* ---- compression through the driver hooks, with a fake raw-like driver:
 * a cluster of one repeated byte "compresses" to that byte, anything else
 * is incompressible (compress returns 0 and the plain data is stored). */
#define FAKE_CLUSTER 4096
static uint64_t wc_order[4096];
static size_t wc_n;
static int wc_compressed, wc_plain;

static bool fake_refuses;   /* answer the engine's probe with -ENOTSUP */

static ssize_t fake_compress(struct dk_image *img, const void *in, size_t len, void *out,
                             size_t cap)
{
    const uint8_t *p = in;
    if (len == 0)       /* the probe before a copy */
        return fake_refuses ? dk_set_error(img, -ENOTSUP, "fake: no compression here") : 0;
    ck_assert_uint_le(len, FAKE_CLUSTER);
    ck_assert_uint_ge(cap, 1);
    for (size_t i = 1; i < len; i++)
        if (p[i] != p[0])
            return 0;
    *(uint8_t *)out = p[0];
    return 1;
}

static int fake_write_compressed(struct dk_image *img, uint64_t off, const void *cdata,
                                 size_t clen, const void *plain, size_t plain_len)
{
    ck_assert(off % FAKE_CLUSTER == 0);
    ck_assert_uint_lt(wc_n, 4096);
    wc_order[wc_n++] = off;
    uint8_t buf[FAKE_CLUSTER];
    if (clen) {
        ck_assert_uint_eq(clen, 1);
        memset(buf, *(const uint8_t *)cdata, plain_len);
        wc_compressed++;
        return dk_file_pwrite(img->file, buf, plain_len, off);
    }
    wc_plain++;
    return dk_file_pwrite(img->file, plain, plain_len, off);
}

static int fake_info(struct dk_image *img, struct dk_info *info)
{
    info->cluster_size = FAKE_CLUSTER;
    return 0;
}

START_TEST(compressed_in_order)
{
    /* 3072 clusters (12 MiB: several chunks, so several workers) plus a
     * 1000-byte tail: cluster i is uniform (i % 3 == 0), random-ish
     * (i % 3 == 1) or zero (i % 3 == 2, skipped on a zero target). */
    enum { N = 3072 };
    uint64_t size = (uint64_t)N * FAKE_CLUSTER + 1000;
    make_file("src", size);
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            fill("src", (uint64_t)i * FAKE_CLUSTER, FAKE_CLUSTER, 0x20 + i % 200);
        else if (i % 3 == 1)
            fill("src", (uint64_t)i * FAKE_CLUSTER + 7, 1, 1 + i % 250);
    }
    fill("src", (uint64_t)N * FAKE_CLUSTER, 1000, 0x7e);
    make_file("dst", size);
    struct dk_image *s = open_raw("src", 0), *d = open_raw("dst", 1);
    struct dk_driver fake = *d->drv;
    fake.compress = fake_compress;
    fake.write_compressed = fake_write_compressed;
    fake.info = fake_info;
    d->drv = &fake;
    wc_n = 0;
    wc_compressed = wc_plain = 0;
    struct dk_copy_args a = { .src = &s, .nsrc = 1, .dst = d, .threads = 4,
                              .flags = DK_COPY_COMPRESS | DK_COPY_TARGET_ZERO };
    struct dk_error e;
    ck_assert_msg(dk_copy(&a, &e) == 0, "%s", e.msg);
    d->drv = &dk_drv_raw;
    dk_close(d);
    dk_close(s);
    ck_assert_int_eq(wc_compressed, N / 3 + 1);   /* uniform clusters + the tail */
    ck_assert_int_eq(wc_plain, N / 3);
    for (size_t i = 1; i < wc_n; i++)
        ck_assert_msg(wc_order[i] > wc_order[i - 1], "write %zu out of order", i);
    size_t la, lb;
    uint8_t *x = slurp("src", &la), *y = slurp("dst", &lb);
    ck_assert(la == lb && memcmp(x, y, la) == 0);
    free(x);
    free(y);
}
END_TEST

START_TEST(compressed_partial_tail)
{
    /* The input ends inside a cluster that is not the output's last: that
     * partial cluster is written plainly, not through write_compressed. */
    make_file("src", FAKE_CLUSTER + 1000);
    fill("src", 0, FAKE_CLUSTER + 1000, 0x31);
    make_file("dst", 3 * FAKE_CLUSTER);
    struct dk_image *s = open_raw("src", 0), *d = open_raw("dst", 1);
    struct dk_driver fake = *d->drv;
    fake.compress = fake_compress;
    fake.write_compressed = fake_write_compressed;
    fake.info = fake_info;
    d->drv = &fake;
    wc_n = 0;
    wc_compressed = wc_plain = 0;
    struct dk_copy_args a = { .src = &s, .nsrc = 1, .dst = d,
                              .flags = DK_COPY_COMPRESS | DK_COPY_TARGET_ZERO };
    struct dk_error e;
    ck_assert_msg(dk_copy(&a, &e) == 0, "%s", e.msg);
    d->drv = &dk_drv_raw;
    dk_close(d);
    dk_close(s);
    ck_assert_int_eq(wc_compressed, 1);
    ck_assert_int_eq(wc_plain, 0);
    size_t n;
    uint8_t *y = slurp("dst", &n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(y[i], i < FAKE_CLUSTER + 1000 ? 0x31 : 0);
    free(y);
}
END_TEST

START_TEST(compress_refused_by_probe)
{
    /* A destination whose probe refuses compression fails the copy before
     * anything is written, with the driver's reason. */
    make_file("src", 2 * FAKE_CLUSTER);
    fill("src", 0, 2 * FAKE_CLUSTER, 0x44);
    make_file("dst", 2 * FAKE_CLUSTER);
    struct dk_image *s = open_raw("src", 0), *d = open_raw("dst", 1);
    struct dk_driver fake = *d->drv;
    fake.compress = fake_compress;
    fake.write_compressed = fake_write_compressed;
    fake.info = fake_info;
    d->drv = &fake;
    wc_n = 0;
    fake_refuses = true;
    struct dk_copy_args a = { .src = &s, .nsrc = 1, .dst = d,
                              .flags = DK_COPY_COMPRESS | DK_COPY_TARGET_ZERO };
    struct dk_error e;
    int r = dk_copy(&a, &e);
    fake_refuses = false;
    d->drv = &dk_drv_raw;
    dk_close(d);
    dk_close(s);
    ck_assert_int_eq(r, -ENOTSUP);
    ck_assert_msg(strstr(e.msg, "fake: no compression here"), "%s", e.msg);
    ck_assert_uint_eq(wc_n, 0);
    size_t n;
    uint8_t *y = slurp("dst", &n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(y[i], 0);
    free(y);
}
END_TEST

static int compare(const char *x, const char *y, unsigned flags, uint64_t *mm, char *msg)
{
    struct dk_image *a = open_raw(x, 0), *b = open_raw(y, 0);
    struct dk_error e;
    int r = dk_compare(a, b, flags, mm, NULL, NULL, &e);
    strcpy(msg, e.msg);
    dk_close(a);
    dk_close(b);
    return r;
}

START_TEST(compare_verdicts)
{
    char msg[1024];
    uint64_t mm = 0;
    make_file("a", 1 << 20);
    fill("a", 1000, 1, 1);
    make_file("b", 1 << 20);
    fill("b", 1000, 1, 1);
    ck_assert_int_eq(compare("a", "b", 0, &mm, msg), 0);
    ck_assert_int_eq(compare("a", "b", DK_COPY_STRICT_EQUAL, &mm, msg), 0);
    /* One differing byte: reported at its 512-byte sector, like qemu-img. */
    fill("b", 70000, 1, 2);
    ck_assert_int_eq(compare("a", "b", 0, &mm, msg), 1);
    ck_assert_uint_eq(mm, 69632);
    ck_assert_str_eq(msg, "Content mismatch at offset 69632!");
    ck_assert_int_eq(compare("a", "b", DK_COPY_STRICT_EQUAL, &mm, msg), 1);
    ck_assert_str_eq(msg, "Strict mode: Offset 69632 block status mismatch!");
    /* Explicit zeros vs a hole: equal content, different allocation. */
    make_file("c", 1 << 20);
    fill("c", 1000, 1, 1);
    fill("c", 500000, 4096, 0);
    ck_assert_int_eq(compare("a", "c", 0, &mm, msg), 0);
    ck_assert_int_eq(compare("a", "c", DK_COPY_STRICT_EQUAL, &mm, msg), 1);
    /* Sizes: the tail must read as zero; strict refuses outright. */
    make_file("big", 2 << 20);
    fill("big", 1000, 1, 1);
    ck_assert_int_eq(compare("a", "big", 0, &mm, msg), 0);
    ck_assert_int_eq(compare("a", "big", DK_COPY_STRICT_EQUAL, &mm, msg), 1);
    ck_assert_str_eq(msg, "Strict mode: Image size mismatch!");
    fill("big", (1 << 20) + 513, 1, 3);
    ck_assert_int_eq(compare("big", "a", 0, &mm, msg), 1);
    ck_assert_uint_eq(mm, (1 << 20) + 512);
    /* Odd sizes: the last partial sector is compared too. */
    make_file("odd1", 1001);
    make_file("odd2", 1001);
    fill("odd2", 1000, 1, 5);
    ck_assert_int_eq(compare("odd1", "odd2", 0, &mm, msg), 1);
    ck_assert_uint_eq(mm, 512);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("copy");
    TCase *t = tcase_create("copy");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, sparse_detection);
    tcase_add_test(t, target_not_zero);
    tcase_add_test(t, concatenation_odd_sizes);
    tcase_add_test(t, backing_diff);
    tcase_add_test(t, errors);
    tcase_add_test(t, progress_reaches_total);
    tcase_add_test(t, compare_verdicts);
    tcase_add_test(t, compressed_in_order);
    tcase_add_test(t, compressed_partial_tail);
    tcase_add_test(t, compress_refused_by_probe);
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
