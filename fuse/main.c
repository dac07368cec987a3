/* main.c - diskkit-mount: open the image, mount it with FUSE, serve
 * requests until unmounted or signalled, then write everything back.
 *
 * Lifecycle (daemon mode; --foreground skips the fork):
 *   parent: fork, then wait on a pipe for one status byte from the child
 *   child:  open image (takes the qemu-compatible lock) -> guest fs (unless
 *           --raw) -> fuse_new -> fuse_mount -> signal handlers -> write "0"
 *           to the pipe -> setsid, stdio to /dev/null -> multi-threaded loop
 *   parent: "0" read: exit 0 (the mount is in place); EOF: the child failed
 *           and has printed its one-line error on the shared stderr; exit
 *           with the child's status.
 * The loop ends on `fusermount3 -u` or SIGTERM/SIGINT/SIGHUP; the child
 * then unmounts (if still mounted), closes the guest filesystem and the
 * image (flushing metadata) and exits non-zero if any of that failed.
 * Every close() of a file on the mount is also a FUSE flush, which flushes
 * the image, so data and metadata are in the image file before close()
 * returns; the image lock is held until the process exits.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "mount.h"

/* "fsname=diskkit:PATH" with the commas and backslashes of PATH escaped
 * the way libfuse's option parser expects. Caller frees. */
static char *fsname_option(const char *path)
{
    size_t n = strlen(path);
    char *s = malloc(2 * n + 32);
    if (!s)
        return NULL;
    char *p = s + sprintf(s, "fsname=diskkit:");
    for (; *path; path++) {
        if (*path == ',' || *path == '\\')
            *p++ = '\\';
        *p++ = *path;
    }
    strcpy(p, ",subtype=diskkit");
    return s;
}

/* The arguments for fuse_new: debug, our fixed options, the user's -o. */
static int build_fuse_args(struct fuse_args *fa, const struct mount_args *a,
                           const char *image_path)
{
    char *fsname = fsname_option(image_path);
    int r = fsname ? 0 : -1;
    r |= fuse_opt_add_arg(fa, "diskkit-mount");
    if (a->debug)
        r |= fuse_opt_add_arg(fa, "-d");
    r |= fuse_opt_add_arg(fa, "-o");
    r |= fuse_opt_add_arg(fa, fsname ? fsname : "fsname=diskkit");
    if (a->read_only)
        r |= fuse_opt_add_arg(fa, "-oro");
    if (a->fuse_opts) {
        /* Other users get the kernel's permission checks against the
         * stored modes; without allow_other only we can reach the mount. */
        if (strstr(a->fuse_opts, "allow_other"))
            r |= fuse_opt_add_arg(fa, "-odefault_permissions");
        r |= fuse_opt_add_arg(fa, "-o");
        r |= fuse_opt_add_arg(fa, a->fuse_opts);
    }
    free(fsname);
    return r ? -1 : 0;
}

static struct dk_image *open_image(const struct mount_args *a, const char *path)
{
    struct dk_open_opts o = { .format = a->format };
    if (!a->read_only)
        o.flags |= DK_OPEN_RDWR;
    if (a->force_share)
        o.flags |= DK_OPEN_FORCE_SHARE;
    if (a->allow_external)
        o.flags |= DK_OPEN_ALLOW_EXTERNAL;
    mount_args_secret(a, &o.secret, &o.secret_len);
    struct dk_error err = { 0 };
    struct dk_image *img = dk_open(path, &o, &err);
    if (!img) {
        mount_error("%s", err.msg);
        return NULL;
    }
    if (!a->read_only && dk_image_read_only(img)) {
        mount_error("%s: image was probed as raw: mounting it writable needs -f raw "
                    "(or use --ro)", a->image);
        dk_close(img);
        return NULL;
    }
    return img;
}

/* Undoes the octal escapes (\040 for a space) of a /proc/self/mountinfo
 * field, in place. */
static void unescape_field(char *s)
{
    char *d = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *d++ = *s;
        }
    }
    *d = 0;
}

/* Raises the kernel's readahead for our mount to MOUNT_READAHEAD_KB.
 * The kernel starts FUSE mounts at 128 KiB, so sequential reads arrive
 * as 128 KiB requests whatever max_readahead we answer in INIT; 1 MiB
 * requests read about 4x faster. Best effort: needs write access to
 * /sys/class/bdi (root); the mount works the same without it. We find the
 * mount's device in mountinfo, not with stat(), which would wait for the
 * FUSE loop that is not running yet. */
#define MOUNT_READAHEAD_KB 1024
static void raise_readahead(const char *mountpoint)
{
    char want[PATH_MAX], line[PATH_MAX + 512], dev[32] = "";
    if (!realpath(mountpoint, want))
        return;
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        char devf[32], mnt[PATH_MAX + 1];
        if (sscanf(line, "%*d %*d %31s %*s %4096s", devf, mnt) != 2)
            continue;
        unescape_field(mnt);
        const char *type = strstr(line, " - fuse.diskkit ");
        if (type && !strcmp(mnt, want))
            snprintf(dev, sizeof(dev), "%s", devf);   /* the last one wins */
    }
    fclose(f);
    if (!dev[0])
        return;
    char path[96];
    snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
    FILE *ra = fopen(path, "w");
    if (ra) {
        fprintf(ra, "%d\n", MOUNT_READAHEAD_KB);
        fclose(ra);
    }
}

