/* check_vmdk_io.c - VMDK round trips through the public API with qemu-img
 * (and vmdkinfo/pyvmdk/VMDKstream when installed) as oracles: images qemu
 * writes read back exactly, images diskkit writes pass qemu-img check and
 * compare, hand-built layouts qemu does not write (multi-extent descriptor
 * with FLAT/ZERO/SPARSE, zeroed grains), CID handling and bad input.
 * Each test runs in its own temporary directory (forked, CK_FORK=yes).
 * A test whose tool is missing says so on stderr and does nothing.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diskkit.h"
#include "util/endian.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/dk-vmdk.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chdir(dir), 0);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (chdir("/") == 0 && system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : 128;
}

static bool have(const char *tool)
{
    if (sh("command -v %s >/dev/null 2>&1", tool) == 0)
        return true;
    fprintf(stderr, "SKIP: %s is not installed\n", tool);
    return false;
}

static bool have_py(const char *module)
{
    return sh("/usr/bin/python3 -c 'import %s' >/dev/null 2>&1", module) == 0;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* A guest image: ext4 with real files when mkfs.ext4 -d works, then a
 * non-grain-aligned size with random and zero areas. */
static void make_raw(const char *path)
{
    if (sh("mkdir -p src && head -c 1500000 /dev/urandom > src/rand && seq 1 100000 > src/seq"
           " && truncate -s 20M %s && mkfs.ext4 -q -F -d src %s >/dev/null 2>&1", path,
           path) != 0)
        ck_assert_int_eq(sh("head -c 3000000 /dev/urandom > %s", path), 0);
    ck_assert_int_eq(sh("head -c 70001 /dev/urandom | dd of=%s bs=1 seek=21000000 "
                        "conv=notrunc status=none", path), 0);
}

static struct dk_image *open_img(const char *path, bool rw)
{
    struct dk_error err = { 0 };
    struct dk_open_opts o = { .format = "vmdk", .flags = rw ? DK_OPEN_RDWR : 0 };
    struct dk_image *img = dk_open(path, &o, &err);
    ck_assert_msg(img != NULL, "open %s: %s", path, err.msg);
    return img;
}

/* Reads the whole guest content of PATH through the API into OUT. */
static void to_raw(const char *path, const char *out)
{
    struct dk_image *img = open_img(path, false);
    FILE *f = fopen(out, "wb");
    uint64_t size = dk_image_size(img);
    size_t bs = 1 << 20;
    uint8_t *b = malloc(bs);
    for (uint64_t off = 0; off < size; off += bs) {
        size_t n = (size_t)(size - off < bs ? size - off : bs);
        ck_assert_msg(dk_pread(img, b, n, off) == 0, "%s", dk_image_errmsg(img));
        ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    }
    free(b);
    fclose(f);
    dk_close(img);
}

/* Creates PATH (vmdk, OPTS) from RAW, writing sequentially in BS chunks. */
static void from_raw(const char *raw, const char *path, const char *opts, size_t bs)
{
    size_t len;
    uint8_t *data = slurp(raw, &len);
    struct dk_error err = { 0 };
    struct dk_opts *o = NULL;
    if (opts)
        ck_assert_int_eq(dk_opts_parse(&o, opts, &err), 0);
    struct dk_create_args a = { .filename = path, .format = "vmdk", .size = len, .opts = o };
    ck_assert_msg(dk_create(&a, &err) == 0, "create: %s", err.msg);
    dk_opts_free(o);
    struct dk_image *img = open_img(path, true);
    for (size_t off = 0; off < len; off += bs) {
        size_t n = len - off < bs ? len - off : bs;
        ck_assert_msg(dk_pwrite(img, data + off, n, off) == 0, "%s", dk_image_errmsg(img));
    }
    ck_assert_int_eq(dk_close(img), 0);
    free(data);
}

static const char *const subformats[] = { "monolithicSparse", "monolithicFlat",
    "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized", NULL };

