/* args.c - command line of diskkit-mount: options, usage text and the
 * secrets for encrypted images (qemu's --object secret,id=ID,data=|file=
 * syntax and the --passphrase-file shortcut of INTERFACE.md).
 *
 * With --image-opts, IMAGE is qemu's "driver=FMT,file.filename=PATH,
 * encrypt.key-secret=ID" form.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mount.h"

/* A secret file is one passphrase or key; 64 KiB is far more than any. */
#define SECRET_FILE_MAX 65536

enum {
    OPT_RO = 0x1000, OPT_RAW, OPT_FOREGROUND, OPT_OBJECT, OPT_PASSFILE,
    OPT_ALLOW_EXTERNAL, OPT_IMAGE_OPTS, OPT_HELP, OPT_VERSION,
};

static const struct option longopts[] = {
    { "format", required_argument, NULL, 'f' },
    { "ro", no_argument, NULL, OPT_RO },
    { "read-only", no_argument, NULL, OPT_RO },
    { "raw", no_argument, NULL, OPT_RAW },
    { "mount", required_argument, NULL, 'm' },
    { "options", required_argument, NULL, 'o' },
    { "foreground", no_argument, NULL, OPT_FOREGROUND },
    { "debug", no_argument, NULL, 'd' },
    { "force-share", no_argument, NULL, 'U' },
    { "object", required_argument, NULL, OPT_OBJECT },
    { "passphrase-file", required_argument, NULL, OPT_PASSFILE },
    { "allow-external-paths", no_argument, NULL, OPT_ALLOW_EXTERNAL },
    { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
    { "help", no_argument, NULL, OPT_HELP },
    { "version", no_argument, NULL, OPT_VERSION },
    { NULL, 0, NULL, 0 },
};

static void usage(void)
{
    printf(
"Usage: diskkit-mount [OPTIONS] IMAGE MOUNTPOINT\n"
"\n"
"Mounts the ext2/3/4 filesystem inside a disk image (raw, qcow2, vmdk, vdi,\n"
"vpc, backing chains) with FUSE, or with --raw the whole virtual disk as the\n"
"file MOUNTPOINT/disk. Unmount with: fusermount3 -u MOUNTPOINT\n"
"\n"
"Options:\n"
"  -f, --format FMT         image format (default: probed; a probed raw image\n"
"                           is only mounted read-only, give -f raw to write)\n"
"      --ro                 read-only\n"
"      --raw                expose the whole disk as MOUNTPOINT/disk\n"
"  -m, --mount DEV          guest filesystem to mount (/dev/sda1; default:\n"
"                           the OS root found by inspection, or the only one)\n"
"  -o OPTS                  FUSE mount options (allow_other, ...)\n"
"      --foreground         stay in the foreground\n"
"  -d, --debug              foreground, with a trace of FUSE requests\n"
"  -U, --force-share        open an image another process is writing (needs --ro)\n"
"      --object secret,id=ID,data=STR|file=PATH   secret of an encrypted image\n"
"      --passphrase-file F  passphrase of an encrypted image (first line of F)\n"
"      --allow-external-paths  allow extent/data files outside the image dir\n"
"      --image-opts         IMAGE is driver=FMT,file.filename=PATH[,encrypt.key-secret=ID]\n"
"      --help               this text\n"
"      --version            version\n");
}

void mount_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("diskkit-mount: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Reads a small secret file; with FIRST_LINE only up to the first newline. */
static int read_secret_file(const char *path, bool first_line,
                            unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    unsigned char *buf = malloc(SECRET_FILE_MAX);
    size_t n = buf ? fread(buf, 1, SECRET_FILE_MAX - 1, f) : 0;
    fclose(f);
    if (!buf)
        return -ENOMEM;
    if (first_line) {
        unsigned char *nl = memchr(buf, '\n', n);
        if (nl)
            n = (size_t)(nl - buf);
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Wipes the values of O (they may hold a secret) and frees it. */
static void opts_wipe_free(struct dk_opts *o)
{
    for (size_t k = 0; k < dk_opts_count(o); k++) {
        char *v = (char *)dk_opts_value(o, k);
        explicit_bzero(v, strlen(v));
    }
    dk_opts_free(o);
}

static int add_object(struct mount_args *a, const char *spec)
{
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    if (dk_opts_parse(&o, spec, &e) < 0) {
        mount_error("--object: %s", e.msg);
        return -1;
    }
    int rc = -1;
    const char *type = dk_opts_count(o) ? dk_opts_key(o, 0) : "";
    const char *qom = dk_opts_get(o, "qom-type");
    const char *id = dk_opts_get(o, "id"), *data = dk_opts_get(o, "data");
    const char *file = dk_opts_get(o, "file");
    size_t i = a->nsecrets;
    if (strcmp(type, "secret") && !(qom && !strcmp(qom, "secret")))
        mount_error("--object: only 'secret' objects are supported");
    else if (!id || !data == !file)
        mount_error("--object secret needs id= and exactly one of data= or file=");
    else if (i >= MOUNT_MAX_SECRETS)
        mount_error("--object: too many secrets (at most %d)", MOUNT_MAX_SECRETS);
    else if (data) {
        a->secrets[i].len = strlen(data);
        a->secrets[i].data = (unsigned char *)strdup(data);
        rc = 0;
    } else if (read_secret_file(file, false, &a->secrets[i].data, &a->secrets[i].len) < 0)
        mount_error("--object secret: cannot read '%s': %s", file, strerror(errno));
    else
        rc = 0;
    if (rc == 0) {
        a->secrets[i].id = strdup(id);
        a->nsecrets++;
    }
    opts_wipe_free(o);
    return rc;
}

static int parse_option(struct mount_args *a, int c, const char *arg)
{
    switch (c) {
    case 'f': a->format = arg; return 0;
    case 'm': a->device = arg; return 0;
    case 'o': a->fuse_opts = arg; return 0;
    case 'd': a->debug = a->foreground = true; return 0;
    case 'U': a->force_share = true; return 0;
    case OPT_RO: a->read_only = true; return 0;
    case OPT_RAW: a->raw = true; return 0;
    case OPT_FOREGROUND: a->foreground = true; return 0;
    case OPT_ALLOW_EXTERNAL: a->allow_external = true; return 0;
    case OPT_IMAGE_OPTS: a->image_opts_given = true; return 0;
    case OPT_OBJECT: return add_object(a, arg);
    case OPT_PASSFILE:
        if (a->passphrase) {
            explicit_bzero(a->passphrase, a->passphrase_len);
            free(a->passphrase);
            a->passphrase = NULL;
        }
        if (read_secret_file(arg, true, &a->passphrase, &a->passphrase_len) < 0) {
            mount_error("--passphrase-file: cannot read '%s': %s", arg, strerror(errno));
            return -1;
        }
        return 0;
    default:
        mount_error("unknown option (try --help)");
        return -1;
    }
}

/* --image-opts: takes the file name, format and key id from a->image. */
static int parse_image_opts(struct mount_args *a)
{
    struct dk_error e = { 0 };
    if (dk_opts_parse(&a->image_opts, a->image, &e) < 0) {
        mount_error("--image-opts: %s", e.msg);
        return -1;
    }
    const char *fn = dk_opts_get(a->image_opts, "file.filename");
    if (!fn)
        fn = dk_opts_get(a->image_opts, "filename");
    if (!fn) {
        mount_error("--image-opts: missing file.filename=");
        return -1;
    }
    const char *drv = dk_opts_get(a->image_opts, "driver");
    if (drv && a->format && strcmp(drv, a->format)) {
        mount_error("--image-opts: driver=%s contradicts -f %s", drv, a->format);
        return -1;
    }
    a->image = fn;
    if (drv)
        a->format = drv;
    a->key_secret = dk_opts_get(a->image_opts, "encrypt.key-secret");
    if (a->key_secret) {
        for (size_t i = 0; i < a->nsecrets; i++)
            if (!strcmp(a->secrets[i].id, a->key_secret))
                return 0;
        mount_error("no secret with id '%s' (give it with --object secret,id=%s,...)",
                    a->key_secret, a->key_secret);
        return -1;
    }
    return 0;
}

int mount_args_parse(struct mount_args *a, int argc, char **argv)
{
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+f:m:o:dU", longopts, NULL)) != -1) {
        if (c == OPT_HELP) {
            usage();
            return 1;
        }
        if (c == OPT_VERSION) {
            printf("diskkit-mount %s (libfuse %d)\nformats:", DK_VERSION_STRING,
                   fuse_version());
            for (const char *const *f = dk_formats(); *f; f++)
                printf(" %s", *f);
            putchar('\n');
            return 1;
        }
        if (c == '?' || c == ':') {
            if (optopt)
                mount_error("option '-%c' %s (try --help)", optopt,
                            c == ':' ? "needs an argument" : "is unknown");
            else
                mount_error("unknown option '%s' (try --help)", argv[optind - 1]);
            return -1;
        }
        if (parse_option(a, c, optarg) < 0)
            return -1;
    }
    if (argc - optind != 2) {
        mount_error("expected IMAGE and MOUNTPOINT (try --help)");
        return -1;
    }
    a->image = argv[optind];
    a->mountpoint = argv[optind + 1];
    if (a->image_opts_given && parse_image_opts(a) < 0)
        return -1;
    if (a->force_share && !a->read_only) {
        mount_error("-U/--force-share is only allowed together with --ro");
        return -1;
    }
    if (a->raw && a->device) {
        mount_error("-m selects a guest filesystem; it cannot be used with --raw");
        return -1;
    }
    return 0;
}

void mount_args_secret(const struct mount_args *a, const unsigned char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    for (size_t i = 0; a->key_secret && i < a->nsecrets; i++) {
        if (!strcmp(a->secrets[i].id, a->key_secret)) {
            *data = a->secrets[i].data;
            *len = a->secrets[i].len;
            return;
        }
    }
    if (a->nsecrets == 1) {
        *data = a->secrets[0].data;
        *len = a->secrets[0].len;
    } else if (a->passphrase) {
        *data = a->passphrase;
        *len = a->passphrase_len;
    }
}

void mount_args_free(struct mount_args *a)
{
    for (size_t i = 0; i < a->nsecrets; i++) {
        if (a->secrets[i].data)
            explicit_bzero(a->secrets[i].data, a->secrets[i].len);
        free(a->secrets[i].data);
        free(a->secrets[i].id);
    }
    if (a->passphrase) {
        explicit_bzero(a->passphrase, a->passphrase_len);
        free(a->passphrase);
    }
    dk_opts_free(a->image_opts);
    memset(a, 0, sizeof(*a));
}
