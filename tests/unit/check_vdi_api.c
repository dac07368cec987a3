/* check_vdi_api.c - VDI images through the public API (dk_create, dk_open,
 * dk_pread/dk_pwrite, dk_check, dk_resize), with qemu-img as the oracle
 * where it is installed: images qemu-img writes read back exactly, images
 * we write pass `qemu-img check` and `qemu-img compare`. Damaged images are
 * made by patching bytes of a good one. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "diskkit.h"
#include "util/endian.h"
#include "util/util.h"

#define MiB (1u << 20)

static char dir[64];
static bool have_qemu;

static void setup(void)
{
    strcpy(dir, "/tmp/check_vdi.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    have_qemu = system("qemu-img --version >/dev/null 2>&1") == 0;
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *path(const char *name)
{
    static char buf[4][128];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static void create(const char *name, const char *fmt, uint64_t size, const char *opts)
{
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    if (opts)
        ck_assert_int_eq(dk_opts_parse(&o, opts, &e), 0);
    struct dk_create_args a = { .filename = path(name), .format = fmt, .size = size,
                                .opts = o };
    ck_assert_msg(dk_create(&a, &e) == 0, "create: %s", e.msg);
    dk_opts_free(o);
}

static struct dk_image *open_img(const char *name, const char *fmt, unsigned flags)
{
    struct dk_open_opts o = { .format = fmt, .flags = flags };
    struct dk_error e = { 0 };
    struct dk_image *img = dk_open(path(name), &o, &e);
    ck_assert_msg(img != NULL, "open %s: %s", name, e.msg);
    return img;
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i * 31 + seed * 7 + (i >> 9)) | 1);
}

/* Writes the same data through diskkit into NAME.vdi and NAME.raw. */
static void write_both(struct dk_image *v, struct dk_image *r, uint64_t off, size_t len,
                       unsigned seed)
{
    uint8_t *buf = malloc(len);
    fill(buf, len, seed);
    ck_assert_int_eq(dk_pwrite(v, buf, len, off), 0);
    ck_assert_int_eq(dk_pwrite(r, buf, len, off), 0);
    free(buf);
}

