/* guestattr.c - inode attribute changes and rename on ext2/3/4:
 * chmod, chown, utimens, truncate and rename(2) semantics.
 *
 * rename keeps the invariants of guestmod.c: the moved inode is linked
 * under the new name before the old entry goes, a replaced target is
 * released like unlink/rmdir, and a moved directory gets its ".." entry
 * and both parents' link counts fixed.
 *
 * Known gaps: RENAME_EXCHANGE/NOREPLACE flags are not offered.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "guest.h"

static int attr_locked(struct dk_fs *fs, const char *path, bool follow, int what,
                       uint32_t a, uint32_t b, const struct timespec *ts)
{
    ext2_ino_t ino;
    struct ext2_inode_large in;
    int r = dk_fs_check_rw(fs);
    if (r == 0)
        r = dk_fs_namei(fs, path, follow, &ino);
    if (r == 0)
        r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    if (what == 0) {
        in.i_mode = (__u16)((in.i_mode & LINUX_S_IFMT) | (a & 07777));
    } else if (what == 1) {
        if (a != UINT32_MAX) {
            in.i_uid = (__u16)a;
            ext2fs_set_i_uid_high(in, a >> 16);
        }
        if (b != UINT32_MAX) {
            in.i_gid = (__u16)b;
            ext2fs_set_i_gid_high(in, b >> 16);
        }
    } else {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        for (int i = 0; i < 2; i++) {
            const struct timespec *t = ts ? &ts[i] : &now;
            if (t->tv_nsec == UTIME_OMIT)
                continue;
            if (t->tv_nsec == UTIME_NOW)
                t = &now;
            if (t->tv_nsec < 0 || t->tv_nsec >= 1000000000L)
                return dk_fs_err(fs, -EINVAL, "%s: invalid time", path);
            dk_fs_set_times(&in, i == 0 ? DK_TOUCH_A : DK_TOUCH_M, t);
        }
    }
    dk_fs_touch(fs, &in, DK_TOUCH_C);
    return dk_fs_write_inode(fs, ino, &in);
}

int dk_fs_chmod(struct dk_fs *fs, const char *path, uint32_t mode)
{
    return DK_FS_LOCKED(fs, attr_locked(fs, path, true, 0, mode, 0, NULL));
}

int dk_fs_chown(struct dk_fs *fs, const char *path, uint32_t uid, uint32_t gid)
{
    return DK_FS_LOCKED(fs, attr_locked(fs, path, false, 1, uid, gid, NULL));
}

int dk_fs_utimens(struct dk_fs *fs, const char *path, const struct timespec ts[2])
{
    return DK_FS_LOCKED(fs, attr_locked(fs, path, false, 2, 0, 0, ts));
}

int dk_fs_truncate_ino(struct dk_fs *fs, ext2_ino_t ino, uint64_t size, const char *what)
{
    ext2_file_t f;
    int r = dk_fs_check_rw(fs);
    if (r < 0)
        return r;
    errcode_t e = ext2fs_file_open(fs->e2, ino, EXT2_FILE_WRITE, &f);
    if (e)
        return dk_fs_e2err(fs, e, "truncate", what);
    e = ext2fs_file_set_size2(f, size);
    errcode_t e2 = ext2fs_file_close(f);
    if (e || e2)
        return dk_fs_e2err(fs, e ? e : e2, "truncate", what);
    return dk_fs_touch_ino(fs, ino, DK_TOUCH_M | DK_TOUCH_C);
}

static int truncate_locked(struct dk_fs *fs, const char *path, uint64_t size)
{
    ext2_ino_t ino;
    struct ext2_inode_large in;
    int r = dk_fs_namei(fs, path, true, &ino);
    if (r == 0)
        r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    if (LINUX_S_ISDIR(in.i_mode))
        return dk_fs_err(fs, -EISDIR, "%s: Is a directory", path);
    if (!LINUX_S_ISREG(in.i_mode))
        return dk_fs_err(fs, -EINVAL, "%s: not a regular file", path);
    return dk_fs_truncate_ino(fs, ino, size, path);
}

int dk_fs_truncate(struct dk_fs *fs, const char *path, uint64_t size)
{
    return DK_FS_LOCKED(fs, truncate_locked(fs, path, size));
}

/* ---------------------------------------------------------------- rename */

/* Is ANC an ancestor of (or equal to) directory INO? Walks ".." up to the
 * root, at most a bounded number of steps (a loop means corruption). */
