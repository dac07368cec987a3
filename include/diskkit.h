/* diskkit.h - the public API of libdiskkit.
 *
 * libdiskkit opens disk images (raw, qcow2, vmdk, vdi, vpc) behind one image
 * handle, follows backing chains, copies between images, checks and repairs
 * them, and reaches guest filesystems without a VM appliance.
 *
 * Conventions (every call below follows them unless it says otherwise):
 *  - int-returning calls return 0 (or a count) on success and a negative
 *    errno on failure; the message is then available from
 *    dk_image_errmsg() on the handle involved, or in the struct dk_error
 *    out-parameter for calls that have no handle yet.
 *  - Strings passed in are borrowed for the duration of the call only.
 *  - Strings returned by dk_image_errmsg() stay valid until the next call on
 *    the same handle.
 *  - Handles are safe to use from several threads: the core serialises
 *    requests on one handle with a per-handle lock.
 *
 * Since: 0.1 for everything in this file unless noted.
 * SPDX-License-Identifier: MIT
 */
#ifndef DISKKIT_H
#define DISKKIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DK_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------ errors --- */

/* Out-parameter error for calls that have no handle (open, create). */
struct dk_error {
    int code;           /* negative errno, 0 if no error */
    char msg[1024];     /* one line, no trailing newline */
};

/* ------------------------------------------------------------ options --- */

/* A parsed "key=value,key=value" list (qemu syntax: ",," is a literal
 * comma). Keys keep their order; a later duplicate replaces the earlier. */
struct dk_opts;

/* Parses STR and appends its pairs to *OPTS (allocating it when NULL).
 * A bare "key" means "key=on". Returns 0 or -EINVAL with ERR filled. */
int dk_opts_parse(struct dk_opts **opts, const char *str, struct dk_error *err);
/* Sets KEY to VALUE (both copied). Returns 0 or -ENOMEM. */
int dk_opts_set(struct dk_opts **opts, const char *key, const char *value);
/* Returns the value for KEY (borrowed until the list is freed) or NULL. */
const char *dk_opts_get(const struct dk_opts *opts, const char *key);
/* Removes KEY if present. */
void dk_opts_del(struct dk_opts *opts, const char *key);
/* Iteration: number of pairs and the Ith key/value (borrowed). */
size_t dk_opts_count(const struct dk_opts *opts);
const char *dk_opts_key(const struct dk_opts *opts, size_t i);
const char *dk_opts_value(const struct dk_opts *opts, size_t i);
void dk_opts_free(struct dk_opts *opts);

/* Parses a size: bytes, or a number with one suffix of k K M G T P E
 * (powers of 1024; a fraction like "1.5G" is allowed). Returns 0 or
 * -EINVAL (bad syntax) / -ERANGE (does not fit in 63 bits). */
int dk_parse_size(const char *str, uint64_t *out);
/* Parses on/off/true/false/yes/no/1/0. Returns 0/1, or -EINVAL. */
int dk_parse_bool(const char *str);

/* ------------------------------------------------------------- values --- */

/* A small JSON-like tree, used for format-specific information so that the
 * CLI can print it both as qemu-img's human text and as JSON. */
enum dk_val_type { DK_VAL_NULL, DK_VAL_BOOL, DK_VAL_INT, DK_VAL_UINT,
                   DK_VAL_STR, DK_VAL_OBJ, DK_VAL_LIST };

struct dk_val {
    enum dk_val_type type;
    char *key;                  /* member name inside an object, else NULL */
    union {
        int b;
        int64_t i;
        uint64_t u;
        char *s;
        struct { struct dk_val *items; size_t n; } kids;  /* OBJ and LIST */
    } v;
};

struct dk_val *dk_val_new_obj(void);
struct dk_val *dk_val_new_list(void);
/* Appends a member (KEY may be NULL inside a list); returns the new child
 * (owned by PARENT) or NULL on ENOMEM. Strings are copied. */
struct dk_val *dk_val_add_str(struct dk_val *parent, const char *key, const char *s);
struct dk_val *dk_val_add_int(struct dk_val *parent, const char *key, int64_t i);
struct dk_val *dk_val_add_uint(struct dk_val *parent, const char *key, uint64_t u);
struct dk_val *dk_val_add_bool(struct dk_val *parent, const char *key, int b);
struct dk_val *dk_val_add_obj(struct dk_val *parent, const char *key);
struct dk_val *dk_val_add_list(struct dk_val *parent, const char *key);
/* Finds a member of an object by key (borrowed), or NULL. */
const struct dk_val *dk_val_get(const struct dk_val *obj, const char *key);
/* Frees V and everything under it (V itself must come from dk_val_new_*). */
void dk_val_free(struct dk_val *v);

/* ------------------------------------------------------------- images --- */

struct dk_image;

