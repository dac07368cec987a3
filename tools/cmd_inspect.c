/* cmd_inspect.c - `diskkit inspect [--output human|json] IMAGE`: the
 * operating system found in the guest (like virt-inspector): type,
 * distro, product name, version, hostname, architecture, root device,
 * fstab mountpoints and the filesystems.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "guest.h"

static struct dk_val *build(struct gt *t, const struct dk_inspect *ins)
{
    struct dk_val *v = dk_val_new_obj();
    if (!v)
        return NULL;
    dk_val_add_str(v, "root", ins->root);
    dk_val_add_str(v, "type", ins->type);
    dk_val_add_str(v, "distro", ins->distro);
    dk_val_add_str(v, "product-name", ins->product_name);
    dk_val_add_str(v, "version", ins->version);
    dk_val_add_int(v, "major-version", ins->major_version);
    dk_val_add_int(v, "minor-version", ins->minor_version);
    dk_val_add_str(v, "hostname", ins->hostname);
    dk_val_add_str(v, "arch", ins->arch);
    struct dk_val *mps = dk_val_add_list(v, "mountpoints");
    for (size_t i = 0; mps && i < ins->nmounts; i++) {
        struct dk_val *m = dk_val_add_obj(mps, NULL);
        dk_val_add_str(m, "mountpoint", ins->mounts[i].mountpoint);
        dk_val_add_str(m, "device", ins->mounts[i].device);
    }
    size_t n;
    const struct dk_fsinfo *f = dk_guest_filesystems(t->g, &n);
    struct dk_val *fsl = dk_val_add_list(v, "filesystems");
    for (size_t i = 0; fsl && i < n; i++) {
        struct dk_val *o = dk_val_add_obj(fsl, NULL);
        dk_val_add_str(o, "device", f[i].device);
        dk_val_add_str(o, "type", f[i].type);
        dk_val_add_str(o, "label", f[i].label);
        dk_val_add_str(o, "uuid", f[i].uuid);
    }
    return v;
}

static void print_human(struct gt *t, const struct dk_inspect *ins)
{
    printf("root: %s\ntype: %s\ndistro: %s\nproduct name: %s\nversion: %s\n"
           "major version: %d\nminor version: %d\nhostname: %s\narch: %s\nmountpoints:\n",
           ins->root, ins->type, ins->distro, ins->product_name, ins->version,
           ins->major_version, ins->minor_version, ins->hostname, ins->arch);
    for (size_t i = 0; i < ins->nmounts; i++)
        printf("    %s: %s\n", ins->mounts[i].mountpoint, ins->mounts[i].device);
    size_t n;
    const struct dk_fsinfo *f = dk_guest_filesystems(t->g, &n);
    printf("filesystems:\n");
    for (size_t i = 0; i < n; i++)
        printf("    %s: %s%s%s%s%s\n", f[i].device, f[i].type, f[i].label[0] ? " label=" : "",
               f[i].label, f[i].uuid[0] ? " uuid=" : "", f[i].uuid);
}

static int op(struct gt *t, struct gargs *a)
{
    const struct dk_inspect *ins = gt_inspect(t);
    if (!ins)
        return tool_fail("%s", dk_guest_errmsg(t->g));
    if (!a->output || !strcmp(a->output, "human")) {
        print_human(t, ins);
        return 0;
    }
    struct dk_val *v = build(t, ins);
    if (!v)
        return tool_fail("out of memory");
    tool_print_json(stdout, v, 4, 0);
    putchar('\n');
    dk_val_free(v);
    return 0;
}

const struct gop gop_inspect = {
    "inspect", "", 0, 0, false, false, op, "",
    "Describe the operating system in the image (like virt-inspector).\n"
    "  --output human|json   output format (default human)",
};

int cmd_inspect(int argc, char **argv)
{
    return gt_main(&gop_inspect, argc, argv);
}
