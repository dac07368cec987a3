/* mount.h - internal interface of diskkit-mount (the fuse/ directory).
 *
 * diskkit-mount exposes a disk image through FUSE, using only the public
 * libdiskkit API (include/diskkit.h):
 *  - args.c   command line and secrets (--object, --passphrase-file)
 *  - main.c   open the image, mount, daemonise, run the loop, clean up
 *  - raw.c    --raw: the whole virtual disk as one file MOUNTPOINT/disk
 *  - fs.c     default: the guest filesystem, callbacks mapped 1:1 onto the
 *             guest-filesystem calls of diskkit.h
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_MOUNT_H
#define DK_MOUNT_H

#define FUSE_USE_VERSION 35

#include <stdbool.h>
#include <stddef.h>
#include <fuse.h>

#include "diskkit.h"

/* Prints "diskkit-mount: <message>\n" on stderr. */
void mount_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------ args.c */

#define MOUNT_MAX_SECRETS 8

struct mount_args {
    const char *image;          /* file name (argv, or from --image-opts) */
    const char *mountpoint;
    const char *format;         /* -f, NULL to probe */
    const char *device;         /* -m, NULL for inspection */
    const char *fuse_opts;      /* -o, passed to libfuse */
    bool read_only;             /* --ro */
    bool raw;                   /* --raw */
    bool foreground;            /* --foreground (or -d) */
    bool debug;                 /* -d: libfuse request trace */
    bool force_share;           /* -U */
    bool allow_external;        /* --allow-external-paths */
    bool image_opts_given;      /* --image-opts */
    struct dk_opts *image_opts; /* IMAGE parsed as driver=..,file.filename=.. */
    const char *key_secret;     /* encrypt.key-secret= of the image options */
    size_t nsecrets;
    struct { char *id; unsigned char *data; size_t len; } secrets[MOUNT_MAX_SECRETS];
    unsigned char *passphrase;  /* --passphrase-file */
    size_t passphrase_len;
};

/* Parses ARGV into A. Returns 0 to go on, 1 when --help/--version was
 * handled (exit 0), -1 on a usage error (message printed). */
int mount_args_parse(struct mount_args *a, int argc, char **argv);
/* The secret to open the image with: the one named by encrypt.key-secret,
 * else the only --object secret, else the passphrase; or NULL. */
void mount_args_secret(const struct mount_args *a, const unsigned char **data,
                       size_t *len);
/* Wipes and frees the secrets. */
void mount_args_free(struct mount_args *a);

/* ------------------------------------------------------------- raw.c */

/* State shared by the callbacks, reached through fuse_get_context(). */
struct mount_state {
    struct dk_image *img;       /* owned; closed by main after the loop */
    bool read_only;
    const char *image_path;     /* for the mtime and owner of the files */
    struct dk_guest *guest;     /* filesystem mode only: owned */
    struct dk_fs *fs;           /* filesystem mode only: owned */
};

/* The operations of --raw mode. */
const struct fuse_operations *raw_operations(void);

/* -------------------------------------------------------------- fs.c */

/* The operations of filesystem mode. */
const struct fuse_operations *fs_operations(void);
/* Opens the guest filesystem of ST->img (DEVICE or by inspection) into
 * ST->fs. Returns 0 or -1 with the message printed. */
int fs_setup(struct mount_state *st, const char *device);
/* Closes ST->fs (writing everything back) and the guest. Returns 0 or
 * -errno. */
int fs_teardown(struct mount_state *st);

#endif