/* Open flags. */
#define DK_OPEN_RDWR            0x0001u  /* read-write (default read-only) */
#define DK_OPEN_NO_BACKING      0x0002u  /* do not open the backing chain */
#define DK_OPEN_FORCE_SHARE     0x0004u  /* -U: read-only open ignoring a writer's lock */
#define DK_OPEN_ALLOW_EXTERNAL  0x0008u  /* extent/data files may lie outside the image dir */
#define DK_OPEN_NO_LOCK         0x0010u  /* take no file lock at all (internal uses) */
#define DK_OPEN_REPAIR          0x0020u  /* open for check -r: allow corrupt/dirty images */
#define DK_OPEN_BACKING_RO      0x0040u  /* (always set for backing layers) */

struct dk_open_opts {
    const char *format;         /* NULL: probe from content */
    unsigned flags;             /* DK_OPEN_* */
    /* Secret for encrypted images (any layer of the chain); bytes, not
     * necessarily NUL-terminated; NULL when none was given. */
    const unsigned char *secret;
    size_t secret_len;
    /* Backing format to use for the top image's backing file when the
     * image records none (qemu's -F on the command line); else NULL. */
    const char *backing_format;
    /* Internal snapshot to open read-only (id or name), or NULL. */
    const char *snapshot;
};

/* Opens FILENAME. OPTS may be NULL (probe, read-only). The backing chain is
 * opened read-only below the top image (at most DK_MAX_CHAIN deep, loops are
 * an error). Returns a handle (caller closes) or NULL with ERR filled. */
#define DK_MAX_CHAIN 64
struct dk_image *dk_open(const char *filename, const struct dk_open_opts *opts,
                         struct dk_error *err);
/* Flushes (when writable) and frees the whole chain. Returns 0 or the first
 * error met while flushing; the handle is freed in every case. */
int dk_close(struct dk_image *img);

/* Last error on IMG: errno (negative, 0 if none) and a one-line message
 * naming the file; valid until the next call on IMG. */
int dk_image_errno(const struct dk_image *img);
const char *dk_image_errmsg(const struct dk_image *img);

uint64_t dk_image_size(const struct dk_image *img);        /* virtual size */
const char *dk_image_format(const struct dk_image *img);   /* "qcow2" ... */
const char *dk_image_filename(const struct dk_image *img); /* as opened */
int dk_image_read_only(const struct dk_image *img);
/* The backing layer (borrowed, owned by IMG) or NULL. */
struct dk_image *dk_image_backing(const struct dk_image *img);
/* Preferred I/O granularity (cluster/grain size; 512 for raw). */
uint32_t dk_image_cluster_size(const struct dk_image *img);

/* Guest I/O through the whole chain. Ranges past the virtual size fail
 * with -EINVAL. Reads fill the buffer completely (unallocated areas come
 * from the backing chain or read as zeros). */
int dk_pread(struct dk_image *img, void *buf, size_t len, uint64_t off);
int dk_pwrite(struct dk_image *img, const void *buf, size_t len, uint64_t off);
#define DK_ZERO_MAY_UNMAP  0x1u   /* deallocating is fine (reads still zero) */
int dk_pwrite_zeroes(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags);
/* Discard: contents afterwards are unspecified (zero or backing data). */
int dk_discard(struct dk_image *img, uint64_t off, uint64_t len);
int dk_flush(struct dk_image *img);

/* Block status. */
#define DK_BS_DATA          0x01u  /* reads come from stored data */
#define DK_BS_ZERO          0x02u  /* reads as zeros */
#define DK_BS_ALLOCATED     0x04u  /* allocated in the layer that answered */
#define DK_BS_OFFSET_VALID  0x08u  /* host_offset is where the bytes lie, raw */
#define DK_BS_COMPRESSED    0x10u  /* stored compressed (no host offset) */
#define DK_BS_ENCRYPTED     0x20u  /* stored encrypted (no usable offset) */

struct dk_extent {
    uint64_t offset;        /* guest offset of the extent */
    uint64_t length;        /* bytes, > 0 */
    unsigned flags;         /* DK_BS_* */
    int depth;              /* 0 = top image, 1 = its backing, ... */
    uint64_t host_offset;   /* with DK_BS_OFFSET_VALID */
    const char *host_file;  /* file holding host_offset (borrowed) */
};
#define DK_BS_THIS_LAYER 0x1u   /* answer for the top layer only */
/* Describes the longest run starting at OFF (at most LEN bytes, clipped to
 * the virtual size) whose status is the same. Without DK_BS_THIS_LAYER the
 * chain is walked: an unallocated range reports the layer below, and a
 * range unallocated everywhere reports flags ZERO at depth = chain length - 1
 * (as qemu-img map). Returns 0 or -errno. */
int dk_block_status(struct dk_image *img, uint64_t off, uint64_t len,
                    unsigned how, struct dk_extent *ext);

/* Changes the virtual size. PREALLOC is "off"/"metadata"/"falloc"/"full"
 * or NULL; shrinking needs DK_RESIZE_SHRINK. */
#define DK_RESIZE_SHRINK 0x1u
int dk_resize(struct dk_image *img, uint64_t size, const char *prealloc, unsigned flags);

/* ----------------------------------------------------------- formats --- */

/* Names of the formats this build knows, NULL-terminated (static). */
const char *const *dk_formats(void);
/* Probes FILENAME's format from its content; returns 0 and the static
 * name in *FMT, or -errno with ERR filled. */
