/* cmd_dd.c - `diskkit dd`: copy part of an image into a new image, with
 * dd(1)-style operands (qemu-img dd).
 *
 *   diskkit dd [-f FMT] [-O FMT] [-U] if=IN of=OUT [bs=N] [count=N] [skip=N]
 *
 * Semantics follow qemu-img 7.2 exactly, including its sizing: the input
 * is cut to count*bs bytes first and the skipped bytes are then taken off
 * that, so OUT holds min(count*bs, size(IN)) - skip*bs bytes starting at
 * skip*bs of IN. A skip past the end gives a warning and an empty OUT.
 * OUT is created (replaced) with format -O (default raw), its size rounded
 * up to whole 512-byte sectors as qemu-img does; zero ranges of
 * IN are not written, so OUT stays sparse. On failure OUT is removed.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

#define DD_CHUNK (1u << 20)    /* bytes copied per step */
#define DD_PIECE (64u << 10)   /* zero detection granularity inside a chunk */

struct dd_args {
    const char *in, *out, *fmt, *ofmt;
    uint64_t bs, count, skip;
    bool have_count, have_skip;
};

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit dd [-f FMT] [-O FMT] [-U] if=IN of=OUT [bs=N] [count=N] [skip=N]\n\n"
        "Copies IN into a new image OUT, like dd(1) (qemu-img dd).\n"
        "  if=IN      input image          of=OUT    output image (created)\n"
        "  bs=N       block size (default 512; suffixes k M G T P E)\n"
        "  count=N    copy only N input blocks (counted from the start of IN)\n"
        "  skip=N     skip N input blocks\n"
        "  -f FMT     input format (default: probe)   -O FMT  output format (default raw)\n");
}

/* Parses one "key=value" operand. Returns 0 or 1 (error printed). */
static int operand(struct dd_args *a, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return tool_fail("unrecognized operand %s", arg);
    size_t klen = (size_t)(eq - arg);
    const char *v = eq + 1;
    uint64_t n;
    if (klen == 2 && !strncmp(arg, "if", 2)) {
        a->in = v;
    } else if (klen == 2 && !strncmp(arg, "of", 2)) {
        a->out = v;
    } else if (klen == 2 && !strncmp(arg, "bs", 2)) {
        if (dk_parse_size(v, &n) < 0 || n == 0 || n > 2147483647)
            return tool_fail("Invalid bs specified. Must be between 1 and 2147483647.");
        a->bs = n;
    } else if (klen == 5 && !strncmp(arg, "count", 5)) {
        if (*v == '-' || dk_parse_size(v, &n) < 0)
            return tool_fail("Invalid count specified. You may use k, M, G, T, P or E "
                             "suffixes for kilobytes, megabytes, gigabytes, terabytes, "
                             "petabytes and exabytes.");
        a->count = n;
        a->have_count = true;
    } else if (klen == 4 && !strncmp(arg, "skip", 4)) {
        if (*v == '-' || dk_parse_size(v, &n) < 0)
            return tool_fail("Invalid skip specified. You may use k, M, G, T, P or E "
                             "suffixes for kilobytes, megabytes, gigabytes, terabytes, "
                             "petabytes and exabytes.");
        a->skip = n;
        a->have_skip = true;
    } else {
        return tool_fail("unrecognized operand %.*s", (int)klen, arg);
    }
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Copies IN[from, to) to OUT[0, ...), leaving zero ranges unwritten. */
static int copy(struct dk_image *in, struct dk_image *out, uint64_t from, uint64_t to,
                uint8_t *buf)
{
    for (uint64_t pos = from; pos < to;) {
        struct dk_extent e;
        if (dk_block_status(in, pos, to - pos, 0, &e) < 0)
            return tool_fail("%s", dk_image_errmsg(in));
        uint64_t end = pos + e.length;
        if (!(e.flags & DK_BS_DATA)) {      /* reads as zeros: a fresh OUT does too */
            pos = end;
            continue;
        }
        while (pos < end) {
            size_t n = end - pos < DD_CHUNK ? (size_t)(end - pos) : DD_CHUNK;
            if (dk_pread(in, buf, n, pos) < 0)
                return tool_fail("%s", dk_image_errmsg(in));
            for (size_t p = 0; p < n; p += DD_PIECE) {
                size_t k = n - p < DD_PIECE ? n - p : DD_PIECE;
                if (!all_zero(buf + p, k) &&
                    dk_pwrite(out, buf + p, k, pos - from + p) < 0)
                    return tool_fail("%s", dk_image_errmsg(out));
            }
            pos += n;
        }
    }
    return 0;
}

/* Creates OUT with SIZE bytes and copies into it. Returns the exit code. */
static int run(struct tool_common *tc, const struct dd_args *a)
{
    unsigned iflags = tc->force_share ? DK_OPEN_FORCE_SHARE : 0;
    struct dk_image *in = tool_open(tc, a->in, a->fmt, iflags), *out = NULL;
    if (!in)
        return 1;
    uint64_t size = dk_image_size(in), from;
    if (a->have_count && a->count <= INT64_MAX / a->bs && a->count * a->bs < size)
        size = a->count * a->bs;
    if (a->have_skip && (a->skip > INT64_MAX / a->bs || a->skip * a->bs > size)) {
        /* Like dd(1): a warning and an empty output. */
        tool_error("%s: cannot skip to specified offset", a->in);
        from = size;
    } else {
        from = a->have_skip ? a->skip * a->bs : 0;
    }
    int rc = 1;
    uint8_t *buf = malloc(DD_CHUNK);
    /* qemu-img creates whole 512-byte sectors: the tail stays zero. */
    uint64_t osize = (size - from + 511) / 512 * 512;
    struct dk_create_args ca = { .filename = a->out, .format = a->ofmt, .size = osize };
    struct dk_error err = { 0 };
    if (!buf) {
        tool_error("out of memory");
        goto out;
    }
    if (dk_create(&ca, &err) < 0) {
        tool_error("%s", err.msg);
        goto out;
    }
    struct dk_open_opts oo = { .format = a->ofmt, .flags = DK_OPEN_RDWR };
    if (!(out = dk_open(a->out, &oo, &err))) {
        tool_error("%s", err.msg);
        unlink(a->out);
        goto out;
    }
    rc = copy(in, out, from, size, buf);
    int cr = dk_close(out);
    if (cr < 0 && rc == 0)
        rc = tool_fail("%s: flushing the image failed: %s", a->out, strerror(-cr));
    if (rc)
        unlink(a->out);
out:
    free(buf);
    dk_close(in);
    return rc;
}

int cmd_dd(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "format", required_argument, NULL, 'f' },
        TOOL_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 }
    };
    struct tool_common tc = { 0 };
    struct dd_args a = { .ofmt = "raw", .bs = 512 };
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "f:O:Uh", longopts, NULL)) != -1) {
        int k = tool_common_option(&tc, c, optarg);
        if (k < 0)
            goto out;
        if (k > 0)
            continue;
        switch (c) {
        case 'f': a.fmt = optarg; break;
        case 'O': a.ofmt = optarg; break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: usage(stderr); goto out;
        }
    }
    for (int i = optind; i < argc; i++)
        if (operand(&a, argv[i]))
            goto out;
    if (!a.in || !a.out) {
        rc = tool_fail("Must specify both input and output files");
        goto out;
    }
    rc = run(&tc, &a);
out:
    tool_common_free(&tc);
    return rc;
}
