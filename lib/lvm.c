/* lvm.c - LVM2 physical volumes, volume groups and logical volumes, read
 * from the disk without device-mapper (as grub and libguestfs' appliance-
 * free tools do).
 *
 * On disk (lvm2 lib/format_text/layout.h, doc/): a label sector
 * ("LABELONE", its own sector number, a CRC of bytes 20..511, the offset
 * of the pv_header, "LVM2 001") in one of sectors 0-3; the pv_header (32
 * uuid characters, device size, then two lists of {offset, size} pairs
 * ended by a zero pair: data areas, then metadata areas); each metadata
 * area starts with a 512-byte mda_header (CRC of bytes 4..511, magic
 * " LVM2 x[5A%r0N*>", version 1, its own start and size, raw_locn slots
 * {offset, size, checksum, flags}). Slot 0 locates the committed text in
 * a circular buffer after the header: text running past the end of the
 * area continues right after the header. CRCs are lvm2's calc_crc: the
 * reflected CRC-32 polynomial seeded with 0xf597a6cf, no final inversion.
 *
 * The text (lvm-text.c) holds one VG section: extent_size (sectors),
 * seqno, physical_volumes { pvN { id, pe_start, pe_count } } and
 * logical_volumes { lv { status, segment_count, segmentN { start_extent,
 * extent_count, type, stripe_count, stripe_size, stripes = [ "pvN", pe,
 * ... ] } } }. Only type "striped" is mapped (linear is one stripe); the
 * mapping follows dm-stripe: chunk k of a segment is on stripe k mod n,
 * row k div n.
 *
 * Everything is checked before use: sizes and offsets against the device
 * and named caps (lvm.h), names against lvm2's character set, extent
 * ranges against each PV and every multiplication for overflow.
 *
 * Snapshots: the visible LV of an old-style snapshot holds the COW store,
 * not a filesystem, so it is refused; its origin holds the current data
 * and is readable, but refused for writing (dm would copy old chunks to
 * the COW store first; writing behind its back corrupts the snapshot).
 *
 * Known gaps: mirror, raid, thin, cache, snapshot and VDO segments (the
 * LV is listed with the reason it cannot be read); precommitted metadata
 * (slot 1) is ignored, as lvm2 does outside a command; 512-byte sectors.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "lvm.h"
#include "util/endian.h"

#define LABEL_ID       "LABELONE"
#define LABEL_TYPE     "LVM2 001"
#define MDA_MAGIC      " LVM2 x[5A%r0N*>"
#define RAW_LOCN_IGNORED 1u

uint32_t lvm_crc(uint32_t crc, const void *buf, size_t len)
{
    /* zlib's crc32 inverts on entry and exit; lvm2's does neither. */
    uint32_t c = ~crc;
    const uint8_t *p = buf;
    while (len > 0) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = (uint32_t)crc32(c, p, n);
        p += n;
        len -= n;
    }
    return ~c;
}