int dk_probe(const char *filename, const char **fmt, struct dk_error *err);

/* Description of a creation option, for "-o help" and validation. */
enum dk_opt_type { DK_OPT_STRING, DK_OPT_SIZE, DK_OPT_BOOL, DK_OPT_NUMBER };
struct dk_optdesc {
    const char *name;
    enum dk_opt_type type;
    const char *help;
    const char *def;           /* default as text, or NULL */
};
/* The creation options of FORMAT, terminated by a zeroed entry; NULL if the
 * format is unknown. Static storage. */
const struct dk_optdesc *dk_create_options(const char *format);
/* The options dk_amend takes besides (some of) the creation options, e.g.
 * qcow2's encrypt.state / encrypt.keyslot / encrypt.new-secret /
 * encrypt.old-secret; terminated by a zeroed entry; NULL if the format is
 * unknown. Static storage. Since 0.2. */
const struct dk_optdesc *dk_amend_options(const char *format);

/* Creates an image. SIZE may be 0 when a backing file gives it. OPTS holds
 * the -o options (unknown keys are an error); "backing_file"/"backing_fmt"
 * may be given there. With DK_CREATE_NO_BACKING_CHECK the backing file is
 * not opened (qemu-img create -u). SECRET is used for encrypt.* options.
 * On failure nothing is left under FILENAME. */
#define DK_CREATE_NO_BACKING_CHECK 0x1u
#define DK_CREATE_ALLOW_EXTERNAL   0x2u
struct dk_create_args {
    const char *filename;
    const char *format;
    uint64_t size;
    const struct dk_opts *opts;
    unsigned flags;
    const unsigned char *secret;
    size_t secret_len;
};
int dk_create(const struct dk_create_args *args, struct dk_error *err);

/* -------------------------------------------------------------- info --- */

struct dk_snapshot {
    char *id;
    char *name;
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;            /* UINT64_MAX when not recorded */
};

struct dk_info {
    char *filename;
    const char *format;
    uint64_t virtual_size;
    uint64_t actual_size;       /* bytes allocated on the host for all files */
    uint32_t cluster_size;      /* 0 when the format has none */
    int dirty;                  /* -1 when the format has no dirty flag */
    int encrypted;
    char *backing_filename;     /* as recorded, or NULL */
    char *full_backing_filename;
    char *backing_format;
    struct dk_snapshot *snapshots;
    size_t nb_snapshots;
    struct dk_val *format_specific;  /* {"type":..,"data":{..}} or NULL */
    char **files;               /* extra files (extents, data file), NULL-terminated or NULL */
};
/* Fills INFO for the top layer of IMG. Caller frees with dk_info_free. */
int dk_info(struct dk_image *img, struct dk_info *info);
void dk_info_free(struct dk_info *info);

/* ------------------------------------------------------------- check --- */

#define DK_FIX_LEAKS   0x1u
#define DK_FIX_ERRORS  0x2u
struct dk_check_result {
    int64_t check_errors;
    int64_t corruptions, leaks;
    int64_t corruptions_fixed, leaks_fixed;
    uint64_t image_end_offset;
    uint64_t total_clusters, allocated_clusters;
    uint64_t fragmented_clusters, compressed_clusters;
};
/* Reports one problem found or fixed, as qemu-img check prints it. */
typedef void (*dk_report_fn)(void *opaque, const char *line);
/* Checks (and with FIX repairs) the top layer. Returns 0 when the check ran
 * (look at RES for the verdict), -ENOTSUP when the format has no check, or
 * another -errno when the check could not complete. */
int dk_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
             dk_report_fn report, void *opaque);

/* --------------------------------------------------------- snapshots --- */

/* List: *OUT is an array (caller frees with dk_snapshots_free). */
int dk_snapshot_list(struct dk_image *img, struct dk_snapshot **out, size_t *n);
void dk_snapshots_free(struct dk_snapshot *s, size_t n);
int dk_snapshot_create(struct dk_image *img, const char *name);
int dk_snapshot_apply(struct dk_image *img, const char *id_or_name);
int dk_snapshot_delete(struct dk_image *img, const char *id_or_name);

/* ------------------------------------------- amend, rebase, measure --- */

/* Changes format options of an open (read-write) image in place. */
int dk_amend(struct dk_image *img, const struct dk_opts *opts);
/* Rewrites the backing file name and format recorded in the top layer only
 * (rebase -u). NAME NULL or "" removes the backing file. */
int dk_set_backing(struct dk_image *img, const char *name, const char *fmt);

struct dk_measure {
    uint64_t required;
    uint64_t fully_allocated;
    uint64_t bitmaps;
};
/* Size an image of FORMAT with OPTS would need: for SIZE bytes of virtual
 * size (SRC NULL), or holding the data of SRC. */
int dk_measure(const char *format, const struct dk_opts *opts, uint64_t size,
               struct dk_image *src, struct dk_measure *out, struct dk_error *err);

/* --------------------------------------------------------- copy engine --- */

/* Progress: DONE out of TOTAL bytes of work. */
typedef void (*dk_progress_fn)(void *opaque, uint64_t done, uint64_t total);

