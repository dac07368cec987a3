/* cmd_df.c - `diskkit df [-h] IMAGE`: size, used and available space of
 * every ext2/3/4 filesystem of the guest, in virt-df's columns.
 * Sizes are whole-filesystem block counts (no bsddf overhead subtraction),
 * so "Used" includes metadata, as dumpe2fs would count it.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "guest.h"

static void human(char *buf, size_t len, uint64_t bytes)
{
    static const char units[] = "KMGTPE";
    double v = (double)bytes / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 5)
        v /= 1024.0, u++;
    snprintf(buf, len, v < 10.0 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

static int op(struct gt *t, struct gargs *a)
{
    size_t n;
    const struct dk_fsinfo *f = dk_guest_filesystems(t->g, &n);
    const char *image = dk_image_filename(t->imgs[0]);
    int rc = 0;
    if (a->fl['h'])
        printf("%-36s %10s %10s %10s %5s\n", "Filesystem", "Size", "Used", "Available", "Use%");
    else
        printf("%-36s %10s %10s %10s %5s\n", "Filesystem", "1K-blocks", "Used", "Available",
               "Use%");
    for (size_t i = 0; i < n; i++) {
        if (!f[i].readable)
            continue;
        struct dk_error err;
        struct dk_fs *fs = dk_fs_open(t->g, f[i].device, 0, &err);
        if (!fs) {
            rc = tool_fail("%s", err.msg);
            continue;
        }
        struct dk_statvfs st;
        dk_fs_statfs(fs, &st);
        dk_fs_close(fs);
        uint64_t size = st.blocks * st.bsize, used = (st.blocks - st.bfree) * st.bsize;
        uint64_t avail = st.bavail * st.bsize;
        char name[512];
        snprintf(name, sizeof(name), "%s:%s", image, f[i].device);
        int pct = size ? (int)((used * 100 + size - 1) / size) : 0;
        if (a->fl['h']) {
            char s1[16], s2[16], s3[16];
            human(s1, sizeof(s1), size), human(s2, sizeof(s2), used), human(s3, sizeof(s3), avail);
            printf("%-36s %10s %10s %10s %4d%%\n", name, s1, s2, s3, pct);
        } else {
            printf("%-36s %10llu %10llu %10llu %4d%%\n", name, (unsigned long long)(size / 1024),
                   (unsigned long long)(used / 1024), (unsigned long long)(avail / 1024), pct);
        }
    }
    return rc;
}

const struct gop gop_df = {
    "df", "h", 0, 0, false, false, op, "",
    "Show the space used on the guest's filesystems (like virt-df).\n"
    "  -h          human-readable sizes",
};

int cmd_df(int argc, char **argv)
{
    return gt_main(&gop_df, argc, argv);
}
