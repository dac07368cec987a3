/* fs.c - diskkit-mount filesystem mode: the guest's ext2/3/4 filesystem,
 * each FUSE callback mapped onto one dk_fs_* / dk_fsfile_* call of
 * include/diskkit.h ("guest filesystems").
 *
 * Invariants:
 *  1. Every dk_fs call is serialised by the guest layer's per-fs mutex, so
 *     the multi-threaded FUSE loop calls it directly. Only "set owner, then
 *     create" spans two calls; owner_lock keeps those pairs together.
 *  2. When a namespace or attribute change returns, it is in the image
 *     file (dk_fs_sync), and so are a file's data and size when close()
 *     of a descriptor that wrote returns (FUSE flush). That is what makes
 *     the image consistent as soon as `fusermount3 -u` returns, although
 *     the mounter exits (releasing the image lock) a moment later.
 *  3. Ownership and modes are shown as stored in the guest; new files get
 *     the calling process's uid/gid. The kernel checks permissions only
 *     with -o allow_other (main.c then adds default_permissions).
 *  4. Unlinking an open file is handled by libfuse's hidden-file rename
 *     (hard_remove off), so an inode is never freed while a dk_fsfile
 *     still points at it.
 *  5. Extended attributes (user., trusted., security., POSIX ACLs) are
 *     read and written as stored in the guest (lib/guestxattr.c).
 * Known gaps: rename with RENAME_EXCHANGE is not supported (EINVAL);
 * RENAME_NOREPLACE is a check then a rename.
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include "mount.h"

/* Largest request the kernel sends (libfuse3 caps it at 256 pages). */
#define FS_MAX_IO (1u << 20)

/* One open file. */
struct open_file {
    struct dk_fsfile *f;
    bool written;           /* wrote since the last flush */
};

static pthread_mutex_t owner_lock = PTHREAD_MUTEX_INITIALIZER;

static struct mount_state *state(void)
{
    return fuse_get_context()->private_data;
}

static struct dk_fs *fs(void)
{
    return state()->fs;
}

static struct open_file *ofile(const struct fuse_file_info *fi)
{
    return (struct open_file *)(uintptr_t)fi->fh;
}

/* Passes R through, logging failures that are not ordinary answers. */
static int ret(int r)
{
    if (r == -EIO || r == -EUCLEAN || r == -ENOMEM || r == -ENOSPC)
        syslog(LOG_WARNING, "%s", dk_fs_errmsg(fs()));
    return r;
}

/* After a change to the namespace or attributes: write it back (inv. 2). */
static int changed(int r)
{
    if (r < 0)
        return ret(r);
    return ret(dk_fs_sync(fs()));
}

static void to_stat(const struct dk_stat *d, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = d->ino;
    st->st_mode = d->mode;
    st->st_nlink = d->nlink;
    st->st_uid = d->uid;
    st->st_gid = d->gid;
    st->st_size = (off_t)d->size;
    st->st_blocks = (blkcnt_t)d->blocks;
    st->st_blksize = d->blksize;
    st->st_rdev = d->rdev;
    st->st_atim.tv_sec = d->atime;
    st->st_atim.tv_nsec = d->atime_ns;
    st->st_mtim.tv_sec = d->mtime;
    st->st_mtim.tv_nsec = d->mtime_ns;
    st->st_ctim.tv_sec = d->ctime;
    st->st_ctim.tv_nsec = d->ctime_ns;
}

/* ------------------------------------------------------------ reading */

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    conn->max_write = FS_MAX_IO;
    conn->max_readahead = FS_MAX_IO;
    cfg->use_ino = 1;
    /* Files change only through this mount: keep cached pages on open. */
    cfg->kernel_cache = 1;
    return state();
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    struct dk_stat d;
    int r = fi && fi->fh ? dk_fsfile_fstat(ofile(fi)->f, &d) : dk_fs_lstat(fs(), path, &d);
    if (r < 0)
        return ret(r);
    to_stat(&d, st);
    return 0;
}

static int fs_readlink(const char *path, char *buf, size_t len)
{
    ssize_t r = dk_fs_readlink(fs(), path, buf, len);
    return r < 0 ? ret((int)r) : 0;
}

struct fill_ctx {
    void *buf;
    fuse_fill_dir_t fill;
};

static int fill_one(void *opaque, const char *name, uint64_t ino, unsigned type)
{
    struct fill_ctx *c = opaque;
    struct stat st = { .st_ino = ino, .st_mode = DTTOIF(type) };
    return c->fill(c->buf, name, &st, 0, 0) ? -ENOMEM : 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    struct fill_ctx c = { buf, fill };
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    return ret(dk_fs_readdir(fs(), path, fill_one, &c));
}

