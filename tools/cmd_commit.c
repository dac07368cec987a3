/* cmd_commit.c - `diskkit commit`: write an overlay's data into its backing
 * image (qemu-img commit).
 *
 *   diskkit commit [-d] [-b BASE] [-f FMT] [-p] [-q] FILE
 *
 * Every range stored in FILE's top layer goes into its backing image,
 * which grows when FILE is larger. Without -d FILE is emptied afterwards
 * (all clusters deallocated, so it reads what the backing now holds), as
 * qemu-img does. With -b BASE, a deeper layer of the chain, everything
 * stored above BASE goes into it and FILE is kept (-b implies -d, as in
 * qemu-img). The chain is first opened read-only to find BASE, then again
 * with only BASE writable. The work is lib/chain.c dk_commit_to; this file
 * is the CLI.
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit commit [-d] [-b BASE] [-f FMT] [-p] [-q] FILE\n\n"
        "Writes the data stored in overlay FILE into its backing image.\n"
        "  -b BASE   commit into BASE, a deeper layer of FILE's backing chain\n"
        "            (everything stored above it goes in; implies -d)\n"
        "  -d        keep FILE's data (do not empty it afterwards)\n"
        "  -f FMT    format of FILE (default: probe)\n"
        "  -p        show progress\n"
        "  -q        quiet\n");
}

int cmd_commit(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "format", required_argument, NULL, 'f' },
        TOOL_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 }
    };
    struct tool_common tc = { 0 };
    struct tool_progress prog = { .enabled = false, .last_centi = -1 };
    const char *fmt = NULL, *base_name = NULL;
    unsigned flags = 0;
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "b:df:pqt:h", longopts, NULL)) != -1) {
        int k = tool_common_option(&tc, c, optarg);
        if (k < 0)
            goto out;
        if (k > 0)
            continue;
        switch (c) {
        case 'b': base_name = optarg; flags |= DK_COMMIT_KEEP; break;
        case 'd': flags |= DK_COMMIT_KEEP; break;
        case 'f': fmt = optarg; break;
        case 'p': prog.enabled = true; break;
        case 'q': tc.quiet = true; break;
        case 't': break;   /* cache mode: accepted for qemu-img compatibility */
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: usage(stderr); goto out;
        }
    }
    if (optind != argc - 1) {
        rc = tool_fail(optind >= argc ? "Expecting one image file name"
                                      : "Too many arguments");
        goto out;
    }
    if (tc.quiet)
        prog.enabled = false;
    struct dk_image *img, *base;
    int r;
    if (base_name) {
        /* Find BASE in the read-only chain, then reopen with it writable. */
        if (!(img = tool_open(&tc, argv[optind], fmt, 0)))
            goto out;
        if (!dk_image_backing(img)) {
            tool_error("%s: Image does not have a backing file", argv[optind]);
            dk_close(img);
            goto out;
        }
        if (!dk_chain_find(img, base_name, &tc.rw_depth)) {
            tool_error("Did not find '%s' in the backing chain of '%s'",
                       base_name, argv[optind]);
            dk_close(img);
            goto out;
        }
        dk_close(img);
        if (!(img = tool_open(&tc, argv[optind], fmt, 0)))
            goto out;
        base = img;
        for (int d = 0; base && d < tc.rw_depth; d++)
            base = dk_image_backing(base);
        r = dk_commit_to(img, base, flags, tool_progress_cb, &prog);
    } else {
        img = tool_open(&tc, argv[optind], fmt, DK_OPEN_RDWR | DK_OPEN_BACKING_RW);
        if (!img)
            goto out;
        r = dk_commit(img, flags, tool_progress_cb, &prog);
    }
    if (r < 0)
        tool_error("%s", dk_image_errmsg(img));
    int cr = dk_close(img);
    if (cr < 0 && r == 0) {
        tool_error("%s: flushing the image failed: %s", argv[optind], strerror(-cr));
        r = cr;
    }
    if (r == 0) {
        tool_progress_end(&prog);
        if (!tc.quiet)
            printf("Image committed.\n");
        rc = 0;
    }
out:
    tool_common_free(&tc);
    return rc;
}
