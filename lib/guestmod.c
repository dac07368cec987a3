/* guestmod.c - changing an ext2/3/4 filesystem: create, mkdir, rmdir,
 * unlink, rename, symlink, link, mknod, chmod, chown, utimens, truncate.
 *
 * Invariants after every successful call (what e2fsck -f checks):
 *  1. Link counts match directory entries (dirs: 2 + subdirectories, kept
 *     at 1 when dir_nlink overflowed it).
 *  2. An inode whose last link goes away has its blocks and xattr block
 *     released, i_dtime set, and is returned to the bitmap with the group
 *     and superblock free counts updated (ext2fs_inode_alloc_stats2).
 *  3. Parent directories get mtime/ctime, changed inodes ctime.
 *  4. New inodes have extents (when the feature is on), the filesystem's
 *     extra inode size and nanosecond timestamps.
 * Calls run with fs->lock held for their whole duration; libext2fs writes
 * the bitmaps and counts back at dk_fs_sync/dk_fs_close.
 *
 * Known gaps: no ACL/xattr inheritance; no orphan list (a crash between
 * steps leaves work for e2fsck, as with any non-journalled writer); the
 * journal is not used for writes.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "guest.h"

#define LOCKED DK_FS_LOCKED

int dk_fs_check_rw(struct dk_fs *fs)
{
    if (!fs->rdwr)
        return dk_fs_err(fs, -EROFS, "%s: the filesystem is open read-only", fs->device);
    return 0;
}

static void set_time(struct ext2_inode_large *in, __u32 *lo, __u32 *extra,
                     size_t extra_end, const struct timespec *ts)
{
    *lo = (__u32)ts->tv_sec;
    if (EXT2_GOOD_OLD_INODE_SIZE + (size_t)in->i_extra_isize >= extra_end)
        *extra = (__u32)(((ts->tv_sec - (int32_t)*lo) >> 32) & EXT4_EPOCH_MASK) |
                 (__u32)ts->tv_nsec << EXT4_EPOCH_BITS;
}
#define XEND(f) (offsetof(struct ext2_inode_large, f) + sizeof(((struct ext2_inode_large *)0)->f))

void dk_fs_set_times(struct ext2_inode_large *in, unsigned which, const struct timespec *ts)
{
    if (which & DK_TOUCH_A)
        set_time(in, &in->i_atime, &in->i_atime_extra, XEND(i_atime_extra), ts);
    if (which & DK_TOUCH_M)
        set_time(in, &in->i_mtime, &in->i_mtime_extra, XEND(i_mtime_extra), ts);
    if (which & DK_TOUCH_C)
        set_time(in, &in->i_ctime, &in->i_ctime_extra, XEND(i_ctime_extra), ts);
    if (which & DK_TOUCH_CR)
        set_time(in, &in->i_crtime, &in->i_crtime_extra, XEND(i_crtime_extra), ts);
}

void dk_fs_touch(struct dk_fs *fs, struct ext2_inode_large *in, unsigned which)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    dk_fs_set_times(in, which, &now);
}

/* Touches inode INO (read-modify-write). */
static int touch_ino(struct dk_fs *fs, ext2_ino_t ino, unsigned which)
{
    struct ext2_inode_large in;
    int r = dk_fs_read_inode(fs, ino, &in);
    if (r == 0) {
        dk_fs_touch(fs, &in, which);
        r = dk_fs_write_inode(fs, ino, &in);
    }
    return r;
}

static int adjust_links(struct dk_fs *fs, ext2_ino_t ino, int delta, unsigned touch)
{
    struct ext2_inode_large in;
    int r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    if (delta > 0 && in.i_links_count >= EXT2_LINK_MAX - 1) {
        if (!LINUX_S_ISDIR(in.i_mode))
            return dk_fs_err(fs, -EMLINK, "%s: too many links to inode %u", fs->device, ino);
        in.i_links_count = 1;           /* dir_nlink: 1 means "many" */
    } else if (delta > 0) {
        in.i_links_count = (__u16)(in.i_links_count + delta);
    } else if (in.i_links_count > 1 || !LINUX_S_ISDIR(in.i_mode)) {
        in.i_links_count = (__u16)(in.i_links_count > (unsigned)-delta ?
                                   in.i_links_count + delta : 0);
    }
    dk_fs_touch(fs, &in, touch);
    return dk_fs_write_inode(fs, ino, &in);
}

