/* cmd_rm.c - `diskkit rm [-r] [-m DEV] IMAGE PATH...`: removes guest files;
 * -r removes directories with their contents (guestfish rm / rm-rf).
 * Symlinks are removed, never followed. -r stays on one filesystem.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guest.h"

/* Deepest nesting removed with -r (bounds recursion on hostile trees). */
#define RM_MAX_DEPTH 256

struct names { char **v; size_t n, cap; };

static int add_name(void *opaque, const char *name, uint64_t ino, unsigned type)
{
    struct names *nm = opaque;
    if (nm->n == nm->cap) {
        size_t cap = nm->cap ? nm->cap * 2 : 32;
        char **v = realloc(nm->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        nm->v = v, nm->cap = cap;
    }
    return (nm->v[nm->n++] = strdup(name)) ? 0 : -ENOMEM;
}

static int rm_tree(struct dk_fs *fs, const char *path, int depth)
{
    struct dk_stat st;
    int r = dk_fs_lstat(fs, path, &st);
    if (r < 0)
        return r;
    if (!S_ISDIR(st.mode))
        return dk_fs_unlink(fs, path);
    if (depth > RM_MAX_DEPTH)
        return -ELOOP;
    struct names nm = { 0 };
    r = dk_fs_readdir(fs, path, add_name, &nm);
    for (size_t i = 0; i < nm.n; i++) {
        char *child = NULL;
        if (r == 0 && asprintf(&child, "%s/%s", strcmp(path, "/") ? path : "", nm.v[i]) < 0)
            r = -ENOMEM;
        if (r == 0)
            r = rm_tree(fs, child, depth + 1);
        free(child);
        free(nm.v[i]);
    }
    free(nm.v);
    return r < 0 ? r : dk_fs_rmdir(fs, path);
}

static int op(struct gt *t, struct gargs *a)
{
    for (int i = 0; i < a->npos; i++) {
        const char *path = a->pos[i];
        char rest[4096];
        struct dk_fs *fs;
        if (gt_resolve(t, path, &fs, rest, sizeof(rest)))
            return 1;
        if (!strcmp(rest, "/"))
            return tool_fail("%s: refusing to remove a filesystem root", path);
        int r = a->fl['r'] ? rm_tree(fs, rest, 0) : dk_fs_unlink(fs, rest);
        if (r < 0)
            return gt_fs_fail(t, fs, path, r);
    }
    return 0;
}

const struct gop gop_rm = {
    "rm", "r", 1, -1, true, true, op, "PATH...",
    "Remove files from the guest.\n"
    "  -r          remove directories and their contents recursively",
};

int cmd_rm(int argc, char **argv)
{
    return gt_main(&gop_rm, argc, argv);
}
