/* inspect.c - find the operating system in a guest (like virt-inspector).
 *
 * A filesystem is an OS root when it has a directory /etc and one of
 * /etc/os-release, /bin, /sbin or /usr/bin. From it we read: the
 * os-release(5) keys ID, PRETTY_NAME, VERSION_ID (falling back to
 * /etc/lsb-release, /etc/redhat-release and /etc/debian_version), the host
 * name (/etc/hostname, else HOSTNAME= in /etc/sysconfig/network), the
 * architecture from the ELF header (e_machine) of the first of /bin/sh,
 * /usr/bin/ls, /bin/ls, ... (symlinks followed inside the guest only), and
 * /etc/fstab, whose devices (UUID=, LABEL=, PARTUUID=, /dev/disk/by-*,
 * /dev/sdXN and the guest's own /dev/vdXN, /dev/hdXN, /dev/xvdXN names)
 * are mapped to our devices.
 *
 * Every guest file is read with a size cap (INSPECT_MAX_FILE) and parsed
 * as untrusted text.
 *
 * LVM2 logical volumes are devices of the guest (lib/guest-lvm.c): a root
 * on one is found like any other, and fstab's /dev/VG/LV and
 * /dev/mapper/VG-LV names resolve through dk_guest_find.
 *
 * Known gaps: Linux only (no Windows registry, BSD disklabels); btrfs
 * subvolume roots are not found; one OS per guest.
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "guest.h"
#include "util/endian.h"

/* Configuration files are small; 256 KiB is far above any real fstab or
 * os-release and bounds what a hostile image can make us allocate. */
#define INSPECT_MAX_FILE (256u * 1024u)

/* Reads a whole small file (NUL-terminated, caller frees) or NULL. */
static char *slurp(struct dk_fs *fs, const char *path)
{
    struct dk_stat st;
    if (dk_fs_stat(fs, path, &st) < 0 || !S_ISREG(st.mode) || st.size > INSPECT_MAX_FILE)
        return NULL;
    struct dk_fsfile *f;
    if (dk_fsfile_open(fs, path, 0, 0, &f) < 0)
        return NULL;
    char *buf = malloc((size_t)st.size + 1);
    ssize_t n = buf ? dk_fsfile_pread(f, buf, (size_t)st.size, 0) : -1;
    dk_fsfile_close(f);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

static bool is_dir(struct dk_fs *fs, const char *path)
{
    struct dk_stat st;
    return dk_fs_stat(fs, path, &st) == 0 && S_ISDIR(st.mode);
}

static bool exists(struct dk_fs *fs, const char *path)
{
    struct dk_stat st;
    return dk_fs_stat(fs, path, &st) == 0;
}

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

/* Value of KEY= in shell-style KEY=VALUE text (quotes removed), or NULL.
 * Caller frees. */
static char *kv_get(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        while (*l == ' ' || *l == '\t')
            l++;
        if (strncmp(l, key, klen) || l[klen] != '=')
            continue;
        const char *v = l + klen + 1, *end = v;
        while (*end && *end != '\n')
            end++;
        while (end > v && isspace((unsigned char)end[-1]))
            end--;
        if (end - v >= 2 && (*v == '"' || *v == '\'') && end[-1] == *v)
            v++, end--;
        return strndup(v, (size_t)(end - v));
    }
    return NULL;
}

static char *first_line(const char *text)
{
    const char *end = strchr(text, '\n');
    char *s = strndup(text, end ? (size_t)(end - text) : strlen(text));
    if (s)
        for (size_t n = strlen(s); n > 0 && isspace((unsigned char)s[n - 1]); n--)
            s[n - 1] = 0;
    return s;
}

static void parse_version(struct dk_inspect *ins, const char *v)
{
    free(ins->version);
    ins->version = xstrdup(v);
    const char *p = v;
    while (*p && !isdigit((unsigned char)*p))
        p++;
    ins->major_version = (int)strtol(p, (char **)&p, 10);
    ins->minor_version = *p == '.' ? (int)strtol(p + 1, NULL, 10) : 0;
}

