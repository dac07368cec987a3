/* cmd_mkdir.c - `diskkit mkdir [-p] [-m DEV] IMAGE PATH...`: creates guest
 * directories (mode 0755); -p creates missing parents and accepts
 * existing directories (guestfish mkdir / mkdir-p).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "guest.h"

static int mkdir_p(struct dk_fs *fs, char *rest)
{
    for (char *p = rest + 1; ; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char save = *p;
        *p = 0;
        struct dk_stat st;
        int r = 0;
        if (dk_fs_stat(fs, rest, &st) < 0)
            r = dk_fs_mkdir(fs, rest, 0755);
        else if (!S_ISDIR(st.mode))
            r = -ENOTDIR;
        *p = save;
        if (r < 0 || save == 0)
            return r;
    }
}

static int op(struct gt *t, struct gargs *a)
{
    for (int i = 0; i < a->npos; i++) {
        const char *path = a->pos[i];
        char rest[4096];
        struct dk_fs *fs;
        if (gt_resolve(t, path, &fs, rest, sizeof(rest)))
            return 1;
        size_t len = strlen(rest);
        while (len > 1 && rest[len - 1] == '/')
            rest[--len] = 0;
        int r;
        if (a->fl['p'])
            r = strcmp(rest, "/") ? mkdir_p(fs, rest) : 0;
        else
            r = dk_fs_mkdir(fs, rest, 0755);
        if (r < 0)
            return gt_fs_fail(t, fs, path, r);
    }
    return 0;
}

const struct gop gop_mkdir = {
    "mkdir", "p", 1, -1, true, true, op, "PATH...",
    "Create directories in the guest (mode 0755).\n"
    "  -p          create parents as needed; no error if the directory exists",
};

int cmd_mkdir(int argc, char **argv)
{
    return gt_main(&gop_mkdir, argc, argv);
}
