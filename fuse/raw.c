/* raw.c - diskkit-mount --raw: the whole virtual disk of an image as one
 * regular file MOUNTPOINT/disk.
 *
 * Reads and writes map onto dk_pread/dk_pwrite (the image handle is
 * thread-safe, so the multi-threaded FUSE loop calls it directly), fsync
 * and close (FUSE flush) onto dk_flush, so a closed file means the image's
 * metadata is on the host file. fallocate PUNCH_HOLE and ZERO_RANGE map
 * onto dk_pwrite_zeroes (with DK_ZERO_MAY_UNMAP for a hole: the range must
 * read as zeros afterwards, which dk_discard does not promise over a
 * backing file), so blkdiscard through a loop device frees clusters.
 *
 * The file has the virtual size; it can't grow or shrink: a size change
 * (truncate, O_TRUNC to a different size) fails with EPERM, as a disk of a
 * fixed size would, and writes at or past the end fail with ENOSPC (a
 * write that crosses the end is cut short there). Reads past the end return
 * 0 bytes. Mode 0644 (0444 with --ro), owner and times are the image file's.
 * chmod, chown and utimens fail with EPERM: there is nowhere to store them.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/stat.h>

#include "mount.h"

#define RAW_NAME "disk"
#define RAW_PATH "/" RAW_NAME

/* Largest request the kernel sends (libfuse3 caps it at 256 pages). */
#define RAW_MAX_IO (1u << 20)

static struct mount_state *state(void)
{
    return fuse_get_context()->private_data;
}

static void *raw_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    conn->max_write = RAW_MAX_IO;
    conn->max_readahead = RAW_MAX_IO;
    /* The file changes only through us: keep the page cache across opens. */
    cfg->kernel_cache = 1;
    cfg->entry_timeout = cfg->attr_timeout = 60.0;
    cfg->use_ino = 1;
    return state();
}

static int raw_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    struct mount_state *ms = state();
    struct stat host;
    if (stat(ms->image_path, &host) < 0)
        memset(&host, 0, sizeof(host));
    memset(st, 0, sizeof(*st));
    st->st_uid = host.st_uid;
    st->st_gid = host.st_gid;
    st->st_atim = host.st_atim;
    st->st_mtim = host.st_mtim;
    st->st_ctim = host.st_ctim;
    if (!strcmp(path, "/")) {
        st->st_ino = 1;
        st->st_mode = S_IFDIR | (ms->read_only ? 0555 : 0755);
        st->st_nlink = 2;
        return 0;
    }
    if (strcmp(path, RAW_PATH))
        return -ENOENT;
    uint64_t size = dk_image_size(ms->img);
    st->st_ino = 2;
    st->st_mode = S_IFREG | (ms->read_only ? 0444 : 0644);
    st->st_nlink = 1;
    st->st_size = (off_t)size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    return 0;
}

static int raw_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    if (strcmp(path, "/"))
        return -ENOTDIR;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    fill(buf, RAW_NAME, NULL, 0, 0);
    return 0;
}

static int raw_open(const char *path, struct fuse_file_info *fi)
{
    if (strcmp(path, RAW_PATH))
        return !strcmp(path, "/") ? -EISDIR : -ENOENT;
    if ((fi->flags & O_ACCMODE) != O_RDONLY && state()->read_only)
        return -EROFS;
    fi->keep_cache = 1;
    return 0;
}

static int raw_read(const char *path, char *buf, size_t len, off_t off,
                    struct fuse_file_info *fi)
{
    struct mount_state *ms = state();
    uint64_t size = dk_image_size(ms->img);
    if (off < 0)
        return -EINVAL;
    if ((uint64_t)off >= size)
        return 0;
    if (len > size - (uint64_t)off)
        len = (size_t)(size - (uint64_t)off);
    int r = dk_pread(ms->img, buf, len, (uint64_t)off);
    return r < 0 ? r : (int)len;
}

static int raw_write(const char *path, const char *buf, size_t len, off_t off,
                     struct fuse_file_info *fi)
{
    struct mount_state *ms = state();
    uint64_t size = dk_image_size(ms->img);
    if (ms->read_only)
        return -EROFS;
    if (off < 0)
        return -EINVAL;
    if ((uint64_t)off >= size)
        return len ? -ENOSPC : 0;
    if (len > size - (uint64_t)off)
        len = (size_t)(size - (uint64_t)off);
    int r = dk_pwrite(ms->img, buf, len, (uint64_t)off);
    return r < 0 ? r : (int)len;
}

static int raw_flush(const char *path, struct fuse_file_info *fi)
{
    return state()->read_only ? 0 : dk_flush(state()->img);
}

static int raw_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    return raw_flush(path, fi);
}

static int raw_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (strcmp(path, RAW_PATH))
        return -EISDIR;
    if (state()->read_only)
        return -EROFS;
    /* O_TRUNC of a disk that keeps its size is harmless; anything else
     * would resize the virtual disk, which `diskkit resize` does. */
    return (uint64_t)size == dk_image_size(state()->img) ? 0 : -EPERM;
}

static int raw_fallocate(const char *path, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
    struct mount_state *ms = state();
    uint64_t size = dk_image_size(ms->img);
    if (ms->read_only)
        return -EROFS;
    if (off < 0 || len <= 0)
        return -EINVAL;
    if ((uint64_t)off >= size || (uint64_t)len > size - (uint64_t)off)
        return (mode & FALLOC_FL_KEEP_SIZE) && (uint64_t)off < size ? -EINVAL : -EPERM;
    if (mode == 0)
        return 0;       /* every byte of the disk already exists */
    if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
        return dk_pwrite_zeroes(ms->img, (uint64_t)off, (uint64_t)len, DK_ZERO_MAY_UNMAP);
    if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE)
        return dk_pwrite_zeroes(ms->img, (uint64_t)off, (uint64_t)len, 0);
    return -EOPNOTSUPP;
}

static int raw_refuse_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    return state()->read_only ? -EROFS : -EPERM;
}

static int raw_refuse_chown(const char *path, uid_t uid, gid_t gid,
                            struct fuse_file_info *fi)
{
    return state()->read_only ? -EROFS : -EPERM;
}

static int raw_statfs(const char *path, struct statvfs *sv)
{
    uint64_t size = dk_image_size(state()->img);
    memset(sv, 0, sizeof(*sv));
    sv->f_bsize = sv->f_frsize = 4096;
    sv->f_blocks = (size + 4095) / 4096;
    sv->f_files = 2;
    sv->f_namemax = 255;
    return 0;
}

static int raw_refuse_utimens(const char *path, const struct timespec ts[2],
                              struct fuse_file_info *fi)
{
    return state()->read_only ? -EROFS : -EPERM;
}

static const struct fuse_operations raw_ops = {
    .init = raw_init,
    .getattr = raw_getattr,
    .readdir = raw_readdir,
    .open = raw_open,
    .read = raw_read,
    .write = raw_write,
    .flush = raw_flush,
    .fsync = raw_fsync,
    .truncate = raw_truncate,
    .fallocate = raw_fallocate,
    .chmod = raw_refuse_chmod,
    .chown = raw_refuse_chown,
    .utimens = raw_refuse_utimens,
    .statfs = raw_statfs,
};

const struct fuse_operations *raw_operations(void)
{
    return &raw_ops;
}
