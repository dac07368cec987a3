/* guestfs.c - ext2/3/4 filesystems of a guest: open/close, path lookup,
 * stat, directory listing, symlinks and statfs, over libext2fs.
 *
 * Invariants:
 *  1. Every public call takes fs->lock for its whole duration; the helpers
 *     named dk_fs_* in guest.h expect it held. libext2fs is not thread-safe
 *     per filesystem, and our io channel's cache relies on this lock.
 *  2. Paths are resolved from the filesystem root only (ext2fs_namei with
 *     root = cwd = EXT2_ROOT_INO), so absolute symlink targets stay inside
 *     the guest filesystem.
 *  3. A read-only dk_fs never writes: libext2fs is opened without
 *     EXT2_FLAG_RW and the io view refuses writes.
 *
 * Spec: e2fsprogs lib/ext2fs (ext2fs.h, ext2_fs.h) for inode fields;
 * timestamps with the ext4 "extra" epoch bits (Documentation/filesystems/
 * ext4/inodes.rst).
 *
 * Known gaps: statfs reports all blocks (no bsddf overhead subtraction);
 * encrypted (fscrypt) and casefolded names are returned as stored.
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "guest.h"
#include "internal.h"

/* Longest symlink target we read (Linux PATH_MAX). */
#define SYMLINK_MAX 4096

int dk_fs_err(struct dk_fs *fs, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fs->errmsg, sizeof(fs->errmsg), fmt, ap);
    va_end(ap);
    return err;
}

int dk_fs_e2err(struct dk_fs *fs, errcode_t e, const char *what, const char *path)
{
    int err = dk_ext2_errno(e);
    const char *msg = err == -EIO || err == -ENOTSUP ? error_message(e) : strerror(-err);
    return dk_fs_err(fs, err, "%s%s%s: %s", what ? what : "", what ? " " : "",
                     path ? path : fs->device, msg);
}

const char *dk_fs_errmsg(const struct dk_fs *fs) { return fs->errmsg; }
const char *dk_fs_device(const struct dk_fs *fs) { return fs->device; }
const char *dk_fs_type(const struct dk_fs *fs) { return fs->type; }
int dk_fs_read_only(const struct dk_fs *fs) { return !fs->rdwr; }
uint64_t dk_fs_root_ino(const struct dk_fs *fs) { return EXT2_ROOT_INO; }

void dk_fs_set_owner(struct dk_fs *fs, uint32_t uid, uint32_t gid)
{
    pthread_mutex_lock(&fs->lock);
    fs->uid = uid;
    fs->gid = gid;
    pthread_mutex_unlock(&fs->lock);
}

/* Checks PATH is absolute with components of at most EXT2_NAME_LEN. */
static int check_path(struct dk_fs *fs, const char *path)
{
    if (!path || path[0] != '/')
        return dk_fs_err(fs, -EINVAL, "%s: path must be absolute: %s", fs->device,
                         path ? path : "(null)");
    size_t comp = 0;
    for (const char *p = path; *p; p++) {
        comp = *p == '/' ? 0 : comp + 1;
        if (comp > EXT2_NAME_LEN)
            return dk_fs_err(fs, -ENAMETOOLONG, "%s: %s: file name too long",
                             fs->device, path);
    }
    return 0;
}

static int lookup_err(struct dk_fs *fs, errcode_t e, const char *path)
{
    int err = dk_ext2_errno(e);
    const char *why = err == -ENOENT ? "No such file or directory"
                    : err == -ENOTDIR ? "Not a directory"
                    : err == -ELOOP ? "Too many levels of symbolic links"
                    : error_message(e);
    return dk_fs_err(fs, err, "%s: %s", path, why);
}

int dk_fs_namei(struct dk_fs *fs, const char *path, bool follow, ext2_ino_t *ino)
{
    int r = check_path(fs, path);
    if (r < 0)
        return r;
    errcode_t e = follow ? ext2fs_namei_follow(fs->e2, EXT2_ROOT_INO, EXT2_ROOT_INO, path, ino)
                         : ext2fs_namei(fs->e2, EXT2_ROOT_INO, EXT2_ROOT_INO, path, ino);
    if (e)
        return lookup_err(fs, e, path);
    if (*ino < EXT2_ROOT_INO || *ino > fs->e2->super->s_inodes_count)
        return dk_fs_err(fs, -EIO, "%s: %s: directory entry names bad inode %u",
                         fs->device, path, *ino);
    return 0;
}

