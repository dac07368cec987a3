/* guest.h - private declarations of the guest layer (partitions,
 * filesystem detection, the libext2fs bridge, ext2/3/4 operations and
 * inspection). Only lib/part.c, fsdetect.c, guest.c, ext2io.c, guestfs*.c
 * and inspect.c (and their unit tests) include it; everything here sits
 * on the public image API
 * (ARCHITECTURE.md decision 6) and knows nothing of image formats.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_GUEST_H
#define DK_GUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ext2fs/ext2fs.h>

#include "diskkit.h"

/* Reads LEN bytes at OFF of a disk; 0 or -errno. Lets part.c and
 * fsdetect.c run on synthetic buffers in unit tests. */
typedef int (*dk_disk_read_fn)(void *opaque, void *buf, size_t len, uint64_t off);

/* ------------------------------------------------------ lib/part.c */

/* Caps: MBR chains longer than this are a loop or garbage (Linux stops
 * at a similar depth); GPT arrays above DK_GPT_MAX_ENTRIES entries or
 * DK_GPT_MAX_ARRAY bytes are refused (the spec minimum is 128 x 128 B,
 * tools never write more than a few hundred). */
#define DK_MBR_MAX_LOGICAL   (DK_GUEST_MAX_PARTITIONS - 4)
#define DK_GPT_MAX_ENTRIES   1024u
#define DK_GPT_MAX_ENTRY_SIZE 4096u
#define DK_GPT_MAX_ARRAY     (1024u * 1024u)

struct dk_part_table {
    const char *scheme;                 /* "mbr", "gpt" or "none" */
    struct dk_partition parts[DK_GUEST_MAX_PARTITIONS];
    size_t nparts;
    char warnings[4][256];              /* non-fatal problems */
    size_t nwarnings;
};
/* Reads the partition table of a disk of SIZE bytes (sector size 512)
 * named by DISK (0 = /dev/sda). Fills T; a disk without a table gets
 * scheme "none" and no partitions. Returns 0, or -errno for I/O errors
 * (a malformed table is not an error: it is treated as absent, with a
 * warning when it looked like one). */
int dk_part_scan(dk_disk_read_fn rd, void *opaque, uint64_t size, unsigned disk,
                 struct dk_part_table *t);
/* Device name of DISK/PARTNUM into BUF ("/dev/sdb3"). */
void dk_part_devname(char *buf, size_t len, unsigned disk, unsigned partnum);

/* -------------------------------------------------- lib/fsdetect.c */

/* Identifies the content of OFF..OFF+SIZE by superblock magic and fills
 * type/label/uuid/readable of INFO (device/offset/size set by caller).
 * Returns 0 (type "unknown" when nothing matched) or -errno on I/O error. */
int dk_fsdetect(dk_disk_read_fn rd, void *opaque, uint64_t off, uint64_t size,
                struct dk_fsinfo *info);
/* Formats 16 bytes as a lower-case UUID ("8-4-4-4-12"); MIXED selects the
 * GPT/Microsoft byte order (first three fields little-endian). */
void dk_uuid_format(char out[37], const uint8_t u[16], bool mixed);

/* ---------------------------------------------------- lib/guest.c */

struct lvm_vg;
struct lvm_lv;