#define DK_COPY_COMPRESS      0x01u  /* write compressed clusters (-c) */
#define DK_COPY_TARGET_ZERO   0x02u  /* target reads as zero already */
#define DK_COPY_OUT_OF_ORDER  0x04u  /* -W */
#define DK_COPY_NO_SPARSE     0x08u  /* -S 0: write zeros as data */
#define DK_COPY_STRICT_EQUAL  0x10u  /* compare: allocation must match too */
/* --salvage: a source range that cannot be read (read or block status
 * error) is retried in smaller pieces down to 512 bytes; what still fails
 * is written as zeros and reported through args->report, and the copy goes
 * on. */
#define DK_COPY_SALVAGE       0x20u
/* -C: copy data with copy_file_range(2) from the source's host file into a
 * raw destination file where both allow it (reflinks on filesystems that
 * share extents, in-kernel copies elsewhere); no zero detection inside data
 * extents. Falls back to reading and writing where it does not apply. */
#define DK_COPY_OFFLOAD       0x40u

struct dk_copy_args {
    struct dk_image **src;      /* concatenated in order */
    size_t nsrc;
    struct dk_image *dst;
    /* When non-NULL the destination has this backing image: only ranges
     * whose content differs from it are written (convert -B, rebase). */
    struct dk_image *dst_backing;
    unsigned flags;             /* DK_COPY_* */
    uint64_t sparse_size;       /* -S: zero runs of this size become holes
                                   (0 = default 4 KiB) */
    unsigned threads;           /* -m: workers (0 = default) */
    dk_progress_fn progress;
    void *progress_opaque;
    /* -r: at most this many bytes of data per second (0 = no limit); holes
     * and zero ranges do not count. */
    uint64_t rate_limit;
    /* DK_COPY_SALVAGE: one line per unreadable range, e.g. "error while
     * reading offset 65536 (512 bytes, written as zeros): ...". May be
     * NULL. Called with the engine's lock held, from any worker. */
    dk_report_fn report;
    void *report_opaque;
};
/* Copies the guest content of the sources into DST, which must be at least
 * as large as their sum. Returns 0 or -errno; the message is on the handle
 * that failed, and is also copied into ERR. */
int dk_copy(const struct dk_copy_args *args, struct dk_error *err);

/* Compares A and B. Returns 0 identical, 1 different (with *MISMATCH the
 * first differing offset), or -errno. On 1, ERR holds code 0 and qemu-img
 * compare's line for the difference ("Content mismatch at offset N!",
 * "Strict mode: Image size mismatch!", ...). */
int dk_compare(struct dk_image *a, struct dk_image *b, unsigned flags,
               uint64_t *mismatch, dk_progress_fn progress, void *opaque,
               struct dk_error *err);

/* ------------------------------------------------ rebase/commit --- */
/* Chain operations (lib/chain.c), used by `diskkit rebase` and `commit`.
 * Both need IMG opened with DK_OPEN_RDWR and its current backing chain. */

/* dk_open flag: open the first backing layer read-write as well (commit
 * writes into it). Layers further down stay read-only. */
#define DK_OPEN_BACKING_RW      0x0080u

/* Safe rebase: makes IMG read the same through NEW_BACKING (or through no
 * backing file when NEW_BACKING is NULL) as it reads now through its old
 * chain. Every range unallocated in IMG's top layer whose content differs
 * between the old chain and NEW_BACKING (zeros past its end) is copied from
 * the old chain into IMG; ranges allocated in IMG are left alone. Then the
 * header records NAME/FMT (dk_set_backing; NAME NULL or "" detaches).
 * NEW_BACKING is borrowed. IMG keeps reading through its old chain until it
 * is reopened. Returns 0 or -errno (message on IMG). */
int dk_rebase(struct dk_image *img, struct dk_image *new_backing, const char *name,
              const char *fmt, dk_progress_fn progress, void *opaque);

/* Commit: writes every range allocated in IMG's top layer into its backing
 * image, which must have been opened writable (DK_OPEN_BACKING_RW); grows
 * the backing image when IMG is larger (never shrinks it). Unless
 * DK_COMMIT_KEEP is given, IMG's top layer is then emptied (all its
 * clusters unallocated, reads fall through to the backing). Returns 0 or
 * -errno (message on IMG). */
#define DK_COMMIT_KEEP 0x1u
int dk_commit(struct dk_image *img, unsigned flags, dk_progress_fn progress, void *opaque);

/* Commit into BASE, any layer of IMG's backing chain (qemu-img commit -b):
 * every range stored in a layer above BASE is written into BASE as it reads
 * through IMG; BASE grows when IMG is larger. BASE must be writable (open
 * with dk_open_chain_rw); IMG may be read-only. When BASE is IMG's direct
 * backing file this is dk_commit; otherwise the top is never emptied (the
 * layers in between would show through) and DK_COMMIT_KEEP is implied. */
int dk_commit_to(struct dk_image *img, struct dk_image *base, unsigned flags,
                 dk_progress_fn progress, void *opaque);