int dk_fs_parent(struct dk_fs *fs, const char *path, ext2_ino_t *dir, char *name)
{
    int r = check_path(fs, path);
    if (r < 0)
        return r;
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t slash = len;
    while (slash > 0 && path[slash - 1] != '/')
        slash--;
    size_t nlen = len - slash;
    if (nlen == 0 || (nlen == 1 && path[slash] == '.') ||
        (nlen == 2 && path[slash] == '.' && path[slash + 1] == '.'))
        return dk_fs_err(fs, -EINVAL, "%s: invalid name for this operation", path);
    memcpy(name, path + slash, nlen);
    name[nlen] = 0;
    char *parent = strndup(path, slash ? slash : 1);
    if (!parent)
        return dk_fs_err(fs, -ENOMEM, "out of memory");
    r = dk_fs_namei(fs, parent, true, dir);
    if (r == 0 && !ext2fs_check_directory(fs->e2, *dir)) {
        free(parent);
        return 0;
    }
    if (r == 0)
        r = dk_fs_err(fs, -ENOTDIR, "%s: Not a directory", parent);
    free(parent);
    return r;
}

int dk_fs_read_inode(struct dk_fs *fs, ext2_ino_t ino, struct ext2_inode_large *in)
{
    if (ino < 1 || ino > fs->e2->super->s_inodes_count)
        return dk_fs_err(fs, -ENOENT, "%s: no inode %u", fs->device, ino);
    memset(in, 0, sizeof(*in));
    errcode_t e = ext2fs_read_inode_full(fs->e2, ino, (struct ext2_inode *)in, sizeof(*in));
    if (e)
        return dk_fs_err(fs, dk_ext2_errno(e), "%s: reading inode %u: %s", fs->device,
                         ino, error_message(e));
    return 0;
}

int dk_fs_write_inode(struct dk_fs *fs, ext2_ino_t ino, struct ext2_inode_large *in)
{
    errcode_t e = ext2fs_write_inode_full(fs->e2, ino, (struct ext2_inode *)in, sizeof(*in));
    if (e)
        return dk_fs_err(fs, dk_ext2_errno(e), "%s: writing inode %u: %s", fs->device,
                         ino, error_message(e));
    return 0;
}

/* Does the large inode hold FIELD_END bytes (extra fields present)? */
static bool has_extra(const struct ext2_inode_large *in, size_t field_end)
{
    return EXT2_GOOD_OLD_INODE_SIZE + (size_t)in->i_extra_isize >= field_end;
}

static void decode_time(const struct ext2_inode_large *in, uint32_t lo, uint32_t extra,
                        size_t extra_end, int64_t *sec, uint32_t *ns)
{
    *sec = (int32_t)lo;
    *ns = 0;
    if (has_extra(in, extra_end)) {
        *sec += (int64_t)(extra & EXT4_EPOCH_MASK) << 32;
        *ns = extra >> EXT4_EPOCH_BITS;
        if (*ns >= 1000000000u)
            *ns = 0;
    }
}
#define XEND(f) (offsetof(struct ext2_inode_large, f) + sizeof(((struct ext2_inode_large *)0)->f))

void dk_fs_fill_stat(struct dk_fs *fs, ext2_ino_t ino, const struct ext2_inode_large *in,
                     struct dk_stat *st)
{
    memset(st, 0, sizeof(*st));
    st->ino = ino;
    st->mode = in->i_mode;
    st->nlink = in->i_links_count;
    st->uid = inode_uid(*in);
    st->gid = inode_gid(*in);
    st->size = EXT2_I_SIZE(in);
    st->blocks = ext2fs_get_stat_i_blocks(fs->e2, (struct ext2_inode *)in);
    st->blksize = fs->e2->blocksize;
    if (LINUX_S_ISCHR(in->i_mode) || LINUX_S_ISBLK(in->i_mode)) {
        uint32_t d = in->i_block[0];
        if (d)
            st->rdev = makedev((d >> 8) & 0xff, d & 0xff);
        else {
            d = in->i_block[1];
            st->rdev = makedev((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00));
        }
    }
    decode_time(in, in->i_atime, in->i_atime_extra, XEND(i_atime_extra), &st->atime, &st->atime_ns);
    decode_time(in, in->i_mtime, in->i_mtime_extra, XEND(i_mtime_extra), &st->mtime, &st->mtime_ns);
    decode_time(in, in->i_ctime, in->i_ctime_extra, XEND(i_ctime_extra), &st->ctime, &st->ctime_ns);
    if (has_extra(in, XEND(i_crtime)))
        decode_time(in, in->i_crtime, in->i_crtime_extra, XEND(i_crtime_extra),
                    &st->crtime, &st->crtime_ns);
}

