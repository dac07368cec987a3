/* cmd_shell.c - `diskkit shell [--ro] [-f FMT] [-m DEV] [-c CMD] IMAGE...`:
 * a guestfish-like shell over the guest operations. Commands come from
 * -c (one line, may hold several separated by ';'), else from stdin, with
 * a "><fs> " prompt when stdin is a terminal. Words are split on blanks,
 * with '...' and "..." quoting and backslash escapes; '#' starts a comment.
 * In a script the first failing command stops the shell (exit 1); at an
 * interactive prompt the error is printed and the shell goes on.
 * Shell-only commands: help [CMD], write PATH CONTENT, mv, ln, ln-s, chmod,
 * chown, truncate, rmdir, touch, exit, quit.
 * Line editing and history at a terminal when a line-editing library is
 * installed: libedit (BSD) or GNU readline, loaded at run time (neither is
 * a build dependency); plain reads otherwise.
 * SPDX-License-Identifier: MIT
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest.h"

#define SHELL_MAX_WORDS 256

/* Splits LINE in place into words; returns the count or -1 on bad quoting.
 * Sets *NEXT to the text after an unquoted ';' (or NULL). */
static int split(char *line, char **w, int max, char **next)
{
    int n = 0;
    char *o = line, *p = line;
    *next = NULL;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p || *p == '#')
            break;
        if (*p == ';') {
            *next = p + 1;
            break;
        }
        if (n == max)
            return -1;
        w[n++] = o;
        char q = 0;
        for (; *p; p++) {
            if (q) {
                if (*p == q) { q = 0; continue; }
                if (q == '"' && *p == '\\' && p[1]) p++;
            } else if (*p == '\'' || *p == '"') {
                q = *p;
                continue;
            } else if (*p == '\\' && p[1]) {
                p++;
            } else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ';') {
                break;
            }
            *o++ = *p;
        }
        if (q)
            return -1;
        char end = *p;
        *o++ = 0;
        if (end == ';') {
            *next = p + 1;
            break;
        }
        if (end)
            p++;
    }
    return n;
}

/* Shell-only path commands (guestfish names), on the filesystem holding
 * their paths; two-path commands need both on one filesystem. */
struct pcmd { const char *name; int nargs; const char *args, *desc; };
static const struct pcmd pcmds[] = {
    { "mv", 2, "SRC DST", "rename (replaces DST like rename(2))" },
    { "ln", 2, "TARGET LINK", "hard link" },
    { "ln-s", 2, "TARGET LINK", "symbolic link (TARGET stored as given)" },
    { "chmod", 2, "MODE PATH", "change permissions (octal)" },
    { "chown", 3, "UID GID PATH", "change the numeric owner" },
    { "truncate", 2, "PATH SIZE", "set a file's size" },
    { "rmdir", 1, "PATH", "remove an empty directory" },
    { "touch", 1, "PATH", "create an empty file or update its times" },
    { NULL, 0, NULL, NULL },
};

static void help_line(const char *name, const char *flags, const char *args, const char *desc)
{
    char syn[64];
    snprintf(syn, sizeof(syn), "%s%s%s%s%s", flags[0] ? "[-" : "", flags, flags[0] ? "] " : "",
             args, "");
    printf("  %-17s %-24s %s\n", name, syn, desc);
}

static void help(const char *cmd)
{
    for (int i = 0; gops[i]; i++) {
        if (gops[i] == &gop_write || (cmd && strcmp(cmd, gops[i]->name)))
            continue;
        const char *nl = strchr(gops[i]->summary, '\n');
        char first[128];
        snprintf(first, sizeof(first), "%.*s", nl ? (int)(nl - gops[i]->summary) : 127,
                 gops[i]->summary);
        help_line(gops[i]->name, gops[i]->flags, gops[i]->synopsis, first);
        if (cmd && nl)
            printf("%s\n", nl + 1);
    }
    if (!cmd || !strcmp(cmd, "write"))
        help_line("write", "", "PATH CONTENT", "create or replace a file");
    for (int i = 0; pcmds[i].name; i++)
        if (!cmd || !strcmp(cmd, pcmds[i].name))
            help_line(pcmds[i].name, "", pcmds[i].args, pcmds[i].desc);
    if (!cmd)
        printf("  %-17s %-24s %s\n  %-17s %-24s %s\nGuest paths are absolute; the guest's fstab "
               "decides which filesystem a path is on.\n", "help", "[CMD]", "this text",
               "exit, quit", "", "leave the shell");
}

