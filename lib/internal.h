/* internal.h - what the core shares with the format drivers.
 *
 * Layering: tools and fuse see only include/diskkit.h. Format drivers
 * (formats/FMT) see this header and lib/util headers, never each other.
 *
 * Invariants the core maintains for drivers:
 *  1. Every request reaching a driver callback has been range-checked:
 *     off + len <= img->size, len > 0, no overflow; writes only on a
 *     writable handle (img->read_only == 0).
 *  2. Callbacks run with img->lock held, so a driver needs no locking of
 *     its own unless it sets DK_DRV_THREADSAFE_READ.
 *  3. drv->read is only called for ranges that drv->block_status reported
 *     as DK_BS_DATA (allocated, not zero) in this layer (any range for a
 *     driver with DK_DRV_DIRECT_READ and no backing); unallocated
 *     ranges are read from the backing chain by the core.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_INTERNAL_H
#define DK_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "diskkit.h"
#include "util/endian.h"
#include "util/util.h"

/* ----------------------------------------------------- file I/O (lib/file.c) */

/* One host file (or block device). Drivers with several files (VMDK
 * extents, qcow2 data files) open more through dk_file_open_rel. */
struct dk_file {
    int fd;
    char *path;          /* as opened (for messages) */
    bool read_only;
    bool is_blockdev;
    dev_t dev;           /* for loop detection */
    ino_t ino;
};

/* Opens PATH; WRITABLE selects O_RDWR. Returns 0 or -errno (message in ERR). */
int dk_file_open(struct dk_file **out, const char *path, bool writable,
                 struct dk_error *err);
void dk_file_close(struct dk_file *f);
/* Full read: fills all of LEN or fails. Bytes past EOF read as zeros when
 * ZERO_PAST_EOF, else the call fails with -EIO. */
int dk_file_pread(struct dk_file *f, void *buf, size_t len, uint64_t off);
int dk_file_pread_eof0(struct dk_file *f, void *buf, size_t len, uint64_t off);
int dk_file_pwrite(struct dk_file *f, const void *buf, size_t len, uint64_t off);
int dk_file_size(struct dk_file *f, uint64_t *size);         /* apparent */
int dk_file_allocated(struct dk_file *f, uint64_t *bytes);   /* st_blocks*512 */
int dk_file_truncate(struct dk_file *f, uint64_t size);
int dk_file_flush(struct dk_file *f);                        /* fdatasync */
/* Make OFF..OFF+LEN read as zeros, deallocating when possible. */
int dk_file_zero(struct dk_file *f, uint64_t off, uint64_t len, bool may_unmap);
/* Reserve space (posix_fallocate) / write zeros for full preallocation. */
int dk_file_fallocate(struct dk_file *f, uint64_t off, uint64_t len);
int dk_file_prealloc_full(struct dk_file *f, uint64_t off, uint64_t len);
/* SEEK_DATA/SEEK_HOLE walk: sets *DATA and the run length *RUN (at most
 * LEN) starting at OFF. Files without support report all data. */
int dk_file_extent(struct dk_file *f, uint64_t off, uint64_t len,
                   bool *data, uint64_t *run);
/* For a data extent EXT with a host offset in F: clips it to the file's
 * data or hole run at that offset and adds DK_BS_ZERO for a hole. */
int dk_file_extent_clip(struct dk_file *f, struct dk_extent *ext);

/* ---------------------------------------------------------- the handle */

struct dk_driver;

struct dk_image {
    const struct dk_driver *drv;
    void *priv;                   /* driver state, drv->state_size bytes */
    char *filename;               /* as given by the user */
    struct dk_file *file;         /* the image's own file */
    uint64_t size;                /* virtual size; the driver keeps it */
    unsigned flags;               /* DK_OPEN_* as opened */
    bool read_only;
    bool corrupt;                 /* dk_corrupt() was called: now read-only */
    bool probed_raw;              /* raw by probe: writes refused */

    /* Set by the driver's open when the image names a backing file. */
    char *backing_name;           /* as recorded */
    char *backing_fmt;            /* as recorded, or NULL */
    struct dk_image *backing;     /* opened by the core after drv->open */
    int depth;                    /* 0 for the top image */

    /* Secrets and options passed down from dk_open. */
    const unsigned char *secret;
    size_t secret_len;
    const char *snapshot;         /* open this snapshot read-only */
    /* Named secrets (dk_image_add_secret, lib/secret.c): owned copies. */
    struct dk_named_secret *secrets;
    size_t n_secrets;