static int say(char *buf, size_t len, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int say(char *buf, size_t len, int r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return r;
}

/* ------------------------------------------------------- PV on disk */

struct pvdev {
    dk_disk_read_fn rd;
    void *opaque;
    uint64_t off, size;
};

static int dev_read(const struct pvdev *d, void *buf, size_t len, uint64_t rel)
{
    if (rel > d->size || len > d->size - rel)
        return -ERANGE;
    return d->rd(d->opaque, buf, len, d->off + rel);
}

/* Finds and checks the label; copies its sector to LABEL. 1 if none. */
static int read_label(const struct pvdev *d, uint8_t label[LVM_SECTOR], uint64_t *sector,
                      char *warn, size_t wl)
{
    for (uint64_t s = 0; s < LVM_LABEL_SCAN; s++) {
        int r = dev_read(d, label, LVM_SECTOR, s * LVM_SECTOR);
        if (r == -ERANGE)
            return 1;
        if (r < 0)
            return r;
        if (memcmp(label, LABEL_ID, 8) || memcmp(label + 24, LABEL_TYPE, 8))
            continue;
        if (dk_le64(label + 8) != s)
            return say(warn, wl, -EINVAL, "LVM2 label in sector %llu claims sector %llu",
                       (unsigned long long)s, (unsigned long long)dk_le64(label + 8));
        if (lvm_crc(LVM_INITIAL_CRC, label + 20, LVM_SECTOR - 20) != dk_le32(label + 16))
            return say(warn, wl, -EINVAL, "LVM2 label checksum mismatch");
        *sector = s;
        return 0;
    }
    return 1;
}

/* Reads the committed text of the metadata area at START (SIZE bytes
 * from the PV header); 1 when the area holds none. */
static int read_mda(const struct pvdev *d, uint64_t start, uint64_t size,
                    char **text, size_t *textlen, char *warn, size_t wl)
{
    uint8_t h[LVM_MDA_HEADER];
    if (size < 2 * LVM_MDA_HEADER || start > d->size || size > d->size - start)
        return say(warn, wl, -EINVAL, "metadata area at %llu (%llu bytes) lies outside the PV",
                   (unsigned long long)start, (unsigned long long)size);
    int r = dev_read(d, h, sizeof(h), start);
    if (r < 0)
        return r;
    if (lvm_crc(LVM_INITIAL_CRC, h + 4, sizeof(h) - 4) != dk_le32(h))
        return say(warn, wl, -EINVAL, "metadata area header at %llu: checksum mismatch",
                   (unsigned long long)start);
    if (memcmp(h + 4, MDA_MAGIC, 16) || dk_le32(h + 20) != 1)
        return say(warn, wl, -EINVAL, "metadata area header at %llu: bad magic or version",
                   (unsigned long long)start);
    uint64_t hstart = dk_le64(h + 24), hsize = dk_le64(h + 32);
    if (hstart != start || hsize < 2 * LVM_MDA_HEADER || hsize > size)
        return say(warn, wl, -EINVAL, "metadata area header at %llu: start %llu or size "
                   "%llu disagrees with the PV header", (unsigned long long)start,
                   (unsigned long long)hstart, (unsigned long long)hsize);
    const uint8_t *rl = h + 40;         /* raw_locn slot 0 */
    uint64_t toff = dk_le64(rl), tlen = dk_le64(rl + 8);
    uint32_t sum = dk_le32(rl + 16), flags = dk_le32(rl + 20);
    if ((toff == 0 && tlen == 0) || (flags & RAW_LOCN_IGNORED))
        return 1;
    if (toff < LVM_MDA_HEADER || toff >= hsize || tlen == 0 ||
        tlen > hsize - LVM_MDA_HEADER || tlen > LVM_MAX_TEXT)
        return say(warn, wl, -EINVAL, "metadata area at %llu: text at %llu (%llu bytes) "
                   "does not fit the area", (unsigned long long)start,
                   (unsigned long long)toff, (unsigned long long)tlen);
    /* Circular buffer: what runs past the end continues after the header. */
    uint64_t first = tlen <= hsize - toff ? tlen : hsize - toff, wrap = tlen - first;
    char *t = malloc((size_t)tlen + 1);
    if (!t)
        return -ENOMEM;
    r = dev_read(d, t, (size_t)first, start + toff);
    if (r == 0 && wrap)
        r = dev_read(d, t + first, (size_t)wrap, start + LVM_MDA_HEADER);
    if (r == 0 && lvm_crc(LVM_INITIAL_CRC, t, (size_t)tlen) != sum)
        r = say(warn, wl, -EINVAL, "metadata area at %llu: text checksum mismatch",
                (unsigned long long)start);
    if (r < 0) {
        free(t);
        return r;
    }
    t[tlen] = 0;
    *text = t;
    *textlen = (size_t)tlen;
    return 0;
}

void lvm_pvlabel_free(struct lvm_pvlabel *lb)
{
    for (size_t i = 0; i < lb->ntext; i++)
        free(lb->text[i]);
    lb->ntext = 0;
}

int lvm_pv_read(dk_disk_read_fn rd, void *opaque, uint64_t off, uint64_t size,
                struct lvm_pvlabel *lb, char *warn, size_t wl)
{
    struct pvdev d = { rd, opaque, off, size };
    uint8_t label[LVM_SECTOR];
    uint64_t sector;
    memset(lb, 0, sizeof(*lb));
    warn[0] = 0;
    int r = read_label(&d, label, &sector, warn, wl);
    if (r != 0)
        return r;
    uint32_t hoff = dk_le32(label + 20);
    /* pv_header: uuid, size, and at least the two list terminators. */
    if (hoff < 32 || hoff > LVM_SECTOR - (LVM_ID_LEN + 8 + 32))
        return say(warn, wl, -EINVAL, "LVM2 label: pv_header offset %u out of range", hoff);
    const uint8_t *ph = label + hoff, *end = label + LVM_SECTOR;
    for (size_t i = 0; i < LVM_ID_LEN; i++) {
        if (ph[i] < 0x21 || ph[i] > 0x7e)
            return say(warn, wl, -EINVAL, "LVM2 label: PV uuid is not printable");
        lb->uuid[i] = (char)ph[i];
    }
    lb->dev_size = dk_le64(ph + LVM_ID_LEN);
    const uint8_t *p = ph + LVM_ID_LEN + 8;
    for (int list = 0; list < 2; list++) {      /* 0: data areas, 1: metadata areas */
        for (;; p += 16) {
            if (end - p < 16)
                return say(warn, wl, -EINVAL, "LVM2 label: area list runs past the sector");
            uint64_t aoff = dk_le64(p), asize = dk_le64(p + 8);
            if (aoff == 0 && asize == 0) {
                p += 16;
                break;
            }
            if (list == 0 || lb->ntext >= LVM_MAX_MDAS)
                continue;
            char w[200] = "";
            r = read_mda(&d, aoff, asize, &lb->text[lb->ntext], &lb->textlen[lb->ntext],
                         w, sizeof(w));
            if (r == -ENOMEM || (r < 0 && r != -EINVAL && r != -ERANGE)) {
                lvm_pvlabel_free(lb);
                return r;
            }
            if (r == 0)
                lb->ntext++;
            else if (w[0] && !warn[0])
                snprintf(warn, wl, "%s", w);
        }
    }
    return 0;
}

/* ------------------------------------------------------- VG and LVs */

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= LVM_NAME_MAX || s[0] == '-' || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("+_.-", s[i])))
            return false;
    return true;
}