/* The layer of IMG's backing chain (IMG itself excluded) that NAME means,
 * as qemu-img commit -b matches it: the backing file name recorded in the
 * layer above, or the same file (by real path). Sets *DEPTH (1 = direct
 * backing file) when DEPTH is not NULL. Returns the borrowed layer or NULL. */
struct dk_image *dk_chain_find(struct dk_image *img, const char *name, int *depth);

/* dk_open, with the backing layer at RW_DEPTH (1 = the direct backing file)
 * opened read-write and every other backing layer read-only; the top is
 * opened as OPTS says. Fails when the chain is shorter than RW_DEPTH. */
struct dk_image *dk_open_chain_rw(const char *filename, const struct dk_open_opts *opts,
                                  int rw_depth, struct dk_error *err);

/* ------------------------------------------- amend with progress --- */
/* dk_amend that calls PROGRESS(OPAQUE, done, total) while changes walk the
 * image (qcow2: compat=1.1, compat=0.10, refcount_bits). PROGRESS may be
 * NULL (then it is dk_amend). Returns 0 or -errno (message on IMG). */
int dk_amend_progress(struct dk_image *img, const struct dk_opts *opts,
                      dk_progress_fn progress, void *opaque);

/* ------------------------------------------------ named secrets --- */
/* Registers a named secret on IMG, like qemu's --object secret,id=ID, for
 * options that name one: dk_amend's encrypt.new-secret=ID and
 * encrypt.old-secret=ID (qcow2 LUKS key slots). ID and the LEN bytes of
 * DATA are copied; the copy is wiped and freed when IMG is closed. A
 * secret with an ID already registered replaces it. Returns 0, -EINVAL
 * (ID NULL or empty), -E2BIG (more than DK_MAX_SECRETS) or -ENOMEM
 * (message on IMG; it never contains the secret). Since 0.2. */
#define DK_MAX_SECRETS 16
int dk_image_add_secret(struct dk_image *img, const char *id, const void *data, size_t len);

/* ---------------------------------------------------- guest filesystems --- */
/* The guest layer: partitions (MBR, extended/logical, GPT), filesystem
 * detection, ext2/3/4 read-write access through libext2fs, and OS
 * inspection, all on top of the image API above (no VM appliance).
 *
 * Objects:
 *  - struct dk_guest: a set of opened images seen as disks /dev/sda,
 *    /dev/sdb, ... (guestfish names) with their partitions /dev/sda1 ...
 *    The images are BORROWED: they must stay open until dk_guest_close().
 *  - struct dk_fs: one ext2/3/4 filesystem on a device of a guest.
 *  - struct dk_fsfile: an open regular file of a dk_fs.
 *
 * Thread safety: a dk_guest is read-only after dk_guest_open() and may be
 * shared by threads. Every dk_fs call (and every dk_fsfile call, which goes
 * through its dk_fs) takes one mutex per dk_fs, so one dk_fs may be used
 * from several threads (the FUSE mounter does). Several dk_fs on distinct
 * devices of one guest are independent. Do not open the same device twice
 * read-write.
 *
 * Paths inside a filesystem are absolute ("/etc/passwd"); symlinks are
 * resolved inside that filesystem only (an absolute target is taken from
 * the filesystem root, never from the host). Errors: 0/-errno as above;
 * the message is on the handle (dk_fs_errmsg), valid until the next call
 * on that handle from the same thread. */

struct dk_guest;
struct dk_fs;
struct dk_fsfile;

#define DK_GUEST_MAX_DISKS      26      /* /dev/sda .. /dev/sdz */
#define DK_GUEST_MAX_PARTITIONS 128     /* per disk (GPT entries, MBR logicals) */
/* Fits "/dev/sdz128" and "/dev/VG/LV" (lvm2 names are at most 127
 * characters each). Was 16 before LVM logical volumes became devices. */
#define DK_DEVNAME_MAX          264

/* A partition, or a whole disk holding a filesystem with no table. */
struct dk_partition {
    char device[DK_DEVNAME_MAX];  /* "/dev/sda1", or "/dev/sda" (whole disk) */
    unsigned disk;                /* index of the image, 0 = /dev/sda */
    unsigned partnum;             /* 1.. (MBR logicals from 5), 0 = whole disk */
    uint64_t offset;              /* bytes from the start of the image */
    uint64_t size;                /* bytes */
    const char *scheme;           /* "mbr", "gpt" or "none" (static) */
    unsigned mbr_type;            /* MBR type byte (0x83 ...), 0 for GPT */
    int bootable;                 /* MBR active flag / GPT legacy BIOS bootable */
    char type_guid[40];           /* GPT type GUID (lower case), "" for MBR */
    char part_uuid[40];           /* GPT unique GUID, or MBR "<disksig>-<nn>"
                                     as Linux shows PARTUUID; "" if none */
    char name[80];                /* GPT partition name (UTF-8), "" for MBR */
};

