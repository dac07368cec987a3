/* cmd_xattr.c - extended attributes of guest files (guestfish getxattrs,
 * setxattr, removexattr; output like getfattr -d):
 *
 *   diskkit getxattrs [-h] [-m DEV] IMAGE PATH...
 *   diskkit setxattr [-h] [-m DEV] IMAGE NAME VALUE PATH...
 *   diskkit removexattr [-h] [-m DEV] IMAGE NAME PATH...
 *
 * getxattrs prints, per file, "# file: PATH" then NAME="VALUE" lines
 * (text with one trailing NUL dropped, '"', '\\' and non-printable bytes
 * escaped as \ooo), or NAME=0xHEX when the value is not text, then a blank
 * line. VALUE for setxattr is text, or 0xHEX for bytes (setfattr's
 * convention). -h works on a symlink itself instead of following it.
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"

#define XATTR_LIST_MAX_BYTES (64u << 10)   /* Linux's XATTR_LIST_MAX */
#define XATTR_VALUE_MAX_BYTES (64u << 10)  /* Linux's XATTR_SIZE_MAX */

static bool is_text(const unsigned char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 && v[i] != '\t' && v[i] != '\n')
            return false;
    return true;
}

static void print_value(const unsigned char *v, size_t n)
{
    if (n && v[n - 1] == 0 && is_text(v, n - 1))
        n--;                                /* C strings, as getfattr shows them */
    if (!is_text(v, n)) {
        fputs("0x", stdout);
        for (size_t i = 0; i < n; i++)
            printf("%02x", v[i]);
        return;
    }
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"' || v[i] == '\\' || v[i] < 0x20 || v[i] == 0x7f)
            printf("\\%03o", v[i]);
        else
            putchar(v[i]);
    }
    putchar('"');
}

static int get_one(struct gt *t, const char *path, bool follow, char *names, void *val)
{
    char rest[4096];
    struct dk_fs *fs;
    if (gt_resolve(t, path, &fs, rest, sizeof(rest)))
        return 1;
    ssize_t len = dk_fs_listxattr(fs, rest, follow, names, XATTR_LIST_MAX_BYTES);
    if (len < 0)
        return gt_fs_fail(t, fs, path, (int)len);
    printf("# file: %s\n", path);
    for (ssize_t p = 0; p < len; p += (ssize_t)strlen(names + p) + 1) {
        ssize_t n = dk_fs_getxattr(fs, rest, follow, names + p, val, XATTR_VALUE_MAX_BYTES);
        if (n == -ENODATA)
            continue;                       /* removed meanwhile */
        if (n < 0)
            return gt_fs_fail(t, fs, path, (int)n);
        printf("%s=", names + p);
        print_value(val, (size_t)n);
        putchar('\n');
    }
    putchar('\n');
    return 0;
}

static int get_op(struct gt *t, struct gargs *a)
{
    char *names = malloc(XATTR_LIST_MAX_BYTES);
    void *val = malloc(XATTR_VALUE_MAX_BYTES);
    int rc = names && val ? 0 : tool_fail("out of memory");
    for (int i = 0; i < a->npos && rc == 0; i++)
        rc = get_one(t, a->pos[i], !a->fl['h'], names, val);
    free(names);
    free(val);
    return rc;
}

/* VALUE as bytes: 0xHEX, else the text itself. Returns the length or -1. */
static ssize_t parse_value(const char *s, unsigned char *out, size_t cap)
{
    if (strncmp(s, "0x", 2) && strncmp(s, "0X", 2)) {
        size_t n = strlen(s);
        if (n > cap)
            return -1;
        memcpy(out, s, n);
        return (ssize_t)n;
    }
    size_t n = 0;
    for (s += 2; s[0] && s[1]; s += 2) {
        if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]) || n == cap)
            return -1;
        char hex[3] = { s[0], s[1], 0 };
        out[n++] = (unsigned char)strtoul(hex, NULL, 16);
    }
    return *s ? -1 : (ssize_t)n;
}

static int change_op(struct gt *t, struct gargs *a, bool set)
{
    const char *name = a->pos[0];
    unsigned char *val = malloc(XATTR_VALUE_MAX_BYTES);
    if (!val)
        return tool_fail("out of memory");
    ssize_t len = 0;
    int first = set ? 2 : 1, rc = 0;
    if (set && (len = parse_value(a->pos[1], val, XATTR_VALUE_MAX_BYTES)) < 0)
        rc = tool_fail("setxattr: bad value '%s' (text, or 0x followed by hex pairs)",
                       a->pos[1]);
    if (rc == 0 && a->npos <= first)
        rc = tool_fail("%s: no PATH given", set ? "setxattr" : "removexattr");
    for (int i = first; i < a->npos && rc == 0; i++) {
        char rest[4096];
        struct dk_fs *fs;
        if (gt_resolve(t, a->pos[i], &fs, rest, sizeof(rest))) {
            rc = 1;
            break;
        }
        int r = set ? dk_fs_setxattr(fs, rest, !a->fl['h'], name, val, (size_t)len, 0)
                    : dk_fs_removexattr(fs, rest, !a->fl['h'], name);
        if (r < 0)
            rc = gt_fs_fail(t, fs, a->pos[i], r);
    }
    free(val);
    return rc;
}

static int set_op(struct gt *t, struct gargs *a) { return change_op(t, a, true); }
static int remove_op(struct gt *t, struct gargs *a) { return change_op(t, a, false); }

const struct gop gop_getxattrs = {
    "getxattrs", "h", 1, -1, false, true, get_op, "PATH...",
    "Print the extended attributes of guest files (like getfattr -d).\n"
    "  -h          a symlink's own attributes (do not follow it)",
};

const struct gop gop_setxattr = {
    "setxattr", "h", 3, -1, true, true, set_op, "NAME VALUE PATH...",
    "Set an extended attribute (VALUE: text, or 0x and hex digits).\n"
    "  -h          on a symlink itself (do not follow it)",
};

const struct gop gop_removexattr = {
    "removexattr", "h", 2, -1, true, true, remove_op, "NAME PATH...",
    "Remove an extended attribute.\n"
    "  -h          on a symlink itself (do not follow it)",
};

int cmd_getxattrs(int argc, char **argv) { return gt_main(&gop_getxattrs, argc, argv); }
int cmd_setxattr(int argc, char **argv) { return gt_main(&gop_setxattr, argc, argv); }
int cmd_removexattr(int argc, char **argv) { return gt_main(&gop_removexattr, argc, argv); }
