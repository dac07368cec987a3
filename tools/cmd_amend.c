/* cmd_amend.c - `diskkit amend`: change format options of an existing image
 * in place (qemu-img amend).
 *
 *   diskkit amend -o OPTS [-f FMT] [-p] [-q] [--force] FILE
 *   diskkit amend -o help [-f FMT] [FILE]
 *
 * Secrets (--object secret,id=ID,...) are registered on the opened image,
 * so qcow2's LUKS key slot options can name them (encrypt.new-secret=ID,
 * encrypt.old-secret=ID); the image itself is opened with its key the
 * way every command does (--image-opts ...,encrypt.key-secret=ID, a lone
 * --object, or --passphrase-file).
 *
 * The driver validates the options and decides what it can change; -o help
 * lists the options of the format that qemu-img amend accepts.
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

enum { OPT_FORCE = 0x2000 };

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit amend -o OPTS [-f FMT] [-p] [-q] [--force] FILE\n"
        "       diskkit amend --object secret,id=ID,... --image-opts IMAGEOPTS -o OPTS\n\n"
        "Changes format options of FILE in place (e.g. qcow2 compat, lazy_refcounts,\n"
        "refcount_bits, backing_file, size, LUKS key slots with encrypt.state=active|\n"
        "inactive, encrypt.new-secret=ID, encrypt.old-secret=ID, encrypt.keyslot=N).\n"
        "'-o help' lists them.\n"
        "  -o OPTS     key=value[,key=value...]\n"
        "  -f FMT      image format (default: probe)\n"
        "  -p          show progress\n"
        "  -q          quiet\n"
        "  --force     allow changes that lose data (e.g. erasing the last LUKS key)\n");
}

/* Options qemu-img amend accepts, a subset of the creation options. */
static bool amendable(const char *name)
{
    static const char *const names[] = {
        "backing_file", "backing_fmt", "compat", "data_file", "data_file_raw",
        "lazy_refcounts", "refcount_bits", "size", NULL
    };
    if (!strncmp(name, "encrypt.", 8))
        return strcmp(name, "encrypt.format") && strcmp(name, "encrypt.key-secret") &&
               strncmp(name, "encrypt.cipher", 14) && strncmp(name, "encrypt.ivgen", 13) &&
               strcmp(name, "encrypt.hash-alg");
    for (size_t i = 0; names[i]; i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const struct dk_optdesc *const *)a)->name,
                  (*(const struct dk_optdesc *const *)b)->name);
}

static int print_help(const char *fmt)
{
    const struct dk_optdesc *d = dk_create_options(fmt), *extra = dk_amend_options(fmt);
    if (!d || !extra)
        return tool_fail("Unknown file format '%s'", fmt);
    /* Sorted by name, as qemu-img prints them. */
    const struct dk_optdesc *list[64];
    size_t n = 0;
    for (; d->name && n < sizeof(list) / sizeof(list[0]); d++)
        if (amendable(d->name))
            list[n++] = d;
    for (; extra->name && n < sizeof(list) / sizeof(list[0]); extra++)
        list[n++] = extra;
    if (!n)
        return tool_fail("Format driver '%s' does not support option amendment", fmt);
    printf("Amend options for '%s':\n", fmt);
    qsort(list, n, sizeof(list[0]), by_name);
    for (size_t i = 0; i < n; i++) {
        static const char *const types[] = { "str", "size", "bool (on/off)", "num" };
        char left[128];
        snprintf(left, sizeof(left), "%s=<%s>", list[i]->name, types[list[i]->type]);
        printf("  %-22s - %s\n", left, list[i]->help ? list[i]->help : "");
    }
    return 0;
}

static int amend(struct tool_common *tc, const char *file, const char *fmt,
                 struct dk_opts *opts, const char *optstr, struct tool_progress *prog)
{
    /* The backing chain is not needed and may be what is being fixed. */
    struct dk_image *img = tool_open(tc, file, fmt, DK_OPEN_RDWR | DK_OPEN_NO_BACKING);
    if (!img)
        return 1;
    int rc = 0;
    if (!strcmp(optstr, "help")) {
        rc = print_help(dk_image_format(img));
    } else if (tool_add_secrets(tc, img) < 0) {
        rc = 1;   /* encrypt.new-secret=ID / old-secret=ID name them */
    } else if (dk_amend_progress(img, opts, tool_progress_cb, prog) < 0) {
        rc = tool_fail("%s", dk_image_errmsg(img));
    }
    if (dk_close(img) < 0 && rc == 0)
        rc = tool_fail("%s: flushing the image failed", file);
    if (rc == 0 && strcmp(optstr, "help"))
        tool_progress_end(prog);
    return rc;
}

int cmd_amend(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "force", no_argument, NULL, OPT_FORCE },
        { "format", required_argument, NULL, 'f' },
        TOOL_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 }
    };
    struct tool_common tc = { 0 };
    struct tool_progress prog = { .enabled = false, .last_centi = -1 };
    struct dk_opts *opts = NULL;
    const char *fmt = NULL, *optstr = NULL;
    bool force = false;
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "o:f:pqt:h", longopts, NULL)) != -1) {
        int k = tool_common_option(&tc, c, optarg);
        if (k < 0)
            goto out;
        if (k > 0)
            continue;
        switch (c) {
        case 'o': {
            struct dk_error e = { 0 };
            optstr = optarg;
            if (strcmp(optarg, "help") && dk_opts_parse(&opts, optarg, &e) < 0) {
                rc = tool_fail("Invalid option list: %s", e.msg);
                goto out;
            }
            break;
        }
        case 'f': fmt = optarg; break;
        case 'q': tc.quiet = true; break;
        case 'p': prog.enabled = true; break;
        case 't': break;   /* cache mode: accepted for qemu-img compatibility */
        case OPT_FORCE: force = true; break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: usage(stderr); goto out;
        }
    }
    if (!optstr) {
        rc = tool_fail("Must specify options (-o)");
        goto out;
    }
    if (!strcmp(optstr, "help") && optind == argc && fmt) {
        rc = print_help(fmt);
        goto out;
    }
    if (optind != argc - 1) {
        rc = tool_fail(optind >= argc ? "Expecting one image file name"
                                      : "Too many arguments");
        goto out;
    }
    /* The driver refuses data-losing changes unless told: pass --force on. */
    if (force && dk_opts_set(&opts, "force", "on") < 0) {
        rc = tool_fail("out of memory");
        goto out;
    }
    if (tc.quiet)
        prog.enabled = false;
    rc = amend(&tc, argv[optind], fmt, opts, optstr, &prog);
out:
    dk_opts_free(opts);
    tool_common_free(&tc);
    return rc;
}