static void patch(const char *name, uint64_t off, const void *bytes, size_t len)
{
    int fd = open(path(name), O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, bytes, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void patch32(const char *name, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    dk_put_le32(b, v);
    patch(name, off, b, 4);
}

static uint32_t read32(const char *name, uint64_t off)
{
    uint8_t b[4];
    int fd = open(path(name), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, b, 4, (off_t)off), 4);
    close(fd);
    return dk_le32(b);
}

static uint64_t fsize(const char *name)
{
    struct stat st;
    ck_assert_int_eq(stat(path(name), &st), 0);
    return (uint64_t)st.st_size;
}

START_TEST(dynamic_roundtrip_and_qemu)
{
    create("a.vdi", "vdi", 10 * MiB, NULL);
    create("a.raw", "raw", 10 * MiB, NULL);
    ck_assert_uint_eq(fsize("a.vdi"), 1024);
    struct dk_image *v = open_img("a.vdi", "vdi", DK_OPEN_RDWR);
    struct dk_image *r = open_img("a.raw", "raw", DK_OPEN_RDWR);
    ck_assert_str_eq(dk_image_format(v), "vdi");
    ck_assert_uint_eq(dk_image_cluster_size(v), MiB);
    write_both(v, r, 4096, 5000, 1);                 /* partial block */
    write_both(v, r, 3 * MiB - 100, 300, 2);         /* spans two blocks */
    write_both(v, r, 6 * MiB, 2 * MiB, 3);           /* two whole blocks */
    write_both(v, r, 4096, 100, 4);                  /* rewrite in place */
    /* Zeros into an unallocated block keep it unallocated. */
    uint8_t *z = calloc(1, MiB);
    ck_assert_int_eq(dk_pwrite(v, z, MiB, 9 * MiB), 0);
    struct dk_extent e;
    ck_assert_int_eq(dk_block_status(v, 9 * MiB, MiB, DK_BS_THIS_LAYER, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_ZERO | DK_BS_ALLOCATED);
    /* Two consecutive blocks with consecutive host offsets merge. */
    ck_assert_int_eq(dk_block_status(v, 6 * MiB, 4 * MiB, DK_BS_THIS_LAYER, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID);
    ck_assert_uint_eq(e.length, 2 * MiB);
    ck_assert_uint_eq(e.host_offset, 1024 + 3ull * MiB);
    ck_assert_int_eq(dk_close(v), 0);
    ck_assert_int_eq(dk_close(r), 0);
    /* 5 blocks allocated (0, 2, 3, 6, 7), whole blocks appended. */
    ck_assert_uint_eq(fsize("a.vdi"), 1024 + 5ull * MiB);

    v = open_img("a.vdi", NULL, 0);
    r = open_img("a.raw", "raw", 0);
    uint8_t *a = malloc(10 * MiB), *b = malloc(10 * MiB);
    ck_assert_int_eq(dk_pread(v, a, 10 * MiB, 0), 0);
    ck_assert_int_eq(dk_pread(r, b, 10 * MiB, 0), 0);
    ck_assert(memcmp(a, b, 10 * MiB) == 0);
    struct dk_check_result res;
    ck_assert_int_eq(dk_check(v, 0, &res, NULL, NULL), 0);
    ck_assert_int_eq(res.corruptions + res.leaks, 0);
    dk_close(v);
    dk_close(r);
    free(a);
    free(b);
    free(z);
    if (have_qemu) {
        ck_assert_int_eq(sh("qemu-img check -q %s", path("a.vdi")), 0);
        ck_assert_int_eq(sh("qemu-img compare -q -f vdi -F raw %s %s", path("a.vdi"),
                            path("a.raw")), 0);
    }
}
END_TEST

START_TEST(static_create)
{
    create("s.vdi", "vdi", 3 * MiB, "static=on");
    ck_assert_uint_eq(fsize("s.vdi"), 1024 + 3ull * MiB);
    struct dk_image *v = open_img("s.vdi", "vdi", DK_OPEN_RDWR);
    struct dk_extent e;
    /* Identity map; the file is sparse past its first page, and holes are
     * zero data, as qemu-img map shows them. */
    ck_assert_int_eq(dk_block_status(v, 0, 3 * MiB, DK_BS_THIS_LAYER, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID);
    ck_assert_uint_eq(e.length, 3072);
    ck_assert_uint_eq(e.host_offset, 1024);
    ck_assert_int_eq(dk_block_status(v, 2 * MiB, MiB, DK_BS_THIS_LAYER, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_DATA | DK_BS_ZERO | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID);
    ck_assert_uint_eq(e.host_offset, 1024 + 2 * MiB);
    uint8_t buf[512];
    fill(buf, sizeof(buf), 9);
    ck_assert_int_eq(dk_pwrite(v, buf, sizeof(buf), MiB + 512), 0);
    ck_assert_int_eq(dk_close(v), 0);
    ck_assert_uint_eq(fsize("s.vdi"), 1024 + 3ull * MiB);
    if (have_qemu) {
        ck_assert_int_eq(sh("qemu-img check -q %s", path("s.vdi")), 0);
        ck_assert_int_eq(sh("qemu-io -f vdi -c 'read -P 0 0 1M' %s | grep -q 'read 1048576'",
                            path("s.vdi")), 0);
    }
}
END_TEST

/* Header bytes against qemu-img create: equal apart from the UUIDs. */
START_TEST(create_matches_qemu)
{
    if (!have_qemu)
        return;
    const char *cases[][2] = { { "10M", NULL }, { "1000000", NULL }, { "3M", "static=on" },
                               { "1G", NULL }, { "2M", "static=on,preallocation=full" },
                               { "2M", "preallocation=full" } };
    for (size_t i = 0; i < DK_ARRAY_SIZE(cases); i++) {
        uint64_t size;
        ck_assert_int_eq(dk_parse_size(cases[i][0], &size), 0);
        create("d.vdi", "vdi", size, cases[i][1]);
        ck_assert_int_eq(sh("qemu-img create -q -f vdi %s%s %s %s",
                            cases[i][1] ? "-o " : "", cases[i][1] ? cases[i][1] : "",
                            path("q.vdi"), cases[i][0]), 0);
        ck_assert_uint_eq(fsize("d.vdi"), fsize("q.vdi"));
        /* Blank the two random UUIDs, then the files must be identical. */
        uint8_t zero[32] = { 0 };
        patch("d.vdi", 392, zero, 32);
        patch("q.vdi", 392, zero, 32);
        ck_assert_int_eq(sh("cmp -s %s %s", path("d.vdi"), path("q.vdi")), 0);
    }
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_opts_parse(&o, "preallocation=metadata", &e), 0);
    struct dk_create_args a = { .filename = path("m.vdi"), .format = "vdi", .size = MiB,
                                .opts = o };
    ck_assert_int_eq(dk_create(&a, &e), -EINVAL);
    ck_assert_str_eq(e.msg, "Unsupported preallocation mode: metadata");
    ck_assert_int_ne(access(path("m.vdi"), F_OK), 0);
    dk_opts_free(o);
}
END_TEST

START_TEST(reads_qemu_images)
{
    if (!have_qemu)
        return;
    ck_assert_int_eq(sh("qemu-img create -q -f vdi %s 8M && qemu-io -f vdi "
                        "-c 'write -P 0x11 512 1536' -c 'write -P 0x22 3M 1M' "
                        "-c 'write -P 0x33 1M 4k' %s >/dev/null", path("q.vdi"),
                        path("q.vdi")), 0);
    struct dk_image *v = open_img("q.vdi", NULL, 0);
    ck_assert_uint_eq(dk_image_size(v), 8 * MiB);
    uint8_t *buf = malloc(8 * MiB);
    ck_assert_int_eq(dk_pread(v, buf, 8 * MiB, 0), 0);
    for (size_t i = 0; i < 8 * MiB; i++) {
        uint8_t want = (i >= 512 && i < 2048) ? 0x11 : (i >= 3 * MiB && i < 4 * MiB) ? 0x22
                     : (i >= MiB && i < MiB + 4096) ? 0x33 : 0;
        if (buf[i] != want)
            ck_abort_msg("byte %zu is %#x, want %#x", i, buf[i], want);
    }
    free(buf);
    dk_close(v);
}
END_TEST

START_TEST(odd_size_and_zero_entry)
{
    /* A VBoxManage-style odd disk size, and a 0xFFFFFFFE entry. */
    create("o.vdi", "vdi", 3 * MiB, NULL);
    struct dk_image *v = open_img("o.vdi", "vdi", DK_OPEN_RDWR);
    uint8_t buf[4096];
    fill(buf, sizeof(buf), 5);
    ck_assert_int_eq(dk_pwrite(v, buf, sizeof(buf), 0), 0);
    ck_assert_int_eq(dk_pwrite(v, buf, sizeof(buf), 2 * MiB), 0);
    ck_assert_int_eq(dk_close(v), 0);
    patch32("o.vdi", 368, 2 * MiB + 1001);          /* disk size */
    patch32("o.vdi", 512 + 4, 0xfffffffe);          /* block 1 discarded */
    v = open_img("o.vdi", "vdi", 0);
    ck_assert_uint_eq(dk_image_size(v), 2 * MiB + 1024);
    struct dk_extent e;
    ck_assert_int_eq(dk_block_status(v, MiB, MiB, DK_BS_THIS_LAYER, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_ZERO | DK_BS_ALLOCATED);
    uint8_t got[4096];
    ck_assert_int_eq(dk_pread(v, got, 1024, 2 * MiB), 0);
    ck_assert(memcmp(got, buf, 1024) == 0);
    ck_assert_int_eq(dk_pread(v, got, 4096, MiB), 0);
    ck_assert(got[0] == 0 && !memcmp(got, got + 1, 4095));
    dk_close(v);
    if (have_qemu)
        ck_assert_int_eq(sh("qemu-img info %s | grep -q '(2098176 bytes)'", path("o.vdi")), 0);
}
END_TEST

/* Makes a 4 MiB image with blocks 0..2 allocated (indices 0, 1, 2). */
static void three_blocks(const char *name)
{
    create(name, "vdi", 4 * MiB, NULL);
    struct dk_image *v = open_img(name, "vdi", DK_OPEN_RDWR);
    uint8_t *buf = malloc(3 * MiB);
    fill(buf, 3 * MiB, 8);
    ck_assert_int_eq(dk_pwrite(v, buf, 3 * MiB, 0), 0);
    ck_assert_int_eq(dk_close(v), 0);
    free(buf);
}

static void check_img(const char *name, unsigned fix, struct dk_check_result *res)
{
    struct dk_image *v = open_img(name, "vdi", fix ? DK_OPEN_RDWR | DK_OPEN_REPAIR : 0);
    ck_assert_int_eq(dk_check(v, fix, res, NULL, NULL), 0);
    ck_assert_int_eq(dk_close(v), 0);
}

START_TEST(bad_entries_fail_reads)
{
    three_blocks("b.vdi");
    patch32("b.vdi", 512 + 4, 77);                  /* out of range */
    struct dk_image *v = open_img("b.vdi", "vdi", 0);
    uint8_t buf[512];
    ck_assert_int_eq(dk_pread(v, buf, 512, 0), 0);
    ck_assert_int_eq(dk_pread(v, buf, 512, MiB), -EIO);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(v), "beyond the 4 blocks"));
    dk_close(v);
    /* Read-write open of a damaged image: writes refused, file untouched. */
    v = open_img("b.vdi", "vdi", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_pwrite(v, buf, 512, 0), -EROFS);
    dk_close(v);

    three_blocks("d.vdi");
    patch32("d.vdi", 512 + 8, 0);                   /* shares block 0's data */
    v = open_img("d.vdi", "vdi", 0);
    ck_assert_int_eq(dk_pread(v, buf, 512, 2 * MiB), -EIO);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(v), "shares data block 0"));
    dk_close(v);

    three_blocks("t.vdi");
    ck_assert_int_eq(truncate(path("t.vdi"), 1024 + 2 * MiB - 512), 0);
    v = open_img("t.vdi", "vdi", 0);
    ck_assert_int_eq(dk_pread(v, buf, 512, MiB), -EIO);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(v), "beyond the end of the file"));
    dk_close(v);
}
END_TEST

