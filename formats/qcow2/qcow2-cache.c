/* qcow2-cache.c - bounded LRU cache of cluster-sized metadata tables (L2
 * tables and refcount blocks), kept in on-disk (big-endian) byte order.
 *
 * Invariants:
 *  1. At most c->max entries; buffers are allocated on first use.
 *  2. A pinned entry (refs > 0) is never evicted; callers pin for the
 *     duration of one operation only.
 *  3. Before any dirty entry is written, the dependency cache (c->dep) is
 *     written and synced: for the L2 cache that is the refcount cache, so
 *     refcount increments reach the disk before the entries that need them.
 * Lookup is by hashing the host offset; eviction takes the least recently
 * used unpinned entry (a linear pass, only on a miss with a full cache).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

struct cache_ent {
    uint64_t off;             /* 0 = empty slot (offset 0 is the header) */
    uint8_t *buf;
    uint64_t lru;
    int refs;
    bool dirty;
    int next;                 /* hash chain */
};

#define BUF_HDR 16
/* Entry cap: bounds the LRU pass on a miss (512-byte clusters). */
#define CACHE_MAX_ENTRIES 16384

struct qcow2_cache {
    size_t max, n;
    size_t ndirty;            /* entries with dirty set (O(1) is_dirty) */
    size_t esize;
    uint64_t tick;
    unsigned kind;            /* QCOW2_OL_L2 or QCOW2_OL_REFBLOCK */
    struct cache_ent *ents;
    int *heads;
    size_t nbuckets;
    struct qcow2_cache *dep;
};

struct qcow2_cache *qcow2_cache_new(size_t max, size_t entry_size, unsigned kind)
{
    struct qcow2_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->max = max < QCOW2_CACHE_MIN ? QCOW2_CACHE_MIN : DK_MIN(max, CACHE_MAX_ENTRIES);
    c->esize = entry_size;
    c->kind = kind;
    c->nbuckets = 16;
    while (c->nbuckets < c->max * 2)
        c->nbuckets *= 2;
    c->ents = calloc(c->max, sizeof(*c->ents));
    c->heads = malloc(c->nbuckets * sizeof(int));
    if (!c->ents || !c->heads) {
        qcow2_cache_free(c);
        return NULL;
    }
    for (size_t i = 0; i < c->nbuckets; i++)
        c->heads[i] = -1;
    return c;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; c->ents && i < c->n; i++)
        free(c->ents[i].buf);
    free(c->ents);
    free(c->heads);
    free(c);
}

void qcow2_cache_set_dep(struct qcow2_cache *c, struct qcow2_cache *dep)
{
    c->dep = dep;
}

static size_t bucket(const struct qcow2_cache *c, uint64_t off)
{
    uint64_t h = off * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (c->nbuckets - 1);
}

static int find(const struct qcow2_cache *c, uint64_t off)
{
    for (int i = c->heads[bucket(c, off)]; i >= 0; i = c->ents[i].next)
        if (c->ents[i].off == off)
            return i;
    return -1;
}

static void unlink_ent(struct qcow2_cache *c, int i)
{
    int *pp = &c->heads[bucket(c, c->ents[i].off)];
    while (*pp != i)
        pp = &c->ents[*pp].next;
    *pp = c->ents[i].next;
    c->ents[i].off = 0;
}

static int write_ent(struct dk_image *img, struct qcow2_cache *c, struct cache_ent *e)
{
    if (c->dep && qcow2_cache_is_dirty(c->dep)) {
        int r = qcow2_cache_flush(img, c->dep, true);
        if (r < 0)
            return r;
    }
    int r = qcow2_check_overlap(img, e->off, c->esize, QCOW2_OL_ALL & ~c->kind);
    if (r < 0)
        return r;
    r = dk_file_pwrite(img->file, e->buf + BUF_HDR, c->esize, e->off);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: writing metadata at 0x%llx: %s",
                            (unsigned long long)e->off, strerror(-r));
    e->dirty = false;
    c->ndirty--;
    return 0;
}