/* What a device holds, as list-filesystems / virt-filesystems show it. */
struct dk_fsinfo {
    char device[DK_DEVNAME_MAX];  /* "/dev/sda1", "/dev/sda", "/dev/VG/LV" */
    char type[16];      /* "ext2" "ext3" "ext4" "swap" "xfs" "btrfs" "vfat"
                           "ntfs" "LVM2_member" "crypto_LUKS" "iso9660"
                           or "unknown" */
    char label[64];     /* "" when none */
    char uuid[40];      /* "" when none; lower-case canonical form */
    uint64_t offset, size;  /* bytes on the image; offset 0 for an LV */
    int readable;       /* 1: dk_fs_open can open it (ext2/3/4) */
};

/* An LVM2 logical volume assembled from the physical volumes found on the
 * guest's partitions and disks (no device-mapper involved). Readable LVs
 * are devices like partitions: they appear in dk_guest_filesystems() as
 * "/dev/VG/LV", and dk_guest_find()/dk_fs_open() also take the
 * "/dev/mapper/VG-LV" name. Since 0.2. */
struct dk_lvinfo {
    char device[DK_DEVNAME_MAX];  /* "/dev/VG/LV" */
    char vg[128], lv[128];        /* names */
    char uuid[40];                /* LV id as lvm2 prints it */
    uint64_t size;                /* bytes */
    unsigned npvs, stripes;       /* PVs the LV uses; most stripes of a segment */
    char error[256];              /* "" when readable, else why not:
                                     "LV vg/lv: segment type raid1 not supported" */
};

/* Opens a guest over IMGS[0..N-1] (borrowed; N <= DK_GUEST_MAX_DISKS) and
 * reads their partition tables and filesystem signatures. Never writes.
 * Problems that do not stop reading (GPT primary header damaged, backup
 * used; a partition that runs past the end of the disk and was clipped or
 * dropped) become warnings, see dk_guest_warning(). FLAGS: none defined
 * yet, pass 0. Returns the guest (caller closes) or NULL with ERR filled. */
struct dk_guest *dk_guest_open(struct dk_image **imgs, size_t n, unsigned flags,
                               struct dk_error *err);
/* Frees the guest (not the images). Every dk_fs opened on it must be
 * closed first. */
void dk_guest_close(struct dk_guest *g);

/* Number of disks and the image of disk I (borrowed). */
size_t dk_guest_nb_disks(const struct dk_guest *g);
struct dk_image *dk_guest_image(const struct dk_guest *g, size_t i);

/* Partitions of every disk, in device order; a disk without a partition
 * table appears as one entry with partnum 0. Borrowed until close. */
const struct dk_partition *dk_guest_partitions(const struct dk_guest *g, size_t *n);
/* Filesystems (one per partition, and per table-less disk), in device
 * order, including ones diskkit cannot read (type "unknown", readable 0).
 * Borrowed until close. */
const struct dk_fsinfo *dk_guest_filesystems(const struct dk_guest *g, size_t *n);
/* Finds a device by name ("/dev/sda1"; "/dev/vda1" and "/dev/hda1" are
 * accepted as aliases, "/dev/mapper/VG-LV" for "/dev/VG/LV"). Returns the
 * entry (borrowed) or NULL. */
const struct dk_fsinfo *dk_guest_find(const struct dk_guest *g, const char *device);
/* Visible LVs of every VG found, sorted by VG then LV name (hidden
 * sub-LVs of raid, thin pools, ... are not listed). Borrowed until close.
 * A damaged PV or metadata area gives a warning, not an error. */
const struct dk_lvinfo *dk_guest_lvs(const struct dk_guest *g, size_t *n);
/* Non-fatal warnings collected while opening (borrowed; I < count). */
size_t dk_guest_nb_warnings(const struct dk_guest *g);
const char *dk_guest_warning(const struct dk_guest *g, size_t i);

/* ---- inspection (virt-inspector) ---- */

struct dk_mountpoint {
    char *mountpoint;   /* "/", "/boot", ... */
    char *device;       /* our device name, "/dev/sda2" */
};
struct dk_inspect {
    char *root;         /* device of the OS root filesystem */
    char *type;         /* "linux" or "unknown" */
    char *distro;       /* os-release ID ("fedora", "debian", ...) or "unknown" */
    char *product_name; /* PRETTY_NAME or the release file's line */
    int major_version, minor_version;   /* 0 when unknown */
    char *version;      /* VERSION_ID as written, "" when unknown */
    char *hostname;     /* "" when unknown */
    char *arch;         /* "x86_64", "aarch64", "i386", ... or "unknown" */
    /* fstab entries that resolve to devices of this guest, sorted by
     * mountpoint ("/" first); always contains "/" -> root. */
    struct dk_mountpoint *mounts;
    size_t nmounts;
};
/* Looks for an OS on every readable filesystem and describes the first one
 * found (device order). Returns 0 with *OUT set (caller frees with
 * dk_inspect_free), -ENOENT when no OS root was found (message via
 * dk_guest_errmsg), or another -errno. */
int dk_guest_inspect(struct dk_guest *g, struct dk_inspect **out);
void dk_inspect_free(struct dk_inspect *ins);
/* The device mounted at the longest mountpoint that is a prefix of PATH
 * (by path components), with *REST set to the rest of PATH inside that
 * filesystem ("/boot/grub" -> "/dev/sda1", "/grub"; REST points into a
 * buffer of LEN bytes given by the caller). Returns the device (borrowed
 * from INS) or NULL if PATH is not absolute or REST does not fit. */
