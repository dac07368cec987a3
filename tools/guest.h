/* guest.h - shared pieces of the guest commands (ls, cat, copy-out, ...,
 * shell): argument parsing, opening a guest, resolving guest paths through
 * the inspected mount table, and the table of guest operations that both
 * the one-shot commands and the shell run.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_TOOL_GUEST_H
#define DK_TOOL_GUEST_H

#include "tool.h"

/* An open guest as the commands see it. */
struct gt {
    struct tool_common tc;
    const char *format;             /* -f, or NULL to probe */
    const char *device;             /* -m, or NULL for inspected mounts */
    bool rw;                        /* images and filesystems writable */
    bool force;                     /* --force: write despite a dirty journal */
    struct dk_image *imgs[DK_GUEST_MAX_DISKS];
    size_t nimgs;
    struct dk_guest *g;
    struct dk_inspect *ins;         /* NULL when no OS was found */
    bool inspected;
    struct { char dev[DK_DEVNAME_MAX]; struct dk_fs *fs; } fs[16];
    size_t nfs;
};

/* Parsed arguments of one operation. */
struct gargs {
    bool fl[128];                   /* short flags seen (-l -> fl['l']) */
    const char *output;             /* --output human|json */
    const char *device;             /* -m DEV given on a shell line */
    int npos;
    char **pos;                     /* positional arguments (borrowed) */
};

/* One guest operation. FLAGS are its own short flags (getopt letters).
 * Positionals exclude the images. */
struct gop {
    const char *name;
    const char *flags;
    int minpos, maxpos;             /* maxpos -1 = unlimited */
    bool writes;
    bool needs_fs;                  /* works on paths (vs. on the guest) */
    int (*fn)(struct gt *t, struct gargs *a);
    const char *synopsis;           /* after "diskkit NAME [-f FMT] [-m DEV] IMAGE" */
    const char *summary;
};

extern const struct gop gop_list_partitions, gop_list_filesystems, gop_list_lvs,
    gop_inspect, gop_df, gop_ls, gop_cat, gop_copy_out, gop_copy_in, gop_write, gop_mkdir,
    gop_rm, gop_getxattrs, gop_setxattr, gop_removexattr;
/* All operations, NULL-terminated (for the shell and its help). */
extern const struct gop *const gops[];

/* Runs OP as a one-shot command: parses ARGV (argv[0] = command name),
 * opens the image, runs, closes. Returns the exit code. */
int gt_main(const struct gop *op, int argc, char **argv);

/* Parses the operation's own options from ARGV (argv[0] = name) into A
 * (for shell lines). Returns 0, or 1 with the error printed. */
int gt_parse_op(const struct gop *op, int argc, char **argv, struct gargs *a);

/* Opens IMAGES (N of them) into T. Returns 0 or 1 (error printed). */
int gt_open(struct gt *t, char **images, size_t n);
/* Closes filesystems (flushing), the guest and images. Returns 0 or 1. */
int gt_close(struct gt *t);

/* The filesystem for guest PATH and the path inside it (REST, LEN
 * bytes). Returns 0 or 1 (error printed). */
int gt_resolve(struct gt *t, const char *path, struct dk_fs **fs, char *rest, size_t len);
/* The inspection result (NULL when no OS). */
const struct dk_inspect *gt_inspect(struct gt *t);
/* Prints an error for a failed fs call R on user path PATH; returns 1. */
int gt_fs_fail(struct gt *t, struct dk_fs *fs, const char *path, int r);

#endif
