/* cmd_resize.c - `diskkit resize`: change the virtual size (qemu-img resize).
 *
 *   diskkit resize [-f FMT] [--shrink] [--preallocation MODE] [-q] FILE [+|-]SIZE
 *
 * SIZE may be relative (+SIZE grows, -SIZE shrinks). As in qemu-img, the
 * size is taken from the last argument before option parsing, so "-1M"
 * needs no "--". Shrinking needs --shrink (data past the new end is lost).
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "tool.h"

enum { OPT_SHRINK = 0x2000, OPT_PREALLOC };

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit resize [-f FMT] [--shrink] [--preallocation MODE] [-q] FILE [+|-]SIZE\n\n"
        "Changes the virtual size of FILE to SIZE, or by +SIZE / -SIZE.\n"
        "  -f FMT                 image format (default: probe)\n"
        "  --shrink               allow shrinking (data past the new end is lost)\n"
        "  --preallocation MODE   off, metadata, falloc or full for the new area\n"
        "  -q                     quiet\n"
        "Sizes take the suffixes k, M, G, T, P, E (powers of 1024).\n");
}

/* Parses "[+|-]SIZE" into the new absolute size. Returns 0 or -1 (printed). */
static int new_size(const char *arg, uint64_t cur, uint64_t *out)
{
    int sign = 0;
    if (*arg == '+' || *arg == '-')
        sign = *arg++ == '+' ? 1 : -1;
    uint64_t n;
    if (tool_parse_size(arg, &n) < 0)
        return -1;
    if (sign > 0 && n > INT64_MAX - cur) {
        tool_error("Image size must be less than 8 EiB");
        return -1;
    }
    if (sign < 0 && n >= cur) {
        tool_error("New image size must be positive");
        return -1;
    }
    *out = sign > 0 ? cur + n : sign < 0 ? cur - n : n;
    if (*out == 0) {
        tool_error("New image size must be positive");
        return -1;
    }
    return 0;
}

int cmd_resize(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "shrink", no_argument, NULL, OPT_SHRINK },
        { "preallocation", required_argument, NULL, OPT_PREALLOC },
        { "format", required_argument, NULL, 'f' },
        TOOL_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 }
    };
    struct tool_common tc = { 0 };
    const char *fmt = NULL, *prealloc = NULL, *size_arg;
    unsigned flags = 0;
    int c, rc = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    }
    if (argc < 3) {
        usage(stderr);
        return 1;
    }
    size_arg = argv[--argc];    /* before getopt: "-1M" is not an option */
    while ((c = getopt_long(argc, argv, "f:qUT:", longopts, NULL)) != -1) {
        int k = tool_common_option(&tc, c, optarg);
        if (k < 0)
            goto out;
        if (k > 0)
            continue;
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'q': tc.quiet = true; break;
        case 'T': break;
        case OPT_SHRINK: flags |= DK_RESIZE_SHRINK; break;
        case OPT_PREALLOC: prealloc = optarg; break;
        default: usage(stderr); goto out;
        }
    }
    if (optind != argc - 1) {
        rc = tool_fail(optind >= argc ? "Expecting image file name and size"
                                      : "Too many arguments");
        goto out;
    }
    if (tc.force_share) {
        rc = tool_fail("-U/--force-share cannot be used to resize an image");
        goto out;
    }
    struct dk_image *img = tool_open(&tc, argv[optind], fmt, DK_OPEN_RDWR);
    if (!img)
        goto out;
    uint64_t size;
    if (new_size(size_arg, dk_image_size(img), &size) < 0) {
        dk_close(img);
        goto out;
    }
    int r = dk_resize(img, size, prealloc, flags);
    if (r < 0)
        tool_error("%s", dk_image_errmsg(img));
    int cr = dk_close(img);
    if (cr < 0 && r == 0) {
        tool_error("%s: flushing the image failed: %s", argv[optind], strerror(-cr));
        r = cr;
    }
    if (r == 0) {
        rc = 0;
        if (!tc.quiet)
            printf("Image resized.\n");
    }
out:
    tool_common_free(&tc);
    return rc;
}
