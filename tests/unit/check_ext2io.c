/* check_ext2io.c - the libext2fs bridge and the dk_fs API on a filesystem
 * that libext2fs itself creates through our io_manager inside a partition
 * of a raw image: io_manager contract (names, read-only views, ranges),
 * then files, directories, links, rename, truncate and the error codes. */
#include <check.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest.h"
#include "util/endian.h"

#define IMG_SIZE (16u << 20)
#define PART_OFF (1u << 20)
#define PART_SECTORS ((IMG_SIZE - PART_OFF) / 512)

static char path[64];
static struct dk_image *img;

/* A raw image with one MBR partition holding a fresh ext4 (extents,
 * 1 KiB blocks) made by ext2fs_initialize through dk_ext2_io_manager. */
static void setup(void)
{
    strcpy(path, "/tmp/check_ext2io.XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, IMG_SIZE), 0);
    uint8_t mbr[512] = { 0 };
    mbr[446 + 4] = 0x83;
    dk_put_le32(mbr + 446 + 8, PART_OFF / 512);
    dk_put_le32(mbr + 446 + 12, PART_SECTORS);
    mbr[510] = 0x55, mbr[511] = 0xaa;
    ck_assert_int_eq(pwrite(fd, mbr, 512, 0), 512);
    close(fd);
    struct dk_open_opts o = { .format = "raw", .flags = DK_OPEN_RDWR };
    struct dk_error err;
    img = dk_open(path, &o, &err);
    ck_assert_ptr_nonnull(img);
    char name[64];
    ck_assert_int_eq(dk_ext2io_register(img, PART_OFF, IMG_SIZE - PART_OFF, true, name,
                                        sizeof(name)), 0);
    struct ext2_super_block param = { 0 };
    ext2fs_blocks_count_set(&param, (IMG_SIZE - PART_OFF) / 1024);
    param.s_log_block_size = 0;
    param.s_rev_level = 1;
    param.s_inode_size = 256;
    ext2fs_set_feature_extents(&param);
    ext2fs_set_feature_filetype(&param);
    ext2fs_set_feature_sparse_super(&param);
    ext2_filsys fs;
    ck_assert_int_eq(ext2fs_initialize(name, EXT2_FLAG_64BITS, &param, dk_ext2_io_manager,
                                       &fs), 0);
    ck_assert_int_eq(ext2fs_allocate_tables(fs), 0);
    ck_assert_int_eq(ext2fs_mkdir(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, 0), 0);
    for (ext2_ino_t i = 1; i < EXT2_FIRST_INODE(fs->super); i++)   /* reserved, as mke2fs */
        if (i != EXT2_ROOT_INO)
            ext2fs_inode_alloc_stats2(fs, i, +1, 0);
    ck_assert_int_eq(ext2fs_close2(fs, 0), 0);
    dk_ext2io_unregister(name);
}

static void teardown(void)
{
    dk_close(img);
    if (getenv("CHECK_EXT2IO_KEEP"))       /* for running e2fsck by hand */
        fprintf(stderr, "kept %s\n", path);
    else
        unlink(path);
}

START_TEST(io_manager_contract)
{
    io_channel ch;
    char name[64];
    ck_assert_int_eq(dk_ext2_io_manager->open("nope", 0, &ch), EXT2_ET_BAD_DEVICE_NAME);
    ck_assert_int_eq(dk_ext2_io_manager->open("diskkit:999999", 0, &ch),
                     EXT2_ET_BAD_DEVICE_NAME);
    ck_assert_int_eq(dk_ext2io_register(img, PART_OFF, 8192, false, name, sizeof(name)), 0);
    ck_assert_int_eq(dk_ext2_io_manager->open(name, IO_FLAG_RW, &ch), EROFS);
    ck_assert_int_eq(dk_ext2_io_manager->open(name, 0, &ch), 0);
    ck_assert_int_eq(ch->magic, EXT2_ET_MAGIC_IO_CHANNEL);
    ck_assert_int_eq(io_channel_set_blksize(ch, 1000), EXT2_ET_INVALID_ARGUMENT);
    ck_assert_int_eq(io_channel_set_blksize(ch, 4096), 0);
    char buf[8192];
    ck_assert_int_eq(io_channel_read_blk64(ch, 0, 2, buf), 0);
    ck_assert_int_eq(io_channel_read_blk64(ch, 1, 2, buf), EXT2_ET_LLSEEK_FAILED);
    ck_assert_int_eq(io_channel_read_blk64(ch, ~0ULL / 2, 1, buf), EXT2_ET_LLSEEK_FAILED);
    ck_assert_int_eq(io_channel_read_blk64(ch, 0, -100, buf), 0);   /* bytes */
    ck_assert_int_eq(io_channel_write_blk64(ch, 0, 1, buf), EXT2_ET_RO_FILSYS);
    ck_assert_int_eq(ch->manager->set_option(ch, "bogus", "1"), EXT2_ET_INVALID_ARGUMENT);
    ck_assert_int_eq(io_channel_close(ch), 0);
    dk_ext2io_unregister(name);
}
END_TEST

static struct dk_guest *g;
static struct dk_fs *open_fs(unsigned flags)
{
    struct dk_error err;
    g = dk_guest_open(&img, 1, 0, &err);
    ck_assert_ptr_nonnull(g);
    struct dk_fs *fs = dk_fs_open(g, NULL, flags, &err);
    ck_assert_msg(fs != NULL, "%s", err.msg);
    return fs;
}

static int count_cb(void *opaque, const char *name, uint64_t ino, unsigned type)
{
    (*(int *)opaque)++;
    return 0;
}

START_TEST(fs_operations)
{
    struct dk_fs *fs = open_fs(DK_FS_RDWR);
    ck_assert_str_eq(dk_fs_device(fs), "/dev/sda1");
    ck_assert_str_eq(dk_fs_type(fs), "ext4");
    ck_assert_int_eq(dk_fs_mkdir(fs, "/d", 0750), 0);
    ck_assert_int_eq(dk_fs_mkdir(fs, "/d", 0750), -EEXIST);
    ck_assert_int_eq(dk_fs_mkdir(fs, "/x/y", 0750), -ENOENT);
    ck_assert_int_eq(dk_fs_write_file(fs, "/d/f", "hello", 5, 0640), 0);
    ck_assert_int_eq(dk_fs_mkdir(fs, "/d/f/z", 0750), -ENOTDIR);
    struct dk_stat st;
    ck_assert_int_eq(dk_fs_stat(fs, "/d/f", &st), 0);
    ck_assert_uint_eq(st.size, 5);
    ck_assert_uint_eq(st.mode, S_IFREG | 0640);
    ck_assert_uint_eq(st.nlink, 1);
    ck_assert_int_eq(dk_fs_symlink(fs, "/d/f", "/l"), 0);
    ck_assert_int_eq(dk_fs_lstat(fs, "/l", &st), 0);
    ck_assert(S_ISLNK(st.mode));
    char t[64];
    ck_assert_int_eq(dk_fs_readlink(fs, "/l", t, sizeof(t)), 4);
    ck_assert_str_eq(t, "/d/f");
    ck_assert_int_eq(dk_fs_readlink(fs, "/d/f", t, sizeof(t)), -EINVAL);
    ck_assert_int_eq(dk_fs_link(fs, "/d/f", "/hard"), 0);
    ck_assert_int_eq(dk_fs_stat(fs, "/l", &st), 0);   /* follows the link */
    ck_assert_uint_eq(st.nlink, 2);
    ck_assert_int_eq(dk_fs_link(fs, "/d", "/dlink"), -EPERM);
    /* big write, sparse extension, read back */
    struct dk_fsfile *f;
    ck_assert_int_eq(dk_fsfile_open(fs, "/big", DK_O_WRITE | DK_O_CREAT, 0644, &f), 0);
    static char buf[200000];
    memset(buf, 'x', sizeof(buf));
    ck_assert_int_eq(dk_fsfile_pwrite(f, buf, sizeof(buf), 1 << 20), (ssize_t)sizeof(buf));
    char back[16];
    ck_assert_int_eq(dk_fsfile_pread(f, back, 16, 0), 16);
    ck_assert_int_eq(back[0], 0);
    ck_assert_int_eq(dk_fsfile_pread(f, back, 16, (1 << 20) + 10), 16);
    ck_assert_int_eq(back[15], 'x');
    ck_assert_int_eq(dk_fsfile_pread(f, back, 16, (1 << 20) + sizeof(buf)), 0);
    ck_assert_int_eq(dk_fsfile_truncate(f, 10), 0);
    ck_assert_int_eq(dk_fsfile_fstat(f, &st), 0);
    ck_assert_uint_eq(st.size, 10);
    dk_fsfile_close(f);
    ck_assert_int_eq(dk_fsfile_open(fs, "/big", DK_O_CREAT | DK_O_EXCL | DK_O_WRITE, 0644, &f),
                     -EEXIST);
    ck_assert_int_eq(dk_fsfile_open(fs, "/d", 0, 0, &f), -EISDIR);
    /* rename: file over file, dir into dir, dir into itself */
    ck_assert_int_eq(dk_fs_rename(fs, "/hard", "/big"), 0);
    ck_assert_int_eq(dk_fs_stat(fs, "/big", &st), 0);
    ck_assert_uint_eq(st.size, 5);
    ck_assert_int_eq(dk_fs_mkdir(fs, "/e", 0755), 0);
    ck_assert_int_eq(dk_fs_rename(fs, "/d", "/e/d"), 0);
    ck_assert_int_eq(dk_fs_rename(fs, "/e", "/e/d/e"), -EINVAL);
    ck_assert_int_eq(dk_fs_rename(fs, "/big", "/e"), -EISDIR);
    int n = 0;
    ck_assert_int_eq(dk_fs_readdir(fs, "/e/d", count_cb, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(dk_fs_rmdir(fs, "/e"), -ENOTEMPTY);
    ck_assert_int_eq(dk_fs_unlink(fs, "/e"), -EISDIR);
    ck_assert_int_eq(dk_fs_unlink(fs, "/e/d/f"), 0);
    ck_assert_int_eq(dk_fs_rmdir(fs, "/e/d"), 0);
    ck_assert_int_eq(dk_fs_rmdir(fs, "/e"), 0);
    ck_assert_int_eq(dk_fs_stat(fs, "/l", &st), -ENOENT);  /* dangling now */
    ck_assert_int_eq(dk_fs_chmod(fs, "/big", 0600), 0);
    ck_assert_int_eq(dk_fs_chown(fs, "/big", 1000, (uint32_t)-1), 0);
    struct timespec ts[2] = { { 1000, 5 }, { 2000, UTIME_OMIT } };
    ck_assert_int_eq(dk_fs_utimens(fs, "/big", ts), 0);
    ck_assert_int_eq(dk_fs_stat(fs, "/big", &st), 0);
    ck_assert_uint_eq(st.mode & 07777, 0600);
    ck_assert_uint_eq(st.uid, 1000);
    ck_assert_int_eq(st.atime, 1000);
    ck_assert_uint_eq(st.atime_ns, 5);
    ck_assert_int_eq(dk_fs_mknod(fs, "/fifo", S_IFIFO | 0600, 0), 0);
    ck_assert_int_eq(dk_fs_lookup_path(fs, "/../big", 1, &st.ino), 0);
    ck_assert_int_eq(dk_fs_lookup_path(fs, "relative", 1, &st.ino), -EINVAL);
    struct dk_statvfs sv;
    ck_assert_int_eq(dk_fs_statfs(fs, &sv), 0);
    ck_assert_uint_eq(sv.bsize, 1024);
    ck_assert_int_eq(dk_fs_close(fs), 0);
    /* read-only handle: everything refuses with -EROFS */
    fs = dk_fs_open(g, "/dev/sda1", 0, &(struct dk_error){ 0 });
    ck_assert_ptr_nonnull(fs);
    ck_assert_int_eq(dk_fs_mkdir(fs, "/ro", 0755), -EROFS);
    ck_assert_int_eq(dk_fs_unlink(fs, "/big"), -EROFS);
    ck_assert_int_eq(dk_fs_stat(fs, "/big", &st), 0);
    ck_assert_int_eq(dk_fs_close(fs), 0);
    dk_guest_close(g);
    /* the result must be consistent for e2fsck (when installed) */
    ck_assert_int_eq(dk_flush(img), 0);
    if (access("/sbin/e2fsck", X_OK) == 0) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "/sbin/e2fsck -fn '%s?offset=%u' >/dev/null 2>&1",
                 path, PART_OFF);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

/* Write gathering and caching against a shadow copy: random block and
 * byte writes (in place, appending, overlapping, far apart), reads in
 * between, then the image itself must hold the shadow after close. */
START_TEST(io_write_gathering)
{
    enum { VIEW = 4 << 20, BS = 1024 };
    char name[64];
    io_channel ch;
    static uint8_t shadow[VIEW], buf[64 * BS], back[64 * BS];
    ck_assert_int_eq(dk_pread(img, shadow, VIEW, PART_OFF), 0);
    ck_assert_int_eq(dk_ext2io_register(img, PART_OFF, VIEW, true, name, sizeof(name)), 0);
    ck_assert_int_eq(dk_ext2_io_manager->open(name, IO_FLAG_RW, &ch), 0);
    ck_assert_int_eq(io_channel_set_blksize(ch, BS), 0);
    srand(42);
    for (int op = 0; op < 4000; op++) {
        int kind = rand() % 4;
        uint64_t blk = (uint64_t)(rand() % 8 == 0 ? rand() % (VIEW / BS - 64)
                                                  : 100 + rand() % 200);
        int n = 1 + rand() % (rand() % 10 == 0 ? 64 : 4);
        if (kind == 0) {                            /* block read */
            ck_assert_int_eq(io_channel_read_blk64(ch, blk, n, back), 0);
            ck_assert(memcmp(back, shadow + blk * BS, (size_t)n * BS) == 0);
        } else if (kind == 3) {                     /* byte write */
            uint64_t off = blk * BS + (uint64_t)(rand() % BS);
            int len = 1 + rand() % 300;
            for (int i = 0; i < len; i++)
                buf[i] = (uint8_t)rand();
            ck_assert_int_eq(io_channel_write_byte(ch, off, len, buf), 0);
            memcpy(shadow + off, buf, (size_t)len);
        } else {                                    /* block write */
            for (int i = 0; i < n * BS; i++)
                buf[i] = (uint8_t)(op + i);
            ck_assert_int_eq(io_channel_write_blk64(ch, blk, n, buf), 0);
            memcpy(shadow + blk * BS, buf, (size_t)n * BS);
        }
    }
    ck_assert_int_eq(io_channel_flush(ch), 0);
    ck_assert_int_eq(io_channel_close(ch), 0);
    dk_ext2io_unregister(name);
    static uint8_t disk[VIEW];
    ck_assert_int_eq(dk_pread(img, disk, VIEW, PART_OFF), 0);
    ck_assert(memcmp(disk, shadow, VIEW) == 0);
}
END_TEST

/* Several threads on one dk_fs (as the FUSE mounter does): each creates,
 * writes, reads back and renames its own files. */
struct worker { struct dk_fs *fs; int id; int bad; };

static void *work(void *arg)
{
    struct worker *w = arg;
    char p1[64], p2[64], buf[3000], back[3000];
    for (int i = 0; i < 40; i++) {
        snprintf(p1, sizeof(p1), "/t%d/f%d", w->id, i);
        snprintf(p2, sizeof(p2), "/t%d/g%d", w->id, i);
        memset(buf, 'a' + w->id, sizeof(buf));
        buf[0] = (char)i;
        struct dk_fsfile *f;
        if (dk_fsfile_open(w->fs, p1, DK_O_WRITE | DK_O_CREAT, 0644, &f) < 0) {
            w->bad++;
            continue;
        }
        if (dk_fsfile_pwrite(f, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) ||
            dk_fsfile_pread(f, back, sizeof(back), 0) != (ssize_t)sizeof(back) ||
            memcmp(buf, back, sizeof(buf)))
            w->bad++;
        dk_fsfile_close(f);
        if (dk_fs_rename(w->fs, p1, p2) < 0 || (i % 3 == 0 && dk_fs_unlink(w->fs, p2) < 0))
            w->bad++;
    }
    return NULL;
}

START_TEST(threads)
{
    struct dk_fs *fs = open_fs(DK_FS_RDWR);
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        char d[16];
        snprintf(d, sizeof(d), "/t%d", i);
        ck_assert_int_eq(dk_fs_mkdir(fs, d, 0755), 0);
        w[i] = (struct worker){ fs, i, 0 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].bad, 0);
    }
    int n = 0;
    ck_assert_int_eq(dk_fs_readdir(fs, "/t2", count_cb, &n), 0);
    ck_assert_int_eq(n, 26);                /* 40 renamed, 14 removed */
    ck_assert_int_eq(dk_fs_close(fs), 0);
    dk_guest_close(g);
    ck_assert_int_eq(dk_flush(img), 0);
    if (access("/sbin/e2fsck", X_OK) == 0) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "/sbin/e2fsck -fn '%s?offset=%u' >/dev/null 2>&1",
                 path, PART_OFF);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ext2io");
    TCase *t = tcase_create("core");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, io_manager_contract);
    tcase_add_test(t, io_write_gathering);
    tcase_add_test(t, fs_operations);
    tcase_add_test(t, threads);
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