static int ftype(uint32_t mode)
{
    switch (mode & LINUX_S_IFMT) {
    case LINUX_S_IFREG: return EXT2_FT_REG_FILE;
    case LINUX_S_IFDIR: return EXT2_FT_DIR;
    case LINUX_S_IFCHR: return EXT2_FT_CHRDEV;
    case LINUX_S_IFBLK: return EXT2_FT_BLKDEV;
    case LINUX_S_IFIFO: return EXT2_FT_FIFO;
    case LINUX_S_IFSOCK: return EXT2_FT_SOCK;
    case LINUX_S_IFLNK: return EXT2_FT_SYMLINK;
    default: return EXT2_FT_UNKNOWN;
    }
}

/* Adds entry NAME -> INO to DIR, growing the directory when full. */
static errcode_t link_entry(struct dk_fs *fs, ext2_ino_t dir, const char *name,
                            ext2_ino_t ino, int ft)
{
    errcode_t e = ext2fs_link(fs->e2, dir, name, ino, ft);
    if (e == EXT2_ET_DIR_NO_SPACE) {
        e = ext2fs_expand_dir(fs->e2, dir);
        if (!e)
            e = ext2fs_link(fs->e2, dir, name, ino, ft);
    }
    return e;
}

/* Fails with -EEXIST when NAME exists in DIR. */
static int check_absent(struct dk_fs *fs, ext2_ino_t dir, const char *name, const char *path)
{
    ext2_ino_t ino;
    errcode_t e = ext2fs_lookup(fs->e2, dir, name, (int)strlen(name), NULL, &ino);
    if (e == 0)
        return dk_fs_err(fs, -EEXIST, "%s: File exists", path);
    if (e != EXT2_ET_FILE_NOT_FOUND)
        return dk_fs_e2err(fs, e, "looking up", path);
    return 0;
}

/* Sets the owner fields of a new inode. */
static void set_owner(struct ext2_inode_large *in, uint32_t uid, uint32_t gid)
{
    in->i_uid = (__u16)uid;
    ext2fs_set_i_uid_high(*in, uid >> 16);
    in->i_gid = (__u16)gid;
    ext2fs_set_i_gid_high(*in, gid >> 16);
}

int dk_fs_create_inode(struct dk_fs *fs, ext2_ino_t dir, const char *name, uint32_t mode,
                       uint64_t rdev, ext2_ino_t *out)
{
    ext2_ino_t ino;
    errcode_t e = ext2fs_new_inode(fs->e2, dir, (int)mode, NULL, &ino);
    if (e)
        return dk_fs_e2err(fs, e, "allocating an inode for", name);
    struct ext2_inode_large in;
    memset(&in, 0, sizeof(in));
    in.i_mode = (__u16)mode;
    in.i_links_count = 1;
    set_owner(&in, fs->uid, fs->gid);
    if (EXT2_INODE_SIZE(fs->e2->super) > EXT2_GOOD_OLD_INODE_SIZE)
        in.i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
    dk_fs_touch(fs, &in, DK_TOUCH_A | DK_TOUCH_M | DK_TOUCH_C | DK_TOUCH_CR);
    if (LINUX_S_ISCHR(mode) || LINUX_S_ISBLK(mode)) {
        unsigned ma = major(rdev), mi = minor(rdev);
        if (ma < 256 && mi < 256)
            in.i_block[0] = ma << 8 | mi;
        else
            in.i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
    } else if (LINUX_S_ISREG(mode) && ext2fs_has_feature_extents(fs->e2->super)) {
        ext2_extent_handle_t h;
        e = ext2fs_extent_open2(fs->e2, ino, (struct ext2_inode *)&in, &h);
        if (e)
            return dk_fs_e2err(fs, e, "initialising extents of", name);
        ext2fs_extent_free(h);
    }
    e = link_entry(fs, dir, name, ino, ftype(mode));
    if (e)
        return dk_fs_e2err(fs, e, "adding", name);
    ext2fs_inode_alloc_stats2(fs->e2, ino, +1, 0);
    e = ext2fs_write_new_inode(fs->e2, ino, (struct ext2_inode *)&in);
    if (e)
        return dk_fs_e2err(fs, e, "writing inode of", name);
    *out = ino;
    return touch_ino(fs, dir, DK_TOUCH_M | DK_TOUCH_C);
}

