/* cmd_ls.c - `diskkit ls [-l] [-R] [-m DEV] IMAGE PATH` (like virt-ls):
 * names in a guest directory, sorted bytewise; -l in ls -l style (mode,
 * links, numeric uid/gid, size, mtime, name, "-> target"); -R recursive
 * with full guest paths, entering the filesystems the guest's fstab
 * mounts below PATH (unless -m picks one filesystem).
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "guest.h"

/* Deepest directory nesting -R descends (a looping or absurd tree stops). */
#define LS_MAX_DEPTH 256

struct ent { char *name; uint64_t ino; unsigned type; };
struct ents { struct ent *v; size_t n, cap; };

static int collect(void *opaque, const char *name, uint64_t ino, unsigned type)
{
    struct ents *e = opaque;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        struct ent *v = realloc(e->v, cap * sizeof(*v));
        if (!v)
            return -1;
        e->v = v, e->cap = cap;
    }
    if (!(e->v[e->n].name = strdup(name)))
        return -1;
    e->v[e->n].ino = ino;
    e->v[e->n++].type = type;
    return 0;
}

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ent *)a)->name, ((const struct ent *)b)->name);
}

static void ents_free(struct ents *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i].name);
    free(e->v);
}

static void mode_string(uint32_t m, char out[11])
{
    char t = S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : S_ISCHR(m) ? 'c' : S_ISBLK(m) ? 'b'
           : S_ISFIFO(m) ? 'p' : S_ISSOCK(m) ? 's' : '-';
    const char *rwx = "rwxrwxrwx";
    out[0] = t;
    for (int i = 0; i < 9; i++)
        out[i + 1] = (m & (0400u >> i)) ? rwx[i] : '-';
    if (m & S_ISUID) out[3] = (m & 0100) ? 's' : 'S';
    if (m & S_ISGID) out[6] = (m & 0010) ? 's' : 'S';
    if (m & S_ISVTX) out[9] = (m & 0001) ? 't' : 'T';
    out[10] = 0;
}

static void print_long(struct dk_fs *fs, const struct dk_stat *st, const char *name)
{
    char mode[11], when[32];
    mode_string(st->mode, mode);
    time_t tt = (time_t)st->mtime;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
    printf("%s %u %u %u %llu %s %s", mode, st->nlink, st->uid, st->gid,
           (unsigned long long)st->size, when, name);
    if (S_ISLNK(st->mode)) {
        char target[4096];
        if (dk_fs_readlink_ino(fs, st->ino, target, sizeof(target)) >= 0)
            printf(" -> %s", target);
    }
    putchar('\n');
}

/* With -R, a directory that is a mountpoint of the inspected guest is
 * listed from the filesystem mounted there (as virt-ls -R does). */
static struct dk_fs *mounted_at(struct gt *t, const char *path, uint64_t *ino)
{
    const struct dk_inspect *ins = t->device ? NULL : gt_inspect(t);
    for (size_t i = 0; ins && i < ins->nmounts; i++) {
        if (strcmp(ins->mounts[i].mountpoint, path) || !strcmp(path, "/"))
            continue;
        char rest[8];
        struct dk_fs *fs;
        if (gt_resolve(t, path, &fs, rest, sizeof(rest)))
            return NULL;
        *ino = dk_fs_root_ino(fs);
        return fs;
    }
    return NULL;
}

static int list_dir(struct gt *t, struct dk_fs *fs, uint64_t ino, const char *shown,
                    struct gargs *a, int depth)
{
    struct ents e = { 0 };
    int r = dk_fs_readdir_ino(fs, ino, collect, &e);
    if (r != 0) {
        ents_free(&e);
        return r < 0 ? r : -1;
    }
    if (e.n)
        qsort(e.v, e.n, sizeof(*e.v), ent_cmp);
    bool rec = a->fl['R'];
    for (size_t i = 0; i < e.n && r == 0; i++) {
        char *full = NULL;
        if (rec && asprintf(&full, "%s%s%s", shown, strcmp(shown, "/") ? "/" : "",
                            e.v[i].name) < 0) {
            r = -1;
            break;
        }
        const char *label = rec ? full : e.v[i].name;
        struct dk_stat st;
        bool need_stat = a->fl['l'] || (rec && e.v[i].type == DT_UNKNOWN);
        if (need_stat && (r = dk_fs_stat_ino(fs, e.v[i].ino, &st)) < 0) {
            free(full);
            break;
        }
        if (a->fl['l'])
            print_long(fs, &st, label);
        else
            printf("%s\n", label);
        bool isdir = e.v[i].type == DT_DIR || (need_stat && S_ISDIR(st.mode));
        if (rec && isdir && depth < LS_MAX_DEPTH) {
            uint64_t sino = e.v[i].ino;
            struct dk_fs *sub = mounted_at(t, full, &sino);
            r = list_dir(t, sub ? sub : fs, sino, full, a, depth + 1);
        }
        free(full);
    }
    ents_free(&e);
    return r;
}

static int op(struct gt *t, struct gargs *a)
{
    const char *path = a->pos[0];
    char rest[4096];
    struct dk_fs *fs;
    if (gt_resolve(t, path, &fs, rest, sizeof(rest)))
        return 1;
    struct dk_stat st, lst;
    int r = dk_fs_lstat(fs, rest, &lst);
    if (r < 0)
        return gt_fs_fail(t, fs, path, r);
    st = lst;
    /* like ls(1): a symlink to a directory is listed as the directory,
     * except with -l; a dangling one is shown as itself */
    if (S_ISLNK(lst.mode) && !a->fl['l'] && dk_fs_stat(fs, rest, &st) < 0)
        st = lst;
    if (!S_ISDIR(st.mode)) {
        if (a->fl['l'])
            print_long(fs, &lst, path);
        else
            printf("%s\n", path);
        return 0;
    }
    r = list_dir(t, fs, st.ino, path, a, 0);
    if (r == -1)
        return tool_fail("out of memory");
    return r < 0 ? gt_fs_fail(t, fs, path, r) : 0;
}

const struct gop gop_ls = {
    "ls", "lR", 1, 1, false, true, op, "PATH",
    "List a directory in the guest (like virt-ls).\n"
    "  -l          long listing: mode, links, uid, gid, size, mtime (UTC), name\n"
    "  -R          recursive, printing full paths",
};

int cmd_ls(int argc, char **argv)
{
    return gt_main(&gop_ls, argc, argv);
}
