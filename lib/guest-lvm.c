/* guest-lvm.c - LVM2 volume groups of a guest, and guest devices as byte
 * ranges (partitions and logical volumes alike).
 *
 * dk_guest_lvm_scan runs once at dk_guest_open, after the partitions:
 *  1. every device whose signature is LVM2_member is read with
 *     lvm_pv_read (label, pv_header, metadata areas, CRCs);
 *  2. each valid metadata text is parsed into a VG; of the copies of one
 *     VG (same VG id) the one with the highest seqno wins, as in lvm2;
 *  3. the VG's PVs are matched to the devices found by PV uuid; LVs on a
 *     missing PV, or of an unsupported segment type, stay listed with the
 *     reason they cannot be read;
 *  4. each visible LV becomes a device "/dev/VG/LV" after the partitions,
 *     with its content detected like a partition's (lib/fsdetect.c).
 * A damaged PV never fails the open: it becomes one warning, and the LVs
 * it would have given are simply absent.
 *
 * Writes to an LV go to the images its extents lie on (to the top image
 * of each backing chain, as for partitions).
 *
 * Known gaps: two VGs with the same name (cloned disks): the second is
 * skipped with a warning; duplicate PVs (same uuid twice): the first wins.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "internal.h"
#include "lvm.h"

static int img_read(void *opaque, void *buf, size_t len, uint64_t off)
{
    return dk_pread(opaque, buf, len, off);
}

/* A PV found on a device. */
struct found_pv {
    char uuid[LVM_ID_LEN + 1];
    unsigned disk;
    uint64_t off, size;
    const char *device;
};

struct scan {
    struct dk_guest *g;
    struct found_pv *pvs;
    size_t npvs;
    struct lvm_vg **cand;               /* newest copy of each VG id */
    size_t ncand;
};

static int disk_of(const struct dk_guest *g, const char *device, unsigned *disk)
{
    for (size_t i = 0; i < g->nparts; i++)
        if (!strcmp(g->parts[i].device, device)) {
            *disk = g->parts[i].disk;
            return 0;
        }
    return -ENOENT;
}

/* Keeps VG if it is the first or a newer copy of its VG id. */
static int offer_vg(struct scan *s, struct lvm_vg *vg)
{
    for (size_t i = 0; i < s->ncand; i++) {
        if (strcmp(s->cand[i]->uuid, vg->uuid))
            continue;
        if (vg->seqno > s->cand[i]->seqno) {
            lvm_vg_free(s->cand[i]);
            s->cand[i] = vg;
        } else {
            lvm_vg_free(vg);
        }
        return 0;
    }
    struct lvm_vg **n = realloc(s->cand, (s->ncand + 1) * sizeof(*n));
    if (!n) {
        lvm_vg_free(vg);
        return -ENOMEM;
    }
    s->cand = n;
    s->cand[s->ncand++] = vg;
    return 0;
}

/* Steps 1-2 for the device F. */
static int scan_pv(struct scan *s, const struct dk_fsinfo *f)
{
    struct dk_guest *g = s->g;
    unsigned disk;
    if (disk_of(g, f->device, &disk) < 0)
        return 0;
    struct lvm_pvlabel lb;
    char warn[256];
    int r = lvm_pv_read(img_read, g->imgs[disk], f->offset, f->size, &lb, warn, sizeof(warn));
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return dk_guest_add_warning(g, "%s: LVM2 PV: %s", f->device,
                                    warn[0] ? warn : strerror(-r));
    if (r > 0)
        return 0;
    if (warn[0])
        r = dk_guest_add_warning(g, "%s: LVM2 PV: %s", f->device, warn);
    struct found_pv *p = &s->pvs[s->npvs++];
    memcpy(p->uuid, lb.uuid, sizeof(p->uuid));
    p->disk = disk;
    p->off = f->offset;
    p->size = f->size;
    p->device = f->device;
    for (size_t i = 0; i < lb.ntext && r == 0; i++) {
        struct lvm_vg *vg;
        char err[256];
        r = lvm_vg_parse(lb.text[i], lb.textlen[i], &vg, err, sizeof(err));
        if (r == -EINVAL)
            r = dk_guest_add_warning(g, "%s: LVM2 PV: %s", f->device, err);
        else if (r == 0)
            r = offer_vg(s, vg);
    }
    lvm_pvlabel_free(&lb);
    return r;
}

/* Step 3: places the VG's PVs on the devices found. */
static int place_pvs(struct scan *s, struct lvm_vg *vg)
{
    for (size_t i = 0; i < vg->npvs; i++) {
        struct lvm_pv *pv = &vg->pvs[i];
        for (size_t k = 0; k < s->npvs; k++) {
            const struct found_pv *f = &s->pvs[k];
            if (strcmp(f->uuid, pv->uuid))
                continue;
            if (pv->present) {
                int r = dk_guest_add_warning(s->g, "%s: LVM2 PV %s of VG %s already found "
                                             "on another device; ignored", f->device,
                                             pv->name, vg->name);
                if (r < 0)
                    return r;
                continue;
            }
            pv->present = true;
            pv->disk = f->disk;
            pv->dev_off = f->off;
            pv->dev_size = f->size;
        }
    }
    lvm_vg_finish(vg);
    return 0;
}

