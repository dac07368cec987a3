/* cmd_list_partitions.c - `diskkit list-partitions [-l] IMAGE...`: the
 * partitions of a guest, one device per line (guestfish list-partitions);
 * -l adds start, size, scheme and type.
 * SPDX-License-Identifier: MIT
 */
#include "guest.h"

static int op(struct gt *t, struct gargs *a)
{
    size_t n;
    const struct dk_partition *p = dk_guest_partitions(t->g, &n);
    for (size_t i = 0; i < n; i++) {
        if (p[i].partnum == 0)
            continue;                   /* a whole disk is not a partition */
        if (!a->fl['l']) {
            printf("%s\n", p[i].device);
            continue;
        }
        printf("%s %llu %llu %s ", p[i].device, (unsigned long long)p[i].offset,
               (unsigned long long)p[i].size, p[i].scheme);
        if (p[i].type_guid[0])
            printf("%s %s%s%s\n", p[i].type_guid, p[i].part_uuid,
                   p[i].name[0] ? " " : "", p[i].name);
        else
            printf("0x%02x%s%s\n", p[i].mbr_type, p[i].part_uuid[0] ? " " : "",
                   p[i].part_uuid);
    }
    return 0;
}

const struct gop gop_list_partitions = {
    "list-partitions", "l", 0, 0, false, false, op, "",
    "List the partitions (MBR primary, extended and logical, GPT) of the image.\n"
    "  -l          also print offset and size in bytes, scheme, type and PARTUUID",
};

int cmd_list_partitions(int argc, char **argv)
{
    return gt_main(&gop_list_partitions, argc, argv);
}
