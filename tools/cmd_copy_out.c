/* cmd_copy_out.c - `diskkit copy-out [-m DEV] IMAGE PATH... DESTDIR`
 * (like virt-copy-out): copies guest files and trees to a host directory,
 * keeping modes, times and symlinks (as symlinks, never followed).
 *
 * Host safety (guest names and link targets are untrusted):
 *  1. Everything is created relative to a directory fd opened on DESTDIR
 *     (openat/mkdirat/symlinkat), with O_NOFOLLOW and O_DIRECTORY, so a
 *     symlink already in DESTDIR or one we just created is never followed.
 *  2. Names with '/', "." or ".." or empty are refused.
 *  3. Files are created with O_EXCL; an existing non-directory of that
 *     name is unlinked first (unlinkat removes the link, not its target),
 *     so a hard link to a host file is never written through.
 *  4. Guest symlink targets are copied verbatim and never resolved.
 * Device nodes and sockets are skipped with a warning; FIFOs are made.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest.h"

#define COPY_CHUNK (1u << 20)
#define COPY_MAX_DEPTH 256      /* nesting copied; each level holds one fd */

struct co {
    struct gt *t;
    struct dk_fs *fs;
    char *buf;
    int rc;
};

static bool bad_name(const char *n)
{
    return !*n || strchr(n, '/') || !strcmp(n, ".") || !strcmp(n, "..");
}