/* ------------------------------------------------------------- open/close */

/* Picks the device for dk_fs_open(NULL): the inspected root, else the only
 * readable filesystem. */
static const struct dk_fsinfo *default_fs(struct dk_guest *g, struct dk_error *err)
{
    struct dk_inspect *ins = NULL;
    if (dk_guest_inspect(g, &ins) == 0) {
        const struct dk_fsinfo *f = dk_guest_find(g, ins->root);
        dk_inspect_free(ins);
        if (f)
            return f;
    }
    const struct dk_fsinfo *only = NULL;
    size_t n, count = 0;
    const struct dk_fsinfo *all = dk_guest_filesystems(g, &n);
    for (size_t i = 0; i < n; i++)
        if (all[i].readable)
            only = &all[i], count++;
    if (count == 1)
        return only;
    if (count == 0 && n == 1)
        return &all[0];         /* one unreadable device: say what it is */
    if (count)
        dk_error_set(err, -ENOENT, "no operating system found and %zu filesystems: "
                     "choose one with -m DEVICE", count);
    else
        dk_error_set(err, -ENOENT, "no ext2/ext3/ext4 filesystem found");
    return NULL;
}

static int check_open_rw(struct dk_fs *fs, unsigned flags, struct dk_error *err)
{
    struct ext2_super_block *sb = fs->e2->super;
    if (!(flags & DK_FS_FORCE) && ext2fs_has_feature_journal_needs_recovery(sb))
        return dk_error_set(err, -EBUSY, "%s: the journal needs recovery (the guest was "
                            "not shut down cleanly); run e2fsck on it or pass --force",
                            fs->device);
    if (!(flags & DK_FS_FORCE) && (sb->s_state & EXT2_ERROR_FS))
        return dk_error_set(err, -EUCLEAN, "%s: the filesystem has errors; run e2fsck "
                            "on it first", fs->device);
    errcode_t e = ext2fs_read_bitmaps(fs->e2);
    if (e)
        return dk_error_set(err, dk_ext2_errno(e), "%s: reading bitmaps: %s",
                            fs->device, error_message(e));
    return 0;
}

