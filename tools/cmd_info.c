/* cmd_info.c - diskkit info: describe an image (qemu-img info).
 *
 *   diskkit info [-f FMT] [--output human|json] [--backing-chain] [-U]
 *                [--image-opts] FILE
 *
 * Human output and JSON keys follow qemu-img 7.2, including its JSON key
 * order (backing-filename-format, snapshots, virtual-size, filename,
 * cluster-size, format, actual-size, format-specific, full-backing-filename,
 * backing-filename, encrypted, dirty-flag). Without --backing-chain the
 * backing file is not opened (a missing backing file does not stop info).
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit info [-f FMT] [--output human|json] [--backing-chain] [-U]\n"
        "                    [--image-opts] FILE\n\n"
        "Shows the format, sizes, backing file, snapshots and format-specific\n"
        "information of FILE. --backing-chain shows every layer of the chain\n"
        "(JSON: an array).\n");
}

static struct dk_val *snapshots_json(struct dk_val *obj, const struct dk_info *in)
{
    struct dk_val *l = dk_val_add_list(obj, "snapshots");
    for (size_t i = 0; l && i < in->nb_snapshots; i++) {
        const struct dk_snapshot *s = &in->snapshots[i];
        struct dk_val *o = dk_val_add_obj(l, NULL);
        if (!o)
            return NULL;
        if (s->icount != UINT64_MAX)
            dk_val_add_uint(o, "icount", s->icount);
        dk_val_add_uint(o, "vm-clock-nsec", s->vm_clock_nsec % 1000000000ull);
        dk_val_add_str(o, "name", s->name ? s->name : "");
        dk_val_add_uint(o, "date-sec", s->date_sec);
        dk_val_add_uint(o, "date-nsec", s->date_nsec);
        dk_val_add_uint(o, "vm-clock-sec", s->vm_clock_nsec / 1000000000ull);
        dk_val_add_str(o, "id", s->id ? s->id : "");
        dk_val_add_uint(o, "vm-state-size", s->vm_state_size);
    }
    return l;
}

/* Deep copy of a value into PARENT under KEY (format-specific). */
static void copy_val(struct dk_val *parent, const char *key, const struct dk_val *v)
{
    switch (v->type) {
    case DK_VAL_NULL: break;
    case DK_VAL_BOOL: dk_val_add_bool(parent, key, v->v.b); break;
    case DK_VAL_INT: dk_val_add_int(parent, key, v->v.i); break;
    case DK_VAL_UINT: dk_val_add_uint(parent, key, v->v.u); break;
    case DK_VAL_STR: dk_val_add_str(parent, key, v->v.s); break;
    case DK_VAL_OBJ:
    case DK_VAL_LIST: {
        struct dk_val *c = v->type == DK_VAL_OBJ ? dk_val_add_obj(parent, key)
                                                 : dk_val_add_list(parent, key);
        for (size_t i = 0; c && i < v->v.kids.n; i++)
            copy_val(c, v->v.kids.items[i].key, &v->v.kids.items[i]);
        break;
    }
    }
}

static struct dk_val *info_json(const struct dk_info *in)
{
    struct dk_val *o = dk_val_new_obj();
    if (!o)
        return NULL;
    if (in->backing_format)
        dk_val_add_str(o, "backing-filename-format", in->backing_format);
    if (in->nb_snapshots)
        snapshots_json(o, in);
    dk_val_add_uint(o, "virtual-size", in->virtual_size);
    dk_val_add_str(o, "filename", in->filename);
    if (in->cluster_size)
        dk_val_add_uint(o, "cluster-size", in->cluster_size);
    dk_val_add_str(o, "format", in->format);
    dk_val_add_uint(o, "actual-size", in->actual_size);
    if (in->format_specific)
        copy_val(o, "format-specific", in->format_specific);
    if (in->backing_filename) {
        dk_val_add_str(o, "full-backing-filename",
                       in->full_backing_filename ? in->full_backing_filename
                                                 : in->backing_filename);
        dk_val_add_str(o, "backing-filename", in->backing_filename);
    }
    if (in->encrypted)
        dk_val_add_bool(o, "encrypted", 1);
    dk_val_add_bool(o, "dirty-flag", in->dirty > 0);
    return o;
}

