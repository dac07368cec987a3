/* guestfile.c - open regular files of an ext2/3/4 dk_fs: pread, pwrite,
 * truncate, fstat, fsync.
 *
 * A dk_fsfile holds only the inode number. Each read or write opens a
 * libext2fs file on the inode for the duration of the call (under the
 * dk_fs lock) and closes it, which writes the inode back. This keeps
 * several handles on one inode coherent (libext2fs keeps a private inode
 * copy per ext2_file_t) at the cost of one inode read per call, which the
 * io channel's block cache absorbs.
 *
 * Large reads of extent-mapped files skip libext2fs's block-at-a-time file
 * reader: read_mapped() walks the extent tree and reads each physically
 * contiguous run with one channel request (holes and unwritten extents
 * read as zeros). Anything it does not handle (inline data, encrypted or
 * block-mapped inodes, odd offsets, a tree it does not understand) goes
 * through ext2fs_file_read as before.
 *
 * Known gaps: O_APPEND is left to the caller (pass the size as offset).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guest.h"
#include "util/util.h"

struct dk_fsfile {
    struct dk_fs *fs;
    ext2_ino_t ino;
    bool writable;
};

static int open_existing(struct dk_fs *fs, ext2_ino_t ino, unsigned flags, const char *what)
{
    struct ext2_inode_large in;
    int r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    if (LINUX_S_ISDIR(in.i_mode))
        return dk_fs_err(fs, -EISDIR, "%s: Is a directory", what);
    if (!LINUX_S_ISREG(in.i_mode))
        return dk_fs_err(fs, -EINVAL, "%s: not a regular file", what);
    if ((flags & (DK_O_WRITE | DK_O_TRUNC)) && (r = dk_fs_check_rw(fs)) < 0)
        return r;
    if ((flags & DK_O_TRUNC) && EXT2_I_SIZE(&in) != 0)
        return dk_fs_truncate_ino(fs, ino, 0, what);
    return 0;
}

static int open_locked(struct dk_fs *fs, const char *path, unsigned flags, uint32_t mode,
                       ext2_ino_t *ino)
{
    int r = dk_fs_namei(fs, path, true, ino);
    if (r == 0) {
        if ((flags & DK_O_CREAT) && (flags & DK_O_EXCL))
            return dk_fs_err(fs, -EEXIST, "%s: File exists", path);
        return open_existing(fs, *ino, flags, path);
    }
    if (r != -ENOENT || !(flags & DK_O_CREAT))
        return r;
    ext2_ino_t dir;
    char name[EXT2_NAME_LEN + 1];
    if ((r = dk_fs_check_rw(fs)) < 0 || (r = dk_fs_parent(fs, path, &dir, name)) < 0)
        return r;
    return dk_fs_create_inode(fs, dir, name, LINUX_S_IFREG | (mode & 07777), 0, ino);
}

static int make_handle(struct dk_fs *fs, ext2_ino_t ino, unsigned flags, struct dk_fsfile **out)
{
    struct dk_fsfile *f = calloc(1, sizeof(*f));
    if (!f)
        return dk_fs_err(fs, -ENOMEM, "out of memory");
    f->fs = fs;
    f->ino = ino;
    f->writable = flags & (DK_O_WRITE | DK_O_CREAT | DK_O_TRUNC);
    *out = f;
    return 0;
}

int dk_fsfile_open(struct dk_fs *fs, const char *path, unsigned flags, uint32_t mode,
                   struct dk_fsfile **out)
{
    ext2_ino_t ino = 0;
    *out = NULL;
    int r = DK_FS_LOCKED(fs, open_locked(fs, path, flags, mode, &ino));
    return r < 0 ? r : make_handle(fs, ino, flags, out);
}

int dk_fsfile_open_ino(struct dk_fs *fs, uint64_t ino, unsigned flags, struct dk_fsfile **out)
{
    char what[32];
    *out = NULL;
    if (ino < 1 || ino > UINT32_MAX)
        return dk_fs_err(fs, -ENOENT, "no such inode");
    snprintf(what, sizeof(what), "inode %llu", (unsigned long long)ino);
    int r = DK_FS_LOCKED(fs, open_existing(fs, (ext2_ino_t)ino, flags & ~DK_O_CREAT, what));
    return r < 0 ? r : make_handle(fs, (ext2_ino_t)ino, flags, out);
}

uint64_t dk_fsfile_ino(const struct dk_fsfile *f)
{
    return f->ino;
}

/* Reads below this size go through libext2fs's file reader. */
#define FAST_READ_MIN (64u << 10)
/* Blocks per channel request: bounds one dk_pread (16 MiB at 4 KiB). */
#define FAST_READ_RUN 4096u