static int is_ancestor(struct dk_fs *fs, ext2_ino_t anc, ext2_ino_t ino, bool *res)
{
    for (int depth = 0; depth < 4096; depth++) {
        if (ino == anc) {
            *res = true;
            return 0;
        }
        if (ino == EXT2_ROOT_INO) {
            *res = false;
            return 0;
        }
        ext2_ino_t up;
        errcode_t e = ext2fs_lookup(fs->e2, ino, "..", 2, NULL, &up);
        if (e)
            return dk_fs_e2err(fs, e, "rename: walking up from", fs->device);
        ino = up;
    }
    return dk_fs_err(fs, -EIO, "%s: directory tree too deep or looping", fs->device);
}

struct dotdot { ext2_ino_t to; };

static int dotdot_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset,
                     int blocksize, char *buf, void *priv)
{
    if (entry != DIRENT_DOT_DOT_FILE)
        return 0;
    de->inode = ((struct dotdot *)priv)->to;
    return DIRENT_CHANGED | DIRENT_ABORT;
}

/* Removes an existing target TINO at DIR/NAME that SRC (mode SMODE) will
 * replace, with rename(2)'s type rules. */
static int replace_target(struct dk_fs *fs, ext2_ino_t dir, const char *name, ext2_ino_t tino,
                          uint32_t smode, const char *to)
{
    struct ext2_inode_large tin;
    int r = dk_fs_read_inode(fs, tino, &tin);
    if (r < 0)
        return r;
    if (LINUX_S_ISDIR(smode) && !LINUX_S_ISDIR(tin.i_mode))
        return dk_fs_err(fs, -ENOTDIR, "%s: Not a directory", to);
    if (!LINUX_S_ISDIR(smode) && LINUX_S_ISDIR(tin.i_mode))
        return dk_fs_err(fs, -EISDIR, "%s: Is a directory", to);
    if (LINUX_S_ISDIR(tin.i_mode) && (r = dk_fs_dir_is_empty(fs, tino, to)) < 0)
        return r;
    return dk_fs_remove_entry(fs, dir, name, tino, &tin);
}

static int rename_locked(struct dk_fs *fs, const char *from, const char *to)
{
    ext2_ino_t sdir, ddir, ino, tino;
    char sname[EXT2_NAME_LEN + 1], dname[EXT2_NAME_LEN + 1];
    struct ext2_inode_large in;
    int r = dk_fs_check_rw(fs);
    if (r == 0)
        r = dk_fs_parent(fs, from, &sdir, sname);
    if (r == 0)
        r = dk_fs_parent(fs, to, &ddir, dname);
    if (r == 0) {
        errcode_t e = ext2fs_lookup(fs->e2, sdir, sname, (int)strlen(sname), NULL, &ino);
        r = e ? dk_fs_e2err(fs, e, NULL, from) : 0;
    }
    if (r == 0)
        r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    bool isdir = LINUX_S_ISDIR(in.i_mode), under = false;
    if (isdir && (r = is_ancestor(fs, ino, ddir, &under)) < 0)
        return r;
    if (under)
        return dk_fs_err(fs, -EINVAL, "%s: cannot move a directory into itself", to);
    errcode_t e = ext2fs_lookup(fs->e2, ddir, dname, (int)strlen(dname), NULL, &tino);
    if (e == 0 && tino == ino)
        return 0;
    if (e == 0 && (r = replace_target(fs, ddir, dname, tino, in.i_mode, to)) < 0)
        return r;
    if (e && e != EXT2_ET_FILE_NOT_FOUND)
        return dk_fs_e2err(fs, e, NULL, to);
    if ((r = dk_fs_link_entry(fs, ddir, dname, ino, in.i_mode)) < 0)
        return r;
    e = ext2fs_unlink(fs->e2, sdir, sname, ino, 0);
    if (e)
        return dk_fs_e2err(fs, e, "rename: removing", from);
    if (isdir && sdir != ddir) {
        struct dotdot dd = { ddir };
        e = ext2fs_dir_iterate2(fs->e2, ino, 0, NULL,
                                dotdot_cb, &dd);
        if (e)
            return dk_fs_e2err(fs, e, "rename: updating .. of", to);
        if ((r = dk_fs_adjust_links(fs, sdir, -1, DK_TOUCH_M | DK_TOUCH_C)) < 0 ||
            (r = dk_fs_adjust_links(fs, ddir, +1, DK_TOUCH_M | DK_TOUCH_C)) < 0)
            return r;
    } else {
        if ((r = dk_fs_touch_ino(fs, sdir, DK_TOUCH_M | DK_TOUCH_C)) < 0 ||
            (r = dk_fs_touch_ino(fs, ddir, DK_TOUCH_M | DK_TOUCH_C)) < 0)
            return r;
    }
    return dk_fs_touch_ino(fs, ino, DK_TOUCH_C);
}

int dk_fs_rename(struct dk_fs *fs, const char *from, const char *to)
{
    return DK_FS_LOCKED(fs, rename_locked(fs, from, to));
}
