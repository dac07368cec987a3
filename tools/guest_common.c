/* guest_common.c - what every guest command shares: option parsing,
 * opening images as a guest, resolving guest paths through the inspected
 * fstab (longest mountpoint wins, or -m DEV), error printing.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"

const struct gop *const gops[] = {
    &gop_list_partitions, &gop_list_filesystems, &gop_list_lvs, &gop_inspect, &gop_df,
    &gop_ls, &gop_cat, &gop_copy_out, &gop_copy_in, &gop_write, &gop_mkdir, &gop_rm,
    &gop_getxattrs, &gop_setxattr, &gop_removexattr, NULL,
};

enum { OPT_OUTPUT = 0x2000, OPT_FORCE };

static void usage(const struct gop *op, FILE *f)
{
    char fl[16] = "";
    if (op->flags[0])
        snprintf(fl, sizeof(fl), "[-%s] ", op->flags);
    fprintf(f, "Usage: diskkit %s %s[-f FMT] [-m DEV] [common options] IMAGE%s%s\n%s\n\n"
            "  -f FMT      image format (default: probe)\n"
            "  -m DEV      guest filesystem (default: the inspected OS, mounts from its\n"
            "              fstab; or the only filesystem)\n"
            "  --object, --passphrase-file, --image-opts, -U, --allow-external-paths\n"
            "              as for the image commands\n",
            op->name, fl, op->synopsis[0] ? " " : "", op->synopsis, op->summary);
    if (op->writes)
        fprintf(f, "  --force     write even when the guest journal needs recovery\n");
}

static int parse(const struct gop *op, int argc, char **argv, struct gt *t, struct gargs *a)
{
    static const struct option longopts[] = {
        TOOL_COMMON_LONGOPTS,
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force", no_argument, NULL, OPT_FORCE },
        { "format", required_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    char shorts[64];
    snprintf(shorts, sizeof(shorts), "%s%s", t ? "f:m:U" : "m:", op->flags);
    memset(a, 0, sizeof(*a));
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
        if (c == TOOL_OPT_HELP) {
            usage(op, stdout);
            return 2;
        } else if (c == OPT_OUTPUT) {
            if (strcmp(optarg, "human") && strcmp(optarg, "json"))
                return tool_fail("--output must be human or json");
            a->output = optarg;
        } else if (c == 'f' && t) {
            t->format = optarg;
        } else if (c == 'm') {
            if (t)
                t->device = optarg;
            else
                a->device = optarg;
        } else if (c == OPT_FORCE && t) {
            t->force = true;
        } else if (c > 0 && c < 128 && c != '?' && c != ':' && strchr(op->flags, c)) {
            a->fl[c] = true;
        } else if (t && c >= TOOL_OPT_OBJECT && c <= TOOL_OPT_ALLOW_EXTERNAL) {
            if (tool_common_option(&t->tc, c, optarg) < 0)
                return 1;
        } else if (c == 'U' && t) {
            tool_common_option(&t->tc, c, optarg);
        } else {
            tool_error("unknown or incomplete option '%s' (try --help)", argv[optind - 1]);
            return 1;
        }
    }
    a->npos = argc - optind;
    a->pos = argv + optind;
    return 0;
}

static int check_count(const struct gop *op, int n)
{
    if (n < op->minpos || (op->maxpos >= 0 && n > op->maxpos))
        return tool_fail("wrong number of arguments (usage: %s %s)", op->name, op->synopsis);
    return 0;
}

int gt_parse_op(const struct gop *op, int argc, char **argv, struct gargs *a)
{
    int r = parse(op, argc, argv, NULL, a);
    if (r)
        return r == 2 ? 1 : r;
    return check_count(op, a->npos);
}

int gt_main(const struct gop *op, int argc, char **argv)
{
    struct gt t;
    struct gargs a;
    memset(&t, 0, sizeof(t));
    int r = parse(op, argc, argv, &t, &a);
    if (r) {
        tool_common_free(&t.tc);
        return r == 2 ? 0 : 1;
    }
    if (a.npos < 1) {
        tool_common_free(&t.tc);
        return tool_fail("missing IMAGE (try --help)");
    }
    char *image = a.pos[0];
    a.pos++;
    a.npos--;
    if (check_count(op, a.npos)) {
        tool_common_free(&t.tc);
        return 1;
    }
    t.rw = op->writes;
    r = gt_open(&t, &image, 1);
    if (r == 0)
        r = op->fn(&t, &a);
    int c = gt_close(&t);
    return r ? r : c;
}

int gt_open(struct gt *t, char **images, size_t n)
{
    if (n > DK_GUEST_MAX_DISKS)
        return tool_fail("at most %d images", DK_GUEST_MAX_DISKS);
    for (size_t i = 0; i < n; i++) {
        t->imgs[i] = tool_open(&t->tc, images[i], t->format, t->rw ? DK_OPEN_RDWR : 0);
        if (!t->imgs[i])
            return 1;
        t->nimgs++;
    }
    struct dk_error err = { 0 };
    t->g = dk_guest_open(t->imgs, n, 0, &err);
    if (!t->g)
        return tool_fail("%s", err.msg);
    for (size_t i = 0; i < dk_guest_nb_warnings(t->g); i++)
        if (!t->tc.quiet)
            fprintf(stderr, "diskkit: %s: warning: %s\n", tool_cmd, dk_guest_warning(t->g, i));
    return 0;
}

int gt_close(struct gt *t)
{
    int rc = 0;
    for (size_t i = 0; i < t->nfs; i++) {
        int r = dk_fs_close(t->fs[i].fs);
        if (r < 0)
            rc = tool_fail("%s: writing the filesystem back: %s", t->fs[i].dev, strerror(-r));
    }
    t->nfs = 0;
    dk_inspect_free(t->ins);
    t->ins = NULL;
    dk_guest_close(t->g);
    t->g = NULL;
    for (size_t i = 0; i < t->nimgs; i++) {
        char name[1024];
        snprintf(name, sizeof(name), "%s", dk_image_filename(t->imgs[i]));
        if (dk_close(t->imgs[i]) < 0)
            rc = tool_fail("%s: flushing the image failed", name);
    }
    t->nimgs = 0;
    tool_common_free(&t->tc);
    return rc;
}

const struct dk_inspect *gt_inspect(struct gt *t)
{
    if (!t->inspected) {
        t->inspected = true;
        if (dk_guest_inspect(t->g, &t->ins) < 0)
            t->ins = NULL;
    }
    return t->ins;
}

/* Opens (once) the filesystem on DEV, read-write when T->rw. */
static struct dk_fs *fs_for(struct gt *t, const char *dev)
{
    for (size_t i = 0; i < t->nfs; i++)
        if (!dev || !strcmp(t->fs[i].dev, dev))
            return t->fs[i].fs;
    if (t->nfs >= sizeof(t->fs) / sizeof(t->fs[0])) {
        tool_error("too many filesystems open");
        return NULL;
    }
    struct dk_error err = { 0 };
    unsigned flags = (t->rw ? DK_FS_RDWR : 0) | (t->force ? DK_FS_FORCE : 0);
    struct dk_fs *fs = dk_fs_open(t->g, dev, flags, &err);
    if (!fs) {
        tool_error("%s", err.msg);
        return NULL;
    }
    snprintf(t->fs[t->nfs].dev, sizeof(t->fs[0].dev), "%s", dk_fs_device(fs));
    t->fs[t->nfs++].fs = fs;
    return fs;
}

int gt_resolve(struct gt *t, const char *path, struct dk_fs **fs, char *rest, size_t len)
{
    if (!path || path[0] != '/')
        return tool_fail("%s: guest paths must be absolute", path ? path : "");
    const char *dev = t->device;
    if (!dev) {
        const struct dk_inspect *ins = gt_inspect(t);
        if (ins && !(dev = dk_inspect_resolve(ins, path, rest, len)))
            return tool_fail("%s: path too long", path);
    }
    if (!dev || t->device) {
        if (strlen(path) >= len)
            return tool_fail("%s: path too long", path);
        memcpy(rest, path, strlen(path) + 1);
    }
    *fs = fs_for(t, dev);
    return *fs ? 0 : 1;
}

int gt_fs_fail(struct gt *t, struct dk_fs *fs, const char *path, int r)
{
    switch (-r) {
    case ENOENT: case ENOTDIR: case EISDIR: case EEXIST: case ENOTEMPTY: case ELOOP:
    case ENAMETOOLONG:
        return tool_fail("%s: %s", path, strerror(-r));
    default:
        return tool_fail("%s", dk_fs_errmsg(fs));
    }
}