static void info_human(const struct dk_info *in)
{
    char sz[64];
    printf("image: %s\nfile format: %s\n", in->filename, in->format);
    tool_human_size(sz, sizeof(sz), in->virtual_size);
    printf("virtual size: %s (%llu bytes)\n", sz, (unsigned long long)in->virtual_size);
    tool_human_size(sz, sizeof(sz), in->actual_size);
    printf("disk size: %s\n", sz);
    if (in->encrypted)
        printf("encrypted: yes\n");
    if (in->cluster_size)
        printf("cluster_size: %u\n", in->cluster_size);
    if (in->backing_filename) {
        printf("backing file: %s", in->backing_filename);
        if (in->full_backing_filename &&
            strcmp(in->full_backing_filename, in->backing_filename))
            printf(" (actual path: %s)", in->full_backing_filename);
        putchar('\n');
        if (in->backing_format)
            printf("backing file format: %s\n", in->backing_format);
    }
    if (in->dirty > 0)
        printf("cleanly shut down: no\n");
    if (in->nb_snapshots) {
        printf("Snapshot list:\n");
        tool_print_snapshots(stdout, in->snapshots, in->nb_snapshots);
    }
    const struct dk_val *data = in->format_specific
        ? dk_val_get(in->format_specific, "data") : NULL;
    if (data && data->type == DK_VAL_OBJ && data->v.kids.n) {
        printf("Format specific information:\n");
        tool_print_human(stdout, data, 1);
    }
}

struct info_cmd {
    const char *fmt;
    bool json, chain;
    struct tool_common tc;
};

static int parse(struct info_cmd *c, int argc, char **argv)
{
    enum { OPT_OUTPUT = 1, OPT_CHAIN };
    static const struct option lo[] = {
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, OPT_CHAIN },
        TOOL_COMMON_LONGOPTS, { 0 }
    };
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":f:Uh", lo, NULL)) != -1) {
        int r = tool_common_option(&c->tc, ch, optarg);
        if (r < 0)
            return 1;
        if (r > 0)
            continue;
        switch (ch) {
        case 'f': c->fmt = optarg; break;
        case OPT_CHAIN: c->chain = true; break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json"))
                c->json = true;
            else if (strcmp(optarg, "human"))
                return tool_fail("--output must be human or json, not '%s'", optarg);
            break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); return -1;
        default: return tool_getopt_error(argv, ch);
        }
    }
    if (optind + 1 != argc)
        return tool_fail("expected one image file; see 'diskkit info --help'");
    return 0;
}

int cmd_info(int argc, char **argv)
{
    struct info_cmd c = { 0 };
    int rc = parse(&c, argc, argv);
    if (rc) {
        tool_common_free(&c.tc);
        return rc < 0 ? 0 : rc;
    }
    struct dk_image *img = tool_open(&c.tc, argv[optind], c.fmt,
                                     c.chain ? 0 : DK_OPEN_NO_BACKING);
    if (!img) {
        tool_common_free(&c.tc);
        return 1;
    }
    struct dk_val *list = c.json && c.chain ? dk_val_new_list() : NULL;
    for (struct dk_image *l = img; l && rc == 0; l = c.chain ? dk_image_backing(l) : NULL) {
        struct dk_info in;
        if (dk_info(l, &in) < 0) {
            rc = tool_fail("%s", dk_image_errmsg(l));
            dk_info_free(&in);
            break;
        }
        if (c.json) {
            struct dk_val *o = info_json(&in);
            if (!o) {
                rc = tool_fail("out of memory");
            } else if (list) {
                copy_val(list, NULL, o);
            } else {
                tool_print_json(stdout, o, 4, 0);
                putchar('\n');
            }
            dk_val_free(o);
        } else {
            if (l != img)
                putchar('\n');
            info_human(&in);
        }
        dk_info_free(&in);
    }
    if (list && rc == 0) {
        tool_print_json(stdout, list, 4, 0);
        putchar('\n');
    }
    dk_val_free(list);
    dk_close(img);
    tool_common_free(&c.tc);
    return rc;
}
