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

/* qemu-img prints the options in the order of its merged option lists and
 * adds the defaults that have a default string; "=" marks such a default.
 * Formats not listed here print in their driver table's order. */
struct fmt_order { const char *fmt; const char *const *keys; };
static const char *const qcow2_order[] = {
    "encrypt.format", "encrypt.key-secret", "encrypt.cipher-alg", "encrypt.cipher-mode",
    "encrypt.ivgen-alg", "encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.iter-time",
    "cluster_size=65536", "extended_l2=off", "preallocation", "compression_type=zlib",
    "size", "compat", "backing_file", "backing_fmt", "data_file", "data_file_raw",
    "lazy_refcounts=off", "refcount_bits=16", NULL };
static const char *const vmdk_order[] = {
    "size", "adapter_type", "backing_file", "compat6=off", "hwversion=undefined",
    "toolsversion", "subformat", "zeroed_grain", NULL };
static const char *const vdi_order[] = { "size", "static=off", NULL };
static const char *const raw_order[] = { "size", "preallocation", NULL };
static const char *const vhdx_order[] = {
    "size", "log_size=1048576", "block_size=0", "subformat", "block_state_zero", NULL };
static const struct fmt_order orders[] = {
    { "qcow2", qcow2_order }, { "vmdk", vmdk_order }, { "vdi", vdi_order },
    { "raw", raw_order }, { "vhdx", vhdx_order },
};

static bool is_size_opt(const char *fmt, const char *key)
{
    for (const struct dk_optdesc *d = dk_create_options(fmt); d && d->name; d++)
        if (!strcmp(d->name, key))
            return d->type == DK_OPT_SIZE;
    return false;
}

/* Prints " key=value" (sizes normalised to bytes, as qemu-img does). */
static void print_opt(const char *fmt, const char *key, const char *val, uint64_t size)
{
    uint64_t n;
    if (!strcmp(key, "size"))
        printf(" size=%llu", (unsigned long long)size);
    else if (is_size_opt(fmt, key) && dk_parse_size(val, &n) == 0)
        printf(" %s=%llu", key, (unsigned long long)n);
    else
        printf(" %s=%s", key, val);
}

static bool in_order(const char *const *order, const char *key)
{
    for (; order && *order; order++)
        if (!strncmp(*order, key, strlen(key)) &&
            ((*order)[strlen(key)] == '\0' || (*order)[strlen(key)] == '='))
            return true;
    return false;
}

/* Prints the "Formatting ..." line the way qemu-img does. */
static void print_formatting(const char *file, const char *fmt, uint64_t size,
                             const struct dk_opts *opts)
{
    const char *const *order = NULL;
    for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++)
        if (!strcmp(orders[i].fmt, fmt))
            order = orders[i].keys;
    printf("Formatting '%s', fmt=%s", file, fmt);
    for (const char *const *o = order; o && *o; o++) {
        char key[64];
        const char *eq = strchr(*o, '=');
        snprintf(key, sizeof(key), "%.*s", eq ? (int)(eq - *o) : (int)strlen(*o), *o);
        const char *v = dk_opts_get(opts, key);
        if (v || !strcmp(key, "size") || eq)
            print_opt(fmt, key, v ? v : eq ? eq + 1 : "", size);
    }
    /* Unknown order: the driver table's; then anything not printed yet. */
    for (const struct dk_optdesc *d = dk_create_options(fmt); !order && d && d->name; d++)
        if (!strcmp(d->name, "size") || dk_opts_get(opts, d->name))
            print_opt(fmt, d->name, dk_opts_get(opts, d->name), size);
    for (size_t i = 0; order && i < dk_opts_count(opts); i++)
        if (!in_order(order, dk_opts_key(opts, i)))
            print_opt(fmt, dk_opts_key(opts, i), dk_opts_value(opts, i), size);
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

/* The size an overlay without SIZE gets (its backing file's), for the
 * "Formatting" line; 0 when the backing file cannot be opened (dk_create
 * then reports why). */
static uint64_t backing_size(const struct create_cmd *c, const char *file)
{
    const char *bf = dk_opts_get(c->opts, "backing_file");
    const char *bfmt = dk_opts_get(c->opts, "backing_fmt");
    if (!bf || !bfmt || c->unsafe)
        return 0;
    char path[4096];
    const char *slash = strrchr(file, '/');
    if (bf[0] == '/' || !slash)
        snprintf(path, sizeof(path), "%s", bf);
    else
        snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - file), file, bf);
    struct dk_open_opts o = { .format = bfmt, .flags = DK_OPEN_FORCE_SHARE | DK_OPEN_NO_BACKING };
    struct dk_error e = { 0 };
    struct dk_image *b = dk_open(path, &o, &e);
    uint64_t size = b ? dk_image_size(b) : 0;
    dk_close(b);
    return size;
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
    uint64_t shown = size ? size : backing_size(&c, file);
    if (!c.quiet && (size || shown || c.unsafe))
        print_formatting(file, c.fmt, shown, c.opts);
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
