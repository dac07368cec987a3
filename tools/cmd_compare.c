/* cmd_compare.c - diskkit compare: are two images' guest contents equal?
 * (qemu-img compare).
 *
 *   diskkit compare [-f FMT] [-F FMT] [-s] [-p] [-q] [-U] A B
 *
 * Exit 0 identical, 1 different, 2 error (INTERFACE.md). Messages are
 * qemu-img's: "Images are identical.", "Content mismatch at offset N!",
 * "Warning: Image size mismatch!", "Strict mode: ...".
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit compare [-f FMT] [-F FMT] [-s] [-p] [-q] [-U] A B\n\n"
        "Compares the guest-visible contents of images A and B (of any formats).\n"
        "  -f FMT  format of A        -F FMT  format of B\n"
        "  -s      strict: sizes and allocation must match too\n"
        "  -p      show progress      -q      quiet\n\n"
        "Exit status: 0 identical, 1 different, 2 error.\n");
}

int cmd_compare(int argc, char **argv)
{
    static const struct option lo[] = { TOOL_COMMON_LONGOPTS, { 0 } };
    struct tool_common tc = { 0 };
    struct tool_progress prog = { .last_centi = -1 };
    const char *fa = NULL, *fb = NULL;
    bool strict = false, quiet = false;
    int ch, rc = 2;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":f:F:spqUh", lo, NULL)) != -1) {
        int r = tool_common_option(&tc, ch, optarg);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        switch (ch) {
        case 'f': fa = optarg; break;
        case 'F': fb = optarg; break;
        case 's': strict = true; break;
        case 'p': prog.enabled = true; break;
        case 'q': quiet = true; break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: tool_getopt_error(argv, ch); goto out;
        }
    }
    if (quiet)
        prog.enabled = false;
    if (optind + 2 != argc) {
        tool_error("expected two image files; see 'diskkit compare --help'");
        goto out;
    }
    struct dk_image *a = tool_open(&tc, argv[optind], fa, 0);
    struct dk_image *b = a ? tool_open(&tc, argv[optind + 1], fb, 0) : NULL;
    if (a && b) {
        struct dk_error err = { 0 };
        uint64_t mm = 0, sa = dk_image_size(a), sb = dk_image_size(b);
        int r = dk_compare(a, b, strict ? DK_COPY_STRICT_EQUAL : 0, &mm,
                           tool_progress_cb, &prog, &err);
        if (r < 0) {
            tool_error("%s", err.msg);
        } else {
            tool_progress_end(&prog);
            /* qemu-img warns once it reaches the part past the smaller image. */
            if (!quiet && !strict && sa != sb && (r == 0 || mm >= (sa < sb ? sa : sb)))
                printf("Warning: Image size mismatch!\n");
            if (!quiet)
                printf("%s\n", r ? err.msg : "Images are identical.");
            rc = r;
        }
    }
    dk_close(b);
    dk_close(a);
out:
    tool_common_free(&tc);
    return rc;
}
