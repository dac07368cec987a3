/* qcow2-snapshot-ops.c - creating, applying and deleting internal
 * snapshots (qemu-img snapshot -c / -a / -d). Reading the table and
 * listing live in qcow2-snapshot.c.
 *
 * Spec: qemu docs/interop/qcow2.txt "Snapshots" (table entries: id, name,
 * date, VM clock, VM state size, extra data with the large VM state size,
 * disk size and icount; unknown extra data is kept verbatim).
 *
 * Each operation describes the metadata it wants and lets qcow2-switch.c
 * write that generation next to the current one and switch to it with one
 * header write, which is what makes the operations crash safe (see there):
 *  - create: the current active L1 table, as it is on disk, becomes the
 *    new snapshot's L1; the active side gets fresh copies of its tables.
 *  - delete: the entry leaves the table; whatever only it referenced has
 *    refcount 0 in the new generation.
 *  - apply: the active tables become copies of the snapshot's, and the
 *    virtual size becomes the snapshot's disk size (as qemu does).
 * Reference counts and OFLAG_COPIED flags are recomputed from scratch by
 * the switch, so shared clusters (compressed ones too) are handled alike.
 *
 * Known gaps: no VM state (vm_state_size is always 0 here); snapshots of
 * images with an external data file or persistent bitmaps are refused.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qcow2.h"

#define SNAP_EXTRA_QEMU 24      /* vm_state_size_large, disk_size, icount */

/* Reads and validates a snapshot's L1 table into a host-order array
 * (caller frees). */
static int read_snap_l1(struct dk_image *img, const struct qcow2_snapshot *sn, uint64_t **out)
{
    struct qcow2_state *s = img->priv;
    uint64_t bytes = (uint64_t)sn->l1_size * 8, fsize;
    int r = dk_file_size(img->file, &fsize);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: %s", strerror(-r));
    if (bytes > QCOW2_MAX_L1_BYTES ||
        qcow2_validate_table(sn->l1_offset, bytes, s->cluster_size, fsize) < 0)
        return dk_set_error(img, -EINVAL, "qcow2: snapshot %s (%s) has an invalid L1 table "
                            "(offset 0x%llx, %u entries)", sn->id, sn->name,
                            (unsigned long long)sn->l1_offset, sn->l1_size);
    uint64_t *l1 = calloc(sn->l1_size ? sn->l1_size : 1, 8);
    if (!l1)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if (bytes && (r = dk_file_pread(img->file, l1, bytes, sn->l1_offset)) < 0) {
        free(l1);
        return dk_set_error(img, r, "qcow2: reading snapshot L1 table: %s", strerror(-r));
    }
    for (uint32_t i = 0; i < sn->l1_size; i++)
        l1[i] = dk_be64(&l1[i]);
    *out = l1;
    return 0;
}

/* ----------------------------------------------------- the snapshot table */

static uint64_t entry_bytes(const struct qcow2_snapshot *sn)
{
    return dk_round_up(40 + (uint64_t)sn->extra_size + strlen(sn->id) + strlen(sn->name), 8);
}

static void encode_entry(const struct qcow2_snapshot *sn, uint8_t *p)
{
    size_t id_len = strlen(sn->id), name_len = strlen(sn->name);
    dk_put_be64(p, sn->l1_offset);
    dk_put_be32(p + 8, sn->l1_size);
    dk_put_be16(p + 12, (uint16_t)id_len);
    dk_put_be16(p + 14, (uint16_t)name_len);
    dk_put_be32(p + 16, sn->date_sec);
    dk_put_be32(p + 20, sn->date_nsec);
    dk_put_be64(p + 24, sn->vm_clock_nsec);
    dk_put_be32(p + 32, (uint32_t)sn->vm_state_size);
    dk_put_be32(p + 36, sn->extra_size);
    memcpy(p + 40, sn->extra, sn->extra_size);   /* unknown extra data kept verbatim */
    memcpy(p + 40 + sn->extra_size, sn->id, id_len);
    memcpy(p + 40 + sn->extra_size + id_len, sn->name, name_len);
}

int qcow2_snaptable_encode(struct dk_image *img, const struct qcow2_snapshot *snaps,
                           uint32_t nb, uint8_t **out, uint64_t *bytes)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < nb; i++)
        n += entry_bytes(&snaps[i]);
    if (n > QCOW2_MAX_SNAP_TABLE)
        return dk_set_error(img, -EFBIG, "qcow2: snapshot table would exceed %u MiB",
                            QCOW2_MAX_SNAP_TABLE >> 20);
    uint8_t *buf = calloc(1, n ? n : 1);
    if (!buf)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    for (uint64_t i = 0, p = 0; i < nb; p += entry_bytes(&snaps[i]), i++)
        encode_entry(&snaps[i], buf + p);
    *out = buf;
    *bytes = n;
    return 0;
}

/* --------------------------------------------------------------- create */

