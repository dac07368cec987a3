/* cmd_copy_in.c - `diskkit copy-in [-m DEV] IMAGE LOCALPATH... GUESTDIR`
 * (like virt-copy-in): copies host files and trees into a guest
 * directory, keeping modes, numeric owners, times and symlinks.
 * Host symlinks are copied as symlinks (never followed); device nodes are
 * recreated; sockets are skipped. Existing guest files are replaced,
 * existing directories merged.
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest.h"

#define COPY_CHUNK (1u << 20)
#define COPY_MAX_DEPTH 256

struct ci {
    struct gt *t;
    struct dk_fs *fs;
    char *buf;
};

static int finish(struct ci *c, const char *gpath, const struct stat *hs)
{
    struct timespec ts[2] = { hs->st_atim, hs->st_mtim };
    int r = dk_fs_chown(c->fs, gpath, hs->st_uid, hs->st_gid);
    if (r == 0 && !S_ISLNK(hs->st_mode))
        r = dk_fs_chmod(c->fs, gpath, hs->st_mode & 07777);
    if (r == 0)
        r = dk_fs_utimens(c->fs, gpath, ts);
    return r < 0 ? gt_fs_fail(c->t, c->fs, gpath, r) : 0;
}

static int put_file(struct ci *c, int dirfd, const char *name, const char *gpath,
                    const struct stat *hs)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return tool_fail("%s: %s", name, strerror(errno));
    struct dk_fsfile *f;
    int r = dk_fsfile_open(c->fs, gpath, DK_O_WRITE | DK_O_CREAT | DK_O_TRUNC,
                           hs->st_mode & 07777, &f);
    if (r < 0) {
        close(fd);
        return gt_fs_fail(c->t, c->fs, gpath, r);
    }
    int rc = 0;
    for (uint64_t off = 0;;) {
        ssize_t n = read(fd, c->buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = tool_fail("%s: read: %s", name, strerror(errno));
        if (n <= 0)
            break;
        bool zero = true;
        for (ssize_t i = 0; i < n && zero; i++)
            zero = c->buf[i] == 0;
        ssize_t w = zero ? n : dk_fsfile_pwrite(f, c->buf, (size_t)n, off);
        if (w < 0) {
            rc = gt_fs_fail(c->t, c->fs, gpath, (int)w);
            break;
        }
        off += (uint64_t)n;
        if (zero && (r = dk_fsfile_truncate(f, off)) < 0) {   /* a hole up to here */
            rc = gt_fs_fail(c->t, c->fs, gpath, r);
            break;
        }
    }
    dk_fsfile_close(f);
    close(fd);
    return rc ? rc : finish(c, gpath, hs);
}

static int put_node(struct ci *c, int dirfd, const char *name, const char *gpath, int depth);

static int put_dir(struct ci *c, int dirfd, const char *name, const char *gpath,
                   const struct stat *hs, int depth)
{
    if (depth > COPY_MAX_DEPTH)
        return tool_fail("%s: directory tree deeper than %d levels", name, COPY_MAX_DEPTH);
    struct dk_stat st;
    int r = dk_fs_stat(c->fs, gpath, &st);
    if (r == 0 && !S_ISDIR(st.mode))
        return tool_fail("%s: exists and is not a directory", gpath);
    if (r < 0 && (r = dk_fs_mkdir(c->fs, gpath, 0700)) < 0)
        return gt_fs_fail(c->t, c->fs, gpath, r);
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return tool_fail("%s: %s", name, strerror(errno));
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *child = NULL;
        if (asprintf(&child, "%s/%s", strcmp(gpath, "/") ? gpath : "", de->d_name) < 0)
            rc = tool_fail("out of memory");
        else
            rc = put_node(c, fd, de->d_name, child, depth + 1);
        free(child);
    }
    closedir(d);
    return rc ? rc : finish(c, gpath, hs);
}

static int put_node(struct ci *c, int dirfd, const char *name, const char *gpath, int depth)
{
    struct stat hs;
    if (fstatat(dirfd, name, &hs, AT_SYMLINK_NOFOLLOW) < 0)
        return tool_fail("%s: %s", name, strerror(errno));
    if (S_ISDIR(hs.st_mode))
        return put_dir(c, dirfd, name, gpath, &hs, depth);
    struct dk_stat st;
    if (dk_fs_lstat(c->fs, gpath, &st) == 0) {      /* replace, like tar does */
        int r = S_ISDIR(st.mode) ? -EISDIR : dk_fs_unlink(c->fs, gpath);
        if (r < 0)
            return gt_fs_fail(c->t, c->fs, gpath, r);
    }
    if (S_ISREG(hs.st_mode))
        return put_file(c, dirfd, name, gpath, &hs);
    int r;
    if (S_ISLNK(hs.st_mode)) {
        char target[4096];
        ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);
        if (n < 0)
            return tool_fail("%s: %s", name, strerror(errno));
        target[n] = 0;
        r = dk_fs_symlink(c->fs, target, gpath);
    } else if (S_ISSOCK(hs.st_mode)) {
        fprintf(stderr, "diskkit: %s: warning: %s: skipping socket\n", tool_cmd, name);
        return 0;
    } else {
        r = dk_fs_mknod(c->fs, gpath, hs.st_mode, hs.st_rdev);
    }
    if (r < 0)
        return gt_fs_fail(c->t, c->fs, gpath, r);
    return finish(c, gpath, &hs);
}

static int op(struct gt *t, struct gargs *a)
{
    const char *gdir = a->pos[a->npos - 1];
    char rest[4096];
    struct ci c = { t, NULL, NULL };
    if (gt_resolve(t, gdir, &c.fs, rest, sizeof(rest)))
        return 1;
    struct dk_stat st;
    int r = dk_fs_stat(c.fs, rest, &st);
    if (r < 0)
        return gt_fs_fail(t, c.fs, gdir, r);
    if (!S_ISDIR(st.mode))
        return tool_fail("%s: Not a directory", gdir);
    if (!(c.buf = malloc(COPY_CHUNK)))
        return tool_fail("out of memory");
    int rc = 0;
    for (int i = 0; i < a->npos - 1 && rc == 0; i++) {
        char *local = strdup(a->pos[i]), *child = NULL;
        size_t len = local ? strlen(local) : 0;
        while (len > 1 && local[len - 1] == '/')
            local[--len] = 0;
        char *slash = local ? strrchr(local, '/') : NULL;
        const char *base = slash ? slash + 1 : local;
        const char *dir = slash ? (slash == local ? "/" : local) : ".";
        if (slash && slash != local)
            *slash = 0;
        int dfd = local ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (!local || dfd < 0 || !strcmp(base, "..") || !strcmp(base, ".") || !*base)
            rc = tool_fail("%s: cannot copy this path", a->pos[i]);
        else if (asprintf(&child, "%s/%s", strcmp(rest, "/") ? rest : "", base) < 0)
            rc = tool_fail("out of memory");
        else
            rc = put_node(&c, dfd, base, child, 0);
        if (dfd >= 0)
            close(dfd);
        free(child);
        free(local);
    }
    free(c.buf);
    return rc;
}

const struct gop gop_copy_in = {
    "copy-in", "", 2, -1, true, true, op, "LOCALPATH... GUESTDIR",
    "Copy host files or trees into a guest directory (like virt-copy-in).\n"
    "Modes, numeric owners, times and symlinks are kept.",
};

int cmd_copy_in(int argc, char **argv)
{
    return gt_main(&gop_copy_in, argc, argv);
}