START_TEST(qemu_made_read_exactly)
{
    if (!have("qemu-img"))
        return;
    make_raw("base.raw");
    for (int i = 0; subformats[i]; i++) {
        ck_assert_int_eq(sh("qemu-img convert -O vmdk -o subformat=%s base.raw q%d.vmdk",
                            subformats[i], i), 0);
        char out[32];
        snprintf(out, sizeof(out), "q%d.vmdk", i);
        to_raw(out, "out.raw");
        ck_assert_msg(sh("qemu-img convert -O raw q%d.vmdk ref.raw && cmp -s ref.raw out.raw",
                         i) == 0, "%s differs", subformats[i]);
    }
}
END_TEST

static void verify_ours(const char *path, const char *raw)
{
    ck_assert_msg(sh("qemu-img check -q %s", path) == 0, "qemu-img check %s", path);
    ck_assert_msg(sh("qemu-img compare -q -f raw %s %s", raw, path) == 0, "compare %s", path);
    if (have("vmdkinfo"))
        ck_assert_msg(sh("vmdkinfo %s >/dev/null", path) == 0, "vmdkinfo %s", path);
    if (have_py("pyvmdk"))
        ck_assert_msg(sh("/usr/bin/python3 -c \"import pyvmdk,sys\n"
                         "h=pyvmdk.handle(); h.open(sys.argv[1]); h.open_extent_data_files()\n"
                         "d=h.read_buffer(h.get_media_size())\n"
                         "r=open(sys.argv[2],'rb').read(); r+=bytes(len(d)-len(r))\n"
                         "sys.exit(d!=r)\" %s %s", path, raw) == 0, "libvmdk reads %s", path);
}

START_TEST(ours_pass_qemu_check_and_compare)
{
    if (!have("qemu-img"))
        return;
    make_raw("base.raw");
    for (int i = 0; subformats[i]; i++) {
        char path[64], opts[64];
        snprintf(path, sizeof(path), "d%d.vmdk", i);
        snprintf(opts, sizeof(opts), "subformat=%s", subformats[i]);
        from_raw("base.raw", path, opts, i % 2 ? 4097 : 65536);
        verify_ours(path, "base.raw");
        to_raw(path, "back.raw");
        ck_assert_int_eq(sh("qemu-img compare -q -f raw -F raw base.raw back.raw"), 0);
    }
}
END_TEST

START_TEST(vmdkstream_made_read)
{
    if (!have("qemu-img") || !have_py("VMDKstream"))
        return;
    ck_assert_int_eq(sh("head -c 2000000 /dev/urandom > v.raw && truncate -s 4M v.raw && "
                        "/usr/bin/python3 -c 'import VMDKstream,sys; "
                        "VMDKstream.convert_to_stream(sys.argv[1], sys.argv[2])' "
                        "v.raw v.vmdk >/dev/null"), 0);
    to_raw("v.vmdk", "out.raw");
    ck_assert_int_eq(sh("cmp -s v.raw out.raw"), 0);
}
END_TEST