static int new_entry(struct dk_image *img, const char *name, uint64_t l1_off,
                     struct qcow2_snapshot *sn)
{
    struct qcow2_state *s = img->priv;
    unsigned long long max_id = 0;
    for (uint32_t i = 0; i < s->nb_snaps; i++) {
        unsigned long long v = strtoull(s->snaps[i].id, NULL, 10);
        if (v > max_id)
            max_id = v;
    }
    char id[32];
    snprintf(id, sizeof(id), "%llu", max_id + 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memset(sn, 0, sizeof(*sn));
    sn->l1_offset = l1_off;
    sn->l1_size = s->l1_size;
    sn->date_sec = (uint32_t)ts.tv_sec;
    sn->date_nsec = (uint32_t)(ts.tv_nsec / 1000 * 1000);   /* qemu-img: microseconds */
    sn->disk_size = img->size;
    sn->icount = 0;
    sn->extra_size = SNAP_EXTRA_QEMU;
    sn->id = strdup(id);
    sn->name = strdup(name);
    sn->extra = calloc(1, SNAP_EXTRA_QEMU);
    if (!sn->id || !sn->name || !sn->extra) {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    }
    dk_put_be64(sn->extra + 8, img->size);    /* vm_state_size_large 0, disk_size, icount 0 */
    return 0;
}

static void free_entry(struct qcow2_snapshot *sn)
{
    free(sn->id);
    free(sn->name);
    free(sn->extra);
}

int qcow2_snapshot_create(struct dk_image *img, const char *name)
{
    struct qcow2_state *s = img->priv;
    if (s->hdr.incompatible & QCOW2_INCOMPAT_DATA_FILE)
        return dk_set_error(img, -ENOTSUP, "qcow2: internal snapshots are not supported "
                            "with an external data file");
    if (s->nb_snaps >= QCOW2_MAX_SNAPSHOTS)
        return dk_set_error(img, -EFBIG, "qcow2: too many snapshots (at most %u)",
                            QCOW2_MAX_SNAPSHOTS);
    if (!*name || strlen(name) > 65535)
        return dk_set_error(img, -EINVAL, "qcow2: invalid snapshot name");
    struct qcow2_snapshot *v = realloc(s->snaps, (s->nb_snaps + 1) * sizeof(*v));
    if (!v)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    s->snaps = v;
    /* The active L1 on disk becomes the snapshot's: it must be current. */
    int r = qcow2_flush_all(img, true);
    if (r == 0 && s->l1_size) {
        uint64_t *be = malloc((size_t)s->l1_size * 8);
        if (!be)
            return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
        for (uint32_t i = 0; i < s->l1_size; i++)
            dk_put_be64(&be[i], s->l1[i]);
        uint64_t *disk = malloc((size_t)s->l1_size * 8);
        r = disk ? dk_file_pread(img->file, disk, (size_t)s->l1_size * 8, s->l1_offset) : -ENOMEM;
        if (r == 0 && memcmp(be, disk, (size_t)s->l1_size * 8))
            r = qcow2_signal_corruption(img, "qcow2: active L1 table on disk differs from "
                                        "memory");
        free(be);
        free(disk);
        if (r < 0)
            return r == -ENOMEM ? dk_set_error(img, r, "qcow2: out of memory") : r;
    }
    if (r < 0 || (r = new_entry(img, name, s->l1_offset, &s->snaps[s->nb_snaps])) < 0)
        return r;
    s->snaps[s->nb_snaps].l1_size = s->l1_size;
    r = qcow2_switch(img, s->l1, s->l1_size, s->l1_size, s->snaps, s->nb_snaps + 1, img->size);
    if (r < 0) {
        free_entry(&s->snaps[s->nb_snaps]);
        return r;
    }
    s->nb_snaps++;
    return 0;
}

int qcow2_snapshot_delete(struct dk_image *img, const char *key)
{
    struct qcow2_state *s = img->priv;
    int idx = qcow2_snapshot_find(s, key);
    if (idx < 0)
        return dk_set_error(img, -ENOENT, "snapshot not found");
    /* The list without the entry, sharing the other entries' strings. */
    struct qcow2_snapshot *rest = malloc((s->nb_snaps ? s->nb_snaps : 1) * sizeof(*rest));
    if (!rest)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nb_snaps; i++)
        if ((int)i != idx)
            rest[n++] = s->snaps[i];
    int r = qcow2_switch(img, s->l1, s->l1_size, s->l1_size, rest, n, img->size);
    if (r == 0) {
        free_entry(&s->snaps[idx]);
        free(s->snaps);
        s->snaps = rest;
        s->nb_snaps = n;
    } else {
        free(rest);
    }
    return r;
}

int qcow2_snapshot_apply(struct dk_image *img, const char *key)
{
    struct qcow2_state *s = img->priv;
    int idx = qcow2_snapshot_find(s, key);
    if (idx < 0)
        return dk_set_error(img, -ENOENT, "Failed to load snapshot: No such file or directory");
    const struct qcow2_snapshot *sn = &s->snaps[idx];
    uint64_t *l1 = NULL, size = sn->disk_size != UINT64_MAX ? sn->disk_size : img->size;
    int r = read_snap_l1(img, sn, &l1);
    if (r < 0)
        return r;
    /* The active table covers at least the snapshot's size, and keeps its
     * own length when that is larger (qemu does the same). */
    uint64_t per_l1 = s->l2_entries * s->cluster_size;
    uint64_t need = dk_div_round_up(size, per_l1);
    if (need * 8 > QCOW2_MAX_L1_BYTES) {
        free(l1);
        return dk_set_error(img, -EINVAL, "qcow2: snapshot %s has an invalid disk size",
                            sn->id);
    }
    uint32_t n = (uint32_t)DK_MAX(DK_MAX((uint64_t)sn->l1_size, s->l1_size), need);
    r = qcow2_switch(img, l1, sn->l1_size, n, s->snaps, s->nb_snaps, size);
    free(l1);
    return r;
}
