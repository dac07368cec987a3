/* lock.c - image locking compatible with qemu's file-posix locks.
 *
 * qemu takes shared OFD locks on byte 100+N for each permission N it holds
 * and on byte 200+N for each permission it refuses to share, then looks for
 * conflicts with F_OFD_GETLK. Permission bits: 0 consistent read, 1 write,
 * 2 write unchanged, 3 resize. A reader (without -U) holds consistent read
 * and refuses to share write; a writer holds read, write and resize and
 * refuses to share write and resize. Using the same bytes makes diskkit and
 * qemu see each other. Locks are released when the fd closes.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "internal.h"

#define PERM_READ   0
#define PERM_WRITE  1
#define PERM_RESIZE 3
#define LOCK_BASE_PERM   100
#define LOCK_BASE_SHARED 200

static int lock_byte(int fd, int byte, short type)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* True if another open file description holds a lock on BYTE. */
static bool byte_taken(int fd, int byte)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return false;
    return fl.l_type != F_UNLCK;
}

int dk_lock_take(struct dk_file *f, bool writer, bool force_share, struct dk_error *err)
{
    int held[3], nheld = 0, unshared[2], nun = 0;
    held[nheld++] = PERM_READ;
    if (writer) {
        held[nheld++] = PERM_WRITE;
        held[nheld++] = PERM_RESIZE;
        unshared[nun++] = PERM_WRITE;
        unshared[nun++] = PERM_RESIZE;
    } else if (!force_share) {
        unshared[nun++] = PERM_WRITE;
    }
    if (force_share && !writer)
        return 0;   /* -U: take nothing, look at nothing */
    for (int i = 0; i < nheld; i++)
        if (lock_byte(f->fd, LOCK_BASE_PERM + held[i], F_RDLCK) == -EINVAL)
            return 0;   /* no OFD locks here (old kernel, some FS): skip */
    for (int i = 0; i < nun; i++)
        lock_byte(f->fd, LOCK_BASE_SHARED + unshared[i], F_RDLCK);
    for (int i = 0; i < nheld; i++)
        if (byte_taken(f->fd, LOCK_BASE_SHARED + held[i]))
            goto conflict;
    for (int i = 0; i < nun; i++)
        if (byte_taken(f->fd, LOCK_BASE_PERM + unshared[i]))
            goto conflict;
    return 0;
conflict:
    return dk_error_set(err, -EBUSY,
        "%s: Failed to get \"%s\" lock: is another process using the image?%s",
        f->path, writer ? "write" : "shared",
        writer ? "" : " (use -U/--force-share to read it anyway)");
}