START_TEST(stream_order_and_flush)
{
    if (!have("qemu-img"))
        return;
    ck_assert_int_eq(sh("head -c 900000 /dev/urandom > s.raw && truncate -s 3M s.raw"), 0);
    size_t len;
    uint8_t *data = slurp("s.raw", &len);
    struct dk_opts *o = NULL;
    struct dk_error err = { 0 };
    dk_opts_set(&o, "subformat", "streamOptimized");
    struct dk_create_args a = { .filename = "s.vmdk", .format = "vmdk", .size = len, .opts = o };
    ck_assert_int_eq(dk_create(&a, &err), 0);
    dk_opts_free(o);
    ck_assert_int_eq(sh("qemu-img check -q s.vmdk"), 0);   /* empty stream is valid */
    struct dk_image *img = open_img("s.vmdk", true);
    ck_assert_int_eq(dk_pwrite(img, data, 700000, 0), 0);
    ck_assert_int_eq(dk_flush(img), 0);                      /* tail written mid-way */
    ck_assert_int_eq(sh("qemu-img check -q -U s.vmdk"), 0);
    uint8_t chk[4096];
    ck_assert_int_eq(dk_pread(img, chk, 3000, 696000), 0);   /* pending grain */
    ck_assert_mem_eq(chk, data + 696000, 3000);
    ck_assert_int_eq(dk_pwrite(img, data + 700000, len - 700000, 700000), 0);
    ck_assert_int_eq(dk_pwrite(img, data, 512, 0), -EINVAL);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(img), "increasing order"));
    ck_assert_int_eq(dk_close(img), 0);
    verify_ours("s.vmdk", "s.raw");
    free(data);
    /* A stream holding data is not appended to. */
    img = open_img("s.vmdk", true);
    ck_assert_int_eq(dk_pwrite(img, chk, 512, len - 512), -ENOTSUP);
    dk_close(img);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(descriptor_flat_zero_sparse)
{
    if (!have("qemu-img") || !have("qemu-io"))
        return;
    ck_assert_int_eq(sh("head -c 1049088 /dev/urandom > f.raw && "
                        "qemu-img create -q -f vmdk s.vmdk 1M && "
                        "qemu-io -c 'write -P 0x5a 4096 70000' s.vmdk >/dev/null"), 0);
    write_file("multi.vmdk", "# Disk DescriptorFile\nversion=1\nCID=12345678\n"
               "parentCID=ffffffff\ncreateType=\"custom\"\n\n"
               "RW 2048 FLAT \"f.raw\" 1\nRW 2048 ZERO\nRW 2048 SPARSE \"s.vmdk\"\n");
    ck_assert_int_eq(sh("dd if=f.raw of=exp.raw bs=512 skip=1 count=2048 status=none && "
                        "truncate -s 2M exp.raw && qemu-img convert -O raw s.vmdk s.raw && "
                        "cat s.raw >> exp.raw"), 0);
    to_raw("multi.vmdk", "out.raw");
    ck_assert_int_eq(sh("cmp -s exp.raw out.raw"), 0);
    struct dk_image *img = open_img("multi.vmdk", true);
    struct dk_extent e;
    ck_assert_int_eq(dk_block_status(img, 0, 3 << 20, 0, &e), 0);
    ck_assert_uint_eq(e.length, 1 << 20);
    ck_assert_uint_eq(e.flags, DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID);
    ck_assert_uint_eq(e.host_offset, 512);
    ck_assert_int_eq(dk_block_status(img, 1 << 20, 2 << 20, 0, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_ZERO | DK_BS_ALLOCATED);
    ck_assert_int_eq(dk_block_status(img, 2 << 20, 1 << 20, 0, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_DATA | DK_BS_ALLOCATED | DK_BS_OFFSET_VALID);
    uint8_t buf[8192];
    memset(buf, 0xc3, sizeof(buf));
    ck_assert_int_eq(dk_pwrite(img, buf, 1024, 1000), 0);                    /* FLAT */
    ck_assert_int_eq(dk_pwrite(img, buf, 4096, (2 << 20) + 300000), 0);     /* SPARSE */
    ck_assert_int_eq(dk_pwrite(img, buf, 512, (1 << 20) + 512), -EROFS);    /* ZERO */
    struct dk_info info;
    ck_assert_int_eq(dk_info(img, &info), 0);
    ck_assert_str_eq(info.files[0], "f.raw");
    ck_assert_str_eq(info.files[1], "s.vmdk");
    ck_assert_ptr_null(info.files[2]);
    dk_info_free(&info);
    dk_close(img);
    ck_assert_int_eq(sh("printf '\\303%%.0s' $(seq 1024) | dd of=exp.raw bs=1 seek=1000 "
                        "conv=notrunc status=none && printf '\\303%%.0s' $(seq 4096) | "
                        "dd of=exp.raw bs=1 seek=2397152 conv=notrunc status=none"), 0);
    to_raw("multi.vmdk", "out.raw");
    ck_assert_int_eq(sh("cmp -s exp.raw out.raw"), 0);
    ck_assert_int_eq(sh("qemu-img check -q s.vmdk"), 0);
    ck_assert_int_eq(sh("grep -q 'CID=12345678' multi.vmdk"), 1);   /* CID changed */
}
END_TEST

START_TEST(zeroed_grains)
{
    if (!have("qemu-img") || !have("qemu-io"))
        return;
    /* GTE=1 written by qemu. */
    ck_assert_int_eq(sh("qemu-img create -q -f vmdk -o zeroed_grain=on z.vmdk 4M && "
                        "qemu-io -c 'write -P 9 0 1M' -c 'write -z 128k 128k' z.vmdk "
                        ">/dev/null && qemu-img convert -O raw z.vmdk zexp.raw"), 0);
    to_raw("z.vmdk", "out.raw");
    ck_assert_int_eq(sh("cmp -s zexp.raw out.raw"), 0);
    struct dk_image *img = open_img("z.vmdk", true);
    struct dk_extent e;
    ck_assert_int_eq(dk_block_status(img, 128 << 10, 1 << 20, 0, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_ZERO | DK_BS_ALLOCATED);
    ck_assert_uint_eq(e.length, 128 << 10);
    /* Ours: whole grains become GTE=1, partial ones are written. */
    ck_assert_int_eq(dk_pwrite_zeroes(img, 512 << 10, (192 << 10) + 1000, 0), 0);
    ck_assert_int_eq(dk_block_status(img, 512 << 10, 1 << 20, 0, &e), 0);
    ck_assert_uint_eq(e.flags, DK_BS_ZERO | DK_BS_ALLOCATED);
    ck_assert_uint_eq(e.length, 192 << 10);
    dk_close(img);
    ck_assert_int_eq(sh("qemu-io -f raw -c 'write -z 512k 197608' zexp.raw >/dev/null && "
                        "qemu-img check -q z.vmdk && qemu-img compare -q -f raw zexp.raw "
                        "z.vmdk"), 0);
}
END_TEST

static void open_fails(const char *path, int code, const char *needle)
{
    struct dk_error err = { 0 };
    struct dk_open_opts o = { .format = "vmdk", .flags = DK_OPEN_RDWR };
    struct dk_image *img = dk_open(path, &o, &err);
    if (img)
        dk_close(img);
    ck_assert_msg(img == NULL, "%s opened", path);
    ck_assert_int_eq(err.code, code);
    ck_assert_msg(strstr(err.msg, needle), "'%s' lacks '%s'", err.msg, needle);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
}

/* Patches LEN bytes at OFF of a fresh copy of good.vmdk into PATH. */
static void patched(const char *path, uint64_t off, const void *b, size_t len)
{
    ck_assert_int_eq(sh("cp good.vmdk %s", path), 0);
    int fd = open(path, O_WRONLY);
    ck_assert_int_eq(pwrite(fd, b, len, (off_t)off), (ssize_t)len);
    close(fd);
}

START_TEST(bad_inputs)
{
    if (!have("qemu-img"))
        return;
    ck_assert_int_eq(sh("qemu-img create -q -f vmdk good.vmdk 64M"), 0);
    uint8_t le[8];
    dk_put_le64(le, 96);
    patched("g1.vmdk", 20, le, 8);
    open_fails("g1.vmdk", -EINVAL, "power of two");
    dk_put_le64(le, 1ull << 40);
    patched("g2.vmdk", 56, le, 8);
    open_fails("g2.vmdk", -EINVAL, "grain directory");
    dk_put_le32(le, 1000);
    patched("g3.vmdk", 44, le, 4);
    open_fails("g3.vmdk", -EINVAL, "grain table entries");
    dk_put_le64(le, UINT64_MAX / 4);
    patched("g4.vmdk", 12, le, 8);
    open_fails("g4.vmdk", -EFBIG, "capacity");
    ck_assert_int_eq(sh("head -c 1000 good.vmdk > g5.vmdk"), 0);
    open_fails("g5.vmdk", -EINVAL, "");
    /* Header sizes that lie: embedded descriptor past EOF. */
    dk_put_le64(le, 1u << 30);
    patched("g6.vmdk", 28, le, 8);
    open_fails("g6.vmdk", -EINVAL, "descriptor");
    ck_assert_int_eq(sh("cmp -s g6.vmdk good.vmdk"), 1);   /* patched, but... */
    ck_assert_int_eq(sh("cp g6.vmdk g6.copy && cmp -s g6.vmdk g6.copy"), 0);
    /* Descriptors: escaping and absolute names, huge extents. */
    ck_assert_int_eq(sh("mkdir -p in && truncate -s 1M outside.raw"), 0);
    write_file("in/esc.vmdk", "version=1\nRW 2048 FLAT \"../outside.raw\" 0\n");
    open_fails("in/esc.vmdk", -EPERM, "outside");
    write_file("abs.vmdk", "version=1\nRW 8 FLAT \"/etc/hostname\" 0\n");
    open_fails("abs.vmdk", -EPERM, "absolute");
    write_file("huge.vmdk", "version=1\nRW 99999999999999999 FLAT \"outside.raw\" 0\n");
    open_fails("huge.vmdk", -EFBIG, "too large");
    write_file("none.vmdk", "version=1\nCID=1\n");
    open_fails("none.vmdk", -EINVAL, "no extents");
    /* GT past EOF: opens, then reads fail cleanly and check reports it. */
    size_t glen;
    uint8_t *g = slurp("good.vmdk", &glen);
    uint64_t gd = dk_le64(g + 56);   /* sector of the primary GD */
    free(g);
    dk_put_le32(le, 0x0fffffff);
    patched("gt.vmdk", gd * 512, le, 4);
    struct dk_image *img = open_img("gt.vmdk", false);
    uint8_t b[512];
    ck_assert_int_eq(dk_pread(img, b, sizeof(b), 0), -EIO);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(img), "beyond end of file"));
    dk_close(img);
    img = open_img("gt.vmdk", false);
    struct dk_check_result res;
    ck_assert_int_eq(dk_check(img, 0, &res, NULL, NULL), 0);
    ck_assert_int_eq(res.corruptions, 1);
    dk_close(img);
}
END_TEST

START_TEST(access_modes_and_refused_types)
{
    ck_assert_int_eq(sh("head -c 65536 /dev/urandom > f.raw"), 0);
    write_file("ro.vmdk", "version=1\nRDONLY 128 FLAT \"f.raw\" 0\n");
    open_fails("ro.vmdk", -EROFS, "RDONLY");
    struct dk_image *img = open_img("ro.vmdk", false);
    uint8_t b[512];
    ck_assert_int_eq(dk_pread(img, b, sizeof(b), 512), 0);
    dk_close(img);
    write_file("na.vmdk", "version=1\nRW 128 FLAT \"f.raw\" 0\nNOACCESS 128 FLAT \"f.raw\" 0\n");
    img = open_img("na.vmdk", false);
    ck_assert_int_eq(dk_pread(img, b, sizeof(b), 0), 0);
    ck_assert_int_eq(dk_pread(img, b, sizeof(b), 65536), -EACCES);
    dk_close(img);
    write_file("cowd.vmdk", "COWD");
    ck_assert_int_eq(sh("truncate -s 4096 cowd.vmdk"), 0);
    open_fails("cowd.vmdk", -ENOTSUP, "COWD");
    write_file("se.vmdk", "version=1\nRW 128 SESPARSE \"f.raw\"\n");
    open_fails("se.vmdk", -ENOTSUP, "SESPARSE is not supported");
    /* Extent shorter than the descriptor says: reads past its end are zeros. */
    write_file("short.vmdk", "version=1\nRW 256 FLAT \"f.raw\" 0\n");
    img = open_img("short.vmdk", false);
    memset(b, 1, sizeof(b));
    ck_assert_int_eq(dk_pread(img, b, sizeof(b), 100000), 0);
    ck_assert_int_eq(b[0] | b[511], 0);
    dk_close(img);
}
END_TEST

START_TEST(cid_and_backing)
{
    if (!have("qemu-img"))
        return;
    make_raw("base.raw");
    from_raw("base.raw", "p.vmdk", NULL, 65536);
    struct dk_opts *o = NULL;
    struct dk_error err = { 0 };
    dk_opts_set(&o, "backing_file", "p.vmdk");
    dk_opts_set(&o, "backing_fmt", "vmdk");
    struct dk_create_args a = { .filename = "c.vmdk", .format = "vmdk", .opts = o };
    ck_assert_msg(dk_create(&a, &err) == 0, "%s", err.msg);
    dk_opts_free(o);
    ck_assert_int_eq(sh("qemu-img compare -q p.vmdk c.vmdk"), 0);
    struct dk_image *img = open_img("c.vmdk", true);
    ck_assert_str_eq(dk_image_format(dk_image_backing(img)), "vmdk");
    uint8_t b[4096];
    memset(b, 0x77, sizeof(b));
    ck_assert_int_eq(dk_pwrite(img, b, sizeof(b), 100000), 0);
    dk_close(img);
    ck_assert_int_eq(sh("qemu-io -f raw -c 'write -P 0x77 100000 4096' base.raw >/dev/null && "
                        "qemu-img compare -q -f raw base.raw c.vmdk && "
                        "qemu-img check -q c.vmdk"), 0);
    to_raw("c.vmdk", "out.raw");
    ck_assert_int_eq(sh("qemu-img compare -q -f raw -F raw base.raw out.raw"), 0);
    /* Modify the parent: its CID changes and the child goes stale. */
    img = open_img("p.vmdk", true);
    ck_assert_int_eq(dk_pwrite(img, b, 512, 0), 0);
    dk_close(img);
    img = open_img("c.vmdk", false);
    ck_assert_int_eq(dk_pread(img, b, sizeof(b), 0), -EINVAL);
    ck_assert_ptr_nonnull(strstr(dk_image_errmsg(img), "parent CID mismatch"));
    dk_close(img);
    ck_assert_int_ne(sh("qemu-img convert -O raw c.vmdk q.raw 2>/dev/null"), 0);
}
END_TEST

START_TEST(create_like_qemu_and_cleanup)
{
    if (!have("qemu-img"))
        return;
    struct dk_error err = { 0 };
    const char *cases[][2] = {
        { "subformat=monolithicFlat", "mf" }, { "subformat=twoGbMaxExtentFlat", "tf" },
        { "subformat=twoGbMaxExtentSparse,adapter_type=lsilogic,toolsversion=9", "ts" },
        { "compat6=on,zeroed_grain=on", "ms" }, { "hwversion=7,adapter_type=buslogic", "hw" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dk_opts *o = NULL;
        ck_assert_int_eq(dk_opts_parse(&o, cases[i][0], &err), 0);
        char path[32];
        snprintf(path, sizeof(path), "d-%s.vmdk", cases[i][1]);
        struct dk_create_args a = { .filename = path, .format = "vmdk",
                                    .size = 5ull << 30, .opts = o };
        ck_assert_msg(dk_create(&a, &err) == 0, "%s", err.msg);
        dk_opts_free(o);
        ck_assert_int_eq(sh("qemu-img create -q -f vmdk -o %s q-%s.vmdk 5G", cases[i][0],
                            cases[i][1]), 0);
        /* Same descriptor as qemu-img's apart from CID and file names. */
        ck_assert_msg(sh("strings -n 3 d-%s.vmdk | grep -v '^CID=' | sed 's/d-%s/X/' > a.txt"
                         " && strings -n 3 q-%s.vmdk | grep -v '^CID=' | sed 's/q-%s/X/' "
                         "> b.txt && diff a.txt b.txt", cases[i][1], cases[i][1],
                         cases[i][1], cases[i][1]) == 0, "descriptor of %s", cases[i][0]);
        ck_assert_int_eq(sh("qemu-img check -q %s", path), 0);
        ck_assert_int_eq(sh("qemu-img compare -q %s q-%s.vmdk", path, cases[i][1]), 0);
    }
    /* Byte-identical to qemu's outside the descriptor (whose text was
     * compared above): header sector, directories and tables. */
    ck_assert_int_eq(sh("cmp -s -n 512 d-ms.vmdk q-ms.vmdk && "
                        "cmp -s -i 10752 d-ms.vmdk q-ms.vmdk"), 0);
    /* Refused options leave no file behind. */
    const char *badopts[] = { "adapter_type=scsi", "compat6=on,hwversion=7",
        "subformat=twoGbMaxExtentFlat,backing_file=d-ms.vmdk,backing_fmt=vmdk",
        "subformat=vmfs", "backing_file=d-ms.vmdk,backing_fmt=qcow2" };
    for (size_t i = 0; i < sizeof(badopts) / sizeof(badopts[0]); i++) {
        struct dk_opts *o = NULL;
        ck_assert_int_eq(dk_opts_parse(&o, badopts[i], &err), 0);
        struct dk_create_args a = { .filename = "bad.vmdk", .format = "vmdk",
                                    .size = 5ull << 30, .opts = o };
        ck_assert_int_lt(dk_create(&a, &err), 0);
        dk_opts_free(o);
        ck_assert_msg(sh("ls bad* >/dev/null 2>&1") != 0, "left files for %s", badopts[i]);
    }
    /* Growing works on an open handle (tests/interop/vmdk-resize.sh covers
     * it in depth); shrinking is refused, as qemu has no shrink either. */
    struct dk_image *img = open_img("d-ms.vmdk", true);
    ck_assert_int_eq(dk_resize(img, (5ull << 30) - 512, NULL, DK_RESIZE_SHRINK), -ENOTSUP);
    ck_assert_int_eq(dk_resize(img, 6ull << 30, NULL, 0), 0);
    ck_assert_uint_eq(dk_image_size(img), 6ull << 30);
    dk_close(img);
    ck_assert_int_eq(sh("qemu-img check -q d-ms.vmdk && qemu-img info d-ms.vmdk | "
                        "grep -q '(6442450944 bytes)'"), 0);
}
END_TEST

START_TEST(info_like_qemu)
{
    if (!have("qemu-img"))
        return;
    ck_assert_int_eq(sh("qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "
                        "t.vmdk 5G && qemu-img create -q -f vmdk -o subformat=streamOptimized"
                        " s.vmdk 1G"), 0);
    struct dk_image *img = open_img("t.vmdk", false);
    struct dk_info info;
    ck_assert_int_eq(dk_info(img, &info), 0);
    ck_assert_uint_eq(info.cluster_size, 65536);
    const struct dk_val *d = dk_val_get(info.format_specific, "data");
    ck_assert_str_eq(dk_val_get(info.format_specific, "type")->v.s, "vmdk");
    ck_assert_str_eq(dk_val_get(d, "create-type")->v.s, "twoGbMaxExtentSparse");
    ck_assert_uint_eq(dk_val_get(d, "parent-cid")->v.u, 0xffffffffu);
    const struct dk_val *l = dk_val_get(d, "extents");
    ck_assert_uint_eq(l->v.kids.n, 3);
    ck_assert_str_eq(dk_val_get(&l->v.kids.items[2], "filename")->v.s, "t-s003.vmdk");
    ck_assert_str_eq(dk_val_get(&l->v.kids.items[2], "format")->v.s, "SPARSE");
    ck_assert_uint_eq(dk_val_get(&l->v.kids.items[2], "virtual-size")->v.u, 1ull << 30);
    ck_assert_int_eq(sh("qemu-img info --output json t.vmdk | grep -q '\"cid\": %llu'",
                        (unsigned long long)dk_val_get(d, "cid")->v.u), 0);
    dk_info_free(&info);
    dk_close(img);
    img = open_img("s.vmdk", false);
    ck_assert_int_eq(dk_info(img, &info), 0);
    d = dk_val_get(info.format_specific, "data");
    l = dk_val_get(d, "extents");
    ck_assert_int_eq(dk_val_get(&l->v.kids.items[0], "compressed")->v.b, 1);
    ck_assert_str_eq(dk_val_get(&l->v.kids.items[0], "format")->v.s, "");
    ck_assert_str_eq(dk_val_get(d, "create-type")->v.s, "streamOptimized");
    dk_info_free(&info);
    dk_close(img);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vmdk_io");
    TCase *t = tcase_create("io");
    tcase_set_timeout(t, 120);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, qemu_made_read_exactly);
    tcase_add_test(t, ours_pass_qemu_check_and_compare);
    tcase_add_test(t, vmdkstream_made_read);
    tcase_add_test(t, stream_order_and_flush);
    tcase_add_test(t, descriptor_flat_zero_sparse);
    tcase_add_test(t, zeroed_grains);
    tcase_add_test(t, bad_inputs);
    tcase_add_test(t, access_modes_and_refused_types);
    tcase_add_test(t, cid_and_backing);
    tcase_add_test(t, create_like_qemu_and_cleanup);
    tcase_add_test(t, info_like_qemu);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