static int shell_write(struct gt *t, int n, char **w)
{
    if (n != 3)
        return tool_fail("usage: write PATH CONTENT");
    if (!t->rw)
        return tool_fail("%s: the shell is read-only (--ro)", w[1]);
    char rest[4096];
    struct dk_fs *fs;
    if (gt_resolve(t, w[1], &fs, rest, sizeof(rest)))
        return 1;
    int r = dk_fs_write_file(fs, rest, w[2], strlen(w[2]), 0644);
    return r < 0 ? gt_fs_fail(t, fs, w[1], r) : 0;
}

static int pcmd_run(struct gt *t, const struct pcmd *pc, int n, char **w)
{
    if (n != pc->nargs + 1)
        return tool_fail("usage: %s %s", pc->name, pc->args);
    if (!t->rw)
        return tool_fail("%s: the shell is read-only (--ro)", w[0]);
    /* the path that picks the fs: the last word, except for truncate */
    const char *path = strcmp(pc->name, "truncate") ? w[n - 1] : w[1];
    char rest[4096], rest2[4096];
    struct dk_fs *fs, *fs2;
    if (gt_resolve(t, path, &fs, rest, sizeof(rest)))
        return 1;
    const char *name = pc->name;
    char *end = NULL;
    int r;
    if (!strcmp(name, "mv") || !strcmp(name, "ln")) {
        if (gt_resolve(t, w[1], &fs2, rest2, sizeof(rest2)))
            return 1;
        if (fs2 != fs)
            return tool_fail("%s: %s and %s are on different filesystems", name, w[1], w[2]);
        r = name[0] == 'm' ? dk_fs_rename(fs, rest2, rest) : dk_fs_link(fs, rest2, rest);
    } else if (!strcmp(name, "ln-s")) {
        r = dk_fs_symlink(fs, w[1], rest);
    } else if (!strcmp(name, "chmod")) {
        unsigned long m = strtoul(w[1], &end, 8);
        if (*end || m > 07777)
            return tool_fail("chmod: bad mode '%s'", w[1]);
        r = dk_fs_chmod(fs, rest, (uint32_t)m);
    } else if (!strcmp(name, "chown")) {
        r = dk_fs_chown(fs, rest, (uint32_t)strtoul(w[1], NULL, 10),
                        (uint32_t)strtoul(w[2], NULL, 10));
    } else if (!strcmp(name, "truncate")) {
        uint64_t size;
        if (tool_parse_size(w[2], &size) < 0)
            return 1;
        r = dk_fs_truncate(fs, rest, size);
    } else if (!strcmp(name, "rmdir")) {
        r = dk_fs_rmdir(fs, rest);
    } else {
        struct dk_fsfile *f;
        r = dk_fsfile_open(fs, rest, DK_O_CREAT | DK_O_WRITE, 0644, &f);
        if (r == 0) {
            dk_fsfile_close(f);
            r = dk_fs_utimens(fs, rest, NULL);
        }
    }
    return r < 0 ? gt_fs_fail(t, fs, path, r) : 0;
}

/* Runs one command; returns 0, 1 (failed) or -1 (exit requested). */
static int run(struct gt *t, int n, char **w)
{
    if (n == 0)
        return 0;
    if (!strcmp(w[0], "exit") || !strcmp(w[0], "quit"))
        return -1;
    if (!strcmp(w[0], "help")) {
        help(n > 1 ? w[1] : NULL);
        return 0;
    }
    if (!strcmp(w[0], "write"))
        return shell_write(t, n, w);
    for (int i = 0; pcmds[i].name; i++)
        if (!strcmp(w[0], pcmds[i].name))
            return pcmd_run(t, &pcmds[i], n, w);
    for (int i = 0; gops[i]; i++) {
        if (strcmp(w[0], gops[i]->name))
            continue;
        if (gops[i]->writes && !t->rw)
            return tool_fail("%s: the shell is read-only (--ro)", w[0]);
        struct gargs a;
        if (gt_parse_op(gops[i], n, w, &a))
            return 1;
        const char *saved = t->device;
        if (a.device)               /* "-m DEV" for this command only */
            t->device = a.device;
        int r = gops[i]->fn(t, &a) ? 1 : 0;
        t->device = saved;
        return r;
    }
    return tool_fail("%s: unknown command (try 'help')", w[0]);
}