static void set_str(char **dst, char *val)
{
    if (!val)
        return;
    free(*dst);
    *dst = val;
}

/* Distribution facts: os-release first, then the older release files. */
static void inspect_distro(struct dk_fs *fs, struct dk_inspect *ins)
{
    char *t = slurp(fs, "/etc/os-release");
    if (!t)
        t = slurp(fs, "/usr/lib/os-release");
    if (t) {
        set_str(&ins->distro, kv_get(t, "ID"));
        set_str(&ins->product_name, kv_get(t, "PRETTY_NAME"));
        char *v = kv_get(t, "VERSION_ID");
        if (v)
            parse_version(ins, v);
        free(v);
        free(t);
        return;
    }
    if ((t = slurp(fs, "/etc/lsb-release"))) {
        char *id = kv_get(t, "DISTRIB_ID"), *v = kv_get(t, "DISTRIB_RELEASE");
        if (id)
            for (char *c = id; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        set_str(&ins->distro, id);
        set_str(&ins->product_name, kv_get(t, "DISTRIB_DESCRIPTION"));
        if (v)
            parse_version(ins, v);
        free(v);
        free(t);
        return;
    }
    if ((t = slurp(fs, "/etc/redhat-release"))) {
        char *line = first_line(t);
        const char *d = strcasestr(t, "fedora") ? "fedora" : strcasestr(t, "centos") ? "centos"
                      : strcasestr(t, "red hat") ? "rhel" : "redhat-based";
        set_str(&ins->distro, xstrdup(d));
        set_str(&ins->product_name, line);
        const char *rel = strstr(t, "release ");
        if (rel)
            parse_version(ins, rel + 8);
        free(t);
        return;
    }
    if ((t = slurp(fs, "/etc/debian_version"))) {
        char *line = first_line(t);
        set_str(&ins->distro, xstrdup("debian"));
        if (line) {
            parse_version(ins, line);
            char buf[128];
            snprintf(buf, sizeof(buf), "Debian %s", line);
            set_str(&ins->product_name, xstrdup(buf));
        }
        free(line);
        free(t);
    }
}

static void inspect_hostname(struct dk_fs *fs, struct dk_inspect *ins)
{
    char *t = slurp(fs, "/etc/hostname");
    if (t) {
        char *h = first_line(t);
        if (h && *h)
            set_str(&ins->hostname, h);
        else
            free(h);
        free(t);
        return;
    }
    if ((t = slurp(fs, "/etc/sysconfig/network"))) {
        set_str(&ins->hostname, kv_get(t, "HOSTNAME"));
        free(t);
    }
}

static const char *elf_arch(const uint8_t *h)
{
    if (memcmp(h, "\177ELF", 4) || (h[4] != 1 && h[4] != 2) || (h[5] != 1 && h[5] != 2))
        return NULL;
    bool is64 = h[4] == 2;
    unsigned m = h[5] == 1 ? dk_le16(h + 18) : dk_be16(h + 18);
    switch (m) {
    case 3: return "i386";
    case 62: return "x86_64";
    case 183: return "aarch64";
    case 40: return "arm";
    case 8: return is64 ? "mips64" : "mips";
    case 20: return "ppc";
    case 21: return h[5] == 1 ? "ppc64le" : "ppc64";
    case 22: return is64 ? "s390x" : "s390";
    case 243: return is64 ? "riscv64" : "riscv32";
    case 2: case 43: return is64 ? "sparc64" : "sparc";
    default: return NULL;
    }
}

static void inspect_arch(struct dk_fs *fs, struct dk_inspect *ins)
{
    static const char *const bins[] = {
        "/bin/sh", "/usr/bin/ls", "/bin/ls", "/bin/bash", "/usr/bin/bash",
        "/sbin/init", "/usr/bin/env", "/bin/busybox", NULL,
    };
    for (int i = 0; bins[i]; i++) {
        struct dk_fsfile *f;
        uint8_t h[64];
        if (dk_fsfile_open(fs, bins[i], 0, 0, &f) < 0)
            continue;
        ssize_t n = dk_fsfile_pread(f, h, sizeof(h), 0);
        dk_fsfile_close(f);
        const char *a = n == (ssize_t)sizeof(h) ? elf_arch(h) : NULL;
        if (a) {
            set_str(&ins->arch, xstrdup(a));
            return;
        }
    }
}

/* ----------------------------------------------------------------- fstab */

/* Maps an fstab device spec to our device name (borrowed) or NULL. */
static const char *resolve_spec(struct dk_guest *g, const char *spec)
{
    size_t n, np;
    const struct dk_fsinfo *fs = dk_guest_filesystems(g, &n);
    const struct dk_partition *parts = dk_guest_partitions(g, &np);
    const char *v;
    if (!strncmp(spec, "UUID=", 5) || !strncmp(spec, "/dev/disk/by-uuid/", 18)) {
        v = spec + (spec[0] == 'U' ? 5 : 18);
        for (size_t i = 0; i < n; i++)
            if (fs[i].uuid[0] && !strcasecmp(fs[i].uuid, v))
                return fs[i].device;
    } else if (!strncmp(spec, "LABEL=", 6) || !strncmp(spec, "/dev/disk/by-label/", 19)) {
        v = spec + (spec[0] == 'L' ? 6 : 19);
        for (size_t i = 0; i < n; i++)
            if (fs[i].label[0] && !strcmp(fs[i].label, v))
                return fs[i].device;
    } else if (!strncmp(spec, "PARTUUID=", 9) || !strncmp(spec, "/dev/disk/by-partuuid/", 22)) {
        v = spec + (spec[0] == 'P' ? 9 : 22);
        for (size_t i = 0; i < np; i++)
            if (parts[i].part_uuid[0] && !strcasecmp(parts[i].part_uuid, v))
                return dk_guest_find(g, parts[i].device) ? parts[i].device : NULL;
    } else if (!strncmp(spec, "/dev/", 5)) {
        const struct dk_fsinfo *f = dk_guest_find(g, spec);
        return f ? f->device : NULL;
    }
    return NULL;
}

static int add_mount(struct dk_inspect *ins, const char *mp, const char *dev)
{
    for (size_t i = 0; i < ins->nmounts; i++)
        if (!strcmp(ins->mounts[i].mountpoint, mp))
            return 0;               /* first entry wins, as mount -a would */
    struct dk_mountpoint *m = realloc(ins->mounts, (ins->nmounts + 1) * sizeof(*m));
    if (!m)
        return -ENOMEM;
    ins->mounts = m;
    m[ins->nmounts].mountpoint = strdup(mp);
    m[ins->nmounts].device = strdup(dev);
    if (!m[ins->nmounts].mountpoint || !m[ins->nmounts].device) {
        free(m[ins->nmounts].mountpoint);
        free(m[ins->nmounts].device);
        return -ENOMEM;
    }
    ins->nmounts++;
    return 0;
}

/* Unescapes fstab's octal escapes (\040 for space) in place. */
static void fstab_unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

static int inspect_fstab(struct dk_guest *g, struct dk_fs *fs, struct dk_inspect *ins)
{
    int r = add_mount(ins, "/", ins->root);
    char *t = slurp(fs, "/etc/fstab");
    for (char *save = NULL, *line = t ? strtok_r(t, "\n", &save) : NULL; line && r == 0;
         line = strtok_r(NULL, "\n", &save)) {
        char *s2 = NULL;
        char *spec = strtok_r(line, " \t", &s2), *mp = strtok_r(NULL, " \t", &s2);
        char *type = strtok_r(NULL, " \t", &s2);
        if (!spec || !mp || spec[0] == '#' || mp[0] != '/' || (type && !strcmp(type, "swap")))
            continue;
        fstab_unescape(spec);
        fstab_unescape(mp);
        size_t len = strlen(mp);
        while (len > 1 && mp[len - 1] == '/')
            mp[--len] = 0;
        const char *dev = resolve_spec(g, spec);
        if (dev && strcmp(mp, "/") != 0 && !strstr(mp, "/../") && strlen(mp) < 4096)
            r = add_mount(ins, mp, dev);
    }
    free(t);
    return r;
}

static int mount_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dk_mountpoint *)a)->mountpoint,
                  ((const struct dk_mountpoint *)b)->mountpoint);
}