/* Finds the piece of the file starting at logical block LBLK (before END):
 * *PBLK is its first physical block, 0 for a hole or an unwritten extent
 * (reads as zeros); returns the end of the piece, or 0 when the tree is
 * not understood (the caller falls back). */
static blk64_t map_piece(ext2_extent_handle_t h, blk64_t lblk, blk64_t end, blk64_t *pblk)
{
    struct ext2fs_extent ex;
    errcode_t e = ext2fs_extent_goto(h, lblk);
    *pblk = 0;
    if (e && e != EXT2_ET_EXTENT_NOT_FOUND)
        return 0;
    if (ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &ex))
        return e ? end : 0;               /* empty tree: all hole */
    if (!e && lblk >= ex.e_lblk && lblk - ex.e_lblk < ex.e_len) {
        if (!(ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT))
            *pblk = ex.e_pblk + (lblk - ex.e_lblk);
        return DK_MIN(end, ex.e_lblk + ex.e_len);
    }
    if (!e)
        return 0;
    /* A hole: it ends where the next extent starts. */
    if (ex.e_lblk > lblk)
        return DK_MIN(end, ex.e_lblk);
    if (ext2fs_extent_get(h, EXT2_EXTENT_NEXT_LEAF, &ex))
        return end;
    return ex.e_lblk > lblk ? DK_MIN(end, ex.e_lblk) : 0;
}

/* Reads whole blocks of [OFF, OFF+LEN) straight from the device in
 * contiguous runs. Returns the bytes read (0 when the fast path does not
 * apply or stopped early: the caller reads the rest) or -errno. */
static ssize_t read_mapped(struct dk_fs *fs, ext2_ino_t ino, uint8_t *buf, size_t len,
                           uint64_t off)
{
    ext2_filsys e2 = fs->e2;
    unsigned bs = e2->blocksize;
    struct ext2_inode in;
    if (len < FAST_READ_MIN || off % bs || ext2fs_read_inode(e2, ino, &in))
        return 0;
    if (!(in.i_flags & EXT4_EXTENTS_FL) || (in.i_flags & (EXT4_INLINE_DATA_FL | EXT4_ENCRYPT_FL)))
        return 0;
    ext2_extent_handle_t h;
    if (ext2fs_extent_open2(e2, ino, &in, &h))
        return 0;
    blk64_t lblk = off / bs, start = lblk, end = lblk + len / bs;
    ssize_t r = 0;
    while (lblk < end) {
        blk64_t pblk, next = map_piece(h, lblk, end, &pblk);
        if (next <= lblk)
            break;
        next = DK_MIN(next, lblk + FAST_READ_RUN);
        uint8_t *dst = buf + (lblk - start) * bs;
        if (!pblk) {
            memset(dst, 0, (size_t)(next - lblk) * bs);
        } else if (pblk >= ext2fs_blocks_count(e2->super) ||
                   next - lblk > ext2fs_blocks_count(e2->super) - pblk) {
            r = dk_fs_err(fs, -EIO, "%s: inode %u maps block %llu past the end of the "
                          "filesystem", fs->device, ino, (unsigned long long)pblk);
            break;
        } else {
            errcode_t e = io_channel_read_blk64(e2->io, pblk, (int)(next - lblk), dst);
            if (e) {
                r = dk_fs_e2err(fs, e, "reading", fs->device);
                break;
            }
        }
        lblk = next;
    }
    ext2fs_extent_free(h);
    return r < 0 ? r : (ssize_t)((lblk - start) * bs);
}