/* Copies an id string dropping hyphens; false unless exactly 32 chars. */
static bool id_strip(char out[LVM_ID_LEN + 1], const char *id)
{
    size_t k = 0;
    for (; id && *id; id++) {
        if (*id == '-')
            continue;
        if (k >= LVM_ID_LEN)
            return false;
        out[k++] = *id;
    }
    out[k] = 0;
    return k == LVM_ID_LEN;
}

static bool get_u64(const struct lvm_node *sec, const char *key, uint64_t *out)
{
    int64_t v;
    if (!lvm_node_int(sec, key, &v) || v < 0)
        return false;
    *out = (uint64_t)v;
    return true;
}

static int parse_pvs(struct lvm_vg *vg, const struct lvm_node *list, char *err, size_t el)
{
    size_t n = 0;
    for (const struct lvm_node *s = list ? list->child : NULL; s; s = s->next)
        n += s->type == LVM_SECTION;
    if (n == 0 || n > LVM_MAX_PVS)
        return say(err, el, -EINVAL, "VG %s: %zu physical volumes", vg->name, n);
    if (!(vg->pvs = calloc(n, sizeof(*vg->pvs))))
        return -ENOMEM;
    for (const struct lvm_node *s = list->child; s; s = s->next) {
        if (s->type != LVM_SECTION)
            continue;
        struct lvm_pv *pv = &vg->pvs[vg->npvs++];
        uint64_t start;
        if (strlen(s->key) >= sizeof(pv->name) || !id_strip(pv->uuid, lvm_node_str(s, "id")) ||
            !get_u64(s, "pe_start", &start) || !get_u64(s, "pe_count", &pv->pe_count) ||
            start > UINT64_MAX / LVM_SECTOR)
            return say(err, el, -EINVAL, "VG %s: PV %.40s: missing or bad id, pe_start "
                       "or pe_count", vg->name, s->key);
        snprintf(pv->name, sizeof(pv->name), "%s", s->key);
        pv->pe_start = start * LVM_SECTOR;
    }
    return 0;
}