START_TEST(check_and_repair)
{
    struct dk_check_result res;
    three_blocks("b.vdi");
    patch32("b.vdi", 512 + 4, 77);
    patch32("b.vdi", 512 + 8, 0);
    check_img("b.vdi", 0, &res);
    ck_assert_int_eq(res.corruptions, 2);
    ck_assert_int_eq(res.leaks, 2);                  /* indices 1 and 2 */
    check_img("b.vdi", DK_FIX_ERRORS | DK_FIX_LEAKS, &res);
    ck_assert_int_eq(res.corruptions_fixed, 2);
    ck_assert_int_eq(res.leaks_fixed, 2);
    ck_assert_int_eq(res.corruptions + res.leaks, 0);
    check_img("b.vdi", 0, &res);
    ck_assert_int_eq(res.corruptions + res.leaks, 0);
    ck_assert_uint_eq(fsize("b.vdi"), 1024 + MiB);
    if (have_qemu)
        ck_assert_int_eq(sh("qemu-img check -q %s", path("b.vdi")), 0);
}
END_TEST

START_TEST(leaks_compacted)
{
    struct dk_check_result res;
    three_blocks("l.vdi");
    /* Block 0 unreferenced: index 0 leaks, index 2 must move into it. */
    patch32("l.vdi", 512, 0xffffffff);
    check_img("l.vdi", 0, &res);
    ck_assert_int_eq(res.corruptions, 0);
    ck_assert_int_eq(res.leaks, 1);
    check_img("l.vdi", DK_FIX_LEAKS, &res);
    ck_assert_int_eq(res.leaks_fixed, 1);
    ck_assert_uint_eq(fsize("l.vdi"), 1024 + 2ull * MiB);
    struct dk_image *v = open_img("l.vdi", "vdi", 0);
    uint8_t *want = malloc(3 * MiB), *got = malloc(3 * MiB);
    fill(want, 3 * MiB, 8);
    memset(want, 0, MiB);
    ck_assert_int_eq(dk_pread(v, got, 3 * MiB, 0), 0);
    ck_assert(memcmp(got, want, 3 * MiB) == 0);
    dk_close(v);
    free(want);
    free(got);
    if (have_qemu)
        ck_assert_int_eq(sh("qemu-img check -q %s", path("l.vdi")), 0);

    /* A count too high with extra blocks at the end of the file. */
    three_blocks("c.vdi");
    patch32("c.vdi", 388, 4);
    check_img("c.vdi", 0, &res);
    ck_assert_int_eq(res.corruptions, 0);
    ck_assert_int_eq(res.leaks, 1);
    /* A count too low is a corruption. */
    patch32("c.vdi", 388, 2);
    check_img("c.vdi", 0, &res);
    ck_assert_int_eq(res.corruptions, 1);
    check_img("c.vdi", DK_FIX_ERRORS | DK_FIX_LEAKS, &res);
    ck_assert_int_eq(res.corruptions_fixed, 1);
    check_img("c.vdi", 0, &res);
    ck_assert_int_eq(res.corruptions + res.leaks, 0);
    if (have_qemu)
        ck_assert_int_eq(sh("qemu-img check -q %s", path("c.vdi")), 0);
}
END_TEST