const char *dk_inspect_resolve(const struct dk_inspect *ins, const char *path,
                               char *rest, size_t len);
/* Last error message of guest-level calls (inspect). */
const char *dk_guest_errmsg(const struct dk_guest *g);

/* ---- filesystems ---- */

#define DK_FS_RDWR   0x1u   /* open read-write (the disk image must be
                               opened with DK_OPEN_RDWR) */
#define DK_FS_FORCE  0x2u   /* open read-write even when the journal needs
                               recovery (the journal is NOT replayed) */

/* Opens the ext2/3/4 filesystem on DEVICE ("/dev/sda1"), or with DEVICE
 * NULL the inspected OS root, else the only readable filesystem. Read-only
 * opens read the filesystem as it is (an unreplayed journal is ignored);
 * DK_FS_RDWR refuses a filesystem whose journal needs recovery (unless
 * DK_FS_FORCE), one with errors, or with unknown incompatible features.
 * Returns a handle (caller closes) or NULL with ERR filled. */
struct dk_fs *dk_fs_open(struct dk_guest *g, const char *device, unsigned flags,
                         struct dk_error *err);
/* Writes back everything (bitmaps, group descriptors, superblock with
 * free counts) and frees the handle. Returns 0 or the first error met
 * while flushing; the handle is freed in every case. */
int dk_fs_close(struct dk_fs *fs);
/* Flushes pending metadata to the image (and the image to its file). */
int dk_fs_sync(struct dk_fs *fs);
const char *dk_fs_errmsg(const struct dk_fs *fs);
const char *dk_fs_device(const struct dk_fs *fs);  /* "/dev/sda1" (borrowed) */
const char *dk_fs_type(const struct dk_fs *fs);    /* "ext4" (static) */
int dk_fs_read_only(const struct dk_fs *fs);

struct dk_stat {
    uint64_t ino;
    uint32_t mode;          /* S_IFMT type bits and permissions */
    uint32_t nlink;
    uint32_t uid, gid;
    uint64_t size;
    uint64_t blocks;        /* 512-byte units allocated (like st_blocks) */
    uint32_t blksize;       /* filesystem block size */
    uint64_t rdev;          /* makedev(major, minor) for device nodes */
    int64_t atime, mtime, ctime, crtime;     /* seconds since the epoch */
    uint32_t atime_ns, mtime_ns, ctime_ns, crtime_ns;
};
struct dk_statvfs {
    uint64_t bsize;         /* block size */
    uint64_t blocks, bfree, bavail;   /* in bsize units */
    uint64_t files, ffree;
    uint32_t namemax;
};
int dk_fs_statfs(struct dk_fs *fs, struct dk_statvfs *st);

/* The inode number of the root directory (2 for ext2/3/4). */
uint64_t dk_fs_root_ino(const struct dk_fs *fs);
/* Path lookup: the inode at absolute PATH. With FOLLOW a final symlink is
 * followed (intermediate ones always are; at most 40 links, else -ELOOP).
 * -ENOENT, -ENOTDIR, -ENAMETOOLONG as the kernel would. */
int dk_fs_lookup_path(struct dk_fs *fs, const char *path, int follow, uint64_t *ino);
/* One directory entry NAME in directory DIR (no symlink following). */
int dk_fs_lookup(struct dk_fs *fs, uint64_t dir, const char *name, uint64_t *ino);

int dk_fs_stat(struct dk_fs *fs, const char *path, struct dk_stat *st);   /* follows */
int dk_fs_lstat(struct dk_fs *fs, const char *path, struct dk_stat *st);  /* does not */
int dk_fs_stat_ino(struct dk_fs *fs, uint64_t ino, struct dk_stat *st);

/* Reads a symlink's target into BUF (LEN bytes, NUL-terminated, truncated
 * if longer). Returns the full target length, or -EINVAL if not a link. */
ssize_t dk_fs_readlink(struct dk_fs *fs, const char *path, char *buf, size_t len);
ssize_t dk_fs_readlink_ino(struct dk_fs *fs, uint64_t ino, char *buf, size_t len);

/* Directory listing. FN is called once per entry except "." and ".."
 * with the name (NUL-terminated, borrowed for the call), the inode and a
 * DT_* type (DT_UNKNOWN when the filesystem does not record it). A
 * non-zero return from FN stops the walk and is returned. FN must not call
 * back into the same dk_fs (the handle is locked during the walk). */
typedef int (*dk_dirent_fn)(void *opaque, const char *name, uint64_t ino,
                            unsigned type);
int dk_fs_readdir(struct dk_fs *fs, const char *path, dk_dirent_fn fn, void *opaque);
int dk_fs_readdir_ino(struct dk_fs *fs, uint64_t ino, dk_dirent_fn fn, void *opaque);