static int vg_cmp(const void *a, const void *b)
{
    return strcmp((*(struct lvm_vg *const *)a)->name, (*(struct lvm_vg *const *)b)->name);
}

static int lv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct lvm_lv *)a)->name, ((const struct lvm_lv *)b)->name);
}

static int detect_rd(void *opaque, void *buf, size_t len, uint64_t off)
{
    return dk_gdev_pread(opaque, buf, len, off);
}

/* Step 4: one visible LV as a device. */
static int add_lv(struct dk_guest *g, const struct lvm_vg *vg, const struct lvm_lv *lv)
{
    struct dk_lvinfo *li = &g->lvs[g->nlvs];
    memset(li, 0, sizeof(*li));
    memcpy(li->device, lv->device, sizeof(li->device));
    snprintf(li->vg, sizeof(li->vg), "%s", vg->name);
    snprintf(li->lv, sizeof(li->lv), "%s", lv->name);
    snprintf(li->uuid, sizeof(li->uuid), "%s", lv->uuid);
    snprintf(li->error, sizeof(li->error), "%s", lv->error);
    li->size = lv->size;
    for (size_t i = 0; i < lv->nsegs; i++) {
        const struct lvm_seg *seg = &lv->segs[i];
        li->stripes = seg->nstripes > li->stripes ? seg->nstripes : li->stripes;
    }
    for (size_t p = 0; p < vg->npvs; p++) {
        bool used = false;
        for (size_t i = 0; i < lv->nsegs; i++)
            for (size_t k = 0; k < lv->segs[i].nstripes; k++)
                used |= lv->segs[i].stripes[k].pv == p;
        li->npvs += used;
    }
    g->lv_vg[g->nlvs] = vg;
    g->lv_lv[g->nlvs++] = lv;
    struct dk_fsinfo *f = &g->fs[g->nfs];
    memset(f, 0, sizeof(*f));
    memcpy(f->device, lv->device, sizeof(f->device));
    f->size = lv->size;
    if (lv->error[0]) {
        snprintf(f->type, sizeof(f->type), "unknown");
        g->nfs++;
        return 0;
    }
    struct dk_gdev d = { g, NULL, 0, lv->size, vg, lv };
    int r = dk_fsdetect(detect_rd, &d, 0, lv->size, f);
    if (r < 0)                          /* unreadable extents: still listed */
        snprintf(f->type, sizeof(f->type), "unknown");
    g->nfs++;
    return 0;
}

static int publish(struct dk_guest *g)
{
    size_t n = 0, used = 0;
    if (g->nvgs == 0)
        return 0;
    qsort(g->vgs, g->nvgs, sizeof(*g->vgs), vg_cmp);
    for (size_t i = 0; i < g->nvgs; i++) {
        if (g->vgs[i]->nlvs)
            qsort(g->vgs[i]->lvs, g->vgs[i]->nlvs, sizeof(*g->vgs[i]->lvs), lv_cmp);
        for (size_t k = 0; k < g->vgs[i]->nlvs; k++)
            n += g->vgs[i]->lvs[k].visible;
    }
    if (n == 0)
        return 0;
    struct dk_fsinfo *nf = realloc(g->fs, (g->nfs + n) * sizeof(*nf));
    if (nf)
        g->fs = nf;
    g->lvs = calloc(n, sizeof(*g->lvs));
    g->lv_vg = calloc(n, sizeof(*g->lv_vg));
    g->lv_lv = calloc(n, sizeof(*g->lv_lv));
    if (!nf || !g->lvs || !g->lv_vg || !g->lv_lv)
        return -ENOMEM;
    for (size_t i = 0; i < g->nvgs; i++)
        for (size_t k = 0; k < g->vgs[i]->nlvs; k++)
            if (g->vgs[i]->lvs[k].visible && used++ < n)
                add_lv(g, g->vgs[i], &g->vgs[i]->lvs[k]);
    return 0;
}

/* Keeps the assembled VGs, skipping a second VG of the same name. */
static int adopt(struct scan *s)
{
    struct dk_guest *g = s->g;
    if (s->ncand && !(g->vgs = calloc(s->ncand, sizeof(*g->vgs))))
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < s->ncand; i++) {
        struct lvm_vg *vg = s->cand[i];
        s->cand[i] = NULL;
        bool dup = false;
        for (size_t k = 0; k < g->nvgs; k++)
            dup |= !strcmp(g->vgs[k]->name, vg->name);
        if (dup) {
            if (r == 0)
                r = dk_guest_add_warning(g, "LVM2: a second VG named %s (id %s) is ignored",
                                         vg->name, vg->uuid);
            lvm_vg_free(vg);
            continue;
        }
        g->vgs[g->nvgs++] = vg;
        if (r == 0)
            r = place_pvs(s, vg);
    }
    return r;
}

