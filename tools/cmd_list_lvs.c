/* cmd_list_lvs.c - `diskkit list-lvs [-l] IMAGE`: the LVM2 logical
 * volumes of the guest as "/dev/VG/LV" lines (guestfish lvs); -l adds
 * the size, the number of PVs and stripes, the LV uuid, and "ok" or the
 * reason diskkit cannot read the LV.
 * SPDX-License-Identifier: MIT
 */
#include "guest.h"

static int op(struct gt *t, struct gargs *a)
{
    size_t n;
    const struct dk_lvinfo *lv = dk_guest_lvs(t->g, &n);
    for (size_t i = 0; i < n; i++) {
        printf("%s", lv[i].device);
        if (a->fl['l'])
            printf(" size=%llu pvs=%u stripes=%u uuid=%s status=%s",
                   (unsigned long long)lv[i].size, lv[i].npvs, lv[i].stripes, lv[i].uuid,
                   lv[i].error[0] ? lv[i].error : "ok");
        putchar('\n');
    }
    return 0;
}

const struct gop gop_list_lvs = {
    "list-lvs", "l", 0, 0, false, false, op, "",
    "List the LVM2 logical volumes (/dev/VG/LV) of the guest.\n"
    "  -l          also print size, PV and stripe counts, uuid and status",
};

int cmd_list_lvs(int argc, char **argv)
{
    return gt_main(&gop_list_lvs, argc, argv);
}
