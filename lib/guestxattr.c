/* guestxattr.c - extended attributes of ext2/3/4 inodes, with the
 * semantics of listxattr(2), getxattr(2), setxattr(2) and removexattr(2).
 *
 * libext2fs keeps the attributes of an inode (in the inode's extra space
 * and in its EA block) in a handle: ext2fs_xattrs_read loads them,
 * ext2fs_xattr_set/remove write the whole set back. POSIX ACLs are
 * converted by libext2fs between ext4's on-disk form and the kernel's
 * xattr form, so "system.posix_acl_access" reads as getfacl expects.
 *
 * Invariants:
 *  1. Only the namespaces Linux offers on ext4 are accepted: user.,
 *     trusted., security., system.posix_acl_access/default (others:
 *     -EOPNOTSUPP, as the kernel answers). "system.data", where ext4 keeps
 *     inline file data, is never listed, read or written here.
 *  2. A change updates the inode's ctime, as the kernel does.
 *  3. Everything runs under fs->lock (DK_FS_LOCKED), like every other
 *     dk_fs call.
 * Known gaps: the journal is not used (as for every write of the guest
 * layer); attributes in EA inodes (ea_inode feature) are left to
 * libext2fs.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include "guest.h"

#define XATTR_NAME_MAX_LEN 255      /* Linux's XATTR_NAME_MAX */
#define XATTR_SIZE_MAX_LEN 65536    /* Linux's XATTR_SIZE_MAX */

static bool inline_data_name(const char *name)
{
    return !strcmp(name, "system.data");
}

/* Invariant 1: a name the kernel would pass to ext4. */
static int check_name(struct dk_fs *fs, const char *path, const char *name)
{
    static const char *const prefixes[] = { "user.", "trusted.", "security." };
    if (!name || !*name || strlen(name) > XATTR_NAME_MAX_LEN)
        return dk_fs_err(fs, -ERANGE, "%s: bad attribute name", path);
    if (!strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default"))
        return 0;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (!strncmp(name, prefixes[i], n) && name[n])
            return 0;
    }
    return dk_fs_err(fs, -EOPNOTSUPP, "%s: attribute namespace not supported: %s",
                     path, name);
}

static int xerr(struct dk_fs *fs, errcode_t e, const char *path)
{
    switch (e) {
    case EXT2_ET_EA_KEY_NOT_FOUND:
        return dk_fs_err(fs, -ENODATA, "%s: no such attribute", path);
    case EXT2_ET_EA_NO_SPACE:
        return dk_fs_err(fs, -ENOSPC, "%s: no space for the attribute", path);
    case EXT2_ET_MISSING_EA_FEATURE:
        return dk_fs_err(fs, -ENOTSUP, "%s: the filesystem has no ext_attr feature", path);
    case EXT2_ET_EA_BAD_NAME_LEN: case EXT2_ET_EA_BAD_VALUE_SIZE:
        return dk_fs_err(fs, -ERANGE, "%s: attribute name or value too long", path);
    default:
        return dk_fs_e2err(fs, e, "attributes of", path);
    }
}

/* Opens and reads the attribute set of PATH into *H. */
static int open_attrs(struct dk_fs *fs, const char *path, bool follow, ext2_ino_t *ino,
                      struct ext2_xattr_handle **h)
{
    int r = dk_fs_namei(fs, path, follow, ino);
    if (r < 0)
        return r;
    errcode_t e = ext2fs_xattrs_open(fs->e2, *ino, h);
    if (e)
        return xerr(fs, e, path);
    if ((e = ext2fs_xattrs_read(*h)) != 0) {
        ext2fs_xattrs_close(h);
        return xerr(fs, e, path);
    }
    return 0;
}

struct list_ctx { char *buf; size_t size, need; };

static int list_one(char *name, char *value, size_t value_len, void *data)
{
    struct list_ctx *l = data;
    (void)value;
    (void)value_len;
    if (inline_data_name(name))
        return 0;
    size_t n = strlen(name) + 1;
    if (l->size && l->need + n <= l->size)
        memcpy(l->buf + l->need, name, n);
    l->need += n;
    return 0;
}

static ssize_t list_locked(struct dk_fs *fs, const char *path, bool follow, char *buf,
                           size_t size)
{
    ext2_ino_t ino;
    struct ext2_xattr_handle *h = NULL;
    int r = open_attrs(fs, path, follow, &ino, &h);
    if (r == -ENOTSUP)
        return 0;                       /* no ext_attr feature: no attributes */
    if (r < 0)
        return r;
    struct list_ctx l = { buf, size, 0 };
    errcode_t e = ext2fs_xattrs_iterate(h, list_one, &l);
    ext2fs_xattrs_close(&h);
    if (e)
        return xerr(fs, e, path);
    if (size && l.need > size)
        return dk_fs_err(fs, -ERANGE, "%s: attribute list longer than %zu bytes", path, size);
    return (ssize_t)l.need;
}

