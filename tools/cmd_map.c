/* cmd_map.c - diskkit map: where the guest data of an image lives
 * (qemu-img map).
 *
 *   diskkit map [-f FMT] [--output human|json] [--start-offset N]
 *               [--max-length N] [-U] FILE
 *
 * Entries come from dk_block_status over the whole chain and are merged
 * the way qemu-img merges them (same depth/present/zero/data, contiguous
 * host offsets). JSON prints one entry per line like qemu-img; the human
 * table lists only data ranges and refuses ranges without a host offset
 * (compressed or encrypted clusters), as qemu-img does.
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

#define MAP_PROBE_MAX (1ull << 30)   /* qemu probes at most 1 GiB at a time */

struct map_entry {
    uint64_t start, length, offset;
    int depth;
    bool present, zero, data, has_offset;
    const char *file;
};

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit map [-f FMT] [--output human|json] [--start-offset N]\n"
        "                   [--max-length N] [-U] FILE\n\n"
        "Prints the allocation map of FILE through its backing chain: for each\n"
        "range whether it is present, reads as zero, holds data, which layer\n"
        "(depth) and where in the host file.\n");
}

static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->length == 0 || a->zero != b->zero || a->data != b->data ||
        a->depth != b->depth || a->present != b->present || a->has_offset != b->has_offset)
        return false;
    return !a->has_offset || a->offset + a->length == b->offset;
}

/* Prints one entry; returns -1 when the human form cannot show it. */
static int dump(const struct map_entry *e, bool json, bool first)
{
    if (json) {
        printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d,"
               " \"present\": %s, \"zero\": %s, \"data\": %s",
               first ? "[" : ",\n", e->start, e->length, e->depth,
               e->present ? "true" : "false", e->zero ? "true" : "false",
               e->data ? "true" : "false");
        if (e->has_offset)
            printf(", \"offset\": %" PRIu64, e->offset);
        putchar('}');
        return 0;
    }
    if (e->data && !e->has_offset) {
        tool_error("File contains external, encrypted or compressed clusters.");
        return -1;
    }
    if (e->data && !e->zero)
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
               e->offset, e->file ? e->file : "");
    return 0;
}

static int get_entry(struct dk_image *img, uint64_t off, uint64_t len, struct map_entry *e)
{
    struct dk_extent x;
    int r = dk_block_status(img, off, len < MAP_PROBE_MAX ? len : MAP_PROBE_MAX, 0, &x);
    if (r < 0)
        return tool_fail("%s", dk_image_errmsg(img));
    bool has_off = x.flags & DK_BS_OFFSET_VALID;
    *e = (struct map_entry){
        .start = off, .length = x.length, .depth = x.depth,
        .present = x.flags & DK_BS_ALLOCATED, .zero = x.flags & DK_BS_ZERO,
        .data = x.flags & DK_BS_DATA, .has_offset = has_off,
        .offset = has_off ? x.host_offset : 0, .file = has_off ? x.host_file : NULL,
    };
    return 0;
}

static int do_map(struct dk_image *img, bool json, uint64_t start, uint64_t max_len)
{
    uint64_t length = dk_image_size(img);
    if (max_len != UINT64_MAX && start + max_len < length && start + max_len >= start)
        length = start + max_len;
    if (!json)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    struct map_entry cur = { .start = start, .length = 0 };
    bool first = true;
    while (cur.start + cur.length < length) {
        uint64_t off = cur.start + cur.length;
        struct map_entry next;
        if (get_entry(img, off, length - off, &next))
            return 1;
        if (mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length > 0) {
            if (dump(&cur, json, first) < 0)
                return 1;
            first = false;
        }
        cur = next;
    }
    if (dump(&cur, json, first) < 0)
        return 1;
    if (json)
        printf("]\n");
    return 0;
}

int cmd_map(int argc, char **argv)
{
    enum { OPT_OUTPUT = 1, OPT_START, OPT_MAXLEN };
    static const struct option lo[] = {
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "start-offset", required_argument, NULL, OPT_START },
        { "max-length", required_argument, NULL, OPT_MAXLEN },
        TOOL_COMMON_LONGOPTS, { 0 }
    };
    struct tool_common tc = { 0 };
    const char *fmt = NULL;
    bool json = false;
    uint64_t start = 0, max_len = UINT64_MAX;
    int ch, rc = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":f:Uh", lo, NULL)) != -1) {
        int r = tool_common_option(&tc, ch, optarg);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        switch (ch) {
        case 'f': fmt = optarg; break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human")) {
                tool_error("--output must be human or json, not '%s'", optarg);
                goto out;
            }
            break;
        case OPT_START: if (tool_parse_size(optarg, &start) < 0) goto out; break;
        case OPT_MAXLEN: if (tool_parse_size(optarg, &max_len) < 0) goto out; break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: rc = tool_getopt_error(argv, ch); goto out;
        }
    }
    if (optind + 1 != argc) {
        tool_error("expected one image file; see 'diskkit map --help'");
        goto out;
    }
    struct dk_image *img = tool_open(&tc, argv[optind], fmt, 0);
    if (img) {
        rc = do_map(img, json, start, max_len);
        dk_close(img);
    }
out:
    tool_common_free(&tc);
    return rc;
}