static int fs_statfs(const char *path, struct statvfs *sv)
{
    struct dk_statvfs d;
    int r = dk_fs_statfs(fs(), &d);
    if (r < 0)
        return ret(r);
    memset(sv, 0, sizeof(*sv));
    sv->f_bsize = sv->f_frsize = d.bsize;
    sv->f_blocks = d.blocks;
    sv->f_bfree = d.bfree;
    sv->f_bavail = d.bavail;
    sv->f_files = d.files;
    sv->f_ffree = sv->f_favail = d.ffree;
    sv->f_namemax = d.namemax;
    return 0;
}

/* -------------------------------------------------------------- files */

/* Opens (and with DK_O_CREAT creates) PATH into FI. */
static int open_common(const char *path, unsigned flags, mode_t mode,
                       struct fuse_file_info *fi)
{
    struct open_file *of = calloc(1, sizeof(*of));
    if (!of)
        return -ENOMEM;
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (flags & DK_O_CREAT))
        flags |= DK_O_WRITE;
    if (fi->flags & O_TRUNC)
        flags |= DK_O_TRUNC;
    if (flags & DK_O_WRITE && state()->read_only) {
        free(of);
        return -EROFS;
    }
    int r = dk_fsfile_open(fs(), path, flags, mode & 07777, &of->f);
    if (r < 0) {
        free(of);
        return ret(r);
    }
    of->written = (flags & (DK_O_CREAT | DK_O_TRUNC)) != 0;
    fi->fh = (uint64_t)(uintptr_t)of;
    return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
    return open_common(path, 0, 0, fi);
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    struct fuse_context *ctx = fuse_get_context();
    unsigned flags = DK_O_CREAT | (fi->flags & O_EXCL ? DK_O_EXCL : 0);
    pthread_mutex_lock(&owner_lock);
    dk_fs_set_owner(fs(), ctx->uid, ctx->gid);
    int r = open_common(path, flags, mode, fi);
    pthread_mutex_unlock(&owner_lock);
    /* The new name is written back at once (inv. 2). */
    return r < 0 ? r : changed(0);
}

static int fs_read(const char *path, char *buf, size_t len, off_t off,
                   struct fuse_file_info *fi)
{
    size_t done = 0;
    if (off < 0)
        return -EINVAL;
    /* The kernel expects a full count except at the end of the file. */
    while (done < len) {
        ssize_t n = dk_fsfile_pread(ofile(fi)->f, buf + done, len - done,
                                    (uint64_t)off + done);
        if (n < 0)
            return ret((int)n);
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (int)done;
}

static int fs_write(const char *path, const char *buf, size_t len, off_t off,
                    struct fuse_file_info *fi)
{
    if (off < 0)
        return -EINVAL;
    ofile(fi)->written = true;
    ssize_t n = dk_fsfile_pwrite(ofile(fi)->f, buf, len, (uint64_t)off);
    return n < 0 ? ret((int)n) : (int)n;
}

/* Writes back what this descriptor changed: the file, then the fs. */
static int sync_file(struct open_file *of)
{
    if (!of->written)
        return 0;
    of->written = false;
    int r = dk_fsfile_fsync(of->f);
    if (r == 0)
        r = dk_fs_sync(fs());
    if (r < 0)
        of->written = true;
    return ret(r);
}

static int fs_flush(const char *path, struct fuse_file_info *fi)
{
    return sync_file(ofile(fi));
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    ofile(fi)->written = true;
    return sync_file(ofile(fi));
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
    struct open_file *of = ofile(fi);
    int r = sync_file(of);
    int c = dk_fsfile_close(of->f);
    free(of);
    return r < 0 ? r : ret(c);
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (size < 0)
        return -EINVAL;
    if (fi && fi->fh) {
        ofile(fi)->written = true;
        return changed(dk_fsfile_truncate(ofile(fi)->f, (uint64_t)size));
    }
    return changed(dk_fs_truncate(fs(), path, (uint64_t)size));
}

/* ------------------------------------------------------------ changes */

static int fs_mkdir(const char *path, mode_t mode)
{
    struct fuse_context *ctx = fuse_get_context();
    pthread_mutex_lock(&owner_lock);
    dk_fs_set_owner(fs(), ctx->uid, ctx->gid);
    int r = dk_fs_mkdir(fs(), path, mode & 07777);
    pthread_mutex_unlock(&owner_lock);
    return changed(r);
}

static int fs_mknod(const char *path, mode_t mode, dev_t rdev)
{
    struct fuse_context *ctx = fuse_get_context();
    pthread_mutex_lock(&owner_lock);
    dk_fs_set_owner(fs(), ctx->uid, ctx->gid);
    int r = dk_fs_mknod(fs(), path, mode, rdev);
    pthread_mutex_unlock(&owner_lock);
    return changed(r);
}

static int fs_symlink(const char *target, const char *path)
{
    struct fuse_context *ctx = fuse_get_context();
    pthread_mutex_lock(&owner_lock);
    dk_fs_set_owner(fs(), ctx->uid, ctx->gid);
    int r = dk_fs_symlink(fs(), target, path);
    pthread_mutex_unlock(&owner_lock);
    return changed(r);
}

static int fs_unlink(const char *path)
{
    return changed(dk_fs_unlink(fs(), path));
}

static int fs_rmdir(const char *path)
{
    return changed(dk_fs_rmdir(fs(), path));
}

static int fs_rename(const char *from, const char *to, unsigned int flags)
{
    if (flags & ~RENAME_NOREPLACE)
        return -EINVAL;
    if (flags & RENAME_NOREPLACE) {
        struct dk_stat d;
        int r = dk_fs_lstat(fs(), to, &d);
        if (r == 0)
            return -EEXIST;
        if (r != -ENOENT)
            return ret(r);
    }
    return changed(dk_fs_rename(fs(), from, to));
}

static int fs_link(const char *from, const char *to)
{
    return changed(dk_fs_link(fs(), from, to));
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    return changed(dk_fs_chmod(fs(), path, mode & 07777));
}

static int fs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    return changed(dk_fs_chown(fs(), path, (uint32_t)uid, (uint32_t)gid));
}

