/* cmd_cat.c - `diskkit cat [-m DEV] IMAGE PATH...` (like virt-cat): writes
 * guest files to stdout. Symlinks are followed inside the guest.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest.h"

#define CAT_CHUNK (1u << 20)

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w, len -= (size_t)w;
    }
    return 0;
}

static int cat_one(struct gt *t, const char *path, char *buf)
{
    char rest[4096];
    struct dk_fs *fs;
    struct dk_fsfile *f;
    if (gt_resolve(t, path, &fs, rest, sizeof(rest)))
        return 1;
    int r = dk_fsfile_open(fs, rest, 0, 0, &f);
    if (r < 0)
        return gt_fs_fail(t, fs, path, r);
    uint64_t off = 0;
    for (;;) {
        ssize_t n = dk_fsfile_pread(f, buf, CAT_CHUNK, off);
        if (n < 0) {
            dk_fsfile_close(f);
            return gt_fs_fail(t, fs, path, (int)n);
        }
        if (n == 0)
            break;
        if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0) {
            dk_fsfile_close(f);
            return tool_fail("writing to stdout: %s", strerror(errno));
        }
        off += (uint64_t)n;
    }
    dk_fsfile_close(f);
    return 0;
}

static int op(struct gt *t, struct gargs *a)
{
    char *buf = malloc(CAT_CHUNK);
    if (!buf)
        return tool_fail("out of memory");
    int rc = 0;
    for (int i = 0; i < a->npos && rc == 0; i++)
        rc = cat_one(t, a->pos[i], buf);
    free(buf);
    return rc;
}

const struct gop gop_cat = {
    "cat", "", 1, -1, false, true, op, "PATH...",
    "Print files from the guest (like virt-cat).",
};

int cmd_cat(int argc, char **argv)
{
    return gt_main(&gop_cat, argc, argv);
}