/* --------------------------------------------------------------- public */

void dk_inspect_free(struct dk_inspect *ins)
{
    if (!ins)
        return;
    for (size_t i = 0; i < ins->nmounts; i++) {
        free(ins->mounts[i].mountpoint);
        free(ins->mounts[i].device);
    }
    free(ins->mounts);
    free(ins->root);
    free(ins->type);
    free(ins->distro);
    free(ins->product_name);
    free(ins->version);
    free(ins->hostname);
    free(ins->arch);
    free(ins);
}

static bool is_os_root(struct dk_fs *fs)
{
    return is_dir(fs, "/etc") && (exists(fs, "/etc/os-release") || is_dir(fs, "/bin") ||
                                  is_dir(fs, "/sbin") || is_dir(fs, "/usr/bin"));
}

static int describe(struct dk_guest *g, struct dk_fs *fs, struct dk_inspect **out)
{
    struct dk_inspect *ins = calloc(1, sizeof(*ins));
    if (!ins)
        return -ENOMEM;
    ins->root = xstrdup(dk_fs_device(fs));
    ins->type = xstrdup("linux");
    ins->distro = xstrdup("unknown");
    ins->product_name = xstrdup("unknown");
    ins->version = xstrdup("");
    ins->hostname = xstrdup("");
    ins->arch = xstrdup("unknown");
    int r = !ins->root || !ins->type || !ins->distro || !ins->product_name ||
            !ins->version || !ins->hostname || !ins->arch ? -ENOMEM : 0;
    if (r == 0) {
        inspect_distro(fs, ins);
        inspect_hostname(fs, ins);
        inspect_arch(fs, ins);
        r = inspect_fstab(g, fs, ins);
    }
    if (r < 0) {
        dk_inspect_free(ins);
        return r;
    }
    qsort(ins->mounts, ins->nmounts, sizeof(*ins->mounts), mount_cmp);
    *out = ins;
    return 0;
}

