/* cmd_measure.c - `diskkit measure`: how big an image of a format would be
 * (qemu-img measure).
 *
 *   diskkit measure [-O FMT] [-o OPTS] (--size SIZE | [-f FMT] [-l SNAP] FILE)
 *                   [--output human|json]
 *
 * -O defaults to raw, as in qemu-img. The "bitmaps size" line (JSON
 * "bitmaps") appears exactly when qemu-img prints it: a qcow2 v3 target
 * measured from a source image whose format can hold persistent bitmaps
 * (qcow2).
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tool.h"

enum { OPT_SIZE = 0x2000, OPT_OUTPUT };

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit measure [-O FMT] [-o OPTS] (--size SIZE | [-f FMT] [-l SNAP] FILE)\n"
        "                       [--output human|json]\n\n"
        "Prints the file size an image of format FMT (default raw) needs: for a\n"
        "virtual size SIZE, or to hold the data of FILE.\n"
        "  -O FMT          target format\n"
        "  -o OPTS         target creation options (cluster_size=..., ...)\n"
        "  --size SIZE     measure an empty image of this virtual size\n"
        "  -f FMT          format of FILE (default: probe)\n"
        "  -l SNAP         measure internal snapshot SNAP (id or name) of FILE\n"
        "  --output FMT    human (default) or json\n");
}

static bool has_bitmaps(const char *ofmt, const struct dk_opts *opts, struct dk_image *src)
{
    const char *compat = dk_opts_get(opts, "compat");
    bool v2 = compat && (!strcmp(compat, "0.10") || !strcmp(compat, "v2"));
    return src && !strcmp(ofmt, "qcow2") && !v2 && !strcmp(dk_image_format(src), "qcow2");
}

static void print_result(const struct dk_measure *m, bool bitmaps, bool json)
{
    if (json) {
        /* qemu-img's member order (its QDict hash order). */
        printf("{\n");
        if (bitmaps)
            printf("    \"bitmaps\": %" PRIu64 ",\n", m->bitmaps);
        printf("    \"required\": %" PRIu64 ",\n", m->required);
        printf("    \"fully-allocated\": %" PRIu64 "\n}\n", m->fully_allocated);
        return;
    }
    printf("required size: %" PRIu64 "\n", m->required);
    printf("fully allocated size: %" PRIu64 "\n", m->fully_allocated);
    if (bitmaps)
        printf("bitmaps size: %" PRIu64 "\n", m->bitmaps);
}

struct measure_args {
    const char *ofmt, *fmt, *snap, *file;
    struct dk_opts *opts;
    uint64_t size;
    bool have_size, json;
};

static int measure(struct tool_common *tc, const struct measure_args *a)
{
    struct dk_image *src = NULL;
    if (a->file) {
        struct dk_open_opts o = { .format = a->fmt, .snapshot = a->snap };
        if (tc->force_share)
            o.flags |= DK_OPEN_FORCE_SHARE;
        if (tc->allow_external)
            o.flags |= DK_OPEN_ALLOW_EXTERNAL;
        if (!tc->image_opts) {
            tool_secret_for(tc, NULL, &o.secret, &o.secret_len);
            struct dk_error e = { 0 };
            if (!(src = dk_open(a->file, &o, &e)))
                return tool_fail("%s", e.msg);
        } else if (!(src = tool_open(tc, a->file, a->fmt, o.flags))) {
            return 1;
        }
    }
    struct dk_measure m;
    struct dk_error err = { 0 };
    int rc = 0;
    if (dk_measure(a->ofmt, a->opts, a->size, src, &m, &err) < 0)
        rc = tool_fail("%s", err.msg);
    else
        print_result(&m, has_bitmaps(a->ofmt, a->opts, src), a->json);
    dk_close(src);
    return rc;
}

int cmd_measure(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "size", required_argument, NULL, OPT_SIZE },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "format", required_argument, NULL, 'f' },
        TOOL_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 }
    };
    struct tool_common tc = { 0 };
    struct measure_args a = { .ofmt = "raw" };
    const char *output = "human";
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "O:o:f:l:qUh", longopts, NULL)) != -1) {
        int k = tool_common_option(&tc, c, optarg);
        if (k < 0)
            goto out;
        if (k > 0)
            continue;
        struct dk_error e = { 0 };
        switch (c) {
        case 'O': a.ofmt = optarg; break;
        case 'f': a.fmt = optarg; break;
        case 'l': a.snap = optarg; break;
        case 'q': tc.quiet = true; break;
        case OPT_OUTPUT: output = optarg; break;
        case 'o':
            if (dk_opts_parse(&a.opts, optarg, &e) < 0) {
                rc = tool_fail("Invalid option list: %s", e.msg);
                goto out;
            }
            break;
        case OPT_SIZE:
            if (tool_parse_size(optarg, &a.size) < 0)
                goto out;
            a.have_size = true;
            break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: usage(stderr); goto out;
        }
    }
    a.json = !strcmp(output, "json");
    if (!a.json && strcmp(output, "human")) {
        rc = tool_fail("--output must be used with human or json as argument.");
        goto out;
    }
    if (optind < argc - 1) {
        rc = tool_fail("Too many arguments");
        goto out;
    }
    a.file = optind < argc ? argv[optind] : NULL;
    if (a.file && a.have_size) {
        rc = tool_fail("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!a.file && !a.have_size) {
        rc = tool_fail("Either --size N or one filename must be specified.");
        goto out;
    }
    if (a.snap && !a.file) {
        rc = tool_fail("-l requires a filename");
        goto out;
    }
    rc = measure(&tc, &a);
out:
    dk_opts_free(a.opts);
    tool_common_free(&tc);
    return rc;
}