static void set_times(int dirfd, const char *name, const struct dk_stat *st)
{
    struct timespec ts[2] = { { st->atime, st->atime_ns }, { st->mtime, st->mtime_ns } };
    utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

/* Removes an existing non-directory NAME in DIRFD (not what it points to). */
static void clear_name(int dirfd, const char *name)
{
    struct stat hs;
    if (fstatat(dirfd, name, &hs, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(hs.st_mode))
        unlinkat(dirfd, name, 0);
}

/* Writes the non-zero 4 KiB pieces of BUF at OFF, leaving holes. */
static int write_sparse(int fd, const char *buf, size_t n, uint64_t off)
{
    const size_t blk = 4096;
    for (size_t i = 0; i < n;) {
        size_t len = n - i < blk ? n - i : blk, run = 0;
        bool zero = true;
        for (size_t k = 0; k < len && zero; k++)
            zero = buf[i + k] == 0;
        if (zero) {
            i += len;
            continue;
        }
        while (i + run < n) {       /* extend over following non-zero pieces */
            size_t l2 = n - i - run < blk ? n - i - run : blk;
            bool z2 = true;
            for (size_t k = 0; k < l2 && z2; k++)
                z2 = buf[i + run + k] == 0;
            if (z2)
                break;
            run += l2;
        }
        if (pwrite(fd, buf + i, run, (off_t)(off + i)) != (ssize_t)run)
            return -1;
        i += run;
    }
    return 0;
}

static int copy_file(struct co *c, const char *gpath, const struct dk_stat *st, int dirfd,
                     const char *name)
{
    struct dk_fsfile *f;
    int r = dk_fsfile_open(c->fs, gpath, 0, 0, &f);
    if (r < 0)
        return gt_fs_fail(c->t, c->fs, gpath, r);
    clear_name(dirfd, name);
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        dk_fsfile_close(f);
        return tool_fail("%s: cannot create: %s", name, strerror(errno));
    }
    int rc = 0;
    for (uint64_t off = 0; off < st->size && rc == 0;) {
        ssize_t n = dk_fsfile_pread(f, c->buf, COPY_CHUNK, off);
        if (n <= 0) {
            rc = n < 0 ? gt_fs_fail(c->t, c->fs, gpath, (int)n) : 0;
            break;
        }
        if (write_sparse(fd, c->buf, (size_t)n, off) < 0)
            rc = tool_fail("%s: write: %s", name, strerror(errno));
        off += (uint64_t)n;
    }
    if (rc == 0 && ftruncate(fd, (off_t)st->size) < 0)
        rc = tool_fail("%s: %s", name, strerror(errno));
    dk_fsfile_close(f);
    fchmod(fd, st->mode & 07777);
    close(fd);
    set_times(dirfd, name, st);
    return rc;
}

static int copy_node(struct co *c, const char *gpath, int dirfd, const char *name, int depth);

struct kids { char **v; size_t n, cap; };

static int add_kid(void *opaque, const char *name, uint64_t ino, unsigned type)
{
    struct kids *k = opaque;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 32;
        char **v = realloc(k->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        k->v = v, k->cap = cap;
    }
    return (k->v[k->n++] = strdup(name)) ? 0 : -ENOMEM;
}

/* Copies the entries of guest directory GPATH into host directory FD. */
static int copy_children(struct co *c, const char *gpath, int fd, int depth)
{
    struct kids k = { 0 };
    int r = dk_fs_readdir(c->fs, gpath, add_kid, &k), rc = 0;
    if (r < 0)
        rc = gt_fs_fail(c->t, c->fs, gpath, r);
    for (size_t i = 0; i < k.n; i++) {
        char *child = NULL;
        if (rc == 0 && asprintf(&child, "%s/%s", strcmp(gpath, "/") ? gpath : "", k.v[i]) < 0)
            rc = tool_fail("out of memory");
        if (rc == 0)
            rc = copy_node(c, child, fd, k.v[i], depth + 1);
        free(child);
        free(k.v[i]);
    }
    free(k.v);
    return rc;
}

static int copy_dir(struct co *c, const char *gpath, const struct dk_stat *st, int dirfd,
                    const char *name, int depth)
{
    if (depth > COPY_MAX_DEPTH)
        return tool_fail("%s: directory tree deeper than %d levels", gpath, COPY_MAX_DEPTH);
    int fd;
    if (name) {
        if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
            return tool_fail("%s: cannot create directory: %s", name, strerror(errno));
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    } else {
        fd = dup(dirfd);        /* "/" copies its contents into DESTDIR */
    }
    if (fd < 0)
        return tool_fail("%s: cannot open directory: %s", name ? name : ".", strerror(errno));
    int rc = copy_children(c, gpath, fd, depth);
    if (name) {
        fchmod(fd, st->mode & 07777);
        set_times(dirfd, name, st);
    }
    close(fd);
    return rc;
}

static int copy_node(struct co *c, const char *gpath, int dirfd, const char *name, int depth)
{
    struct dk_stat st;
    if (name && bad_name(name))
        return tool_fail("%s: refusing unsafe file name", gpath);
    int r = dk_fs_lstat(c->fs, gpath, &st);
    if (r < 0)
        return gt_fs_fail(c->t, c->fs, gpath, r);
    if (S_ISDIR(st.mode))
        return copy_dir(c, gpath, &st, dirfd, name, depth);
    if (!name)
        return tool_fail("%s: bad source", gpath);
    if (S_ISREG(st.mode))
        return copy_file(c, gpath, &st, dirfd, name);
    if (S_ISLNK(st.mode)) {
        char target[4096];
        ssize_t n = dk_fs_readlink(c->fs, gpath, target, sizeof(target));
        if (n < 0)
            return gt_fs_fail(c->t, c->fs, gpath, (int)n);
        clear_name(dirfd, name);
        if (symlinkat(target, dirfd, name) < 0)
            return tool_fail("%s: cannot create symlink: %s", name, strerror(errno));
        set_times(dirfd, name, &st);
        return 0;
    }
    if (S_ISFIFO(st.mode)) {
        clear_name(dirfd, name);
        if (mkfifoat(dirfd, name, st.mode & 07777) == 0)
            set_times(dirfd, name, &st);
        return 0;
    }
    fprintf(stderr, "diskkit: %s: warning: %s: skipping device node or socket\n", tool_cmd,
            gpath);
    return 0;
}

static int op(struct gt *t, struct gargs *a)
{
    const char *dest = a->pos[a->npos - 1];
    int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return tool_fail("%s: %s", dest, strerror(errno));
    struct co c = { t, NULL, malloc(COPY_CHUNK), 0 };
    int rc = c.buf ? 0 : tool_fail("out of memory");
    for (int i = 0; i < a->npos - 1 && rc == 0; i++) {
        char rest[4096];
        if (gt_resolve(t, a->pos[i], &c.fs, rest, sizeof(rest))) {
            rc = 1;
            break;
        }
        size_t len = strlen(rest);
        while (len > 1 && rest[len - 1] == '/')
            rest[--len] = 0;
        /* The name comes from the user's path: copying the mountpoint
         * "/boot" makes DESTDIR/boot although it is "/" of its fs. */
        char user[4096];
        snprintf(user, sizeof(user), "%s", a->pos[i]);
        len = strlen(user);
        while (len > 1 && user[len - 1] == '/')
            user[--len] = 0;
        const char *base = strrchr(user, '/') + 1;
        rc = copy_node(&c, rest, dfd, *base ? base : NULL, 0);
    }
    free(c.buf);
    close(dfd);
    return rc;
}

const struct gop gop_copy_out = {
    "copy-out", "", 2, -1, false, true, op, "PATH... DESTDIR",
    "Copy files or trees out of the guest into DESTDIR (like virt-copy-out).\n"
    "Modes, times and symlinks are kept; nothing is ever written outside DESTDIR.",
};

int cmd_copy_out(int argc, char **argv)
{
    return gt_main(&gop_copy_out, argc, argv);
}