static struct dk_fs *fs_setup(struct dk_guest *g, const struct dk_fsinfo *f,
                              unsigned flags, struct dk_error *err)
{
    struct dk_gdev dev;
    if (dk_gdev_get(g, f, &dev, err) < 0)
        return NULL;
    if ((flags & DK_FS_RDWR) && dk_gdev_no_write(&dev)) {
        dk_error_set(err, -EROFS, "%s", dk_gdev_no_write(&dev));
        return NULL;
    }
    struct dk_image *ro = (flags & DK_FS_RDWR) ? dk_gdev_read_only(&dev) : NULL;
    if (ro) {
        dk_error_set(err, -EROFS, strcmp(dk_image_format(ro), "raw") ?
                     "%s: the image is open read-only" : "%s: the image is open read-only "
                     "(a raw image found by probing is only written with an explicit -f raw)",
                     f->device);
        return NULL;
    }
    struct dk_fs *fs = calloc(1, sizeof(*fs));
    if (!fs) {
        dk_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    fs->g = g;
    memcpy(fs->device, f->device, sizeof(fs->device));
    fs->type = !strcmp(f->type, "ext2") ? "ext2" : !strcmp(f->type, "ext3") ? "ext3" : "ext4";
    fs->rdwr = flags & DK_FS_RDWR;
    pthread_mutex_init(&fs->lock, NULL);
    int r = dk_ext2io_register_dev(&dev, fs->rdwr, fs->ioname, sizeof(fs->ioname));
    if (r < 0) {
        dk_error_set(err, r, "%s: too many open filesystems", f->device);
        pthread_mutex_destroy(&fs->lock);
        free(fs);
        return NULL;
    }
    return fs;
}

static void fs_free(struct dk_fs *fs)
{
    dk_ext2io_unregister(fs->ioname);
    pthread_mutex_destroy(&fs->lock);
    free(fs);
}

struct dk_fs *dk_fs_open(struct dk_guest *g, const char *device, unsigned flags,
                         struct dk_error *err)
{
    const struct dk_fsinfo *f = device ? dk_guest_find(g, device) : default_fs(g, err);
    if (!f) {
        if (device)
            dk_error_set(err, -ENOENT, "%s: no such device in this guest", device);
        return NULL;
    }
    struct dk_gdev dev;
    if (!f->readable && dk_gdev_get(g, f, &dev, err) == -ENOTSUP)
        return NULL;                    /* an LV diskkit cannot map: why */
    if (!f->readable) {
        dk_error_set(err, -ENOTSUP, "%s: cannot read %s%s contents (diskkit reads "
                     "ext2, ext3 and ext4)", f->device, strcmp(f->type, "unknown") ?
                     f->type : "unknown", strcmp(f->type, "unknown") ? " filesystem" : "");
        return NULL;
    }
    struct dk_fs *fs = fs_setup(g, f, flags, err);
    if (!fs)
        return NULL;
    int e2flags = EXT2_FLAG_64BITS | (fs->rdwr ? EXT2_FLAG_RW : 0);
    errcode_t e = ext2fs_open2(fs->ioname, NULL, e2flags, 0, 0, dk_ext2_io_manager, &fs->e2);
    if (e) {
        dk_error_set(err, dk_ext2_errno(e), "%s: cannot open the %s filesystem: %s",
                     f->device, fs->type, error_message(e));
        fs_free(fs);
        return NULL;
    }
    if (fs->rdwr && check_open_rw(fs, flags, err) < 0) {
        ext2fs_free(fs->e2);
        fs_free(fs);
        return NULL;
    }
    return fs;
}

int dk_fs_sync(struct dk_fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    int r = 0;
    if (fs->rdwr) {
        errcode_t e = ext2fs_flush2(fs->e2, 0);
        r = e ? dk_fs_e2err(fs, e, "flushing", NULL) : 0;
    }
    pthread_mutex_unlock(&fs->lock);
    return r;
}

int dk_fs_close(struct dk_fs *fs)
{
    if (!fs)
        return 0;
    int r = 0;
    errcode_t e = ext2fs_close2(fs->e2, 0);
    if (e) {
        r = dk_ext2_errno(e);
        ext2fs_free(fs->e2);
    }
    fs_free(fs);
    return r;
}

/* ------------------------------------------------------------- lookups */

int dk_fs_lookup_path(struct dk_fs *fs, const char *path, int follow, uint64_t *ino)
{
    ext2_ino_t i = 0;
    pthread_mutex_lock(&fs->lock);
    int r = dk_fs_namei(fs, path, follow, &i);
    pthread_mutex_unlock(&fs->lock);
    *ino = i;
    return r;
}

int dk_fs_lookup(struct dk_fs *fs, uint64_t dir, const char *name, uint64_t *ino)
{
    ext2_ino_t i = 0;
    int r = 0;
    size_t len = strlen(name);
    if (len == 0 || len > EXT2_NAME_LEN || strchr(name, '/'))
        return dk_fs_err(fs, len > EXT2_NAME_LEN ? -ENAMETOOLONG : -EINVAL,
                         "%s: bad file name", name);
    pthread_mutex_lock(&fs->lock);
    if (dir < 1 || dir > fs->e2->super->s_inodes_count)
        r = dk_fs_err(fs, -ENOENT, "%s: no inode %llu", fs->device, (unsigned long long)dir);
    else {
        errcode_t e = ext2fs_lookup(fs->e2, (ext2_ino_t)dir, name, (int)len, NULL, &i);
        if (e)
            r = lookup_err(fs, e, name);
    }
    pthread_mutex_unlock(&fs->lock);
    *ino = i;
    return r;
}

static int stat_locked(struct dk_fs *fs, ext2_ino_t ino, struct dk_stat *st)
{
    struct ext2_inode_large in;
    int r = dk_fs_read_inode(fs, ino, &in);
    if (r == 0)
        dk_fs_fill_stat(fs, ino, &in, st);
    return r;
}

static int stat_path(struct dk_fs *fs, const char *path, bool follow, struct dk_stat *st)
{
    ext2_ino_t ino;
    pthread_mutex_lock(&fs->lock);
    int r = dk_fs_namei(fs, path, follow, &ino);
    if (r == 0)
        r = stat_locked(fs, ino, st);
    pthread_mutex_unlock(&fs->lock);
    return r;
}

int dk_fs_stat(struct dk_fs *fs, const char *path, struct dk_stat *st)
{
    return stat_path(fs, path, true, st);
}

int dk_fs_lstat(struct dk_fs *fs, const char *path, struct dk_stat *st)
{
    return stat_path(fs, path, false, st);
}

int dk_fs_stat_ino(struct dk_fs *fs, uint64_t ino, struct dk_stat *st)
{
    pthread_mutex_lock(&fs->lock);
    int r = ino > UINT32_MAX ? dk_fs_err(fs, -ENOENT, "no inode") : stat_locked(fs, (ext2_ino_t)ino, st);
    pthread_mutex_unlock(&fs->lock);
    return r;
}

int dk_fs_statfs(struct dk_fs *fs, struct dk_statvfs *st)
{
    pthread_mutex_lock(&fs->lock);
    struct ext2_super_block *sb = fs->e2->super;
    memset(st, 0, sizeof(*st));
    st->bsize = fs->e2->blocksize;
    st->blocks = ext2fs_blocks_count(sb);
    st->bfree = ext2fs_free_blocks_count(sb);
    uint64_t resv = ext2fs_r_blocks_count(sb);
    st->bavail = st->bfree > resv ? st->bfree - resv : 0;
    st->files = sb->s_inodes_count;
    st->ffree = sb->s_free_inodes_count;
    st->namemax = EXT2_NAME_LEN;
    pthread_mutex_unlock(&fs->lock);
    return 0;
}

/* ----------------------------------------------------------- directories */

struct rd_ctx {
    dk_dirent_fn fn;
    void *opaque;
    int ret;
};

static unsigned dt_of(int ft)
{
    switch (ft) {
    case EXT2_FT_REG_FILE: return DT_REG;
    case EXT2_FT_DIR: return DT_DIR;
    case EXT2_FT_CHRDEV: return DT_CHR;
    case EXT2_FT_BLKDEV: return DT_BLK;
    case EXT2_FT_FIFO: return DT_FIFO;
    case EXT2_FT_SOCK: return DT_SOCK;
    case EXT2_FT_SYMLINK: return DT_LNK;
    default: return DT_UNKNOWN;
    }
}

static int rd_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *de, int offset,
                 int blocksize, char *buf, void *priv)
{
    struct rd_ctx *c = priv;
    if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE || de->inode == 0)
        return 0;
    char name[EXT2_NAME_LEN + 1];
    int len = ext2fs_dirent_name_len(de);
    memcpy(name, de->name, (size_t)len);
    name[len] = 0;
    if (len == 0 || memchr(name, 0, (size_t)len) || memchr(name, '/', (size_t)len))
        return 0;               /* corrupt names are never handed out */
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return 0;
    c->ret = c->fn(c->opaque, name, de->inode, dt_of(ext2fs_dirent_file_type(de)));
    return c->ret ? DIRENT_ABORT : 0;
}