/* Runs every ';'-separated command of LINE. */
static int run_line(struct gt *t, char *line)
{
    while (line) {
        char *w[SHELL_MAX_WORDS + 1], *next;
        int n = split(line, w, SHELL_MAX_WORDS, &next);
        if (n < 0)
            return tool_fail("bad quoting or too many words");
        w[n] = NULL;
        int r = run(t, n, w);
        fflush(stdout);
        if (r)
            return r;
        line = next;
    }
    return 0;
}

/* readline(3) and add_history(3) from whichever library is installed. */
struct editor {
    char *(*readline)(const char *prompt);
    int (*add_history)(const char *line);
};

static bool load_editor(struct editor *ed)
{
    static const char *const libs[] = { "libedit.so.2", "libreadline.so.8" };
    if (getenv("DISKKIT_NO_EDITOR"))
        return false;
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        void *h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
        if (!h)
            continue;
        *(void **)&ed->readline = dlsym(h, "readline");
        *(void **)&ed->add_history = dlsym(h, "add_history");
        if (ed->readline)
            return true;    /* the library stays loaded until exit */
        dlclose(h);
    }
    return false;
}

static int loop(struct gt *t)
{
    bool tty = isatty(STDIN_FILENO);
    struct editor ed = { 0 };
    bool edit = tty && isatty(STDOUT_FILENO) && load_editor(&ed);
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (edit) {
            free(line);
            if (!(line = ed.readline("><fs> ")))
                break;
            if (*line && ed.add_history)
                ed.add_history(line);
        } else {
            if (tty) {
                printf("><fs> ");
                fflush(stdout);
            }
            if (getline(&line, &cap, stdin) < 0)
                break;
        }
        int r = run_line(t, line);
        if (r < 0)
            break;
        if (r && !tty) {
            rc = 1;
            break;
        }
    }
    if (tty)
        putchar('\n');
    free(line);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: diskkit shell [--ro] [-f FMT] [-m DEV] [-c CMD] [common options] IMAGE...\n"
               "A guestfish-like shell: the images are /dev/sda, /dev/sdb, ...\n"
               "  --ro        open read-only\n  -c CMD      run CMD (';' separates commands)\n"
               "  -f FMT      image format; -m DEV  filesystem for paths\n"
               "  --force     write even when the guest journal needs recovery\n"
               "Type 'help' in the shell for its commands.\n");
}

int cmd_shell(int argc, char **argv)
{
    static const struct option longopts[] = {
        TOOL_COMMON_LONGOPTS,
        { "ro", no_argument, NULL, 'r' }, { "force", no_argument, NULL, 'F' },
        { "format", required_argument, NULL, 'f' }, { NULL, 0, NULL, 0 },
    };
    struct gt t;
    memset(&t, 0, sizeof(t));
    t.rw = true;
    const char *cmd = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "f:m:c:U", longopts, NULL)) != -1) {
        int h = tool_common_option(&t.tc, c, optarg);
        if (h < 0 || c == '?' || c == TOOL_OPT_HELP) {
            if (c == TOOL_OPT_HELP)
                usage(stdout);
            tool_common_free(&t.tc);
            return c == TOOL_OPT_HELP ? 0 : 1;
        }
        if (h)
            continue;
        if (c == 'f') t.format = optarg;
        else if (c == 'm') t.device = optarg;
        else if (c == 'c') cmd = optarg;
        else if (c == 'r') t.rw = false;
        else if (c == 'F') t.force = true;
    }
    if (optind >= argc) {
        tool_common_free(&t.tc);
        return tool_fail("missing IMAGE (try --help)");
    }
    int rc = gt_open(&t, argv + optind, (size_t)(argc - optind));
    if (rc == 0 && cmd) {
        char *line = strdup(cmd);
        rc = line ? run_line(&t, line) : tool_fail("out of memory");
        rc = rc < 0 ? 0 : rc;
        free(line);
    } else if (rc == 0) {
        rc = loop(&t);
    }
    int cr = gt_close(&t);
    return rc ? rc : cr;
}