int dk_guest_inspect(struct dk_guest *g, struct dk_inspect **out)
{
    size_t n;
    const struct dk_fsinfo *all = dk_guest_filesystems(g, &n);
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!all[i].readable)
            continue;
        struct dk_error err;
        struct dk_fs *fs = dk_fs_open(g, all[i].device, 0, &err);
        if (!fs)
            continue;
        int r = 1;
        if (is_os_root(fs))
            r = describe(g, fs, out);
        dk_fs_close(fs);
        if (r <= 0)
            return r < 0 ? dk_guest_set_error(g, r, "inspection: %s", strerror(-r)) : 0;
    }
    return dk_guest_set_error(g, -ENOENT, "no operating system found in this guest");
}

const char *dk_inspect_resolve(const struct dk_inspect *ins, const char *path,
                               char *rest, size_t len)
{
    if (!path || path[0] != '/')
        return NULL;
    const struct dk_mountpoint *best = NULL;
    size_t blen = 0;
    for (size_t i = 0; i < ins->nmounts; i++) {
        const char *mp = ins->mounts[i].mountpoint;
        size_t l = strcmp(mp, "/") ? strlen(mp) : 0;
        if (strncmp(path, mp, l) || (path[l] != '/' && path[l] != 0))
            continue;
        if (!best || l > blen)
            best = &ins->mounts[i], blen = l;
    }
    if (!best)
        return NULL;
    const char *r = path[blen] ? path + blen : "/";
    if (strlen(r) >= len)
        return NULL;
    memcpy(rest, r, strlen(r) + 1);
    return best->device;
}