/* Files. Open flags: */
#define DK_O_WRITE   0x01u  /* writable handle (needs DK_FS_RDWR) */
#define DK_O_CREAT   0x02u  /* create if missing, with MODE's permissions */
#define DK_O_EXCL    0x04u  /* with CREAT: fail with -EEXIST if present */
#define DK_O_TRUNC   0x08u  /* truncate to 0 (needs WRITE) */
/* Opens the regular file at PATH (symlinks followed). Returns 0 and *OUT
 * (close with dk_fsfile_close) or -errno (-EISDIR for a directory). */
int dk_fsfile_open(struct dk_fs *fs, const char *path, unsigned flags, uint32_t mode,
                   struct dk_fsfile **out);
int dk_fsfile_open_ino(struct dk_fs *fs, uint64_t ino, unsigned flags,
                       struct dk_fsfile **out);
/* Reads up to LEN bytes at OFF; returns the count (0 at end of file). */
ssize_t dk_fsfile_pread(struct dk_fsfile *f, void *buf, size_t len, uint64_t off);
/* Writes LEN bytes at OFF (extending the file); returns LEN or -errno. */
ssize_t dk_fsfile_pwrite(struct dk_fsfile *f, const void *buf, size_t len, uint64_t off);
int dk_fsfile_truncate(struct dk_fsfile *f, uint64_t size);
int dk_fsfile_fstat(struct dk_fsfile *f, struct dk_stat *st);
int dk_fsfile_fsync(struct dk_fsfile *f);
uint64_t dk_fsfile_ino(const struct dk_fsfile *f);
/* Frees the handle; returns 0 or the error of writing the inode back. */
int dk_fsfile_close(struct dk_fsfile *f);

/* Convenience: creates or replaces the file at PATH with LEN bytes of BUF
 * (mode MODE when created). */
int dk_fs_write_file(struct dk_fs *fs, const char *path, const void *buf,
                     size_t len, uint32_t mode);

/* Changes (all need DK_FS_RDWR, else -EROFS). New inodes get the caller's
 * UID/GID given to dk_fs_set_owner (default 0/0). Times are set to now. */
void dk_fs_set_owner(struct dk_fs *fs, uint32_t uid, uint32_t gid);
int dk_fs_mkdir(struct dk_fs *fs, const char *path, uint32_t mode);
int dk_fs_rmdir(struct dk_fs *fs, const char *path);        /* -ENOTEMPTY */
int dk_fs_unlink(struct dk_fs *fs, const char *path);       /* not dirs */
/* Renames like rename(2): replaces an existing target of the same kind
 * (an empty directory for a directory), -EINVAL when moving a directory
 * under itself. */
int dk_fs_rename(struct dk_fs *fs, const char *from, const char *to);
int dk_fs_symlink(struct dk_fs *fs, const char *target, const char *linkpath);
int dk_fs_link(struct dk_fs *fs, const char *existing, const char *newpath);
/* Creates a FIFO, socket or device node (MODE's type bits), RDEV for
 * devices as makedev(). */
int dk_fs_mknod(struct dk_fs *fs, const char *path, uint32_t mode, uint64_t rdev);
int dk_fs_chmod(struct dk_fs *fs, const char *path, uint32_t mode);
/* UID or GID (uint32_t)-1 leaves that one unchanged. Like lchown(2): a
 * final symlink is changed itself, not followed (chmod follows it). */
int dk_fs_chown(struct dk_fs *fs, const char *path, uint32_t uid, uint32_t gid);
/* Sets atime (TS[0]) and mtime (TS[1]) like utimensat(2): tv_nsec
 * UTIME_NOW or UTIME_OMIT are honoured; TS NULL means both now. Does not
 * follow a final symlink. */
struct timespec;
int dk_fs_utimens(struct dk_fs *fs, const char *path, const struct timespec ts[2]);
int dk_fs_truncate(struct dk_fs *fs, const char *path, uint64_t size);

/* Extended attributes of PATH (FOLLOW: symlinks followed as by stat, else
 * the link itself), with the semantics of listxattr(2), getxattr(2),
 * setxattr(2) and removexattr(2): list gives the names NUL-terminated one
 * after the other; list and get return the size (with SIZE 0 only the size
 * needed), -ERANGE when SIZE is too small, -ENODATA for a missing
 * attribute. Namespaces: user., trusted., security. and the POSIX ACLs
 * system.posix_acl_access/default (kernel xattr format); others are
 * -EOPNOTSUPP. A change updates the inode's ctime. */
#define DK_XATTR_CREATE  0x1u   /* set: fail with -EEXIST if it exists */
#define DK_XATTR_REPLACE 0x2u   /* set: fail with -ENODATA if it does not */
ssize_t dk_fs_listxattr(struct dk_fs *fs, const char *path, int follow, char *list,
                        size_t size);
ssize_t dk_fs_getxattr(struct dk_fs *fs, const char *path, int follow, const char *name,
                       void *value, size_t size);
int dk_fs_setxattr(struct dk_fs *fs, const char *path, int follow, const char *name,
                   const void *value, size_t size, unsigned flags);
int dk_fs_removexattr(struct dk_fs *fs, const char *path, int follow, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* DISKKIT_H */