/* Tells the waiting parent that the mount is ready, then detaches. */
static void signal_ready(int fd)
{
    if (fd < 0)
        return;
    if (write(fd, "0", 1) != 1) {
        /* The parent is gone; nobody is waiting, carry on. */
    }
    close(fd);
    setsid();
    if (chdir("/") < 0) {
        /* not fatal: every path we use is absolute */
    }
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
}

/* Mounts ST on MNT (absolute) and serves requests until unmounted. Returns 0
 * or -1 (message printed, or logged once detached). */
static int serve(struct mount_state *st, const struct mount_args *a, const char *mnt,
                 const struct fuse_operations *ops, int ready_fd)
{
    struct fuse_args fa = FUSE_ARGS_INIT(0, NULL);
    if (build_fuse_args(&fa, a, st->image_path) < 0) {
        mount_error("out of memory");
        return -1;
    }
    int rc = -1;
    struct fuse *f = fuse_new(&fa, ops, sizeof(*ops), st);
    if (!f) {
        mount_error("invalid FUSE options '%s'", a->fuse_opts ? a->fuse_opts : "");
        goto out_args;
    }
    if (fuse_mount(f, mnt) != 0) {
        mount_error("cannot mount on '%s' (see the fuse message above)", a->mountpoint);
        goto out_destroy;
    }
    struct fuse_session *se = fuse_get_session(f);
    if (fuse_set_signal_handlers(se) != 0) {
        mount_error("cannot install signal handlers");
        goto out_unmount;
    }
    raise_readahead(mnt);
    signal_ready(ready_fd);
    struct fuse_loop_config cfg = { .clone_fd = 0, .max_idle_threads = 10 };
    /* 0: unmounted; > 0: the signal that ended it (a normal stop too). */
    rc = fuse_loop_mt(f, &cfg);
    if (rc < 0) {
        syslog(LOG_ERR, "%s: FUSE loop failed: %s", mnt, strerror(-rc));
        mount_error("%s: FUSE loop failed: %s", mnt, strerror(-rc));
    }
    rc = rc < 0 ? -1 : 0;
    fuse_remove_signal_handlers(se);
out_unmount:
    fuse_unmount(f);
out_destroy:
    fuse_destroy(f);
out_args:
    fuse_opt_free_args(&fa);
    return rc;
}

/* Everything the child does: open, mount, serve, close. Returns the exit
 * code of the process. */
static int run(const struct mount_args *a, int ready_fd)
{
    char path[PATH_MAX], mnt[PATH_MAX];
    if (!realpath(a->image, path)) {
        mount_error("%s: %s", a->image, strerror(errno));
        return 1;
    }
    /* Absolute, because the daemon leaves for "/" and still has to
     * unmount it on SIGTERM. */
    struct stat mst;
    if (!realpath(a->mountpoint, mnt) || stat(mnt, &mst) < 0) {
        mount_error("mount point %s: %s", a->mountpoint, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(mst.st_mode)) {
        mount_error("mount point %s: not a directory", a->mountpoint);
        return 1;
    }
    struct mount_state st = { .read_only = a->read_only, .image_path = path };
    int r;
    if (!(st.img = open_image(a, path)))
        return 1;
    const struct fuse_operations *ops = raw_operations();
    if (!a->raw) {
        if (fs_setup(&st, a->device) < 0) {
            dk_close(st.img);
            return 1;
        }
        ops = fs_operations();
    }
    int rc = serve(&st, a, mnt, ops, ready_fd) < 0 ? 1 : 0;
    if (!a->raw && (r = fs_teardown(&st)) < 0) {
        syslog(LOG_ERR, "%s: writing back the guest filesystem: %s", path, strerror(-r));
        mount_error("%s: writing back the guest filesystem: %s", path, strerror(-r));
        rc = 1;
    }
    if ((r = dk_close(st.img)) < 0) {
        syslog(LOG_ERR, "%s: flushing the image failed: %s", path, strerror(-r));
        mount_error("%s: flushing the image failed: %s", path, strerror(-r));
        rc = 1;
    }
    return rc;
}

/* Parent side of daemon mode: waits for the child's status byte. */
static int wait_child(pid_t pid, int fd)
{
    char c;
    ssize_t n;
    do
        n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n == 1 && c == '0')
        return 0;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status))
        return WEXITSTATUS(status);
    return 1;
}

int main(int argc, char **argv)
{
    struct mount_args a = { 0 };
    int r = mount_args_parse(&a, argc, argv);
    if (r != 0) {
        mount_args_free(&a);
        return r > 0 ? 0 : 1;
    }
    if (a.nsecrets > 1 && !a.key_secret) {
        mount_error("several --object secrets given: name one with --image-opts "
                    "...,encrypt.key-secret=ID");
        mount_args_free(&a);
        return 1;
    }
    openlog("diskkit-mount", LOG_PID, LOG_DAEMON);
    int rc;
    if (a.foreground) {
        rc = run(&a, -1);
    } else {
        int p[2];
        pid_t pid;
        if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
            mount_error("cannot start the mount process: %s", strerror(errno));
            mount_args_free(&a);
            return 1;
        }
        if (pid > 0) {
            close(p[1]);
            rc = wait_child(pid, p[0]);
        } else {
            close(p[0]);
            rc = run(&a, p[1]);
        }
    }
    mount_args_free(&a);
    return rc;
}