START_TEST(zero_hook)
{
    three_blocks("z.vdi");
    struct dk_image *v = open_img("z.vdi", "vdi", DK_OPEN_RDWR);
    /* The last data block zeroed whole is freed; others are zeroed in place. */
    ck_assert_int_eq(dk_pwrite_zeroes(v, 2 * MiB, MiB, DK_ZERO_MAY_UNMAP), 0);
    ck_assert_int_eq(dk_pwrite_zeroes(v, 0, MiB, DK_ZERO_MAY_UNMAP), 0);
    ck_assert_int_eq(dk_pwrite_zeroes(v, MiB + 4096, 4096, 0), 0);
    struct dk_extent e;
    ck_assert_int_eq(dk_block_status(v, 2 * MiB, MiB, DK_BS_THIS_LAYER, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_ZERO | DK_BS_ALLOCATED);
    ck_assert_int_eq(dk_close(v), 0);
    ck_assert_uint_eq(fsize("z.vdi"), 1024 + 2ull * MiB);
    v = open_img("z.vdi", "vdi", 0);
    uint8_t *want = malloc(4 * MiB), *got = malloc(4 * MiB);
    fill(want, 4 * MiB, 8);
    memset(want, 0, MiB);
    memset(want + MiB + 4096, 0, 4096);
    memset(want + 2 * MiB, 0, 2 * MiB);
    ck_assert_int_eq(dk_pread(v, got, 4 * MiB, 0), 0);
    ck_assert(memcmp(got, want, 4 * MiB) == 0);
    dk_close(v);
    free(want);
    free(got);
    if (have_qemu)
        ck_assert_int_eq(sh("qemu-img check -q %s", path("z.vdi")), 0);
}
END_TEST

START_TEST(resize)
{
    create("r.vdi", "vdi", 10 * MiB, NULL);
    struct dk_image *v = open_img("r.vdi", "vdi", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_resize(v, 100 * MiB, NULL, 0), 0);
    ck_assert_uint_eq(dk_image_size(v), 100 * MiB);
    uint8_t buf[512];
    fill(buf, sizeof(buf), 3);
    ck_assert_int_eq(dk_pwrite(v, buf, 512, 99 * MiB), 0);
    /* 512 bytes of map hold 128 blocks; more moves the first data block
     * (vdi-grow.c): the map lands at the old data offset, 1024. */
    ck_assert_int_eq(dk_resize(v, 129 * MiB, NULL, 0), 0);
    ck_assert_uint_eq(dk_image_size(v), 129 * MiB);
    uint8_t back[512];
    ck_assert_int_eq(dk_pread(v, back, 512, 99 * MiB), 0);
    ck_assert(memcmp(back, buf, 512) == 0);
    ck_assert_int_eq(dk_resize(v, MiB, NULL, DK_RESIZE_SHRINK), -ENOTSUP);
    ck_assert_int_eq(dk_close(v), 0);
    ck_assert_uint_eq(read32("r.vdi", 340), 1024);
    ck_assert_uint_eq(read32("r.vdi", 344), 1024 + MiB);
    /* Map full to its sector and every block allocated: refused, unchanged. */
    create("rf.vdi", "vdi", 128 * MiB, "static=on");
    v = open_img("rf.vdi", "vdi", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_resize(v, 129 * MiB, NULL, 0), -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(v), "128 of its 128 blocks"));
    ck_assert_uint_eq(dk_image_size(v), 128 * MiB);
    ck_assert_int_eq(dk_close(v), 0);
    ck_assert_uint_eq(read32("rf.vdi", 384), 128);
    create("rs.vdi", "vdi", 2 * MiB, "static=on");
    v = open_img("rs.vdi", "vdi", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_resize(v, 5 * MiB, NULL, 0), 0);
    ck_assert_int_eq(dk_close(v), 0);
    ck_assert_uint_eq(fsize("rs.vdi"), 1024 + 5ull * MiB);
    if (have_qemu) {
        ck_assert_int_eq(sh("qemu-img check -q %s && qemu-img check -q %s",
                            path("r.vdi"), path("rs.vdi")), 0);
        ck_assert_int_eq(sh("qemu-img info %s | grep -q '(135266304 bytes)'",
                            path("r.vdi")), 0);
        ck_assert_int_eq(sh("qemu-io -f vdi -c 'read -P 0 0 5M' %s | grep -q 'read 5242880'",
                            path("rs.vdi")), 0);
    }
}
END_TEST