struct dk_guest {
    struct dk_image *imgs[DK_GUEST_MAX_DISKS];
    size_t ndisks;
    struct dk_partition *parts;
    size_t nparts;
    struct dk_fsinfo *fs;
    size_t nfs;
    char **warnings;
    size_t nwarnings;
    struct lvm_vg **vgs;                /* assembled VGs (lib/guest-lvm.c) */
    size_t nvgs;
    struct dk_lvinfo *lvs;              /* visible LVs, and for each */
    const struct lvm_vg **lv_vg;        /*   its VG */
    const struct lvm_lv **lv_lv;        /*   and its LV */
    size_t nlvs;
    pthread_mutex_t lock;               /* protects errmsg */
    char errmsg[1024];
};
int dk_guest_set_error(struct dk_guest *g, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int dk_guest_add_warning(struct dk_guest *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------ lib/guest-lvm.c */

/* A device of a guest as a byte range: a partition or whole disk (one
 * range of one image) or a logical volume (extents on PVs). */
struct dk_gdev {
    struct dk_guest *g;
    struct dk_image *img;               /* partitions: image, offset */
    uint64_t off, size;
    const struct lvm_vg *vg;            /* LVs: VG and LV (img NULL) */
    const struct lvm_lv *lv;
};
/* Assembles the VGs whose PVs are among the guest's devices and adds
 * their LVs to g->fs and g->lvs (called once by dk_guest_open). Damaged
 * PVs become warnings. Returns 0 or -ENOMEM (with ERR). */
int dk_guest_lvm_scan(struct dk_guest *g, struct dk_error *err);
void dk_guest_lvm_free(struct dk_guest *g);
/* "/dev/mapper/VG-LV" of g->lvs[I] ("" if it has none). */
const char *dk_guest_lv_mapper(const struct dk_guest *g, size_t i);
/* The device behind F. Returns 0, or -ENOENT / -ENOTSUP (an LV that
 * cannot be read) with the reason in ERR. */
int dk_gdev_get(struct dk_guest *g, const struct dk_fsinfo *f, struct dk_gdev *d,
                struct dk_error *err);
/* I/O relative to the device start (range checked by the caller); 0 or
 * -errno with the message on the image. */
int dk_gdev_pread(const struct dk_gdev *d, void *buf, size_t len, uint64_t off);
int dk_gdev_pwrite(const struct dk_gdev *d, const void *buf, size_t len, uint64_t off);
int dk_gdev_flush(const struct dk_gdev *d);
/* An image the device lies on that is open read-only, or NULL. */
struct dk_image *dk_gdev_read_only(const struct dk_gdev *d);
/* Why the device must not be written (an LV with snapshots), or NULL. */
const char *dk_gdev_no_write(const struct dk_gdev *d);

/* --------------------------------------------------- lib/ext2io.c */

/* The io_manager over (image, offset, length). Register a view, pass the
 * returned name ("diskkit:<id>") to ext2fs_open2 with dk_ext2_io_manager,
 * unregister after ext2fs_close. */
extern io_manager dk_ext2_io_manager;
int dk_ext2io_register(struct dk_image *img, uint64_t off, uint64_t size,
                       bool writable, char *name, size_t namelen);
int dk_ext2io_register_dev(const struct dk_gdev *dev, bool writable, char *name,
                           size_t namelen);
void dk_ext2io_unregister(const char *name);
/* errcode_t (errno or EXT2_ET_*) to a negative errno for our callers. */
int dk_ext2_errno(errcode_t e);

/* ------------------------------------------------ lib/guestfs*.c */

struct dk_fs {
    struct dk_guest *g;
    ext2_filsys e2;
    char ioname[64];
    char device[DK_DEVNAME_MAX];
    const char *type;                   /* "ext2" "ext3" "ext4" */
    bool rdwr;
    uint32_t uid, gid;                  /* owner of new inodes */
    pthread_mutex_t lock;
    char errmsg[1024];
};

/* Locked helpers shared by guestfs.c, guestfile.c and guestmod.c: every
 * one expects fs->lock to be held by the caller. */
int dk_fs_err(struct dk_fs *fs, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int dk_fs_e2err(struct dk_fs *fs, errcode_t e, const char *what, const char *path);
int dk_fs_namei(struct dk_fs *fs, const char *path, bool follow, ext2_ino_t *ino);
/* Splits PATH into its parent directory inode (resolved, must be a
 * directory) and the last component copied to NAME (EXT2_NAME_LEN + 1). */
int dk_fs_parent(struct dk_fs *fs, const char *path, ext2_ino_t *dir, char *name);
int dk_fs_read_inode(struct dk_fs *fs, ext2_ino_t ino, struct ext2_inode_large *in);
int dk_fs_write_inode(struct dk_fs *fs, ext2_ino_t ino, struct ext2_inode_large *in);
void dk_fs_fill_stat(struct dk_fs *fs, ext2_ino_t ino,
                     const struct ext2_inode_large *in, struct dk_stat *st);
/* Sets the given times (TOUCH_* bits) of IN to now. */
#define DK_TOUCH_A 1u
#define DK_TOUCH_M 2u
#define DK_TOUCH_C 4u
#define DK_TOUCH_CR 8u
void dk_fs_touch(struct dk_fs *fs, struct ext2_inode_large *in, unsigned which);
struct timespec;
void dk_fs_set_times(struct ext2_inode_large *in, unsigned which, const struct timespec *ts);
int dk_fs_truncate_ino(struct dk_fs *fs, ext2_ino_t ino, uint64_t size, const char *what);
int dk_fs_check_rw(struct dk_fs *fs);
/* Allocates and links a new inode NAME in DIR (mode with type bits). */
int dk_fs_create_inode(struct dk_fs *fs, ext2_ino_t dir, const char *name, uint32_t mode,
                       uint64_t rdev, ext2_ino_t *out);
/* Removes entry NAME -> INO from DIR like unlink/rmdir (guestmod.c). */
int dk_fs_remove_entry(struct dk_fs *fs, ext2_ino_t dir, const char *name, ext2_ino_t ino,
                       struct ext2_inode_large *in);
int dk_fs_adjust_links(struct dk_fs *fs, ext2_ino_t ino, int delta, unsigned touch);
int dk_fs_touch_ino(struct dk_fs *fs, ext2_ino_t ino, unsigned which);
int dk_fs_link_entry(struct dk_fs *fs, ext2_ino_t dir, const char *name, ext2_ino_t ino,
                     uint32_t mode);
int dk_fs_dir_is_empty(struct dk_fs *fs, ext2_ino_t ino, const char *path);
#define DK_FS_LOCKED(fs, expr) ({ pthread_mutex_lock(&(fs)->lock); int r_ = (expr); \
                                  pthread_mutex_unlock(&(fs)->lock); r_; })
/* Frees an inode whose link count dropped to 0: releases its blocks,
 * sets dtime and returns it to the allocator. */
int dk_fs_release_inode(struct dk_fs *fs, ext2_ino_t ino, struct ext2_inode_large *in);

#endif /* DK_GUEST_H */