static int readdir_locked(struct dk_fs *fs, ext2_ino_t ino, const char *what,
                          dk_dirent_fn fn, void *opaque)
{
    struct rd_ctx c = { fn, opaque, 0 };
    errcode_t e = ext2fs_check_directory(fs->e2, ino);
    if (e)
        return lookup_err(fs, e, what);
    e = ext2fs_dir_iterate2(fs->e2, ino, 0, NULL, rd_cb, &c);
    if (e)
        return dk_fs_e2err(fs, e, "reading directory", what);
    return c.ret;
}

int dk_fs_readdir(struct dk_fs *fs, const char *path, dk_dirent_fn fn, void *opaque)
{
    ext2_ino_t ino;
    pthread_mutex_lock(&fs->lock);
    int r = dk_fs_namei(fs, path, true, &ino);
    if (r == 0)
        r = readdir_locked(fs, ino, path, fn, opaque);
    pthread_mutex_unlock(&fs->lock);
    return r;
}

int dk_fs_readdir_ino(struct dk_fs *fs, uint64_t ino, dk_dirent_fn fn, void *opaque)
{
    char what[32];
    snprintf(what, sizeof(what), "inode %llu", (unsigned long long)ino);
    pthread_mutex_lock(&fs->lock);
    int r = ino < 1 || ino > fs->e2->super->s_inodes_count
          ? dk_fs_err(fs, -ENOENT, "%s: no such inode", what)
          : readdir_locked(fs, (ext2_ino_t)ino, what, fn, opaque);
    pthread_mutex_unlock(&fs->lock);
    return r;
}