static int fs_utimens(const char *path, const struct timespec ts[2],
                      struct fuse_file_info *fi)
{
    return changed(dk_fs_utimens(fs(), path, ts));
}

static int fs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    return ret(dk_fs_sync(fs()));
}

/* Extended attributes: FUSE hands over the inode's own path (the kernel
 * already followed symlinks for getxattr, not for lgetxattr), so nothing
 * is followed here. ERANGE and ENODATA are ordinary answers. */
static int xattr_ret(ssize_t r)
{
    if (r < 0)
        return ret((int)r);
    return r > INT32_MAX ? -E2BIG : (int)r;
}

static int fs_getxattr(const char *path, const char *name, char *value, size_t size)
{
    return xattr_ret(dk_fs_getxattr(fs(), path, 0, name, value, size));
}

static int fs_listxattr(const char *path, char *list, size_t size)
{
    return xattr_ret(dk_fs_listxattr(fs(), path, 0, list, size));
}

static int fs_setxattr(const char *path, const char *name, const char *value, size_t size,
                       int flags)
{
    return changed(dk_fs_setxattr(fs(), path, 0, name, value, size, (unsigned)flags));
}

static int fs_removexattr(const char *path, const char *name)
{
    return changed(dk_fs_removexattr(fs(), path, 0, name));
}

static const struct fuse_operations fs_ops = {
    .init = fs_init,
    .getattr = fs_getattr,
    .readlink = fs_readlink,
    .readdir = fs_readdir,
    .statfs = fs_statfs,
    .open = fs_open,
    .create = fs_create,
    .read = fs_read,
    .write = fs_write,
    .flush = fs_flush,
    .fsync = fs_fsync,
    .release = fs_release,
    .truncate = fs_truncate,
    .mkdir = fs_mkdir,
    .mknod = fs_mknod,
    .symlink = fs_symlink,
    .unlink = fs_unlink,
    .rmdir = fs_rmdir,
    .rename = fs_rename,
    .link = fs_link,
    .chmod = fs_chmod,
    .chown = fs_chown,
    .utimens = fs_utimens,
    .fsyncdir = fs_fsyncdir,
    .getxattr = fs_getxattr,
    .listxattr = fs_listxattr,
    .setxattr = fs_setxattr,
    .removexattr = fs_removexattr,
};

const struct fuse_operations *fs_operations(void)
{
    return &fs_ops;
}

/* ------------------------------------------------------------ set-up */

int fs_setup(struct mount_state *st, const char *device)
{
    struct dk_error err = { 0 };
    st->guest = dk_guest_open(&st->img, 1, 0, &err);
    if (!st->guest) {
        mount_error("%s", err.msg);
        return -1;
    }
    for (size_t i = 0; i < dk_guest_nb_warnings(st->guest); i++)
        mount_error("warning: %s", dk_guest_warning(st->guest, i));
    st->fs = dk_fs_open(st->guest, device, st->read_only ? 0 : DK_FS_RDWR, &err);
    if (!st->fs) {
        mount_error("%s", err.msg);
        dk_guest_close(st->guest);
        st->guest = NULL;
        return -1;
    }
    return 0;
}

int fs_teardown(struct mount_state *st)
{
    int r = 0;
    if (st->fs) {
        r = dk_fs_close(st->fs);
        st->fs = NULL;
    }
    if (st->guest)
        dk_guest_close(st->guest);
    st->guest = NULL;
    return r;
}
