/* lvm.h - private declarations of the LVM2 reader: the text metadata
 * parser (lib/lvm-text.c), the on-disk PV label and metadata areas and
 * the VG/LV model with its extent mapping (lib/lvm.c). Only lib/guest.c,
 * lib/guestfs.c, lib/ext2io.c and the unit tests include it.
 *
 * Format references: lvm2 doc/ and lib/format_text/ (layout.h,
 * format-text.c, import_vsn1.c), lvm.conf(5) for the config syntax.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_LVM_H
#define DK_LVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest.h"

/* ------------------------------------------------- lib/lvm-text.c */

/* Caps for hostile text: LVM writes at most 4 levels (vg, lists, lv,
 * segment); 1 M nodes is more than any VG with thousands of LVs needs and
 * bounds memory to a few tens of MiB; strings hold names, ids and the
 * command-line description, far below 64 KiB. */
#define LVM_TEXT_MAX_DEPTH  32
#define LVM_TEXT_MAX_NODES  (1u << 20)
#define LVM_TEXT_MAX_STRING 65536u

enum lvm_type { LVM_SECTION, LVM_INT, LVM_FLOAT, LVM_STRING, LVM_ARRAY };

/* A parsed value. Sections and arrays keep their members in CHILD (linked
 * by NEXT, in file order); array members have no key. */
struct lvm_node {
    enum lvm_type type;
    char *key;
    int64_t num;                        /* LVM_INT */
    char *str;                          /* LVM_STRING */
    struct lvm_node *child, *next;
};

/* Parses TEXT (LEN bytes; a NUL ends it early) into a tree whose root is
 * a section without key. Returns 0 with *ROOT set (free with
 * lvm_node_free), or -EINVAL / -ENOMEM with a one-line reason in ERR. */
int lvm_text_parse(const char *text, size_t len, struct lvm_node **root,
                   char *err, size_t errlen);
void lvm_node_free(struct lvm_node *n);
/* Direct member KEY of section SEC, or NULL. */
const struct lvm_node *lvm_node_get(const struct lvm_node *sec, const char *key);
/* Integer / string member, or false / NULL when absent or of another type. */
bool lvm_node_int(const struct lvm_node *sec, const char *key, int64_t *out);
const char *lvm_node_str(const struct lvm_node *sec, const char *key);
/* Whether array member KEY of SEC holds the string S ("VISIBLE" in status). */
bool lvm_node_has_flag(const struct lvm_node *sec, const char *key, const char *s);

/* ------------------------------------------------------ lib/lvm.c */

#define LVM_SECTOR         512u
#define LVM_LABEL_SCAN     4u           /* the label is in one of sectors 0-3 */
#define LVM_ID_LEN         32u          /* uuid characters without hyphens */
#define LVM_NAME_MAX       128u         /* NAME_LEN of lvm2, NUL included */
#define LVM_MDA_HEADER     512u
#define LVM_INITIAL_CRC    0xf597a6cfu
/* A PV sector holds at most this many metadata areas (lvm2 writes 1 or 2). */
#define LVM_MAX_MDAS       8u
/* Metadata text cap: lvm2's default area is 1 MiB and big VGs stay below a
 * few MiB; 16 MiB bounds what a hostile raw_locn can make us read. */
#define LVM_MAX_TEXT       (16u << 20)
/* Object caps: lvm2 allows 128 stripes; thousands of PVs/LVs/segments are
 * beyond any real VG. */
#define LVM_MAX_PVS        4096u
#define LVM_MAX_LVS        8192u
#define LVM_MAX_SEGS       8192u
#define LVM_MAX_STRIPES    128u

uint32_t lvm_crc(uint32_t crc, const void *buf, size_t len);

/* The metadata found on one PV: uuid from the label, and the text of each
 * metadata area whose header and checksum are valid. */
struct lvm_pvlabel {
    char uuid[LVM_ID_LEN + 1];
    uint64_t dev_size;                  /* as recorded in the pv_header */
    char *text[LVM_MAX_MDAS];           /* NUL-terminated, caller frees */
    size_t textlen[LVM_MAX_MDAS];
    size_t ntext;
};
/* Reads the PV at OFF..OFF+SIZE of a disk. Returns 0 (LB filled; damaged
 * metadata areas are skipped with their reason in WARN, "" when none),
 * 1 when there is no LVM2 label, -EINVAL with the reason in WARN when the
 * label is damaged, or -errno on I/O errors. */
int lvm_pv_read(dk_disk_read_fn rd, void *opaque, uint64_t off, uint64_t size,
                struct lvm_pvlabel *lb, char *warn, size_t warnlen);
void lvm_pvlabel_free(struct lvm_pvlabel *lb);

struct lvm_pv {
    char name[LVM_NAME_MAX];            /* "pv0" */
    char uuid[LVM_ID_LEN + 1];          /* without hyphens */
    uint64_t pe_start;                  /* bytes from the PV start */
    uint64_t pe_count;
    bool present;                       /* found on a device of the guest */
    unsigned disk;                      /* its device: image index, offset, size */
    uint64_t dev_off, dev_size;
};
struct lvm_stripe {
    size_t pv;                          /* index in vg->pvs */
    uint64_t pe;                        /* first physical extent */
};
struct lvm_seg {
    uint64_t start, count;              /* logical extents */
    uint32_t nstripes;
    uint64_t stripe_size;               /* bytes (striped with nstripes > 1) */
    struct lvm_stripe *stripes;
};
struct lvm_lv {
    char name[LVM_NAME_MAX];
    char uuid[40];
    char device[DK_DEVNAME_MAX];        /* "/dev/VG/LV" */
    char mapper[DK_DEVNAME_MAX];        /* "/dev/mapper/VG-LV", '-' doubled */
    uint64_t size;                      /* bytes */
    bool visible;
    struct lvm_seg *segs;
    size_t nsegs;
    char error[256];                    /* why it cannot be read, "" if it can */
    char no_write[256];                 /* why it must not be written, "" if fine */
};
struct lvm_vg {
    char name[LVM_NAME_MAX];
    char uuid[40];
    uint64_t seqno;
    uint64_t extent_size;               /* bytes */
    struct lvm_pv *pvs;
    size_t npvs;
    struct lvm_lv *lvs;
    size_t nlvs;
};
/* Builds a VG from metadata TEXT. Every LV gets its segments checked
 * against the VG (PV names, extent ranges); an LV that uses a segment
 * type other than "striped" gets ERROR set and no segments. Returns 0
 * with *OUT (free with lvm_vg_free) or -EINVAL/-ENOMEM with ERR. */
int lvm_vg_parse(const char *text, size_t len, struct lvm_vg **out, char *err, size_t errlen);
void lvm_vg_free(struct lvm_vg *vg);
/* After the caller has set present/disk/dev_off/dev_size of every PV
 * found on the guest's devices: sets ERROR on LVs that use a missing PV
 * or whose extents run past the end of their PV's device. */
void lvm_vg_finish(struct lvm_vg *vg);
/* Maps byte OFF of a readable LV (ERROR "") to a disk and an offset on
 * it; *RUN is how many bytes from there stay contiguous (> 0). OFF must
 * be below lv->size. */
void lvm_lv_map(const struct lvm_vg *vg, const struct lvm_lv *lv, uint64_t off,
                unsigned *disk, uint64_t *dev_off, uint64_t *run);

#endif /* DK_LVM_H */
