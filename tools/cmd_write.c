/* cmd_write.c - `diskkit write [-m DEV] IMAGE PATH < data`: creates or
 * replaces a guest file with stdin (guestfish write/upload). New files
 * get mode 0644 and owner 0:0.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest.h"

#define WRITE_CHUNK (1u << 20)

static int op(struct gt *t, struct gargs *a)
{
    const char *path = a->pos[0];
    char rest[4096];
    struct dk_fs *fs;
    struct dk_fsfile *f;
    if (gt_resolve(t, path, &fs, rest, sizeof(rest)))
        return 1;
    int r = dk_fsfile_open(fs, rest, DK_O_WRITE | DK_O_CREAT | DK_O_TRUNC, 0644, &f);
    if (r < 0)
        return gt_fs_fail(t, fs, path, r);
    char *buf = malloc(WRITE_CHUNK);
    uint64_t off = 0;
    int rc = buf ? 0 : tool_fail("out of memory");
    while (rc == 0) {
        ssize_t n = read(STDIN_FILENO, buf, WRITE_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = tool_fail("reading stdin: %s", strerror(errno));
        if (n <= 0)
            break;
        ssize_t w = dk_fsfile_pwrite(f, buf, (size_t)n, off);
        if (w < 0)
            rc = gt_fs_fail(t, fs, path, (int)w);
        off += (uint64_t)n;
    }
    free(buf);
    dk_fsfile_close(f);
    return rc;
}

const struct gop gop_write = {
    "write", "", 1, 1, true, true, op, "PATH",
    "Write stdin to a file in the guest (created with mode 0644, or replaced).",
};

int cmd_write(int argc, char **argv)
{
    return gt_main(&gop_write, argc, argv);
}