int dk_fs_release_inode(struct dk_fs *fs, ext2_ino_t ino, struct ext2_inode_large *in)
{
    errcode_t e = 0;
    if (ext2fs_inode_has_valid_blocks2(fs->e2, (struct ext2_inode *)in) ||
        (in->i_flags & EXT4_INLINE_DATA_FL))
        e = ext2fs_punch(fs->e2, ino, (struct ext2_inode *)in, NULL, 0, ~0ULL);
    if (!e && ext2fs_file_acl_block(fs->e2, (struct ext2_inode *)in))
        e = ext2fs_free_ext_attr(fs->e2, ino, in);
    if (e)
        return dk_fs_e2err(fs, e, "releasing inode of", fs->device);
    in->i_links_count = 0;
    in->i_dtime = (__u32)time(NULL);
    int r = dk_fs_write_inode(fs, ino, in);
    if (r == 0)
        ext2fs_inode_alloc_stats2(fs->e2, ino, -1, LINUX_S_ISDIR(in->i_mode));
    return r;
}

/* ---------------------------------------------------------------- create */

static int mknod_locked(struct dk_fs *fs, const char *path, uint32_t mode, uint64_t rdev)
{
    ext2_ino_t dir, ino;
    char name[EXT2_NAME_LEN + 1];
    int r = dk_fs_check_rw(fs);
    if (r == 0)
        r = dk_fs_parent(fs, path, &dir, name);
    if (r == 0)
        r = check_absent(fs, dir, name, path);
    if (r == 0)
        r = dk_fs_create_inode(fs, dir, name, mode, rdev, &ino);
    return r;
}

int dk_fs_mknod(struct dk_fs *fs, const char *path, uint32_t mode, uint64_t rdev)
{
    uint32_t t = mode & S_IFMT;
    if (t != S_IFIFO && t != S_IFSOCK && t != S_IFCHR && t != S_IFBLK && t != S_IFREG)
        return dk_fs_err(fs, -EINVAL, "%s: mknod: unsupported file type", path);
    return LOCKED(fs, mknod_locked(fs, path, mode & (S_IFMT | 07777), rdev));
}

static int mkdir_locked(struct dk_fs *fs, const char *path, uint32_t mode)
{
    ext2_ino_t dir, ino;
    char name[EXT2_NAME_LEN + 1];
    int r = dk_fs_check_rw(fs);
    if (r == 0)
        r = dk_fs_parent(fs, path, &dir, name);
    if (r == 0)
        r = check_absent(fs, dir, name, path);
    if (r < 0)
        return r;
    errcode_t e = ext2fs_mkdir(fs->e2, dir, 0, name);
    if (e == EXT2_ET_DIR_NO_SPACE) {
        e = ext2fs_expand_dir(fs->e2, dir);
        if (!e)
            e = ext2fs_mkdir(fs->e2, dir, 0, name);
    }
    if (e)
        return dk_fs_e2err(fs, e, "mkdir", path);
    e = ext2fs_lookup(fs->e2, dir, name, (int)strlen(name), NULL, &ino);
    if (e)
        return dk_fs_e2err(fs, e, "mkdir", path);
    struct ext2_inode_large in;
    r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    in.i_mode = (__u16)(LINUX_S_IFDIR | (mode & 07777));
    set_owner(&in, fs->uid, fs->gid);
    dk_fs_touch(fs, &in, DK_TOUCH_A | DK_TOUCH_M | DK_TOUCH_C | DK_TOUCH_CR);
    r = dk_fs_write_inode(fs, ino, &in);
    return r ? r : touch_ino(fs, dir, DK_TOUCH_M | DK_TOUCH_C);
}

