/* cmd_rebase.c - `diskkit rebase`: change the backing file of an overlay
 * (qemu-img rebase).
 *
 *   diskkit rebase [-u] -b BACKING [-F FMT] [-f FMT] [-p] [-q] FILE
 *
 * Safe mode (default) keeps FILE's content: what differs between the old
 * chain and BACKING is copied into FILE first (lib/chain.c dk_rebase).
 * -u only rewrites the header (FILE's old chain is not even opened).
 * -b "" removes the backing file (safe mode copies everything it provided).
 * Backing files are never probed: a non-empty BACKING needs -F.
 * BACKING is relative to FILE's directory, as stored in the image.
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit rebase [-u] -b BACKING [-F FMT] [-f FMT] [-p] [-q] FILE\n\n"
        "Makes BACKING the backing file of FILE.\n"
        "  -b BACKING  new backing file, relative to FILE's directory (\"\" = none)\n"
        "  -F FMT      format of BACKING (required: backing files are never probed)\n"
        "  -u          unsafe: only rewrite the header, copy nothing\n"
        "  -f FMT      format of FILE (default: probe)\n"
        "  -p          show progress\n"
        "  -q          quiet\n");
}

/* BACKING as seen from the current directory: relative names are relative
 * to the directory of FILE. Caller frees. */
static char *resolve(const char *file, const char *backing)
{
    const char *slash = strrchr(file, '/');
    if (backing[0] == '/' || !slash)
        return strdup(backing);
    size_t dlen = (size_t)(slash - file) + 1;
    char *p = malloc(dlen + strlen(backing) + 1);
    if (p) {
        memcpy(p, file, dlen);
        strcpy(p + dlen, backing);
    }
    return p;
}

struct rebase_args {
    const char *file, *fmt, *backing, *bfmt;
    bool unsafe;
    struct tool_progress prog;
};

static int safe_rebase(struct tool_common *tc, struct dk_image *img, struct rebase_args *a)
{
    struct dk_image *nb = NULL;
    if (*a->backing) {
        char *path = resolve(a->file, a->backing);
        if (!path)
            return tool_fail("out of memory");
        struct dk_open_opts o = { .format = a->bfmt };
        if (tc->allow_external)
            o.flags |= DK_OPEN_ALLOW_EXTERNAL;
        tool_secret_for(tc, NULL, &o.secret, &o.secret_len);
        struct dk_error e = { 0 };
        nb = dk_open(path, &o, &e);
        free(path);
        if (!nb)
            return tool_fail("Could not open new backing file '%s': %s", a->backing, e.msg);
    }
    int rc = 0;
    if (dk_rebase(img, nb, a->backing, a->bfmt, tool_progress_cb, &a->prog) < 0)
        rc = tool_fail("%s", dk_image_errmsg(img));
    dk_close(nb);
    return rc;
}

static int rebase(struct tool_common *tc, struct rebase_args *a)
{
    unsigned flags = DK_OPEN_RDWR | (a->unsafe ? DK_OPEN_NO_BACKING : 0);
    struct dk_image *img = tool_open(tc, a->file, a->fmt, flags);
    if (!img)
        return 1;
    int rc = 0;
    if (a->unsafe) {
        if (dk_set_backing(img, a->backing, a->bfmt) < 0)
            rc = tool_fail("Could not change the backing file to '%s': %s", a->backing,
                           dk_image_errmsg(img));
    } else {
        rc = safe_rebase(tc, img, a);
    }
    if (dk_close(img) < 0 && rc == 0)
        rc = tool_fail("%s: flushing the image failed", a->file);
    if (rc == 0)
        tool_progress_end(&a->prog);
    return rc;
}

int cmd_rebase(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "format", required_argument, NULL, 'f' },
        TOOL_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 }
    };
    struct tool_common tc = { 0 };
    struct rebase_args a = { .prog = { .enabled = false, .last_centi = -1 } };
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "b:F:f:upqt:T:Uh", longopts, NULL)) != -1) {
        int k = tool_common_option(&tc, c, optarg);
        if (k < 0)
            goto out;
        if (k > 0)
            continue;
        switch (c) {
        case 'b': a.backing = optarg; break;
        case 'F': a.bfmt = optarg; break;
        case 'f': a.fmt = optarg; break;
        case 'u': a.unsafe = true; break;
        case 'p': a.prog.enabled = true; break;
        case 'q': tc.quiet = true; break;
        case 't': case 'T': break;   /* cache modes: accepted for compatibility */
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: usage(stderr); goto out;
        }
    }
    if (optind != argc - 1) {
        rc = tool_fail(optind >= argc ? "Expecting one image file name"
                                      : "Too many arguments");
        goto out;
    }
    a.file = argv[optind];
    if (!a.backing) {
        rc = tool_fail("Must specify backing file (-b) or use unsafe mode (-u)");
        goto out;
    }
    if (*a.backing && !a.bfmt) {
        rc = tool_fail("Could not change the backing file to '%s': backing format must be "
                       "specified (-F FMT; backing files are never probed)", a.backing);
        goto out;
    }
    if (!*a.backing)
        a.bfmt = NULL;
    if (tc.quiet)
        a.prog.enabled = false;
    rc = rebase(&tc, &a);
out:
    tool_common_free(&tc);
    return rc;
}
