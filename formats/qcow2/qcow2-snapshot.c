/* qcow2-snapshot.c - the snapshot table (read side), snapshot listing,
 * the info hook and the backing-file rewrite.
 *
 * Spec: qcow2.txt "Snapshots". Entries are variable-sized (40-byte fixed
 * part, extra data, id, name, padded to 8). Extra data: bytes 0-7 large
 * vm-state size, 8-15 disk size, 16-23 icount (qemu >= 5.0); unknown
 * extra bytes are kept verbatim in memory so a later table rewrite
 * (snapshot create/delete, another module) can preserve them.
 * Known gaps: creating, applying and deleting snapshots is not here.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

void qcow2_snapshots_free(struct qcow2_state *s)
{
    for (uint32_t i = 0; s->snaps && i < s->nb_snaps; i++) {
        free(s->snaps[i].id);
        free(s->snaps[i].name);
        free(s->snaps[i].extra);
    }
    free(s->snaps);
    s->snaps = NULL;
    s->nb_snaps = 0;
}

/* Parses one entry at OFF; *LEN gets its padded size. */
static int read_one(struct dk_image *img, uint64_t off, uint64_t fsize,
                    struct qcow2_snapshot *sn, uint64_t *len)
{
    uint8_t h[40];
    if (!dk_range_inside(off, 40, fsize))
        return dk_set_error(img, -EINVAL, "qcow2: snapshot table at 0x%llx lies beyond end "
                            "of file", (unsigned long long)off);
    int r = dk_file_pread(img->file, h, 40, off);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: reading snapshot table: %s", strerror(-r));
    sn->l1_offset = dk_be64(h);
    sn->l1_size = dk_be32(h + 8);
    uint16_t id_len = dk_be16(h + 12), name_len = dk_be16(h + 14);
    sn->date_sec = dk_be32(h + 16);
    sn->date_nsec = dk_be32(h + 20);
    sn->vm_clock_nsec = dk_be64(h + 24);
    sn->vm_state_size = dk_be32(h + 32);
    sn->extra_size = dk_be32(h + 36);
    sn->disk_size = UINT64_MAX;
    sn->icount = UINT64_MAX;
    if (sn->extra_size > QCOW2_MAX_SNAP_EXTRA)
        return dk_set_error(img, -EINVAL, "qcow2: snapshot extra data of %u bytes is too "
                            "large", sn->extra_size);
    uint64_t rest = (uint64_t)sn->extra_size + id_len + name_len;
    *len = dk_round_up(40 + rest, 8);
    if (!dk_range_inside(off + 40, rest, fsize))
        return dk_set_error(img, -EINVAL, "qcow2: snapshot table at 0x%llx lies beyond end "
                            "of file", (unsigned long long)off);
    uint8_t *b = malloc(rest + 1);
    if (!b)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    if ((r = dk_file_pread(img->file, b, rest, off + 40)) < 0) {
        free(b);
        return dk_set_error(img, r, "qcow2: reading snapshot table: %s", strerror(-r));
    }
    uint8_t *x = b;
    if (sn->extra_size >= 8)
        sn->vm_state_size = dk_be64(x);
    if (sn->extra_size >= 16)
        sn->disk_size = dk_be64(x + 8);
    if (sn->extra_size >= 24)
        sn->icount = dk_be64(x + 16);
    sn->extra = malloc(sn->extra_size + 1);
    sn->id = strndup((char *)b + sn->extra_size, id_len);
    sn->name = strndup((char *)b + sn->extra_size + id_len, name_len);
    if (sn->extra)
        memcpy(sn->extra, b, sn->extra_size);
    free(b);
    if (!sn->extra || !sn->id || !sn->name)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    return 0;
}

int qcow2_snapshots_read(struct dk_image *img, uint64_t fsize)
{
    struct qcow2_state *s = img->priv;
    uint32_t n = s->hdr.nb_snapshots;
    if (!n)
        return 0;
    if (!(s->snaps = calloc(n, sizeof(*s->snaps))))
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    uint64_t off = s->hdr.snapshots_offset, total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t len = 0;
        s->nb_snaps = i + 1;
        int r = read_one(img, off, fsize, &s->snaps[i], &len);
        if (r < 0)
            return r;
        total += len;
        off += len;
        if (total > QCOW2_MAX_SNAP_TABLE)
            return dk_set_error(img, -EINVAL, "qcow2: snapshot table exceeds %u MiB",
                                QCOW2_MAX_SNAP_TABLE >> 20);
    }
    s->snap_table_bytes = total;
    return 0;
}