    /* Set during dk_amend_progress only (NULL otherwise): drivers report
     * the progress of long amend operations here. */
    dk_progress_fn progress;
    void *progress_opaque;

    pthread_mutex_t lock;
    int err;
    char errmsg[1024];
    char errmsg_out[1200];        /* "FILENAME: errmsg", for the public getter */
};

/* Records an error on IMG and returns ERR (negative errno). */
int dk_set_error(struct dk_image *img, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int dk_set_verror(struct dk_image *img, int err, const char *fmt, va_list ap);
/* Records corruption: message (with the caller's source line), marks the
 * handle corrupt and read-only. Drivers that keep an on-disk corrupt bit
 * set it themselves. Returns -EIO. */
#define dk_corrupt(img, ...) dk_corrupt_at((img), __FILE__, __LINE__, __VA_ARGS__)
int dk_corrupt_at(struct dk_image *img, const char *file, int line,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Fills an out-parameter error. Returns ERR. */
int dk_error_set(struct dk_error *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reads guest data of IMG's backing chain for a range of IMG (what an
 * unallocated range of IMG reads as): from img->backing, zeros past its
 * end or when there is none. Used by drivers for copy-on-write. */
int dk_read_backing(struct dk_image *img, void *buf, size_t len, uint64_t off);

/* Opens a file named inside an image, relative to the image's directory,
 * obeying the trust policy (no escape unless DK_OPEN_ALLOW_EXTERNAL). */
int dk_file_open_rel(struct dk_image *img, const char *name, bool writable,
                     struct dk_file **out);
/* Resolves NAME relative to the directory of BASE (a path). Caller frees. */
char *dk_path_rel(const char *base, const char *name);
/* Checks that NAME (relative to BASE's directory) stays inside that
 * directory once symlinks are resolved. Returns 0 or -EPERM with ERR. */
int dk_path_check_inside(const char *base, const char *name, struct dk_error *err);

/* ---------------------------------------------------- the driver vtable */

#define DK_DRV_BACKING      0x01u  /* can have a backing file */
#define DK_DRV_SNAPSHOTS    0x02u
#define DK_DRV_COMPRESSION  0x04u
#define DK_DRV_ENCRYPTION   0x08u
#define DK_DRV_THREADSAFE_READ 0x10u
/* drv->read may be called for any range: unallocated ranges read as zeros
 * and the format never has a backing file (raw). dk_pread then skips the
 * per-request block status walk. */
#define DK_DRV_DIRECT_READ  0x20u

/* What a driver create callback gets (already validated by the core:
 * option keys are known to the driver's create_opts table). */
struct dk_create_ctx {
    const char *filename;
    uint64_t size;
    const struct dk_opts *opts;
    unsigned flags;                 /* DK_CREATE_* */
    const unsigned char *secret;
    size_t secret_len;
    struct dk_image *backing;       /* opened backing (NULL with -u / none) */
    struct dk_error *err;
};

struct dk_driver {
    /* Size of this struct as the driver was compiled (lets it grow). */
    size_t struct_size;
    const char *name;
    size_t state_size;              /* bytes of img->priv, zeroed by core */
    unsigned features;              /* DK_DRV_* */
    const struct dk_optdesc *create_opts;   /* zero-terminated, or NULL */

    /* Score 0..100 for the first BUF_LEN (<= 4096) bytes of FILENAME. */
    int (*probe)(const uint8_t *buf, size_t buf_len, const char *filename);

    /* img->file is open (writable unless read-only). Must validate every
     * header field, set img->size, and img->backing_name/backing_fmt when
     * the image names a backing file. Errors via dk_set_error. */
    int (*open)(struct dk_image *img);
    /* Frees driver state; called also after a failed open. Writes back
     * dirty caches when writable (errors ignored: dk_close flushes first). */
    void (*close)(struct dk_image *img);

    /* Reads a range reported DK_BS_DATA by block_status (invariant 3). */
    int (*read)(struct dk_image *img, void *buf, size_t len, uint64_t off);
    /* Writes; partial clusters are completed from dk_read_backing. */
    int (*write)(struct dk_image *img, const void *buf, size_t len, uint64_t off);
    /* Optional: make the range read as zeros (NULL: core writes zeros). */
    int (*zero)(struct dk_image *img, uint64_t off, uint64_t len, unsigned flags);
    /* Optional: deallocate (NULL: no-op). */
    int (*discard)(struct dk_image *img, uint64_t off, uint64_t len);
    /* Write back caches and fdatasync. */
    int (*flush)(struct dk_image *img);
    /* Block status for this layer only: fills EXT for the longest uniform
     * run starting at OFF (at most LEN). flags 0 = unallocated here. */
    int (*block_status)(struct dk_image *img, uint64_t off, uint64_t len,
                        struct dk_extent *ext);

    /* Optional: resize (NULL: -ENOTSUP). */
    int (*truncate)(struct dk_image *img, uint64_t size, const char *prealloc,
                    unsigned flags);
    /* Optional: create a new image (NULL: format cannot be created). */
    int (*create)(const struct dk_create_ctx *ctx);
    /* Optional: fill the format-specific parts of INFO (core fills the
     * generic ones before calling). */
    int (*info)(struct dk_image *img, struct dk_info *info);
    /* Optional: check (NULL: -ENOTSUP, exit 63). */
    int (*check)(struct dk_image *img, unsigned fix, struct dk_check_result *res,
                 dk_report_fn report, void *opaque);

    /* Optional: internal snapshots. */
    int (*snapshot_list)(struct dk_image *img, struct dk_snapshot **out, size_t *n);
    int (*snapshot_create)(struct dk_image *img, const char *name);
    int (*snapshot_apply)(struct dk_image *img, const char *id_or_name);
    int (*snapshot_delete)(struct dk_image *img, const char *id_or_name);

    /* Optional: compressed writes (convert -c). The copy engine calls
     * `compress` WITHOUT the image lock, from worker threads (it must be
     * pure: read only immutable state such as cluster size and codec),
     * then `write_compressed` in guest order under the lock. OFF is
     * cluster-aligned; IN_LEN is one cluster (less at the image end).
     * compress returns the compressed length, 0 when compression does not
     * save space (then write_compressed gets the plain data with
     * CLEN == 0 and stores it uncompressed), or -errno. Called once with
     * IN_LEN 0 (and the lock free) before a copy: 0 when this image can
     * store compressed data, else -ENOTSUP with the reason set on IMG
     * (e.g. an encrypted qcow2). */
    ssize_t (*compress)(struct dk_image *img, const void *in, size_t in_len,
                        void *out, size_t cap);
    int (*write_compressed)(struct dk_image *img, uint64_t off, const void *cdata,
                            size_t clen, const void *plain, size_t plain_len);

    /* Optional: amend, backing rewrite, measure. */
    int (*amend)(struct dk_image *img, const struct dk_opts *opts);
    int (*set_backing)(struct dk_image *img, const char *name, const char *fmt);
    int (*measure)(const struct dk_opts *opts, uint64_t size, struct dk_image *src,
                   struct dk_measure *out, struct dk_error *err);
    /* Options amend takes that are not creation options (qcow2: the LUKS
     * key slot ones), zero-terminated, or NULL. */
    const struct dk_optdesc *amend_opts;
};

/* ------------------------------------------------ registry (lib/registry.c) */

const struct dk_driver *dk_driver_find(const char *name);
/* Best-scoring driver for BUF (raw if nothing else scores). */
const struct dk_driver *dk_driver_probe(const uint8_t *buf, size_t len,
                                        const char *filename);
/* Drivers compiled in. */
extern const struct dk_driver dk_drv_raw;
extern const struct dk_driver dk_drv_qcow2;
extern const struct dk_driver dk_drv_vmdk;
extern const struct dk_driver dk_drv_vdi;
extern const struct dk_driver dk_drv_vpc;
extern const struct dk_driver dk_drv_vhdx;

/* ------------------------------------------------- locking (lib/lock.c) */

/* qemu-compatible OFD byte-range locks (perm bytes 100+, shared-perm
 * bytes 200+), so diskkit and qemu see each other's writers. */
int dk_lock_take(struct dk_file *f, bool writer, bool force_share, struct dk_error *err);

/* ------------------------------------------------ image core (lib/image.c) */

/* Validates a guest request against IMG (invariant 1). */
int dk_check_request(struct dk_image *img, uint64_t off, uint64_t len, bool write);

/* ------------------------------------------ named secrets (lib/secret.c) */

/* The secret registered on IMG under ID: 0 with *DATA borrowed until
 * IMG is closed, or -ENOENT with qemu's message "No secret with id 'ID'"
 * set on IMG. */
int dk_image_secret(struct dk_image *img, const char *id, const unsigned char **data,
                    size_t *len);
/* Wipes and frees every named secret (image_free). */
void dk_image_secrets_free(struct dk_image *img);

#endif /* DK_INTERNAL_H */
