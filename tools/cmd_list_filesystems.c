/* cmd_list_filesystems.c - `diskkit list-filesystems [-l] IMAGE`: what
 * every device holds, as "/dev/sda1: ext4" lines (guestfish
 * list-filesystems); -l adds label and UUID.
 * SPDX-License-Identifier: MIT
 */
#include "guest.h"

static int op(struct gt *t, struct gargs *a)
{
    size_t n;
    const struct dk_fsinfo *f = dk_guest_filesystems(t->g, &n);
    for (size_t i = 0; i < n; i++) {
        printf("%s: %s", f[i].device, f[i].type);
        if (a->fl['l'])
            printf(" label=%s uuid=%s size=%llu", f[i].label, f[i].uuid,
                   (unsigned long long)f[i].size);
        putchar('\n');
    }
    return 0;
}

const struct gop gop_list_filesystems = {
    "list-filesystems", "l", 0, 0, false, false, op, "",
    "List the filesystems (or other contents) of every partition or disk.\n"
    "  -l          also print label, UUID and size",
};

int cmd_list_filesystems(int argc, char **argv)
{
    return gt_main(&gop_list_filesystems, argc, argv);
}
