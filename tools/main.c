/* main.c - the diskkit command dispatcher.
 * Each command lives in tools/cmd_<name>.c; add it to the table below.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "tool.h"

typedef int (*cmd_fn)(int argc, char **argv);

struct command {
    const char *name;
    cmd_fn fn;
    const char *summary;
};

/* Image commands (qemu-img compatible), then guest commands (virt-*). */
/* One line per command: add yours here and its prototype above the table. */
int cmd_check(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_amend(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_dd(int argc, char **argv);
int cmd_list_partitions(int argc, char **argv);
int cmd_list_filesystems(int argc, char **argv);
int cmd_list_lvs(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_df(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_copy_out(int argc, char **argv);
int cmd_copy_in(int argc, char **argv);
int cmd_write(int argc, char **argv);
int cmd_mkdir(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_shell(int argc, char **argv);
int cmd_getxattrs(int argc, char **argv);
int cmd_setxattr(int argc, char **argv);
int cmd_removexattr(int argc, char **argv);

int cmd_create(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_compare(int argc, char **argv);

static const struct command commands[] = {
    { "create", cmd_create, "create a new disk image" },
    { "info", cmd_info, "show information about an image" },
    { "convert", cmd_convert, "convert/copy images between formats" },
    { "map", cmd_map, "show the allocation map of an image" },
    { "compare", cmd_compare, "compare the contents of two images" },
    { "version", NULL, "print the version" },
    { "check", cmd_check, "check (and repair) an image's metadata" },
    { "resize", cmd_resize, "change the virtual size of an image" },
    { "snapshot", cmd_snapshot, "list, create, apply or delete internal snapshots" },
    { "amend", cmd_amend, "change format options of an image in place" },
    { "rebase", cmd_rebase, "change the backing file of an image" },
    { "commit", cmd_commit, "write an overlay's data into its backing image" },
    { "measure", cmd_measure, "compute the size an image of a format needs" },
    { "dd", cmd_dd, "copy part of an image into a new image, dd style" },
    { "list-partitions", cmd_list_partitions, "list the guest's partitions" },
    { "list-filesystems", cmd_list_filesystems, "list the guest's filesystems" },
    { "list-lvs", cmd_list_lvs, "list the guest's LVM2 logical volumes" },
    { "inspect", cmd_inspect, "describe the guest's operating system" },
    { "df", cmd_df, "show free space on the guest's filesystems" },
    { "ls", cmd_ls, "list a guest directory" },
    { "cat", cmd_cat, "print guest files" },
    { "copy-out", cmd_copy_out, "copy files out of the guest" },
    { "copy-in", cmd_copy_in, "copy files into the guest" },
    { "write", cmd_write, "write stdin to a guest file" },
    { "mkdir", cmd_mkdir, "create guest directories" },
    { "rm", cmd_rm, "remove guest files" },
    { "getxattrs", cmd_getxattrs, "print extended attributes of guest files" },
    { "setxattr", cmd_setxattr, "set an extended attribute of guest files" },
    { "removexattr", cmd_removexattr, "remove an extended attribute of guest files" },
    { "shell", cmd_shell, "guestfish-like shell over the guest" },
};

const char *tool_cmd = "diskkit";

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit COMMAND [OPTIONS] ...\n"
        "       diskkit COMMAND --help\n"
        "       diskkit --version\n\n"
        "An offline disk-image toolkit: qemu-img compatible image commands and\n"
        "appliance-free guest filesystem access.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (commands[i].fn)
            fprintf(f, "  %-17s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nFormats:");
    for (const char *const *n = dk_formats(); *n; n++)
        fprintf(f, " %s", *n);
    fprintf(f, "\n\nExit status: 0 success, 1 failure; check and compare have their own\n"
               "codes (see diskkit(1)).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("diskkit version %s\n", DK_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (commands[i].fn && !strcmp(argv[1], commands[i].name)) {
            tool_cmd = commands[i].name;
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "diskkit: unknown command '%s' (try 'diskkit --help')\n", argv[1]);
    return 1;
}