/* -------------------------------------------------------------- symlinks */

/* Reads the target of symlink INO into a malloc'ed string. */
static int readlink_locked(struct dk_fs *fs, ext2_ino_t ino, char **out, size_t *outlen)
{
    struct ext2_inode_large in;
    int r = dk_fs_read_inode(fs, ino, &in);
    if (r < 0)
        return r;
    if (!LINUX_S_ISLNK(in.i_mode))
        return dk_fs_err(fs, -EINVAL, "%s: inode %u is not a symbolic link", fs->device, ino);
    uint64_t size = EXT2_I_SIZE(&in);
    if (size == 0 || size >= SYMLINK_MAX)
        return dk_fs_err(fs, -EIO, "%s: symbolic link inode %u has bad size %llu",
                         fs->device, ino, (unsigned long long)size);
    char *buf = calloc(1, (size_t)size + 1);
    if (!buf)
        return dk_fs_err(fs, -ENOMEM, "out of memory");
    errcode_t e = 0;
    if (ext2fs_is_fast_symlink((struct ext2_inode *)&in)) {
        if (size > sizeof(in.i_block))
            e = EXT2_ET_INODE_CORRUPTED;
        else
            memcpy(buf, in.i_block, (size_t)size);
    } else if (in.i_flags & EXT4_INLINE_DATA_FL) {
        size_t got = 0;
        char *tmp = calloc(1, SYMLINK_MAX + 64);
        e = tmp ? ext2fs_inline_data_get(fs->e2, ino, (struct ext2_inode *)&in, tmp, &got)
                : EXT2_ET_NO_MEMORY;
        if (!e && got < size)
            e = EXT2_ET_INODE_CORRUPTED;
        if (!e)
            memcpy(buf, tmp, (size_t)size);
        free(tmp);
    } else {
        ext2_file_t f;
        unsigned got = 0;
        e = ext2fs_file_open2(fs->e2, ino, (struct ext2_inode *)&in, 0, &f);
        if (!e) {
            e = ext2fs_file_read(f, buf, (unsigned)size, &got);
            ext2fs_file_close(f);
            if (!e && got != size)
                e = EXT2_ET_SHORT_READ;
        }
    }
    if (e) {
        free(buf);
        return dk_fs_err(fs, dk_ext2_errno(e), "%s: reading symbolic link inode %u: %s",
                         fs->device, ino, error_message(e));
    }
    *out = buf;
    *outlen = strnlen(buf, (size_t)size);
    return 0;
}

static ssize_t copy_link(char *t, size_t tlen, char *buf, size_t len)
{
    if (len > 0) {
        size_t n = tlen < len - 1 ? tlen : len - 1;
        memcpy(buf, t, n);
        buf[n] = 0;
    }
    free(t);
    return (ssize_t)tlen;
}

ssize_t dk_fs_readlink(struct dk_fs *fs, const char *path, char *buf, size_t len)
{
    ext2_ino_t ino;
    char *t = NULL;
    size_t tlen = 0;
    pthread_mutex_lock(&fs->lock);
    int r = dk_fs_namei(fs, path, false, &ino);
    if (r == 0)
        r = readlink_locked(fs, ino, &t, &tlen);
    pthread_mutex_unlock(&fs->lock);
    return r < 0 ? r : copy_link(t, tlen, buf, len);
}

ssize_t dk_fs_readlink_ino(struct dk_fs *fs, uint64_t ino, char *buf, size_t len)
{
    char *t = NULL;
    size_t tlen = 0;
    pthread_mutex_lock(&fs->lock);
    int r = ino > UINT32_MAX ? dk_fs_err(fs, -ENOENT, "no such inode")
                             : readlink_locked(fs, (ext2_ino_t)ino, &t, &tlen);
    pthread_mutex_unlock(&fs->lock);
    return r < 0 ? r : copy_link(t, tlen, buf, len);
}
