/* qcow2-test.h - helpers shared by the qcow2 Check tests: a temporary
 * directory per test, image creation and I/O through the public API, a raw
 * reference kept in memory, qemu-img as the oracle, and file pokes for
 * damaged-image cases. Header-only (static inline) so each test binary
 * stays a single file for the Makefile.
 */
#ifndef QCOW2_TEST_H
#define QCOW2_TEST_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../formats/qcow2/qcow2.h"

static char tmpdir[256];
static char path_buf[512] __attribute__((unused));

static inline const char *tmp(const char *name)
{
    snprintf(path_buf, sizeof(path_buf), "%s/%s", tmpdir, name);
    return path_buf;
}

static inline void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_qcow2.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static inline void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static inline bool have_qemu_img(void)
{
    static int have = -1;
    if (have < 0)
        have = system("qemu-img --version >/dev/null 2>&1") == 0;
    return have;
}

static inline void create(const char *file, uint64_t size, const char *opts)
{
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    if (opts)
        ck_assert_int_eq(dk_opts_parse(&o, opts, &e), 0);
    struct dk_create_args a = { .filename = file, .format = "qcow2", .size = size, .opts = o };
    int r = dk_create(&a, &e);
    ck_assert_msg(r == 0, "create %s: %s", opts ? opts : "", e.msg);
    dk_opts_free(o);
}

static inline struct dk_image *open_img(const char *file, const char *fmt, unsigned flags)
{
    struct dk_open_opts o = { .format = fmt, .flags = flags };
    struct dk_error e = { 0 };
    struct dk_image *img = dk_open(file, &o, &e);
    ck_assert_msg(img != NULL, "open %s: %s", file, e.msg);
    return img;
}

static inline void fill(uint8_t *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (uint8_t)(seed >> 16);
    }
}

/* Writes LEN bytes at OFF to both the image and the raw reference REF. */
static inline void write_both(struct dk_image *img, uint8_t *ref, uint64_t off, size_t len,
                       unsigned seed)
{
    uint8_t *b = malloc(len);
    fill(b, len, seed);
    int r = dk_pwrite(img, b, len, off);
    ck_assert_msg(r == 0, "write: %s", dk_image_errmsg(img));
    memcpy(ref + off, b, len);
    free(b);
}

static inline void expect_content(struct dk_image *img, const uint8_t *ref, uint64_t size)
{
    uint8_t *b = malloc(size);
    int r = dk_pread(img, b, size, 0);
    ck_assert_msg(r == 0, "read: %s", dk_image_errmsg(img));
    if (memcmp(b, ref, size)) {
        uint64_t i = 0;
        while (b[i] == ref[i])
            i++;
        ck_abort_msg("content mismatch at offset %llu", (unsigned long long)i);
    }
    free(b);
}

static inline void save_raw(const char *file, const uint8_t *ref, uint64_t size)
{
    FILE *f = fopen(file, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(ref, 1, size, f), size);
    fclose(f);
}

/* qemu-img check (no errors, no leaks) and compare against REF. */
static inline void qemu_verify(const char *img, const uint8_t *ref, uint64_t size)
{
    if (!have_qemu_img())
        return;
    char raw[600], cmd[1400];
    snprintf(raw, sizeof(raw), "%s/ref.raw", tmpdir);
    save_raw(raw, ref, size);
    snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", img);
    ck_assert_msg(system(cmd) == 0, "qemu-img check failed on %s", img);
    snprintf(cmd, sizeof(cmd), "qemu-img compare -q -f qcow2 -F raw '%s' '%s'", img, raw);
    ck_assert_msg(system(cmd) == 0, "qemu-img compare differs for %s", img);
}

static inline uint8_t *slurp(const char *file, size_t *len)
{
    FILE *f = fopen(file, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    uint8_t *b = malloc(*len + 1);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static inline void poke(const char *file, uint64_t off, const void *data, size_t len)
{
    int fd = open(file, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static inline void poke_be64(const char *f, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    dk_put_be64(b, v);
    poke(f, off, b, 8);
}

static inline void poke_be32(const char *f, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    dk_put_be32(b, v);
    poke(f, off, b, 4);
}

/* A 1 MiB image with data in cluster 0: L1 at 0x30000, L2 at 0x40000,
 * data at 0x50000 (qemu's layout). */
static inline const char *make_victim(void)
{
    const char *f = strdup(tmp("bad.qcow2"));
    create(f, 1 << 20, NULL);
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    uint8_t *ref = calloc(1, 1 << 20);
    write_both(img, ref, 0, 4096, 5);
    ck_assert_int_eq(dk_close(img), 0);
    free(ref);
    return f;
}

static inline void expect_open_error(const char *f, unsigned flags, const char *expect)
{
    size_t l1, l2;
    uint8_t *before = slurp(f, &l1);
    struct dk_open_opts o = { .format = "qcow2", .flags = flags };
    struct dk_error e = { 0 };
    struct dk_image *img = dk_open(f, &o, &e);
    ck_assert_msg(img == NULL, "bad image opened (expected '%s')", expect);
    ck_assert_int_lt(e.code, 0);
    ck_assert_msg(strstr(e.msg, expect), "expected '%s', got '%s'", expect, e.msg);
    ck_assert_ptr_null(strchr(e.msg, '\n'));
    uint8_t *after = slurp(f, &l2);
    ck_assert_uint_eq(l1, l2);
    ck_assert_mem_eq(before, after, l1);
    free(before);
    free(after);
}

#endif
