/* diskkit.h - the public API of libdiskkit.
 *
 * libdiskkit opens disk images (raw, qcow2, vmdk, vdi) behind one image
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

/* ---------------------------------------------------- guest filesystems --- */
/* (declared in the section below by the guest layer) */

#ifdef __cplusplus
}
#endif
#endif /* DISKKIT_H */