int dk_fs_mkdir(struct dk_fs *fs, const char *path, uint32_t mode)
{
    return LOCKED(fs, mkdir_locked(fs, path, mode));
}

static int symlink_locked(struct dk_fs *fs, const char *target, const char *path)
{
    ext2_ino_t dir, ino;
    char name[EXT2_NAME_LEN + 1];
    size_t tlen = strlen(target);
    if (tlen == 0 || tlen >= fs->e2->blocksize || tlen >= 4096)
        return dk_fs_err(fs, -ENAMETOOLONG, "%s: symlink target too long", path);
    int r = dk_fs_check_rw(fs);
    if (r == 0)
        r = dk_fs_parent(fs, path, &dir, name);
    if (r == 0)
        r = check_absent(fs, dir, name, path);
    if (r < 0)
        return r;
    errcode_t e = ext2fs_symlink(fs->e2, dir, 0, name, target);
    if (e == EXT2_ET_DIR_NO_SPACE) {
        e = ext2fs_expand_dir(fs->e2, dir);
        if (!e)
            e = ext2fs_symlink(fs->e2, dir, 0, name, target);
    }
    if (!e)
        e = ext2fs_lookup(fs->e2, dir, name, (int)strlen(name), NULL, &ino);
    if (e)
        return dk_fs_e2err(fs, e, "symlink", path);
    struct ext2_inode_large in;
    r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    set_owner(&in, fs->uid, fs->gid);
    r = dk_fs_write_inode(fs, ino, &in);
    return r ? r : touch_ino(fs, dir, DK_TOUCH_M | DK_TOUCH_C);
}

int dk_fs_symlink(struct dk_fs *fs, const char *target, const char *linkpath)
{
    return LOCKED(fs, symlink_locked(fs, target, linkpath));
}

static int link_locked(struct dk_fs *fs, const char *existing, const char *path)
{
    ext2_ino_t dir, ino;
    char name[EXT2_NAME_LEN + 1];
    struct ext2_inode_large in;
    int r = dk_fs_check_rw(fs);
    if (r == 0)
        r = dk_fs_namei(fs, existing, false, &ino);
    if (r == 0)
        r = dk_fs_read_inode(fs, ino, &in);
    if (r == 0 && LINUX_S_ISDIR(in.i_mode))
        r = dk_fs_err(fs, -EPERM, "%s: cannot hard-link a directory", existing);
    if (r == 0)
        r = dk_fs_parent(fs, path, &dir, name);
    if (r == 0)
        r = check_absent(fs, dir, name, path);
    if (r < 0)
        return r;
    r = adjust_links(fs, ino, +1, DK_TOUCH_C);
    if (r < 0)
        return r;
    errcode_t e = link_entry(fs, dir, name, ino, ftype(in.i_mode));
    if (e) {
        adjust_links(fs, ino, -1, 0);
        return dk_fs_e2err(fs, e, "link", path);
    }
    return touch_ino(fs, dir, DK_TOUCH_M | DK_TOUCH_C);
}

int dk_fs_link(struct dk_fs *fs, const char *existing, const char *newpath)
{
    return LOCKED(fs, link_locked(fs, existing, newpath));
}

/* ---------------------------------------------------------------- remove */

static int empty_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset,
                    int blocksize, char *buf, void *priv)
{
    if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE || de->inode == 0)
        return 0;
    *(int *)priv = 1;
    return DIRENT_ABORT;
}

static int dir_is_empty(struct dk_fs *fs, ext2_ino_t ino, const char *path)
{
    int found = 0;
    errcode_t e = ext2fs_dir_iterate2(fs->e2, ino, 0, NULL,
                                      empty_cb, &found);
    if (e)
        return dk_fs_e2err(fs, e, "reading", path);
    return found ? dk_fs_err(fs, -ENOTEMPTY, "%s: Directory not empty", path) : 0;
}