/* After a crash the header count may lag behind the map, and unreferenced
 * blocks with stale data may follow: new blocks must neither overwrite a
 * referenced block nor show the stale bytes. */
START_TEST(stale_count_and_orphans)
{
    three_blocks("x.vdi");
    patch32("x.vdi", 388, 1);                       /* count lags: 1 of 3 */
    struct dk_image *v = open_img("x.vdi", "vdi", DK_OPEN_RDWR);
    uint8_t buf[512];
    fill(buf, sizeof(buf), 6);
    ck_assert_int_eq(dk_pwrite(v, buf, sizeof(buf), 3 * MiB + 4096), 0);
    ck_assert_int_eq(dk_close(v), 0);
    ck_assert_uint_eq(fsize("x.vdi"), 1024 + 4ull * MiB);   /* index 3, appended */

    three_blocks("y.vdi");
    patch32("y.vdi", 512 + 4, 0xffffffff);          /* orphans: indices 1 and 2 */
    patch32("y.vdi", 512 + 8, 0xffffffff);
    patch32("y.vdi", 388, 1);
    v = open_img("y.vdi", "vdi", DK_OPEN_RDWR);
    ck_assert_int_eq(dk_pwrite(v, buf, sizeof(buf), 3 * MiB + 4096), 0);
    ck_assert_int_eq(dk_close(v), 0);
    ck_assert_uint_eq(fsize("y.vdi"), 1024 + 3ull * MiB);   /* index 1 reused */

    uint8_t *want = malloc(4 * MiB), *got = malloc(4 * MiB);
    const char *names[] = { "x.vdi", "y.vdi" };
    for (int i = 0; i < 2; i++) {
        fill(want, 3 * MiB, 8);
        if (i == 1)
            memset(want + MiB, 0, 2 * MiB);
        memset(want + 3 * MiB, 0, MiB);
        memcpy(want + 3 * MiB + 4096, buf, sizeof(buf));
        v = open_img(names[i], "vdi", 0);
        ck_assert_int_eq(dk_pread(v, got, 4 * MiB, 0), 0);
        ck_assert_msg(memcmp(got, want, 4 * MiB) == 0, "%s content", names[i]);
        dk_close(v);
        if (have_qemu) {       /* qemu reads the same content */
            FILE *f = fopen(path("want.raw"), "wb");
            ck_assert_ptr_nonnull(f);
            ck_assert_uint_eq(fwrite(want, 1, 4 * MiB, f), 4 * MiB);
            fclose(f);
            ck_assert_int_eq(sh("qemu-img compare -q -f vdi -F raw %s %s", path(names[i]),
                                path("want.raw")), 0);
        }
    }
    free(want);
    free(got);
    if (have_qemu)
        ck_assert_int_eq(sh("qemu-img check -q %s", path("y.vdi")), 0);
}
END_TEST