/* Finds a slot for a new entry: a never-used one or the LRU unpinned. */
static int take_slot(struct dk_image *img, struct qcow2_cache *c)
{
    if (c->n < c->max) {
        struct cache_ent *e = &c->ents[c->n];
        if (!(e->buf = malloc(c->esize + BUF_HDR)))
            return dk_set_error(img, -ENOMEM, "qcow2: out of memory for metadata cache");
        memcpy(e->buf, &c->n, sizeof(c->n));
        return (int)c->n++;
    }
    int best = -1;
    for (size_t i = 0; i < c->n; i++) {
        if (c->ents[i].refs)
            continue;
        if (!c->ents[i].off)
            return (int)i;
        if (best < 0 || c->ents[i].lru < c->ents[best].lru)
            best = (int)i;
    }
    if (best < 0)
        return dk_set_error(img, -ENOMEM, "qcow2: metadata cache exhausted");
    if (c->ents[best].dirty) {
        int r = write_ent(img, c, &c->ents[best]);
        if (r < 0)
            return r;
    }
    unlink_ent(c, best);
    return best;
}

int qcow2_cache_get(struct dk_image *img, struct qcow2_cache *c, uint64_t off,
                    bool fresh, void **out)
{
    int i = find(c, off);
    if (i < 0) {
        i = take_slot(img, c);
        if (i < 0)
            return i;
        struct cache_ent *e = &c->ents[i];
        if (fresh) {
            memset(e->buf + BUF_HDR, 0, c->esize);
        } else {
            int r = dk_file_pread(img->file, e->buf + BUF_HDR, c->esize, off);
            if (r < 0)
                return dk_set_error(img, r, "qcow2: reading metadata at 0x%llx: %s",
                                    (unsigned long long)off,
                                    r == -EIO ? "beyond end of file" : strerror(-r));
        }
        e->off = off;
        e->dirty = false;
        size_t b = bucket(c, off);
        e->next = c->heads[b];
        c->heads[b] = i;
    } else if (fresh) {
        memset(c->ents[i].buf + BUF_HDR, 0, c->esize);
    }
    c->ents[i].refs++;
    c->ents[i].lru = ++c->tick;
    *out = c->ents[i].buf + BUF_HDR;
    return 0;
}

/* Each buffer starts with a BUF_HDR-byte prefix holding its slot index,
 * so put/mark_dirty find the entry in O(1). */
static struct cache_ent *by_buf(struct qcow2_cache *c, void *table)
{
    uint8_t *raw = (uint8_t *)table - BUF_HDR;
    size_t i;
    memcpy(&i, raw, sizeof(i));
    return i < c->n && c->ents[i].buf == raw ? &c->ents[i] : NULL;
}

void qcow2_cache_put(struct qcow2_cache *c, void *table)
{
    struct cache_ent *e = by_buf(c, table);
    if (e && e->refs > 0)
        e->refs--;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, void *table)
{
    struct cache_ent *e = by_buf(c, table);
    if (e && !e->dirty) {
        e->dirty = true;
        c->ndirty++;
    }
}

bool qcow2_cache_is_dirty(const struct qcow2_cache *c)
{
    return c->ndirty != 0;
}

int qcow2_cache_flush(struct dk_image *img, struct qcow2_cache *c, bool sync)
{
    bool wrote = false;
    for (size_t i = 0; c->ndirty && i < c->n; i++) {
        struct cache_ent *e = &c->ents[i];
        if (!e->off || !e->dirty)
            continue;
        int r = write_ent(img, c, e);
        if (r < 0)
            return r;
        wrote = true;
    }
    if (wrote && sync) {
        int r = dk_file_flush(img->file);
        if (r < 0)
            return dk_set_error(img, r, "qcow2: flush: %s", strerror(-r));
    }
    return 0;
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off)
{
    int i = find(c, off);
    if (i >= 0 && !c->ents[i].refs) {
        if (c->ents[i].dirty)
            c->ndirty--;
        c->ents[i].dirty = false;
        unlink_ent(c, i);
    }
}
