/* cmd_check.c - `diskkit check`: consistency check and repair, qemu-img
 * check compatible (output text, JSON keys and exit codes).
 *
 *   diskkit check [-f FMT] [-r leaks|all] [--output human|json] [-q] [-U] FILE
 *
 * Exit codes (qemu-img's): 0 consistent (after repair with -r), 1 the check
 * could not run, 2 corruptions remain, 3 only leaked clusters remain,
 * 63 the format has no check. Problem lines from the driver go to stderr
 * as qemu-img prints them. After a repair the image is checked again and
 * the second result is reported, with the counts of what was fixed.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tool.h"

#define EXIT_NO_CHECK 63

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit check [-f FMT] [-r leaks|all] [--output human|json] [-q] [-U] FILE\n\n"
        "Checks the metadata of FILE for consistency (qemu-img check).\n"
        "  -f FMT              image format (default: probe)\n"
        "  -r leaks|all        repair leaked clusters, or all problems found\n"
        "  --output FMT        human (default) or json\n"
        "  -q                  quiet: print nothing, only set the exit code\n"
        "  -U, --force-share   open read-only even if a writer holds the image\n\n"
        "Exit status: 0 consistent, 1 check failed, 2 corruptions found,\n"
        "3 leaked clusters found, 63 the format does not support checks.\n");
}

static void report_line(void *opaque, const char *line)
{
    (void)opaque;
    fprintf(stderr, "%s\n", line);
}

/* JSON in the member order qemu-img prints (its QDict hash order); keys
 * with a zero value are left out, except check-errors, as qemu does. */
static void print_json(const char *filename, const char *format,
                       const struct dk_check_result *r)
{
    struct { const char *key; int64_t v; bool always; } m[] = {
        { "image-end-offset", (int64_t)r->image_end_offset, false },
        { "compressed-clusters", (int64_t)r->compressed_clusters, false },
        { "total-clusters", (int64_t)r->total_clusters, false },
        { "corruptions", r->corruptions, false },
        { "corruptions-fixed", r->corruptions_fixed, false },
        { "check-errors", r->check_errors, true },
        { "leaks", r->leaks, false },
        { "leaks-fixed", r->leaks_fixed, false },
        { "allocated-clusters", (int64_t)r->allocated_clusters, false },
        { "filename", 0, true },
        { "format", 0, true },
        { "fragmented-clusters", (int64_t)r->fragmented_clusters, false },
    };
    const char *sep = "{\n";
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        if (!m[i].always && m[i].v == 0)
            continue;
        printf("%s    \"%s\": ", sep, m[i].key);
        if (!strcmp(m[i].key, "filename"))
            tool_json_string(stdout, filename);
        else if (!strcmp(m[i].key, "format"))
            tool_json_string(stdout, format);
        else
            printf("%" PRId64, m[i].v);
        sep = ",\n";
    }
    printf("\n}\n");
}

static void print_human(const struct dk_check_result *r)
{
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%" PRId64 " errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   r->corruptions);
        if (r->leaks)
            printf("\n%" PRId64 " leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%" PRId64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters)
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, "
               "%0.2f%% compressed clusters\n",
               r->allocated_clusters, r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

/* Runs the check (and the second pass after a repair). Returns 0 or the
 * exit code to use when the check could not run. */
static int run_check(struct dk_image *img, unsigned fix, bool human, bool quiet,
                     struct dk_check_result *res)
{
    int r = dk_check(img, fix, res, report_line, NULL);
    if (r == -ENOTSUP) {
        tool_error("This image format does not support checks");
        return EXIT_NO_CHECK;
    }
    if (r < 0) {
        tool_error("Check failed: %s", dk_image_errmsg(img));
        return 1;
    }
    if (!res->corruptions_fixed && !res->leaks_fixed)
        return 0;
    if (human && !quiet)
        printf("The following inconsistencies were found and repaired:\n\n"
               "    %" PRId64 " leaked clusters\n"
               "    %" PRId64 " corruptions\n\n"
               "Double checking the fixed image now...\n",
               res->leaks_fixed, res->corruptions_fixed);
    int64_t lf = res->leaks_fixed, cf = res->corruptions_fixed;
    r = dk_check(img, 0, res, report_line, NULL);
    if (r < 0) {
        tool_error("Check failed: %s", dk_image_errmsg(img));
        return 1;
    }
    res->leaks_fixed = lf;
    res->corruptions_fixed = cf;
    return 0;
}

/* -r leaks|all: the DK_FIX_* flags, or 0 (error printed). */
static unsigned parse_repair(const char *arg)
{
    if (!strcmp(arg, "leaks"))
        return DK_FIX_LEAKS;
    if (!strcmp(arg, "all"))
        return DK_FIX_LEAKS | DK_FIX_ERRORS;
    tool_error("Unknown option value for -r (expecting 'leaks' or 'all'): %s", arg);
    return 0;
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "output", required_argument, NULL, 'O' },
        { "repair", required_argument, NULL, 'r' },
        { "format", required_argument, NULL, 'f' },
        TOOL_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 }
    };
    struct tool_common tc = { 0 };
    const char *fmt = NULL, *output = "human";
    unsigned fix = 0;
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "f:r:qUT:h", longopts, NULL)) != -1) {
        int k = tool_common_option(&tc, c, optarg);
        if (k < 0)
            goto out;
        if (k > 0)
            continue;
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': output = optarg; break;
        case 'q': tc.quiet = true; break;
        case 'T': break;   /* cache mode: accepted for qemu-img compatibility */
        case 'r':
            if (!(fix = parse_repair(optarg)))
                goto out;
            break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: usage(stderr); goto out;
        }
    }
    bool human = !strcmp(output, "human");
    if (!human && strcmp(output, "json")) {
        rc = tool_fail("--output must be used with human or json as argument.");
        goto out;
    }
    if (optind != argc - 1) {
        rc = tool_fail(optind >= argc ? "Expecting one image file name"
                                      : "Too many arguments");
        goto out;
    }
    unsigned oflags = fix ? DK_OPEN_RDWR | DK_OPEN_REPAIR : 0;
    struct dk_image *img = tool_open(&tc, argv[optind], fmt, oflags);
    if (!img)
        goto out;
    struct dk_check_result res;
    rc = run_check(img, fix, human, tc.quiet, &res);
    if (rc == 0 && !tc.quiet) {
        if (human)
            print_human(&res);
        else
            print_json(argv[optind], dk_image_format(img), &res);
    }
    if (rc == 0 && res.check_errors) {
        tool_error("Check failed");
        rc = 1;
    } else if (rc == 0) {
        rc = res.corruptions ? 2 : res.leaks ? 3 : 0;
    }
    if (dk_close(img) < 0 && rc == 0)
        rc = 1;
out:
    tool_common_free(&tc);
    return rc;
}
