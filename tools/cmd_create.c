/* cmd_create.c - diskkit create: make a new image (qemu-img create).
 *
 *   diskkit create [-f FMT] [-o OPTS|-o help] [-b BACKING [-F FMT]] [-u] [-q]
 *                  FILE [SIZE]
 *
 * Prints qemu-img's "Formatting 'FILE', fmt=FMT key=value ..." line: the
 * size, the options given, and the defaults of the format's option table
 * (in table order, as qemu does for qcow2). Exit 0 or 1.
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit create [-f FMT] [-o OPTIONS] [-b BACKING [-F BACKING_FMT]] [-u] [-q]\n"
        "                      FILE [SIZE]\n\n"
        "Creates a new disk image FILE of SIZE bytes (suffixes k M G T P E, powers\n"
        "of 1024). With -b the image is an overlay of BACKING and SIZE defaults to\n"
        "the backing file's size.\n\n"
        "  -f FMT          image format (default raw)\n"
        "  -o OPTIONS      creation options key=value,...; '-o help' lists them\n"
        "  -b BACKING      backing file (recorded relative to FILE's directory)\n"
        "  -F BACKING_FMT  format of the backing file (required unless -u)\n"
        "  -u              do not open the backing file (SIZE is then required)\n"
        "  -q              quiet: no \"Formatting\" line\n"
        "  --object secret,id=ID,data=STR|file=PATH, --passphrase-file PATH\n"
        "                  secret for encrypt.key-secret=ID\n");
}

/* Prints the "Formatting ..." line the way qemu-img does. */
static void print_formatting(const char *file, const char *fmt, uint64_t size,
                             const struct dk_opts *opts)
{
    const struct dk_optdesc *d = dk_create_options(fmt);
    printf("Formatting '%s', fmt=%s", file, fmt);
    for (; d && d->name; d++) {
        const char *v = dk_opts_get(opts, d->name);
        if (!strcmp(d->name, "size"))
            printf(" size=%llu", (unsigned long long)size);
        else if (v)
            printf(" %s=%s", d->name, v);
        else if (d->def && strcmp(d->name, "preallocation") && strncmp(d->name, "encrypt.", 8))
            printf(" %s=%s", d->name, d->def);
    }
    putchar('\n');
    fflush(stdout);
}

static bool format_has_opt(const char *fmt, const char *name)
{
    for (const struct dk_optdesc *d = dk_create_options(fmt); d && d->name; d++)
        if (!strcmp(d->name, name))
            return true;
    return false;
}

struct create_cmd {
    const char *fmt, *backing, *backing_fmt;
    bool unsafe, quiet;
    struct dk_opts *opts;
    struct tool_common tc;
};

static int parse(struct create_cmd *c, int argc, char **argv)
{
    static const struct option lo[] = { TOOL_COMMON_LONGOPTS, { 0 } };
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":f:o:b:F:uqh", lo, NULL)) != -1) {
        int r = tool_common_option(&c->tc, ch, optarg);
        if (r < 0)
            return 1;
        if (r > 0)
            continue;
        switch (ch) {
        case 'f': c->fmt = optarg; break;
        case 'o': if (tool_parse_o(&c->opts, optarg) < 0) return 1; break;
        case 'b': c->backing = optarg; break;
        case 'F': c->backing_fmt = optarg; break;
        case 'u': c->unsafe = true; break;
        case 'q': c->quiet = true; break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); return -1;
        default: return tool_getopt_error(argv, ch);
        }
    }
    return 0;
}

/* Folds -b/-F and "-o size=" into the option list; returns the size. */
static int settle_options(struct create_cmd *c, int argc, char **argv, uint64_t *size)
{
    const char *fmt = c->fmt;
    if (c->backing && dk_opts_set(&c->opts, "backing_file", c->backing) < 0)
        return tool_fail("out of memory");
    if (c->backing_fmt && dk_opts_set(&c->opts, "backing_fmt", c->backing_fmt) < 0)
        return tool_fail("out of memory");
    const char *bf = dk_opts_get(c->opts, "backing_file");
    if (bf && !format_has_opt(fmt, "backing_file"))
        return tool_fail("Backing file not supported for file format '%s'", fmt);
    for (size_t i = 0; i < dk_opts_count(c->opts); i++) {
        const char *k = dk_opts_key(c->opts, i);
        if (!format_has_opt(fmt, k))
            return tool_fail("Invalid parameter '%s' for format %s", k, fmt);
    }
    *size = 0;
    const char *osize = dk_opts_get(c->opts, "size");
    if (optind + 1 < argc) {
        if (tool_parse_size(argv[optind + 1], size) < 0)
            return 1;
    } else if (osize) {
        if (tool_parse_size(osize, size) < 0)
            return 1;
    } else if (!bf) {
        return tool_fail("Image creation needs a size parameter");
    }
    dk_opts_del(c->opts, "size");
    return 0;
}

int cmd_create(int argc, char **argv)
{
    struct create_cmd c = { .fmt = "raw" };
    int rc = parse(&c, argc, argv);
    if (rc)
        goto out;
    if (!dk_create_options(c.fmt)) {
        rc = tool_fail("Unknown file format '%s'", c.fmt);
        goto out;
    }
    if (tool_opts_want_help(c.opts)) {
        rc = tool_print_create_help(c.fmt);
        goto out;
    }
    if (optind >= argc || argc - optind > 2) {
        rc = tool_fail("expected FILE [SIZE]; see 'diskkit create --help'");
        goto out;
    }
    const char *file = argv[optind];
    uint64_t size;
    if ((rc = settle_options(&c, argc, argv, &size)) != 0)
        goto out;
    if (!c.quiet)
        print_formatting(file, c.fmt, size, c.opts);
    struct dk_create_args a = {
        .filename = file, .format = c.fmt, .size = size, .opts = c.opts,
        .flags = (c.unsafe ? DK_CREATE_NO_BACKING_CHECK : 0) |
                 (c.tc.allow_external ? DK_CREATE_ALLOW_EXTERNAL : 0),
    };
    tool_secret_for(&c.tc, dk_opts_get(c.opts, "encrypt.key-secret"), &a.secret,
                    &a.secret_len);
    struct dk_error err = { 0 };
    if (dk_create(&a, &err) < 0)
        rc = tool_fail("%s", err.msg);
out:
    dk_opts_free(c.opts);
    tool_common_free(&c.tc);
    return rc < 0 ? 0 : rc;
}