static int lv_fail(struct lvm_vg *vg, struct lvm_lv *lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int lv_fail(struct lvm_vg *vg, struct lvm_lv *lv, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (!lv->error[0])
        snprintf(lv->error, sizeof(lv->error), "LV %.60s/%.60s: %.120s", vg->name,
                 lv->name, why);
    return 0;
}

static size_t find_pv(const struct lvm_vg *vg, const char *name)
{
    for (size_t i = 0; i < vg->npvs; i++)
        if (!strcmp(vg->pvs[i].name, name))
            return i;
    return SIZE_MAX;
}

/* One segmentN section into SEG. Returns 0, or sets LV->error (and 0)
 * when the segment cannot be mapped, or -ENOMEM. */
static int parse_seg(struct lvm_vg *vg, struct lvm_lv *lv, const struct lvm_node *s,
                     struct lvm_seg *seg)
{
    const char *type = lvm_node_str(s, "type");
    uint64_t nstripes = 0, ssize = 0;
    if (!get_u64(s, "start_extent", &seg->start) || !get_u64(s, "extent_count", &seg->count) ||
        !type || seg->count == 0)
        return lv_fail(vg, lv, "segment %.40s: bad start_extent, extent_count or type", s->key);
    if (strcmp(type, "striped"))
        return lv_fail(vg, lv, "segment type %.40s not supported", type);
    const struct lvm_node *arr = lvm_node_get(s, "stripes");
    if (!get_u64(s, "stripe_count", &nstripes) || nstripes == 0 ||
        nstripes > LVM_MAX_STRIPES || seg->count % nstripes || !arr || arr->type != LVM_ARRAY)
        return lv_fail(vg, lv, "segment %.40s: bad stripe_count or stripes", s->key);
    uint64_t area_len = seg->count / nstripes, area_bytes;
    if (__builtin_mul_overflow(area_len, vg->extent_size, &area_bytes))
        return lv_fail(vg, lv, "segment %.40s: size overflows", s->key);
    if (nstripes > 1) {
        /* dm-stripe needs each stripe's length to be whole chunks. */
        if (!get_u64(s, "stripe_size", &ssize) || ssize == 0 || ssize > UINT32_MAX ||
            area_bytes % (ssize * LVM_SECTOR))
            return lv_fail(vg, lv, "segment %.40s: bad stripe_size", s->key);
        seg->stripe_size = ssize * LVM_SECTOR;
    }
    if (!(seg->stripes = calloc(nstripes, sizeof(*seg->stripes))))
        return -ENOMEM;
    const struct lvm_node *e = arr->child;
    for (; seg->nstripes < nstripes; seg->nstripes++) {
        struct lvm_stripe *st = &seg->stripes[seg->nstripes];
        if (!e || e->type != LVM_STRING || !e->next || e->next->type != LVM_INT ||
            e->next->num < 0)
            return lv_fail(vg, lv, "segment %.40s: bad stripes list", s->key);
        if ((st->pv = find_pv(vg, e->str)) == SIZE_MAX)
            return lv_fail(vg, lv, "segment %.40s: unknown PV %.40s", s->key, e->str);
        st->pe = (uint64_t)e->next->num;
        const struct lvm_pv *pv = &vg->pvs[st->pv];
        if (st->pe > pv->pe_count || area_len > pv->pe_count - st->pe)
            return lv_fail(vg, lv, "segment %.40s: extents beyond the end of PV %s",
                           s->key, pv->name);
        e = e->next->next;
    }
    return 0;
}

static int seg_cmp(const void *a, const void *b)
{
    const struct lvm_seg *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* "/dev/mapper/VG-LV" with '-' doubled inside names, as dm names it;
 * "" when it does not fit (lvm2 refuses such names anyway). */
static void mapper_name(char out[DK_DEVNAME_MAX], const char *vg, const char *lv)
{
    char m[2 * DK_DEVNAME_MAX];
    size_t k = (size_t)snprintf(m, sizeof(m), "/dev/mapper/");
    for (int part = 0; part < 2; part++) {
        for (const char *p = part ? lv : vg; *p; p++) {
            if (*p == '-')
                m[k++] = '-';
            m[k++] = *p;
        }
        m[k++] = part ? 0 : '-';
    }
    if (k > DK_DEVNAME_MAX)
        k = 1, m[0] = 0;
    memcpy(out, m, k);
}

static int parse_lv(struct lvm_vg *vg, struct lvm_lv *lv, const struct lvm_node *sec)
{
    snprintf(lv->name, sizeof(lv->name), "%s", sec->key);
    const char *id = lvm_node_str(sec, "id");
    snprintf(lv->uuid, sizeof(lv->uuid), "%s", id ? id : "");
    lv->visible = lvm_node_has_flag(sec, "status", "VISIBLE");
    snprintf(lv->device, sizeof(lv->device), "/dev/%s/%s", vg->name, lv->name);
    mapper_name(lv->mapper, vg->name, lv->name);
    size_t n = 0;
    uint64_t extents = 0, c;
    for (const struct lvm_node *s = sec->child; s; s = s->next) {
        if (s->type != LVM_SECTION || strncmp(s->key, "segment", 7))
            continue;
        n++;
        if (get_u64(s, "extent_count", &c) && !__builtin_add_overflow(extents, c, &extents))
            __builtin_mul_overflow(extents, vg->extent_size, &lv->size);   /* for listing */
    }
    if (n == 0 || n > LVM_MAX_SEGS)
        return lv_fail(vg, lv, "%zu segments", n);
    if (!(lv->segs = calloc(n, sizeof(*lv->segs))))
        return -ENOMEM;
    for (const struct lvm_node *s = sec->child; s; s = s->next) {
        if (s->type != LVM_SECTION || strncmp(s->key, "segment", 7))
            continue;
        int r = parse_seg(vg, lv, s, &lv->segs[lv->nsegs++]);
        if (r < 0 || lv->error[0])
            return r;
    }
    qsort(lv->segs, lv->nsegs, sizeof(*lv->segs), seg_cmp);
    uint64_t next = 0;
    for (size_t i = 0; i < lv->nsegs; i++) {
        if (lv->segs[i].start != next)
            return lv_fail(vg, lv, "segments leave a gap or overlap at extent %llu",
                           (unsigned long long)next);
        if (__builtin_add_overflow(next, lv->segs[i].count, &next))
            return lv_fail(vg, lv, "size overflows");
    }
    if (__builtin_mul_overflow(next, vg->extent_size, &lv->size))
        return lv_fail(vg, lv, "size overflows");
    return 0;
}

static struct lvm_lv *find_lv(struct lvm_vg *vg, const char *name)
{
    for (size_t i = 0; name && i < vg->nlvs; i++)
        if (!strcmp(vg->lvs[i].name, name))
            return &vg->lvs[i];
    return NULL;
}

/* Marks the COW store and the origin of every snapshot segment. */
static void mark_snapshots(struct lvm_vg *vg, const struct lvm_node *list)
{
    for (const struct lvm_node *l = list ? list->child : NULL; l; l = l->next)
        for (const struct lvm_node *s = l->type == LVM_SECTION ? l->child : NULL; s;
             s = s->next) {
            const char *type = lvm_node_str(s, "type");
            if (s->type != LVM_SECTION || !type || strcmp(type, "snapshot"))
                continue;
            struct lvm_lv *cow = find_lv(vg, lvm_node_str(s, "cow_store"));
            struct lvm_lv *origin = find_lv(vg, lvm_node_str(s, "origin"));
            if (cow)
                lv_fail(vg, cow, "snapshot (copy-on-write store) not supported");
            if (origin && !origin->no_write[0])
                snprintf(origin->no_write, sizeof(origin->no_write), "LV %.60s/%.60s has "
                         "snapshots: writing it would corrupt them", vg->name, origin->name);
        }
}

static int parse_lvs(struct lvm_vg *vg, const struct lvm_node *list, char *err, size_t el)
{
    size_t n = 0;
    for (const struct lvm_node *s = list ? list->child : NULL; s; s = s->next)
        n += s->type == LVM_SECTION;
    if (n > LVM_MAX_LVS)
        return say(err, el, -EINVAL, "VG %s: %zu logical volumes", vg->name, n);
    if (n && !(vg->lvs = calloc(n, sizeof(*vg->lvs))))
        return -ENOMEM;
    for (const struct lvm_node *s = list ? list->child : NULL; s; s = s->next) {
        if (s->type != LVM_SECTION)
            continue;
        if (!valid_name(s->key))
            return say(err, el, -EINVAL, "VG %s: bad LV name '%.40s'", vg->name, s->key);
        for (size_t i = 0; i < vg->nlvs; i++)
            if (!strcmp(vg->lvs[i].name, s->key))
                return say(err, el, -EINVAL, "VG %s: LV %s appears twice", vg->name, s->key);
        int r = parse_lv(vg, &vg->lvs[vg->nlvs++], s);
        if (r < 0)
            return r;
    }
    mark_snapshots(vg, list);
    return 0;
}

void lvm_vg_free(struct lvm_vg *vg)
{
    if (!vg)
        return;
    for (size_t i = 0; i < vg->nlvs; i++) {
        for (size_t j = 0; j < vg->lvs[i].nsegs; j++)
            free(vg->lvs[i].segs[j].stripes);
        free(vg->lvs[i].segs);
    }
    free(vg->lvs);
    free(vg->pvs);
    free(vg);
}

static const struct lvm_node *vg_section(const struct lvm_node *root, char *err, size_t el)
{
    const struct lvm_node *vg = NULL;
    for (const struct lvm_node *n = root->child; n; n = n->next) {
        if (n->type != LVM_SECTION)
            continue;
        if (vg) {
            say(err, el, 0, "metadata holds more than one volume group");
            return NULL;
        }
        vg = n;
    }
    if (!vg)
        say(err, el, 0, "metadata holds no volume group");
    return vg;
}

int lvm_vg_parse(const char *text, size_t len, struct lvm_vg **out, char *err, size_t el)
{
    struct lvm_node *root;
    *out = NULL;
    int r = lvm_text_parse(text, len, &root, err, el);
    if (r < 0)
        return r;
    struct lvm_vg *vg = calloc(1, sizeof(*vg));
    const struct lvm_node *sec = vg_section(root, err, el);
    uint64_t esize = 0;
    if (!vg)
        r = -ENOMEM;
    else if (!sec)
        r = -EINVAL;
    else if (!valid_name(sec->key))
        r = say(err, el, -EINVAL, "bad VG name '%.40s'", sec->key);
    else if (!get_u64(sec, "seqno", &vg->seqno) || !get_u64(sec, "extent_size", &esize) ||
             esize == 0 || esize > (UINT32_MAX / LVM_SECTOR) || !lvm_node_str(sec, "id"))
        r = say(err, el, -EINVAL, "VG %s: missing or bad id, seqno or extent_size", sec->key);
    if (r == 0) {
        snprintf(vg->name, sizeof(vg->name), "%s", sec->key);
        snprintf(vg->uuid, sizeof(vg->uuid), "%s", lvm_node_str(sec, "id"));
        vg->extent_size = esize * LVM_SECTOR;
        r = parse_pvs(vg, lvm_node_get(sec, "physical_volumes"), err, el);
    }
    if (r == 0)
        r = parse_lvs(vg, lvm_node_get(sec, "logical_volumes"), err, el);
    lvm_node_free(root);
    if (r < 0) {
        if (r == -ENOMEM)
            snprintf(err, el, "out of memory");
        lvm_vg_free(vg);
        return r;
    }
    *out = vg;
    return 0;
}

void lvm_vg_finish(struct lvm_vg *vg)
{
    for (size_t i = 0; i < vg->nlvs; i++) {
        struct lvm_lv *lv = &vg->lvs[i];
        for (size_t j = 0; j < lv->nsegs && !lv->error[0]; j++) {
            const struct lvm_seg *seg = &lv->segs[j];
            for (size_t k = 0; k < seg->nstripes; k++) {
                const struct lvm_pv *pv = &vg->pvs[seg->stripes[k].pv];
                uint64_t end, area = seg->count / seg->nstripes;
                if (!pv->present) {
                    lv_fail(vg, lv, "PV %s (uuid %s) is missing", pv->name, pv->uuid);
                    break;
                }
                /* Last byte of this stripe, relative to the PV start. */
                if (__builtin_mul_overflow(seg->stripes[k].pe + area, vg->extent_size, &end) ||
                    __builtin_add_overflow(end, pv->pe_start, &end) || end > pv->dev_size) {
                    lv_fail(vg, lv, "extents beyond the end of the device of PV %s", pv->name);
                    break;
                }
            }
        }
    }
}

void lvm_lv_map(const struct lvm_vg *vg, const struct lvm_lv *lv, uint64_t off,
                unsigned *disk, uint64_t *dev_off, uint64_t *run)
{
    uint64_t ext = off / vg->extent_size;
    size_t lo = 0, hi = lv->nsegs;      /* last segment with start <= ext */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (lv->segs[mid].start <= ext)
            lo = mid;
        else
            hi = mid;
    }
    const struct lvm_seg *seg = &lv->segs[lo];
    uint64_t rel = off - seg->start * vg->extent_size;
    uint64_t seg_bytes = seg->count * vg->extent_size;
    const struct lvm_stripe *st = &seg->stripes[0];
    uint64_t in_area = rel;
    *run = seg_bytes - rel;
    if (seg->nstripes > 1) {
        uint64_t chunk = rel / seg->stripe_size, within = rel % seg->stripe_size;
        st = &seg->stripes[chunk % seg->nstripes];
        in_area = (chunk / seg->nstripes) * seg->stripe_size + within;
        *run = seg->stripe_size - within;
    }
    const struct lvm_pv *pv = &vg->pvs[st->pv];
    *disk = pv->disk;
    *dev_off = pv->dev_off + pv->pe_start + st->pe * vg->extent_size + in_area;
}
