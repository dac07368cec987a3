/* file.c - host file I/O under the drivers: full reads and writes, sparse
 * walks (SEEK_DATA/SEEK_HOLE), zeroing by punching holes, preallocation.
 * Works on regular files and block devices.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"

int dk_file_open(struct dk_file **out, const char *path, bool writable, struct dk_error *err)
{
    int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return dk_error_set(err, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return dk_error_set(err, e, "%s: %s", path, strerror(-e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return dk_error_set(err, -EISDIR, "%s: is a directory", path);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        close(fd);
        return dk_error_set(err, -EINVAL, "%s: not a regular file or block device", path);
    }
    struct dk_file *f = calloc(1, sizeof(*f));
    if (!f || !(f->path = strdup(path))) {
        free(f);
        close(fd);
        return dk_error_set(err, -ENOMEM, "out of memory");
    }
    f->fd = fd;
    f->read_only = !writable;
    f->is_blockdev = S_ISBLK(st.st_mode);
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    *out = f;
    return 0;
}

void dk_file_close(struct dk_file *f)
{
    if (!f)
        return;
    close(f->fd);
    free(f->path);
    free(f);
}

static int file_pread(struct dk_file *f, void *buf, size_t len, uint64_t off, bool eof0)
{
    uint8_t *p = buf;
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EINVAL;
    while (len) {
        ssize_t n = pread(f->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) {
            if (!eof0)
                return -EIO;
            memset(p, 0, len);
            return 0;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int dk_file_pread(struct dk_file *f, void *buf, size_t len, uint64_t off)
{
    return file_pread(f, buf, len, off, false);
}

int dk_file_pread_eof0(struct dk_file *f, void *buf, size_t len, uint64_t off)
{
    return file_pread(f, buf, len, off, true);
}

int dk_file_pwrite(struct dk_file *f, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    if (f->read_only)
        return -EROFS;
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EFBIG;
    while (len) {
        ssize_t n = pwrite(f->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int dk_file_size(struct dk_file *f, uint64_t *size)
{
    if (f->is_blockdev) {
        uint64_t s;
        if (ioctl(f->fd, BLKGETSIZE64, &s) < 0)
            return -errno;
        *size = s;
        return 0;
    }
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int dk_file_allocated(struct dk_file *f, uint64_t *bytes)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0)
        return -errno;
    *bytes = f->is_blockdev ? 0 : (uint64_t)st.st_blocks * 512;
    return 0;
}

int dk_file_truncate(struct dk_file *f, uint64_t size)
{
    if (f->read_only)
        return -EROFS;
    if (f->is_blockdev) {
        uint64_t cur;
        int r = dk_file_size(f, &cur);
        return r < 0 ? r : size <= cur ? 0 : -ENOSPC;
    }
    if (size > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (ftruncate(f->fd, (off_t)size) < 0)
        return -errno;
    return 0;
}

int dk_file_flush(struct dk_file *f)
{
    if (f->read_only)
        return 0;
    if (fdatasync(f->fd) < 0 && errno != EINVAL)
        return -errno;
    return 0;
}

/* Writes zeros in 1 MiB pieces: the fallback when punching is refused. */
static int write_zeros(struct dk_file *f, uint64_t off, uint64_t len)
{
    static const size_t chunk = 1 << 20;
    void *z = calloc(1, chunk);
    if (!z)
        return -ENOMEM;
    int r = 0;
    while (len && r == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        r = dk_file_pwrite(f, z, n, off);
        off += n;
        len -= n;
    }
    free(z);
    return r;
}

int dk_file_zero(struct dk_file *f, uint64_t off, uint64_t len, bool may_unmap)
{
    if (f->read_only)
        return -EROFS;
    if (!len)
        return 0;
    if (f->is_blockdev) {
        uint64_t range[2] = { off, len };
        if (ioctl(f->fd, BLKZEROOUT, range) == 0)
            return 0;
        return write_zeros(f, off, len);
    }
    int mode = may_unmap ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) : FALLOC_FL_ZERO_RANGE;
    uint64_t size;
    int r = dk_file_size(f, &size);
    if (r < 0)
        return r;
    if (off >= size && may_unmap)
        return 0;               /* past EOF reads as zero already */
    if (fallocate(f->fd, mode, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
        return -errno;
    return write_zeros(f, off, len);
}

int dk_file_fallocate(struct dk_file *f, uint64_t off, uint64_t len)
{
    if (f->read_only)
        return -EROFS;
    int r = posix_fallocate(f->fd, (off_t)off, (off_t)len);
    if (r == EOPNOTSUPP || r == EINVAL)
        return dk_file_prealloc_full(f, off, len);
    return -r;
}

int dk_file_prealloc_full(struct dk_file *f, uint64_t off, uint64_t len)
{
    return write_zeros(f, off, len);
}

int dk_file_extent(struct dk_file *f, uint64_t off, uint64_t len, bool *data, uint64_t *run)
{
    uint64_t size;
    int r = dk_file_size(f, &size);
    if (r < 0)
        return r;
    if (off >= size) {           /* past EOF: a hole that reads as zeros */
        *data = false;
        *run = len;
        return 0;
    }
    if (len > size - off)
        len = size - off;
    if (f->is_blockdev) {
        *data = true;
        *run = len;
        return 0;
    }
    off_t d = lseek(f->fd, (off_t)off, SEEK_DATA);
    if (d < 0) {
        if (errno == ENXIO) {   /* only a hole up to EOF */
            *data = false;
            *run = len;
            return 0;
        }
        *data = true;           /* no SEEK_DATA support: all data */
        *run = len;
        return 0;
    }
    if ((uint64_t)d > off) {
        *data = false;
        *run = DK_MIN((uint64_t)d - off, len);
        return 0;
    }
    off_t h = lseek(f->fd, (off_t)off, SEEK_HOLE);
    *data = true;
    *run = (h < 0 || (uint64_t)h <= off) ? len : DK_MIN((uint64_t)h - off, len);
    return 0;
}

int dk_file_extent_clip(struct dk_file *f, struct dk_extent *ext)
{
    bool data;
    uint64_t run;
    int r = dk_file_extent(f, ext->host_offset, ext->length, &data, &run);
    if (r < 0)
        return r;
    if (run && run < ext->length)
        ext->length = run;
    if (!data)
        ext->flags |= DK_BS_ZERO;
    return 0;
}