static ssize_t pread_locked(struct dk_fs *fs, ext2_ino_t ino, void *buf, size_t len,
                            uint64_t off)
{
    ext2_file_t ef;
    errcode_t e = ext2fs_file_open(fs->e2, ino, 0, &ef);
    if (e)
        return dk_fs_e2err(fs, e, "reading", fs->device);
    /* Clamp to i_size: libext2fs returns the whole inline-data area (60+
     * bytes) for inline files, whatever their size. */
    __u64 size = 0;
    e = ext2fs_file_get_lsize(ef, &size);
    if (!e && off >= size)
        len = 0;
    else if (!e && len > size - off)
        len = (size_t)(size - off);
    size_t done = 0;
    if (!e && len) {
        ssize_t fast = read_mapped(fs, ino, buf, len, off);
        if (fast < 0) {
            ext2fs_file_close(ef);
            return fast;
        }
        done = (size_t)fast;
    }
    if (!e)
        e = ext2fs_file_llseek(ef, off + done, EXT2_SEEK_SET, NULL);
    while (!e && done < len) {
        unsigned got = 0, want = len - done > (1u << 30) ? 1u << 30 : (unsigned)(len - done);
        e = ext2fs_file_read(ef, (char *)buf + done, want, &got);
        if (got == 0)
            break;
        done += got;
    }
    ext2fs_file_close(ef);
    if (e)
        return dk_fs_e2err(fs, e, "reading", fs->device);
    return (ssize_t)done;
}

ssize_t dk_fsfile_pread(struct dk_fsfile *f, void *buf, size_t len, uint64_t off)
{
    struct dk_fs *fs = f->fs;
    pthread_mutex_lock(&fs->lock);
    ssize_t r = pread_locked(fs, f->ino, buf, len, off);
    pthread_mutex_unlock(&fs->lock);
    return r;
}

static ssize_t pwrite_locked(struct dk_fs *fs, ext2_ino_t ino, const void *buf, size_t len,
                             uint64_t off)
{
    ext2_file_t ef;
    int r = dk_fs_check_rw(fs);
    if (r < 0)
        return r;
    if (len > (size_t)SSIZE_MAX || off > (1ULL << 48) || len > (1ULL << 48) - off)
        return dk_fs_err(fs, -EFBIG, "%s: write beyond the largest file size", fs->device);
    errcode_t e = ext2fs_file_open(fs->e2, ino, EXT2_FILE_WRITE, &ef);
    if (e)
        return dk_fs_e2err(fs, e, "writing", fs->device);
    size_t done = 0;
    e = ext2fs_file_llseek(ef, off, EXT2_SEEK_SET, NULL);
    while (!e && done < len) {
        unsigned put = 0, want = len - done > (1u << 30) ? 1u << 30 : (unsigned)(len - done);
        e = ext2fs_file_write(ef, (const char *)buf + done, want, &put);
        if (!e && put == 0)
            e = EXT2_ET_SHORT_WRITE;
        done += put;
    }
    errcode_t ce = ext2fs_file_close(ef);
    if (e || ce)
        return dk_fs_e2err(fs, e ? e : ce, "writing", fs->device);
    r = dk_fs_touch_ino(fs, ino, DK_TOUCH_M | DK_TOUCH_C);
    return r < 0 ? r : (ssize_t)done;
}

ssize_t dk_fsfile_pwrite(struct dk_fsfile *f, const void *buf, size_t len, uint64_t off)
{
    struct dk_fs *fs = f->fs;
    if (!f->writable)
        return dk_fs_err(fs, -EBADF, "%s: file not open for writing", fs->device);
    if (len == 0)
        return 0;
    pthread_mutex_lock(&fs->lock);
    ssize_t r = pwrite_locked(fs, f->ino, buf, len, off);
    pthread_mutex_unlock(&fs->lock);
    return r;
}

int dk_fsfile_truncate(struct dk_fsfile *f, uint64_t size)
{
    struct dk_fs *fs = f->fs;
    if (!f->writable)
        return dk_fs_err(fs, -EBADF, "%s: file not open for writing", fs->device);
    return DK_FS_LOCKED(fs, dk_fs_truncate_ino(fs, f->ino, size, "truncate"));
}

int dk_fsfile_fstat(struct dk_fsfile *f, struct dk_stat *st)
{
    return dk_fs_stat_ino(f->fs, f->ino, st);
}

int dk_fsfile_fsync(struct dk_fsfile *f)
{
    return f->writable ? dk_fs_sync(f->fs) : 0;
}

int dk_fsfile_close(struct dk_fsfile *f)
{
    free(f);
    return 0;
}

int dk_fs_write_file(struct dk_fs *fs, const char *path, const void *buf, size_t len,
                     uint32_t mode)
{
    struct dk_fsfile *f;
    int r = dk_fsfile_open(fs, path, DK_O_WRITE | DK_O_CREAT | DK_O_TRUNC, mode, &f);
    if (r < 0)
        return r;
    ssize_t w = len ? dk_fsfile_pwrite(f, buf, len, 0) : 0;
    dk_fsfile_close(f);
    return w < 0 ? (int)w : 0;
}