int qcow2_snapshot_find(struct qcow2_state *s, const char *key)
{
    for (uint32_t i = 0; i < s->nb_snaps; i++)
        if (!strcmp(s->snaps[i].id, key))
            return (int)i;
    for (uint32_t i = 0; i < s->nb_snaps; i++)
        if (!strcmp(s->snaps[i].name, key))
            return (int)i;
    return -1;
}

int qcow2_snapshot_list(struct dk_image *img, struct dk_snapshot **out, size_t *n)
{
    struct qcow2_state *s = img->priv;
    *out = NULL;
    *n = 0;
    if (!s->nb_snaps)
        return 0;
    struct dk_snapshot *v = calloc(s->nb_snaps, sizeof(*v));
    if (!v)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    for (uint32_t i = 0; i < s->nb_snaps; i++) {
        const struct qcow2_snapshot *sn = &s->snaps[i];
        v[i].id = strdup(sn->id);
        v[i].name = strdup(sn->name);
        v[i].vm_state_size = sn->vm_state_size;
        v[i].date_sec = sn->date_sec;
        v[i].date_nsec = sn->date_nsec;
        v[i].vm_clock_nsec = sn->vm_clock_nsec;
        v[i].icount = sn->icount;
        if (!v[i].id || !v[i].name) {
            dk_snapshots_free(v, s->nb_snaps);
            return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
        }
    }
    *out = v;
    *n = s->nb_snaps;
    return 0;
}

/* format-specific info exactly as qemu-img 7.2 prints it (key order). */
static int format_specific(struct dk_image *img, struct dk_info *info)
{
    struct qcow2_state *s = img->priv;
    struct dk_val *root = dk_val_new_obj(), *d;
    if (!root || !dk_val_add_str(root, "type", "qcow2") ||
        !(d = dk_val_add_obj(root, "data")))
        goto oom;
    bool ok = dk_val_add_str(d, "compat", s->v3 ? "1.1" : "0.10") &&
              dk_val_add_str(d, "compression-type",
                             s->hdr.compression_type ? "zstd" : "zlib");
    if (s->v3)
        ok = ok && dk_val_add_bool(d, "lazy-refcounts", s->lazy);
    ok = ok && dk_val_add_int(d, "refcount-bits", 1 << s->refcount_order);
    ok = ok && qcow2_crypt_info(img, d);   /* "encrypt", qcow2-crypt.c */
    if (s->v3)
        ok = ok && dk_val_add_bool(d, "corrupt",
                                   !!(s->hdr.incompatible & QCOW2_INCOMPAT_CORRUPT)) &&
             dk_val_add_bool(d, "extended-l2", !!(s->hdr.incompatible & QCOW2_INCOMPAT_EXTL2));
    if (!ok)
        goto oom;
    info->format_specific = root;
    return 0;
oom:
    dk_val_free(root);
    return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
}

int qcow2_info(struct dk_image *img, struct dk_info *info)
{
    struct qcow2_state *s = img->priv;
    info->cluster_size = (uint32_t)s->cluster_size;
    info->dirty = !!(s->hdr.incompatible & QCOW2_INCOMPAT_DIRTY);
    info->encrypted = s->encrypted;
    int r = qcow2_snapshot_list(img, &info->snapshots, &info->nb_snapshots);
    return r < 0 ? r : format_specific(img, info);
}

int qcow2_set_backing(struct dk_image *img, const char *name, const char *fmt)
{
    struct qcow2_state *s = img->priv;
    char *old_name = img->backing_name, *old_fmt = img->backing_fmt;
    if (name && strlen(name) > QCOW2_MAX_BACKING_NAME)
        return dk_set_error(img, -EINVAL, "qcow2: backing file name longer than %d bytes",
                            QCOW2_MAX_BACKING_NAME);
    img->backing_name = name && *name ? strdup(name) : NULL;
    img->backing_fmt = name && *name && fmt && *fmt ? strdup(fmt) : NULL;
    if ((name && *name && !img->backing_name) || (img->backing_name && fmt && *fmt &&
                                                   !img->backing_fmt)) {
        free(img->backing_name);
        free(img->backing_fmt);
        img->backing_name = old_name;
        img->backing_fmt = old_fmt;
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    }
    int r = qcow2_header_write(img);
    if (r < 0) {
        free(img->backing_name);
        free(img->backing_fmt);
        img->backing_name = old_name;
        img->backing_fmt = old_fmt;
        (void)qcow2_header_write(img);
        return r;
    }
    free(old_name);
    free(old_fmt);
    (void)s;
    r = dk_file_flush(img->file);
    return r < 0 ? dk_set_error(img, r, "qcow2: flush: %s", strerror(-r)) : 0;
}