START_TEST(refused_headers)
{
    create("h.vdi", "vdi", MiB, NULL);
    patch32("h.vdi", 76, 4);
    struct dk_open_opts o = { .format = "vdi" };
    struct dk_error e = { 0 };
    ck_assert_ptr_null(dk_open(path("h.vdi"), &o, &e));
    ck_assert_int_eq(e.code, -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(e.msg, "h.vdi: vdi: differencing images"));
    /* Probing finds vdi by signature; a bad one is raw. */
    const char *fmt;
    ck_assert_int_eq(dk_probe(path("h.vdi"), &fmt, &e), 0);
    ck_assert_str_eq(fmt, "vdi");
    patch32("h.vdi", 64, 0);
    ck_assert_int_eq(dk_probe(path("h.vdi"), &fmt, &e), 0);
    ck_assert_str_eq(fmt, "raw");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vdi_api");
    TCase *tc = tcase_create("image");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, dynamic_roundtrip_and_qemu);
    tcase_add_test(tc, static_create);
    tcase_add_test(tc, create_matches_qemu);
    tcase_add_test(tc, reads_qemu_images);
    tcase_add_test(tc, odd_size_and_zero_entry);
    tcase_add_test(tc, bad_entries_fail_reads);
    tcase_add_test(tc, check_and_repair);
    tcase_add_test(tc, leaks_compacted);
    tcase_add_test(tc, zero_hook);
    tcase_add_test(tc, resize);
    tcase_add_test(tc, stale_count_and_orphans);
    tcase_add_test(tc, refused_headers);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
