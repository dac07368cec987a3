/* cmd_snapshot.c - `diskkit snapshot`: list, create, apply and delete
 * internal snapshots (qemu-img snapshot).
 *
 *   diskkit snapshot (-l | -c NAME | -a NAME | -d NAME) [-f FMT] [-q] [-U] FILE
 *
 * The list is printed in qemu-img's fixed-width table; an image without
 * snapshots prints nothing. -a and -d accept an id or a name.
 * SPDX-License-Identifier: MIT
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tool.h"

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit snapshot (-l | -c NAME | -a NAME | -d NAME) [-f FMT] [-q] [-U] FILE\n\n"
        "Lists or changes the internal snapshots of FILE (qcow2).\n"
        "  -l          list the snapshots\n"
        "  -c NAME     create a snapshot of the current content\n"
        "  -a NAME     apply (revert to) a snapshot, by id or name\n"
        "  -d NAME     delete a snapshot, by id or name\n"
        "  -f FMT      image format (default: probe)\n"
        "  -q          quiet\n"
        "  -U          list while another process holds the image (read-only)\n");
}

/* qemu's size_to_str(): three significant digits, switching unit once the
 * value reaches 1000 of the smaller one ("0.977 MiB"). */
static void qemu_size_str(char *buf, size_t len, uint64_t val)
{
    static const char *const suffixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    int e;
    frexp((double)val / (1000.0 / 1024.0), &e);
    int i = (e - 1) / 10;
    if (i < 0)
        i = 0;
    if (i > 6)
        i = 6;
    uint64_t div = 1ULL << (i * 10);
    snprintf(buf, len, "%0.3g %sB", (double)val / (double)div, suffixes[i]);
}

static void print_row(const struct dk_snapshot *s)
{
    char date[64] = "", clock_buf[64], size[32], icount[32] = "";
    time_t t = (time_t)s->date_sec;
    struct tm tm;
    if (localtime_r(&t, &tm))
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t secs = s->vm_clock_nsec / 1000000000ULL;
    snprintf(clock_buf, sizeof(clock_buf), "%02d:%02d:%02d.%03d",
             (int)(secs / 3600), (int)((secs / 60) % 60), (int)(secs % 60),
             (int)((s->vm_clock_nsec / 1000000) % 1000));
    qemu_size_str(size, sizeof(size), s->vm_state_size);
    if (s->icount != UINT64_MAX)
        snprintf(icount, sizeof(icount), "%" PRId64, (int64_t)s->icount);
    printf("%-9s %-16s %8s%20s%13s%11s\n", s->id, s->name, size, date, clock_buf, icount);
}

static int list(struct dk_image *img)
{
    struct dk_snapshot *sn;
    size_t n;
    if (dk_snapshot_list(img, &sn, &n) < 0)
        return tool_fail("%s", dk_image_errmsg(img));
    if (n) {
        printf("Snapshot list:\n");
        printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
               "ICOUNT");
        for (size_t i = 0; i < n; i++)
            print_row(&sn[i]);
    }
    dk_snapshots_free(sn, n);
    return 0;
}

static int change(struct dk_image *img, char action, const char *name)
{
    int r;
    const char *what;
    switch (action) {
    case 'c': r = dk_snapshot_create(img, name); what = "create"; break;
    case 'a': r = dk_snapshot_apply(img, name); what = "apply"; break;
    default: r = dk_snapshot_delete(img, name); what = "delete"; break;
    }
    if (r < 0)
        return tool_fail("Could not %s snapshot '%s': %s", what, name, dk_image_errmsg(img));
    return 0;
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "format", required_argument, NULL, 'f' },
        TOOL_COMMON_LONGOPTS,
        { NULL, 0, NULL, 0 }
    };
    struct tool_common tc = { 0 };
    const char *fmt = NULL, *name = NULL;
    char action = 0;
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "lc:a:d:f:qUh", longopts, NULL)) != -1) {
        int k = tool_common_option(&tc, c, optarg);
        if (k < 0)
            goto out;
        if (k > 0)
            continue;
        switch (c) {
        case 'l': case 'c': case 'a': case 'd':
            if (action) {
                rc = tool_fail("Cannot mix '-l', '-a', '-c', '-d'");
                goto out;
            }
            action = (char)c;
            name = optarg;
            break;
        case 'f': fmt = optarg; break;
        case 'q': tc.quiet = true; break;
        case 'h': case TOOL_OPT_HELP: usage(stdout); rc = 0; goto out;
        default: usage(stderr); goto out;
        }
    }
    if (!action || optind != argc - 1) {
        rc = tool_fail(!action ? "Expecting one of -l, -c NAME, -a NAME, -d NAME"
                               : "Expecting one image file name");
        goto out;
    }
    if (action != 'l' && tc.force_share) {
        rc = tool_fail("-U can only be used with -l (listing)");
        goto out;
    }
    unsigned flags = action == 'l' ? 0 : DK_OPEN_RDWR;
    struct dk_image *img = tool_open(&tc, argv[optind], fmt, flags);
    if (!img)
        goto out;
    rc = action == 'l' ? list(img) : change(img, action, name);
    if (dk_close(img) < 0 && rc == 0)
        rc = tool_fail("%s: flushing the image failed", argv[optind]);
out:
    tool_common_free(&tc);
    return rc;
}