/* Removes entry NAME (inode INO, already read into IN) from DIR and drops
 * one link (a directory's own "." link too), releasing the inode at 0. */
static int remove_entry(struct dk_fs *fs, ext2_ino_t dir, const char *name, ext2_ino_t ino,
                        struct ext2_inode_large *in)
{
    errcode_t e = ext2fs_unlink(fs->e2, dir, name, ino, 0);
    if (e)
        return dk_fs_e2err(fs, e, "removing", name);
    int r;
    if (LINUX_S_ISDIR(in->i_mode)) {
        r = adjust_links(fs, dir, -1, DK_TOUCH_M | DK_TOUCH_C);   /* its ".." */
        if (r == 0)
            r = dk_fs_release_inode(fs, ino, in);
        return r;
    }
    r = touch_ino(fs, dir, DK_TOUCH_M | DK_TOUCH_C);
    if (r < 0)
        return r;
    if (in->i_links_count > 1) {
        in->i_links_count--;
        dk_fs_touch(fs, in, DK_TOUCH_C);
        return dk_fs_write_inode(fs, ino, in);
    }
    return dk_fs_release_inode(fs, ino, in);
}

static int remove_locked(struct dk_fs *fs, const char *path, bool want_dir)
{
    ext2_ino_t dir, ino;
    char name[EXT2_NAME_LEN + 1];
    struct ext2_inode_large in;
    int r = dk_fs_check_rw(fs);
    if (r == 0)
        r = dk_fs_parent(fs, path, &dir, name);
    if (r == 0) {
        errcode_t e = ext2fs_lookup(fs->e2, dir, name, (int)strlen(name), NULL, &ino);
        r = e ? dk_fs_e2err(fs, e, NULL, path) : 0;
    }
    if (r == 0)
        r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    if (ino == EXT2_ROOT_INO)
        return dk_fs_err(fs, -EBUSY, "%s: cannot remove the root directory", path);
    if (want_dir && !LINUX_S_ISDIR(in.i_mode))
        return dk_fs_err(fs, -ENOTDIR, "%s: Not a directory", path);
    if (!want_dir && LINUX_S_ISDIR(in.i_mode))
        return dk_fs_err(fs, -EISDIR, "%s: Is a directory", path);
    if (want_dir && (r = dir_is_empty(fs, ino, path)) < 0)
        return r;
    return remove_entry(fs, dir, name, ino, &in);
}

int dk_fs_unlink(struct dk_fs *fs, const char *path)
{
    return LOCKED(fs, remove_locked(fs, path, false));
}

int dk_fs_rmdir(struct dk_fs *fs, const char *path)
{
    return LOCKED(fs, remove_locked(fs, path, true));
}

/* Exported wrappers for guestattr.c (rename). */
int dk_fs_remove_entry(struct dk_fs *fs, ext2_ino_t dir, const char *name, ext2_ino_t ino,
                       struct ext2_inode_large *in)
{
    return remove_entry(fs, dir, name, ino, in);
}

int dk_fs_adjust_links(struct dk_fs *fs, ext2_ino_t ino, int delta, unsigned touch)
{
    return adjust_links(fs, ino, delta, touch);
}

int dk_fs_touch_ino(struct dk_fs *fs, ext2_ino_t ino, unsigned which)
{
    return touch_ino(fs, ino, which);
}

int dk_fs_link_entry(struct dk_fs *fs, ext2_ino_t dir, const char *name, ext2_ino_t ino,
                     uint32_t mode)
{
    errcode_t e = link_entry(fs, dir, name, ino, ftype(mode));
    return e ? dk_fs_e2err(fs, e, "adding", name) : 0;
}

int dk_fs_dir_is_empty(struct dk_fs *fs, ext2_ino_t ino, const char *path)
{
    return dir_is_empty(fs, ino, path);
}
