/* guest.c - a guest: a set of disk images named /dev/sda, /dev/sdb, ...
 * with their partitions and what each partition holds.
 *
 * dk_guest_open scans every disk once (lib/part.c, lib/fsdetect.c) and
 * keeps the results; afterwards the guest is immutable except for the
 * error message (under g->lock), so it can
 * be shared between threads.
 *
 * LVM2 volume groups are assembled afterwards (lib/guest-lvm.c) and their
 * logical volumes become devices "/dev/VG/LV" after the partitions.
 *
 * Known gaps: md RAID members are listed by their signature only; their
 * contents are not assembled.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "internal.h"

static int img_read(void *opaque, void *buf, size_t len, uint64_t off)
{
    struct dk_image *img = opaque;
    return dk_pread(img, buf, len, off);
}

int dk_guest_set_error(struct dk_guest *g, int err, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&g->lock);
    va_start(ap, fmt);
    vsnprintf(g->errmsg, sizeof(g->errmsg), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&g->lock);
    return err;
}

const char *dk_guest_errmsg(const struct dk_guest *g)
{
    return g->errmsg;
}

int dk_guest_add_warning(struct dk_guest *g, const char *fmt, ...)
{
    char w[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w, sizeof(w), fmt, ap);
    va_end(ap);
    char **nw = realloc(g->warnings, (g->nwarnings + 1) * sizeof(*nw));
    if (!nw)
        return -ENOMEM;
    g->warnings = nw;
    if (!(nw[g->nwarnings] = strdup(w)))
        return -ENOMEM;
    g->nwarnings++;
    return 0;
}

static bool is_container(const struct dk_partition *p)
{
    return p->mbr_type == 0x05 || p->mbr_type == 0x0f || p->mbr_type == 0x85;
}

/* Adds the partitions of disk I (or the whole disk) and their contents. */
static int scan_disk(struct dk_guest *g, unsigned i, struct dk_error *err)
{
    struct dk_image *img = g->imgs[i];
    uint64_t size = dk_image_size(img);
    struct dk_part_table *t = malloc(sizeof(*t));
    if (!t)
        return dk_error_set(err, -ENOMEM, "out of memory");
    int r = dk_part_scan(img_read, img, size, i, t);
    if (r < 0) {
        dk_error_set(err, r, "%s", dk_image_errmsg(img));
        goto out;
    }
    if (t->nparts == 0) {       /* whole disk: /dev/sdX itself */
        struct dk_partition *p = &t->parts[t->nparts++];
        memset(p, 0, sizeof(*p));
        dk_part_devname(p->device, sizeof(p->device), i, 0);
        p->disk = i;
        p->size = size;
        p->scheme = t->scheme;
    }
    size_t n = g->nparts + t->nparts;
    struct dk_partition *np = realloc(g->parts, n * sizeof(*np));
    struct dk_fsinfo *nf = np ? realloc(g->fs, n * sizeof(*nf)) : NULL;
    if (np)
        g->parts = np;
    if (nf)
        g->fs = nf;
    if (!np || !nf) {
        r = dk_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < t->nwarnings && r == 0; k++)
        r = dk_guest_add_warning(g, "%s", t->warnings[k]);
    for (size_t k = 0; k < t->nparts && r == 0; k++) {
        const struct dk_partition *p = &t->parts[k];
        g->parts[g->nparts++] = *p;
        if (is_container(p))
            continue;
        struct dk_fsinfo *f = &g->fs[g->nfs];
        memset(f, 0, sizeof(*f));
        memcpy(f->device, p->device, sizeof(f->device));
        f->offset = p->offset;
        f->size = p->size;
        r = dk_fsdetect(img_read, img, p->offset, p->size, f);
        if (r < 0)
            dk_error_set(err, r, "%s", dk_image_errmsg(img));
        else
            g->nfs++;
    }
    if (r == -ENOMEM)
        dk_error_set(err, r, "out of memory");
out:
    free(t);
    return r;
}

struct dk_guest *dk_guest_open(struct dk_image **imgs, size_t n, unsigned flags,
                               struct dk_error *err)
{
    if (n == 0 || n > DK_GUEST_MAX_DISKS) {
        dk_error_set(err, -EINVAL, "a guest needs 1 to %d disk images", DK_GUEST_MAX_DISKS);
        return NULL;
    }
    struct dk_guest *g = calloc(1, sizeof(*g));
    if (!g) {
        dk_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&g->lock, NULL);
    g->ndisks = n;
    for (size_t i = 0; i < n; i++)
        g->imgs[i] = imgs[i];
    for (size_t i = 0; i < n; i++) {
        if (scan_disk(g, (unsigned)i, err) < 0) {
            dk_guest_close(g);
            return NULL;
        }
    }
    if (dk_guest_lvm_scan(g, err) < 0) {
        dk_guest_close(g);
        return NULL;
    }
    return g;
}

void dk_guest_close(struct dk_guest *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nwarnings; i++)
        free(g->warnings[i]);
    free(g->warnings);
    dk_guest_lvm_free(g);
    free(g->parts);
    free(g->fs);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

size_t dk_guest_nb_disks(const struct dk_guest *g)
{
    return g->ndisks;
}

struct dk_image *dk_guest_image(const struct dk_guest *g, size_t i)
{
    return i < g->ndisks ? g->imgs[i] : NULL;
}

const struct dk_partition *dk_guest_partitions(const struct dk_guest *g, size_t *n)
{
    *n = g->nparts;
    return g->parts;
}

const struct dk_fsinfo *dk_guest_filesystems(const struct dk_guest *g, size_t *n)
{
    *n = g->nfs;
    return g->fs;
}

static const struct dk_fsinfo *find_exact(const struct dk_guest *g, const char *name)
{
    for (size_t i = 0; i < g->nfs; i++)
        if (!strcmp(g->fs[i].device, name))
            return &g->fs[i];
    return NULL;
}

const struct dk_fsinfo *dk_guest_find(const struct dk_guest *g, const char *device)
{
    char name[DK_DEVNAME_MAX];
    if (!device || strlen(device) >= sizeof(name))
        return NULL;
    const struct dk_fsinfo *f = find_exact(g, device);
    if (f)
        return f;
    if (!strncmp(device, "/dev/mapper/", 12)) {
        for (size_t i = 0; i < g->nlvs; i++)
            if (!strcmp(dk_guest_lv_mapper(g, i), device))
                return find_exact(g, g->lvs[i].device);
        return NULL;
    }
    /* The guest's own names for the same disk: virtio (vd), IDE (hd), Xen
     * (xvd); never for "/dev/VG/LV" (a VG may be called "vdata"). */
    memcpy(name, device, strlen(device) + 1);
    if (strchr(name + 5, '/'))
        return NULL;
    if (!strncmp(name, "/dev/vd", 7) || !strncmp(name, "/dev/hd", 7))
        name[5] = 's';
    else if (!strncmp(name, "/dev/xvd", 8))
        memmove(name + 5, name + 6, strlen(name + 6) + 1), name[5] = 's';
    return find_exact(g, name);
}

size_t dk_guest_nb_warnings(const struct dk_guest *g)
{
    return g->nwarnings;
}

const char *dk_guest_warning(const struct dk_guest *g, size_t i)
{
    return i < g->nwarnings ? g->warnings[i] : NULL;
}