int dk_guest_lvm_scan(struct dk_guest *g, struct dk_error *err)
{
    struct scan s = { g, NULL, 0, NULL, 0 };
    int r = 0;
    if (g->nfs && !(s.pvs = calloc(g->nfs, sizeof(*s.pvs))))
        r = -ENOMEM;
    for (size_t i = 0; i < g->nfs && r == 0; i++)
        if (!strcmp(g->fs[i].type, "LVM2_member"))
            r = scan_pv(&s, &g->fs[i]);
    if (r == 0)
        r = adopt(&s);
    if (r == 0)
        r = publish(g);
    for (size_t i = 0; i < s.ncand; i++)
        lvm_vg_free(s.cand[i]);
    free(s.cand);
    free(s.pvs);
    if (r < 0)
        dk_error_set(err, r, "out of memory");
    return r;
}

void dk_guest_lvm_free(struct dk_guest *g)
{
    for (size_t i = 0; i < g->nvgs; i++)
        lvm_vg_free(g->vgs[i]);
    free(g->vgs);
    free(g->lvs);
    free(g->lv_vg);
    free(g->lv_lv);
}

const struct dk_lvinfo *dk_guest_lvs(const struct dk_guest *g, size_t *n)
{
    *n = g->nlvs;
    return g->lvs;
}

const char *dk_guest_lv_mapper(const struct dk_guest *g, size_t i)
{
    return i < g->nlvs ? g->lv_lv[i]->mapper : "";
}

/* ------------------------------------------------------ device I/O */

int dk_gdev_get(struct dk_guest *g, const struct dk_fsinfo *f, struct dk_gdev *d,
                struct dk_error *err)
{
    memset(d, 0, sizeof(*d));
    d->g = g;
    d->size = f->size;
    for (size_t i = 0; i < g->nlvs; i++) {
        if (strcmp(g->lvs[i].device, f->device))
            continue;
        if (g->lvs[i].error[0])
            return dk_error_set(err, -ENOTSUP, "%s", g->lvs[i].error);
        d->vg = g->lv_vg[i];
        d->lv = g->lv_lv[i];
        return 0;
    }
    unsigned disk;
    if (disk_of(g, f->device, &disk) < 0 || disk >= g->ndisks)
        return dk_error_set(err, -ENOENT, "%s: no such disk", f->device);
    d->img = g->imgs[disk];
    d->off = f->offset;
    return 0;
}

/* Runs LEN bytes at OFF of an LV through FN piece by piece. */
static int lv_io(const struct dk_gdev *d, uint8_t *buf, size_t len, uint64_t off, bool wr)
{
    while (len > 0) {
        unsigned disk;
        uint64_t at, run;
        lvm_lv_map(d->vg, d->lv, off, &disk, &at, &run);
        size_t n = run < len ? (size_t)run : len;
        struct dk_image *img = d->g->imgs[disk];
        int r = wr ? dk_pwrite(img, buf, n, at) : dk_pread(img, buf, n, at);
        if (r < 0)
            return r;
        buf += n, off += n, len -= n;
    }
    return 0;
}

int dk_gdev_pread(const struct dk_gdev *d, void *buf, size_t len, uint64_t off)
{
    if (off > d->size || len > d->size - off)
        return -ERANGE;
    return d->lv ? lv_io(d, buf, len, off, false) : dk_pread(d->img, buf, len, d->off + off);
}

int dk_gdev_pwrite(const struct dk_gdev *d, const void *buf, size_t len, uint64_t off)
{
    if (off > d->size || len > d->size - off)
        return -ERANGE;
    return d->lv ? lv_io(d, (uint8_t *)buf, len, off, true)
                 : dk_pwrite(d->img, buf, len, d->off + off);
}

/* Calls FN once on every image the device lies on; returns the first
 * image for which it returned true, or NULL. */
static struct dk_image *each_image(const struct dk_gdev *d, bool (*fn)(struct dk_image *))
{
    if (!d->lv)
        return fn(d->img) ? d->img : NULL;
    uint32_t seen = 0;                  /* DK_GUEST_MAX_DISKS <= 32 */
    for (size_t i = 0; i < d->lv->nsegs; i++)
        for (size_t k = 0; k < d->lv->segs[i].nstripes; k++) {
            unsigned disk = d->vg->pvs[d->lv->segs[i].stripes[k].pv].disk;
            if (seen & (1u << disk))
                continue;
            seen |= 1u << disk;
            if (fn(d->g->imgs[disk]))
                return d->g->imgs[disk];
        }
    return NULL;
}

static bool flush_fails(struct dk_image *img)
{
    return dk_flush(img) < 0;
}

static bool is_ro(struct dk_image *img)
{
    return dk_image_read_only(img);
}

int dk_gdev_flush(const struct dk_gdev *d)
{
    return each_image(d, flush_fails) ? -EIO : 0;
}

struct dk_image *dk_gdev_read_only(const struct dk_gdev *d)
{
    return each_image(d, is_ro);
}

const char *dk_gdev_no_write(const struct dk_gdev *d)
{
    return d->lv && d->lv->no_write[0] ? d->lv->no_write : NULL;
}