static ssize_t get_locked(struct dk_fs *fs, const char *path, bool follow, const char *name,
                          void *buf, size_t size)
{
    int r = check_name(fs, path, name);
    if (r < 0)
        return r;
    ext2_ino_t ino;
    struct ext2_xattr_handle *h = NULL;
    if ((r = open_attrs(fs, path, follow, &ino, &h)) < 0)
        return r == -ENOTSUP ? dk_fs_err(fs, -ENODATA, "%s: no attribute %s", path, name) : r;
    void *val = NULL;
    size_t len = 0;
    errcode_t e = ext2fs_xattr_get(h, name, &val, &len);
    ext2fs_xattrs_close(&h);
    if (e == EXT2_ET_EA_KEY_NOT_FOUND)
        return dk_fs_err(fs, -ENODATA, "%s: no attribute %s", path, name);
    if (e)
        return xerr(fs, e, path);
    ssize_t out = (ssize_t)len;
    if (size && len > size)
        out = dk_fs_err(fs, -ERANGE, "%s: attribute %s is %zu bytes", path, name, len);
    else if (size)
        memcpy(buf, val, len);
    ext2fs_free_mem(&val);
    return out;
}

/* Sets (VALUE non-NULL) or removes NAME; FLAGS as dk_fs_setxattr. */
static int change_locked(struct dk_fs *fs, const char *path, bool follow, const char *name,
                         const void *value, size_t size, unsigned flags)
{
    int r = dk_fs_check_rw(fs);
    if (r == 0)
        r = check_name(fs, path, name);
    if (r < 0)
        return r;
    if (value && size > XATTR_SIZE_MAX_LEN)
        return dk_fs_err(fs, -E2BIG, "%s: attribute value of %zu bytes is too large", path,
                         size);
    ext2_ino_t ino;
    struct ext2_xattr_handle *h = NULL;
    if ((r = open_attrs(fs, path, follow, &ino, &h)) < 0)
        return r;
    void *old = NULL;
    size_t old_len = 0;
    errcode_t e = ext2fs_xattr_get(h, name, &old, &old_len);
    bool exists = e == 0;
    if (old)
        ext2fs_free_mem(&old);
    if (e && e != EXT2_ET_EA_KEY_NOT_FOUND)
        r = xerr(fs, e, path);
    else if (value && exists && (flags & DK_XATTR_CREATE))
        r = dk_fs_err(fs, -EEXIST, "%s: attribute %s exists", path, name);
    else if (!exists && (!value || (flags & DK_XATTR_REPLACE)))
        r = dk_fs_err(fs, -ENODATA, "%s: no attribute %s", path, name);
    else if ((e = value ? ext2fs_xattr_set(h, name, value, size)
                        : ext2fs_xattr_remove(h, name)) != 0)
        r = xerr(fs, e, path);
    ext2fs_xattrs_close(&h);
    return r < 0 ? r : dk_fs_touch_ino(fs, ino, DK_TOUCH_C);   /* invariant 2 */
}

/* DK_FS_LOCKED yields an int: the ssize_t calls get their own wrappers. */
ssize_t dk_fs_listxattr(struct dk_fs *fs, const char *path, int follow, char *list,
                        size_t size)
{
    pthread_mutex_lock(&fs->lock);
    ssize_t r = list_locked(fs, path, follow, list, size);
    pthread_mutex_unlock(&fs->lock);
    return r;
}

ssize_t dk_fs_getxattr(struct dk_fs *fs, const char *path, int follow, const char *name,
                       void *value, size_t size)
{
    pthread_mutex_lock(&fs->lock);
    ssize_t r = get_locked(fs, path, follow, name, value, size);
    pthread_mutex_unlock(&fs->lock);
    return r;
}

int dk_fs_setxattr(struct dk_fs *fs, const char *path, int follow, const char *name,
                   const void *value, size_t size, unsigned flags)
{
    static const char empty = 0;
    return DK_FS_LOCKED(fs, change_locked(fs, path, follow, name, value ? value : &empty,
                                          size, flags));
}

int dk_fs_removexattr(struct dk_fs *fs, const char *path, int follow, const char *name)
{
    return DK_FS_LOCKED(fs, change_locked(fs, path, follow, name, NULL, 0, 0));
}
