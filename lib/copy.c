/* copy.c - the copy engine behind convert (and rebase, commit, dd): copies
 * the guest content of one or more concatenated source images into a
 * destination image (ARCHITECTURE.md decision 2).
 *
 * Shape:
 *  - A planner (run by whichever worker needs work, under st->mu) walks
 *    dk_block_status of the sources in destination space and cuts the
 *    image into chunks: "zero" chunks (holes and zero extents, merged, up
 *    to ZERO_CHUNK_MAX) and "data" chunks (merged data extents, up to
 *    chunk_max bytes). Chunk boundaries are multiples of `align` (the
 *    sparse granule, or the destination cluster when compressing or
 *    diffing), except at the end of the image.
 *  - Workers (threads, -m) take chunks, read them (dk_pread on the
 *    sources), classify each granule (skip / zero / data), compress data
 *    clusters with DK_COPY_COMPRESS (drv->compress, no lock), then wait
 *    for their turn (in guest order unless DK_COPY_OUT_OF_ORDER) and
 *    write.
 *  - With dst_backing, a granule (one destination cluster) is written only
 *    when it differs from what dst_backing holds there.
 *
 * Invariants:
 *  1. st->pos (the next offset to plan) is a multiple of `align` or equals
 *     st->total; chunks never overlap and cover [0, total) in order.
 *  2. A worker owns its buffers; nothing in them is shared.
 *  3. Chunk sequence numbers are handed out in guest order; with in-order
 *     writes a worker writes chunk N only after chunk N-1 was written.
 *  4. The first error wins: it is recorded once, every waiter is woken and
 *     no new chunk is handed out.
 *
 * Fast path: source extents with a host offset in the layer's own file
 * are read with pread on that file, bypassing the driver and the image
 * lock, so workers read in parallel (sources are never written).
 * Compressed qcow2 clusters go through dk_pread, but the driver drops the
 * image lock while it decompresses (qcow2-io.c invariant 4), so that part
 * runs in parallel too.
 *
 * Options: DK_COPY_OFFLOAD (-C) copies data chunks whose extents all lie
 * in host files straight into a raw destination with copy_file_range (no
 * user buffer, no zero detection inside data), falling back to read and
 * write when the kernel cannot; DK_COPY_SALVAGE turns read and block
 * status errors into zeros, reported per unreadable run; rate_limit (-r)
 * delays each data chunk's write so the data copied so far never exceeds
 * the rate since the start.
 *
 * Known gaps: zero chunks are not split by dst_backing's block status
 * below chunk granularity; offload only targets raw destinations.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK_DEFAULT   (2u << 20)      /* read run per worker: 2 MiB */
#define ZERO_CHUNK_MAX  (1ull << 30)    /* one zeroing request at most */
#define THREADS_DEFAULT 8               /* qemu-img's -m default */
#define THREADS_MAX     16              /* qemu-img's -m limit */
#define SPARSE_DEFAULT  4096
#define HUGE_ALIGN      (2u << 20)      /* transparent huge page size */

enum gran_kind { G_SKIP, G_ZERO, G_DATA };

/* One source extent as the planner saw it, in destination offsets. */
struct src_ext {
    uint64_t off, len;
    uint64_t host;              /* host offset in FILE */
    struct dk_file *file;       /* read directly from here, or NULL */
    uint32_t src;               /* index of the source image */
    bool zero;                  /* reads as zeros */
};

#define CHUNK_EXTENTS 32        /* extents remembered per chunk */

struct chunk {
    uint64_t off, len;
    uint64_t seq;
    bool zero;                  /* planned as zero: nothing to read */
    bool ext_complete;          /* ext[] covers the whole chunk */
    unsigned next;
    struct src_ext ext[CHUNK_EXTENTS];
};

struct copy_state {
    const struct dk_copy_args *a;
    uint64_t *starts;               /* nsrc + 1 offsets in dst space */
    uint64_t total;
    uint64_t align;                 /* chunk boundary granule */
    uint64_t gran;                  /* classification granule */
    size_t chunk_max;
    bool compress, diff, target_zero, sparse, in_order, salvage;
    int offload;                    /* -C in use (atomic: cleared on fallback) */
    uint64_t rl_start_ns, rl_bytes; /* -r: start time, data bytes so far */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t salvage_mu;     /* one salvaging reader at a time, so the
                                       image's error message is its own */
    uint64_t pos;                   /* next offset to plan */
    uint64_t next_seq;              /* next sequence number to hand out */
    uint64_t write_seq;             /* chunk allowed to write now */
    uint64_t done;                  /* progress */
    int err;
    char errmsg[1024];
};

struct worker {
    struct copy_state *st;
    uint8_t *buf;                   /* source data, chunk_max */
    uint8_t *bbuf;                  /* dst_backing data (diff mode) */
    uint8_t *cbuf;                  /* compressed clusters (compress mode) */
    uint8_t *kind;                  /* enum gran_kind per granule */
    ssize_t *clen;                  /* compressed length per granule */
    pthread_t tid;
};

/* ------------------------------------------------------------ errors */

/* Records the first error (invariant 4); returns R. Caller holds st->mu. */
static int fail_locked(struct copy_state *st, int r, const char *msg)
{
    if (!st->err) {
        st->err = r;
        snprintf(st->errmsg, sizeof(st->errmsg), "%s", msg);
    }
    pthread_cond_broadcast(&st->cv);
    return r;
}

/* The same for callers that do not hold st->mu. */
static int fail(struct copy_state *st, int r, const char *msg)
{
    pthread_mutex_lock(&st->mu);
    fail_locked(st, r, msg);
    pthread_mutex_unlock(&st->mu);
    return r;
}

static int fail_img(struct copy_state *st, struct dk_image *img, int r)
{
    return fail(st, r, dk_image_errmsg(img));
}

/* ------------------------------------------------- source concatenation */

static size_t src_index(const struct copy_state *st, uint64_t off)
{
    size_t i = 0;
    while (i + 1 < st->a->nsrc && off >= st->starts[i + 1])
        i++;
    return i;
}

/* The host file holding extent E of source S when the bytes can be read
 * straight from it (DK_BS_OFFSET_VALID in the layer's own file), else NULL.
 * Sources are read-only for the whole copy, so a mapping stays valid. */
static struct dk_file *direct_file(struct dk_image *s, const struct dk_extent *e)
{
    if (!(e->flags & DK_BS_OFFSET_VALID) || (e->flags & (DK_BS_COMPRESSED | DK_BS_ENCRYPTED)))
        return NULL;
    struct dk_image *l = s;
    for (int d = 0; l && d < e->depth; d++)
        l = l->backing;
    if (!l || !l->file || !e->host_file || strcmp(e->host_file, l->filename))
        return NULL;
    return l->file;
}

/* Block status of the concatenated sources at OFF (at most LEN bytes, never
 * crossing a source boundary) into *X. LOCKED: the caller holds st->mu. */
static int src_status(struct copy_state *st, uint64_t off, uint64_t len, struct src_ext *x,
                      bool locked)
{
    size_t i = src_index(st, off);
    struct dk_image *s = st->a->src[i];
    len = DK_MIN(len, st->starts[i + 1] - off);
    struct dk_extent e;
    int r = dk_block_status(s, off - st->starts[i], len, 0, &e);
    if (r < 0 && st->salvage) {
        /* Unknown status: read it as data, piece by piece (read_ext). */
        e.length = DK_MIN(len, (uint64_t)st->chunk_max);
        e.flags = DK_BS_DATA;
        e.depth = 0;
        e.host_file = NULL;
        e.host_offset = 0;
        r = 0;
    }
    if (r < 0)
        return locked ? fail_locked(st, r, dk_image_errmsg(s)) : fail_img(st, s, r);
    x->off = off;
    x->len = e.length;
    x->src = (uint32_t)i;
    x->zero = (e.flags & DK_BS_ZERO) || !(e.flags & (DK_BS_DATA | DK_BS_ALLOCATED));
    x->file = x->zero ? NULL : direct_file(s, &e);
    x->host = e.host_offset;
    return 0;
}

/* Reads [OFF, OFF+N) (inside extent X) into BUF; returns 0 or -errno with
 * the message on the source image. Extents with a host offset are read
 * with pread on the host file, without the image lock, so workers read in
 * parallel; zero extents are filled in memory; anything else (compressed,
 * encrypted, external files) goes through dk_pread. */
static int read_piece(struct copy_state *st, const struct src_ext *x, uint8_t *buf,
                      uint64_t off, uint64_t n)
{
    struct dk_image *s = st->a->src[x->src];
    int r = 0;
    if (x->zero) {
        memset(buf, 0, (size_t)n);
    } else if (x->file) {
        r = dk_file_pread(x->file, buf, (size_t)n, x->host + (off - x->off));
        if (r < 0)
            dk_set_error(s, r, "reading %s at host offset %llu: %s", x->file->path,
                         (unsigned long long)(x->host + (off - x->off)), strerror(-r));
    } else {
        r = dk_pread(s, buf, (size_t)n, off - st->starts[x->src]);
    }
    return r;
}

#define SALVAGE_PIECE (64u << 10)   /* first retry size, then 512 bytes */

static void salvage_report(struct copy_state *st, struct dk_image *s, uint64_t off,
                           uint64_t len)
{
    char line[1400];
    snprintf(line, sizeof(line), "error while reading offset %llu (%llu bytes, written as "
             "zeros): %s", (unsigned long long)off, (unsigned long long)len,
             dk_image_errmsg(s));
    pthread_mutex_lock(&st->mu);
    if (st->a->report)
        st->a->report(st->a->report_opaque, line);
    pthread_mutex_unlock(&st->mu);
}

/* An unreadable run being gathered, reported when it ends. */
struct bad_run { uint64_t off, len; };

static void bad_sector(struct copy_state *st, struct dk_image *s, struct bad_run *b,
                       uint64_t off, uint64_t len)
{
    if (b->len && b->off + b->len != off) {
        salvage_report(st, s, b->off, b->len);
        b->len = 0;
    }
    if (!b->len)
        b->off = off;
    b->len += len;
}

/* --salvage: reads [OFF, OFF+N) in pieces of SALVAGE_PIECE bytes; a piece
 * that fails is retried in 512-byte sectors, and sectors that still fail
 * read as zeros and are reported as merged runs. */
static void salvage_read(struct copy_state *st, const struct src_ext *x, uint8_t *buf,
                         uint64_t off, uint64_t n)
{
    struct dk_image *s = st->a->src[x->src];
    struct bad_run bad = { 0, 0 };
    for (uint64_t p = 0, k; p < n; p += k) {
        k = DK_MIN((uint64_t)SALVAGE_PIECE, n - p);
        if (read_piece(st, x, buf + p, off + p, k) == 0)
            continue;
        for (uint64_t q = p, m; q < p + k; q += m) {
            m = DK_MIN((uint64_t)512, p + k - q);
            if (read_piece(st, x, buf + q, off + q, m) < 0) {
                memset(buf + q, 0, (size_t)m);
                bad_sector(st, s, &bad, off + q, m);
            }
        }
    }
    if (bad.len)
        salvage_report(st, s, bad.off, bad.len);
}

static int read_ext(struct copy_state *st, const struct src_ext *x, uint8_t *buf,
                    uint64_t off, uint64_t n)
{
    int r = read_piece(st, x, buf, off, n);
    if (r < 0 && st->salvage) {
        pthread_mutex_lock(&st->salvage_mu);
        salvage_read(st, x, buf, off, n);
        pthread_mutex_unlock(&st->salvage_mu);
        return 0;
    }
    return r < 0 ? fail_img(st, st->a->src[x->src], r) : 0;
}

/* Reads data chunk C into BUF, from the extents the planner recorded when
 * they cover it, else asking block status again. */
static int src_read(struct copy_state *st, const struct chunk *c, uint8_t *buf)
{
    uint64_t off = c->off, end = c->off + c->len;
    for (unsigned k = 0; c->ext_complete && k < c->next && off < end; k++) {
        const struct src_ext *x = &c->ext[k];
        uint64_t n = DK_MIN(x->off + x->len, end) - off;
        if (read_ext(st, x, buf + (off - c->off), off, n) < 0)
            return st->err;
        off += n;
    }
    while (off < end) {
        struct src_ext x;
        if (src_status(st, off, end - off, &x, false) < 0 ||
            read_ext(st, &x, buf + (off - c->off), off, x.len) < 0)
            return st->err;
        off += x.len;
    }
    return 0;
}

/* ----------------------------------------------------------- planner */

static uint64_t align_end(const struct copy_state *st, uint64_t end)
{
    return end >= st->total ? st->total : dk_round_down(end, st->align);
}

/* Extends a zero run starting at POS; returns its aligned end (== POS when
 * the run is shorter than one granule), or 0 on error. */
static uint64_t plan_zero(struct copy_state *st, uint64_t pos, uint64_t first_run,
                          uint64_t limit)
{
    uint64_t end = pos + first_run;
    while (end < st->total && end - pos < limit) {
        struct src_ext x;
        if (src_status(st, end, limit - (end - pos), &x, true) < 0)
            return 0;
        if (!x.zero)
            break;
        end += x.len;
    }
    end = DK_MIN(end, pos + limit);
    return align_end(st, end);
}

static void record(struct chunk *c, const struct src_ext *x)
{
    if (c->next < CHUNK_EXTENTS)
        c->ext[c->next++] = *x;
    else
        c->ext_complete = false;
}

/* Ends a data chunk starting with extent FIRST at the first aligned zero
 * granule run, or at chunk_max; records the extents in C. */
static uint64_t plan_data(struct copy_state *st, const struct src_ext *first, struct chunk *c)
{
    uint64_t pos = first->off, limit = align_end(st, pos + st->chunk_max);
    uint64_t end = pos + first->len;
    c->next = 0;
    c->ext_complete = true;
    record(c, first);
    while (end < limit) {
        struct src_ext x;
        if (src_status(st, end, limit - end, &x, true) < 0)
            return 0;
        record(c, &x);
        if (x.zero && st->sparse) {
            uint64_t zs = dk_round_up(end, st->align);
            if (align_end(st, end + x.len) > zs)
                return zs < limit ? zs : limit;
        }
        end += x.len;
    }
    return limit;
}

/* Hands out the next chunk. Called with st->mu held. Returns 1 with *C
 * filled, 0 when the work is done (or failed). Zero chunks that need no
 * write are skipped here, counting as progress. */
static int plan_next(struct copy_state *st, struct chunk *c)
{
    while (!st->err && st->pos < st->total) {
        uint64_t pos = st->pos, end = 0;
        struct src_ext x;
        /* At most one chunk's worth: a long data run is not rescanned. */
        if (src_status(st, pos, DK_MIN(st->total - pos, (uint64_t)st->chunk_max), &x, true) < 0)
            return 0;
        if (x.zero && st->sparse) {
            end = plan_zero(st, pos, x.len, st->diff ? st->chunk_max : ZERO_CHUNK_MAX);
            if (st->err)
                return 0;
        }
        c->off = pos;
        c->zero = end > pos;
        if (c->zero && st->target_zero && !st->diff) {
            st->pos = end;
            st->done += end - pos;
            if (st->a->progress)
                st->a->progress(st->a->progress_opaque, st->done, st->total);
            continue;
        }
        if (!c->zero && (end = plan_data(st, &x, c)) == 0)
            return 0;
        st->pos = end;
        c->len = end - pos;
        c->seq = st->next_seq++;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------ classification */

/* True when dst_backing reads as zeros over the whole range. */
static int backing_all_zero(struct copy_state *st, uint64_t off, uint64_t len, bool *zero)
{
    struct dk_image *b = st->a->dst_backing;
    uint64_t bsize = dk_image_size(b);
    *zero = true;
    while (len && off < bsize) {
        struct dk_extent e;
        int r = dk_block_status(b, off, DK_MIN(len, bsize - off), 0, &e);
        if (r < 0)
            return fail_img(st, b, r);
        if (!(e.flags & DK_BS_ZERO)) {
            *zero = false;
            return 0;
        }
        off += e.length;
        len -= e.length;
    }
    return 0;
}

/* Reads what dst_backing holds for [OFF, OFF+LEN) (zeros past its end). */
static int backing_read(struct copy_state *st, uint8_t *buf, uint64_t off, uint64_t len)
{
    struct dk_image *b = st->a->dst_backing;
    uint64_t bsize = dk_image_size(b), n = 0;
    if (off < bsize) {
        n = DK_MIN(len, bsize - off);
        int r = dk_pread(b, buf, (size_t)n, off);
        if (r < 0)
            return fail_img(st, b, r);
    }
    memset(buf + n, 0, (size_t)(len - n));
    return 0;
}

/* Decides, per granule of the chunk in W->buf, what to write. */
static void classify(struct worker *w, const struct chunk *c)
{
    struct copy_state *st = w->st;
    size_t i = 0;
    for (uint64_t o = 0; o < c->len; o += st->gran, i++) {
        size_t n = (size_t)DK_MIN(st->gran, c->len - o);
        bool z = st->sparse && dk_is_zero(w->buf + o, n);
        if (st->diff && !memcmp(w->buf + o, w->bbuf + o, n))
            w->kind[i] = G_SKIP;
        else if (z)
            w->kind[i] = st->target_zero && !st->diff ? G_SKIP : G_ZERO;
        else
            w->kind[i] = G_DATA;
    }
}

/* Compresses every data granule (one cluster each) into W->cbuf. */
static int compress_chunk(struct worker *w, const struct chunk *c)
{
    struct copy_state *st = w->st;
    struct dk_image *d = st->a->dst;
    size_t i = 0;
    for (uint64_t o = 0; o < c->len; o += st->gran, i++) {
        if (w->kind[i] != G_DATA)
            continue;
        size_t n = (size_t)DK_MIN(st->gran, c->len - o);
        ssize_t r = d->drv->compress(d, w->buf + o, n, w->cbuf + o, n);
        if (r < 0) {
            dk_set_error(d, (int)r, "compression failed: %s", strerror((int)-r));
            return fail_img(st, d, (int)r);
        }
        w->clen[i] = r;
    }
    return 0;
}

/* -C: true when every byte of data chunk C lies in a host file or reads as
 * zeros, so it can go to the raw destination without a user buffer. */
static bool offloadable(struct copy_state *st, const struct chunk *c)
{
    if (!__atomic_load_n(&st->offload, __ATOMIC_RELAXED) || !c->ext_complete)
        return false;
    for (unsigned k = 0; k < c->next; k++)
        if (!c->ext[k].zero && !c->ext[k].file)
            return false;
    return true;
}

/* Prepares chunk C (everything that can run in parallel). Returns 1 when
 * there is something to write, 2 when it is to be copied by offload at
 * write time, 0 when the chunk needs no write, -errno. */
static int prepare(struct worker *w, const struct chunk *c)
{
    struct copy_state *st = w->st;
    if (c->zero && !st->diff)
        return 1;                           /* one zeroing request */
    if (!c->zero && offloadable(st, c))
        return 2;                           /* copy_file_range at write time */
    if (c->zero) {
        bool bz;
        int r = backing_all_zero(st, c->off, c->len, &bz);
        if (r < 0 || bz)
            return r;
        memset(w->buf, 0, (size_t)c->len);
    } else if (src_read(st, c, w->buf) < 0) {
        return st->err;
    }
    if (st->diff && backing_read(st, w->bbuf, c->off, c->len) < 0)
        return st->err;
    classify(w, c);
    if (st->compress)
        return compress_chunk(w, c) < 0 ? -1 : 1;
    return 1;
}

/* ------------------------------------------------------------- writing */

static int write_compressed(struct worker *w, uint64_t off, size_t i, size_t n,
                            uint64_t rel)
{
    struct dk_image *d = w->st->a->dst;
    int r = dk_check_request(d, off, n, true);
    if (r < 0)
        return r;
    pthread_mutex_lock(&d->lock);
    if (w->clen[i] > 0)
        r = d->drv->write_compressed(d, off, w->cbuf + rel, (size_t)w->clen[i],
                                     w->buf + rel, n);
    else
        r = d->drv->write_compressed(d, off, NULL, 0, w->buf + rel, n);
    pthread_mutex_unlock(&d->lock);
    return r;
}

/* Writes one run of granules [I, J) of kind K. */
static int write_run(struct worker *w, const struct chunk *c, size_t i, size_t j, int k)
{
    struct copy_state *st = w->st;
    struct dk_image *d = st->a->dst;
    uint64_t rel = (uint64_t)i * st->gran;
    uint64_t len = DK_MIN((uint64_t)(j - i) * st->gran, c->len - rel);
    if (k == G_ZERO)
        return dk_pwrite_zeroes(d, c->off + rel, len, st->diff ? 0 : DK_ZERO_MAY_UNMAP);
    if (!st->compress)
        return dk_pwrite(d, w->buf + rel, (size_t)len, c->off + rel);
    for (size_t g = i; g < j; g++) {
        uint64_t gr = (uint64_t)g * st->gran;
        size_t n = (size_t)DK_MIN(st->gran, c->len - gr);
        /* Compressed clusters are whole clusters, or the image's last one:
         * a partial cluster elsewhere (input shorter than the output) is
         * written plainly. */
        int r = n < st->gran && c->off + gr + n != dk_image_size(d)
            ? dk_pwrite(d, w->buf + gr, n, c->off + gr)
            : write_compressed(w, c->off + gr, g, n, gr);
        if (r < 0)
            return r;
    }
    return 0;
}

static int write_chunk(struct worker *w, const struct chunk *c)
{
    struct copy_state *st = w->st;
    struct dk_image *d = st->a->dst;
    int r = 0;
    if (c->zero && !st->diff)
        r = dk_pwrite_zeroes(d, c->off, c->len, DK_ZERO_MAY_UNMAP);
    else {
        size_t n = (size_t)dk_div_round_up(c->len, st->gran);
        for (size_t i = 0; i < n && r >= 0;) {
            size_t j = i + 1;
            while (j < n && w->kind[j] == w->kind[i])
                j++;
            if (w->kind[i] != G_SKIP)
                r = write_run(w, c, i, j, w->kind[i]);
            i = j;
        }
    }
    return r < 0 ? fail_img(st, d, r) : 0;
}

/* -C: copies [OFF, OFF+N) of file extent X into the raw destination with
 * copy_file_range; returns the bytes done (short when the kernel cannot
 * offload between these files: the caller copies the rest) or -errno. */
static int64_t offload_ext(struct copy_state *st, const struct src_ext *x, uint64_t off,
                           uint64_t n)
{
    struct dk_file *df = st->a->dst->file;
    loff_t so = (loff_t)(x->host + (off - x->off)), dofs = (loff_t)off;
    uint64_t done = 0;
    while (done < n) {
        ssize_t k = copy_file_range(x->file->fd, &so, df->fd, &dofs, (size_t)(n - done), 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP ||
                      errno == EINVAL || errno == ETXTBSY || errno == EBADF)) {
            __atomic_store_n(&st->offload, 0, __ATOMIC_RELAXED);   /* fall back */
            break;
        }
        if (k < 0)
            return dk_set_error(st->a->dst, -errno, "copy_file_range from %s: %s",
                                x->file->path, strerror(errno));
        if (k == 0)
            break;          /* source shorter than its mapping: read the rest */
        done += (uint64_t)k;
    }
    return (int64_t)done;
}

/* Writes data chunk C by offload; what offload cannot do is read into
 * W->buf and written (zeros past a short source read as zeros). */
static int write_offload(struct worker *w, const struct chunk *c)
{
    struct copy_state *st = w->st;
    struct dk_image *d = st->a->dst;
    uint64_t end = c->off + c->len;
    for (unsigned k = 0; k < c->next; k++) {
        const struct src_ext *x = &c->ext[k];
        uint64_t off = DK_MAX(x->off, c->off), e = DK_MIN(x->off + x->len, end);
        if (off >= e)
            continue;
        int r = 0;
        if (x->zero) {
            if (!st->target_zero)
                r = dk_pwrite_zeroes(d, off, e - off, st->sparse ? DK_ZERO_MAY_UNMAP : 0);
            if (r < 0)
                return fail_img(st, d, r);
            continue;
        }
        int64_t done = offload_ext(st, x, off, e - off);
        if (done < 0)
            return fail_img(st, d, (int)done);
        for (off += (uint64_t)done; off < e;) {
            uint64_t n = DK_MIN(e - off, (uint64_t)st->chunk_max);
            if (read_ext(st, x, w->buf, off, n) < 0)
                return st->err;
            if ((r = dk_pwrite(d, w->buf, (size_t)n, off)) < 0)
                return fail_img(st, d, r);
            off += n;
        }
    }
    return 0;
}

/* -r: waits until writing BYTES more keeps the data rate at the limit. */
static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void throttle(struct copy_state *st, uint64_t bytes)
{
    uint64_t rate = st->a->rate_limit;
    if (!rate || !bytes)
        return;
    pthread_mutex_lock(&st->mu);
    st->rl_bytes += bytes;
    long double due = st->rl_start_ns + (long double)st->rl_bytes * 1e9L / (long double)rate;
    pthread_mutex_unlock(&st->mu);
    if (due > 9.2e18L)
        due = 9.2e18L;
    struct timespec t = { .tv_sec = (time_t)(due / 1e9L),
                          .tv_nsec = (long)(due - (long double)(uint64_t)(due / 1e9L) * 1e9L) };
    if (t.tv_nsec < 0 || t.tv_nsec >= 1000000000)
        t.tv_nsec = 0;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
        ;
}

/* ------------------------------------------------------------- workers */

static void *worker_main(void *opaque)
{
    struct worker *w = opaque;
    struct copy_state *st = w->st;
    struct chunk c;
    for (;;) {
        pthread_mutex_lock(&st->mu);
        int more = plan_next(st, &c);
        pthread_mutex_unlock(&st->mu);
        if (!more)
            break;
        int r = prepare(w, &c);
        pthread_mutex_lock(&st->mu);
        while (st->in_order && st->write_seq != c.seq && !st->err)
            pthread_cond_wait(&st->cv, &st->mu);
        bool stop = st->err != 0 || r < 0;
        pthread_mutex_unlock(&st->mu);
        if (stop)
            break;
        if (r > 0)
            throttle(st, c.zero ? 0 : c.len);
        if (r == 2 && write_offload(w, &c) < 0)
            break;
        if (r == 1 && write_chunk(w, &c) < 0)
            break;
        pthread_mutex_lock(&st->mu);
        st->write_seq++;
        st->done += c.len;
        if (st->a->progress)
            st->a->progress(st->a->progress_opaque, st->done, st->total);
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
    }
    return NULL;
}

/* Chunk buffers: 2 MiB aligned and backed by transparent huge pages when
 * the kernel allows it, which makes the copies in and out of the kernel
 * cheaper (fewer TLB misses) than with 4 KiB pages. */
static uint8_t *buf_alloc(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, HUGE_ALIGN, len))
        return NULL;
    madvise(p, len, MADV_HUGEPAGE);   /* advice only: failure is fine */
    return p;
}

static void worker_free(struct worker *w)
{
    free(w->buf);
    free(w->bbuf);
    free(w->cbuf);
    free(w->kind);
    free(w->clen);
}

static int worker_init(struct worker *w, struct copy_state *st)
{
    size_t ngran = st->chunk_max / st->gran + 1;
    memset(w, 0, sizeof(*w));
    w->st = st;
    w->buf = buf_alloc(st->chunk_max);
    w->kind = malloc(ngran);
    if (st->diff)
        w->bbuf = buf_alloc(st->chunk_max);
    if (st->compress) {
        w->cbuf = buf_alloc(st->chunk_max);
        w->clen = calloc(ngran, sizeof(*w->clen));
    }
    if (!w->buf || !w->kind || (st->diff && !w->bbuf) ||
        (st->compress && (!w->cbuf || !w->clen))) {
        worker_free(w);
        return -ENOMEM;
    }
    return 0;
}

/* --------------------------------------------------------------- setup */

static unsigned thread_count(const struct copy_state *st, unsigned asked)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = asked ? DK_MIN(asked, (unsigned)THREADS_MAX) : THREADS_DEFAULT;
    /* Compression scales with CPUs. Without it the work is copies: reads
     * run in parallel (src_read_one), writes one at a time in guest order,
     * so a few workers more than CPUs keep reads ahead of the writer;
     * beyond that, workers only cost buffers. */
    if (!asked && ncpu > 0)
        n = DK_MIN(n, st->compress ? (unsigned)ncpu : DK_MAX(4u, (unsigned)ncpu + 2));
    uint64_t chunks = st->total / st->chunk_max + 1;
    if (n > chunks)
        n = (unsigned)chunks;
    return n ? n : 1;
}

static int setup(struct copy_state *st, const struct dk_copy_args *a, struct dk_error *err)
{
    struct dk_image *d = a->dst;
    st->a = a;
    st->compress = a->flags & DK_COPY_COMPRESS;
    st->diff = a->dst_backing != NULL;
    st->target_zero = a->flags & DK_COPY_TARGET_ZERO;
    st->sparse = !(a->flags & DK_COPY_NO_SPARSE);
    st->in_order = !(a->flags & DK_COPY_OUT_OF_ORDER);
    st->salvage = a->flags & DK_COPY_SALVAGE;
    if (!a->nsrc || !d)
        return dk_error_set(err, -EINVAL, "copy: no source or no destination");
    if ((a->flags & DK_COPY_OFFLOAD) && st->compress)
        return dk_error_set(err, -EINVAL, "Cannot enable copy offloading when -c is used");
    if ((a->flags & DK_COPY_OFFLOAD) && st->salvage)
        return dk_error_set(err, -EINVAL, "Cannot use copy offloading in salvaging mode");
    /* Offload needs guest offset == file offset on the destination: raw. */
    st->offload = (a->flags & DK_COPY_OFFLOAD) && !st->diff && d->drv == &dk_drv_raw &&
                  d->file && !d->read_only;
    st->rl_start_ns = now_ns();
    if (st->compress && (!d->drv->compress || !d->drv->write_compressed))
        return dk_error_set(err, -ENOTSUP, "Compression not supported for this file format");
    if (st->compress && d->drv->compress(d, NULL, 0, NULL, 0) < 0)
        return dk_error_set(err, -ENOTSUP, "%s", dk_image_errmsg(d));
    st->starts = calloc(a->nsrc + 1, sizeof(*st->starts));
    if (!st->starts)
        return dk_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < a->nsrc; i++)
        if (dk_add_overflow(st->starts[i], dk_image_size(a->src[i]), &st->starts[i + 1]))
            return dk_error_set(err, -EFBIG, "copy: total size of the sources overflows");
    st->total = st->starts[a->nsrc];
    if (st->total > dk_image_size(d))
        return dk_error_set(err, -ENOSPC,
            "%s: destination (%llu bytes) is smaller than the source (%llu bytes)",
            dk_image_filename(d), (unsigned long long)dk_image_size(d),
            (unsigned long long)st->total);

    uint64_t sparse = a->sparse_size ? a->sparse_size : SPARSE_DEFAULT;
    if (sparse % 512 || sparse > (1u << 30))
        return dk_error_set(err, -EINVAL,
            "sparse size %llu must be a multiple of 512 and at most 1 GiB",
            (unsigned long long)sparse);
    uint64_t cluster = (st->compress || st->diff) ? dk_image_cluster_size(d) : 0;
    if (cluster && !dk_is_pow2(cluster))
        return dk_error_set(err, -EINVAL, "destination cluster size %llu is not a power of 2",
                            (unsigned long long)cluster);
    st->gran = cluster ? cluster : sparse;
    st->align = st->gran;
    st->chunk_max = (size_t)DK_MAX((uint64_t)CHUNK_DEFAULT, st->gran);
    st->chunk_max = (size_t)(st->chunk_max / st->gran * st->gran);
    return 0;
}

int dk_copy(const struct dk_copy_args *a, struct dk_error *err)
{
    struct copy_state st;
    memset(&st, 0, sizeof(st));
    if (err)
        err->code = 0, err->msg[0] = '\0';
    int r = setup(&st, a, err);
    if (r < 0) {
        free(st.starts);
        return r;
    }
    pthread_mutex_init(&st.mu, NULL);
    pthread_mutex_init(&st.salvage_mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    unsigned n = thread_count(&st, a->threads);
    struct worker *w = calloc(n, sizeof(*w));
    unsigned started = 0;
    r = w ? 0 : -ENOMEM;
    for (unsigned i = 0; i < n && r == 0; i++) {
        r = worker_init(&w[i], &st);
        if (r == 0 && i > 0 && pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
            worker_free(&w[i]);
            r = -EAGAIN;
        }
        if (r == 0)
            started++;
    }
    if (r < 0)
        fail(&st, r, "copy: cannot start workers: out of memory");
    else
        worker_main(&w[0]);
    for (unsigned i = 1; i < started; i++)
        pthread_join(w[i].tid, NULL);
    for (unsigned i = 0; i < started; i++)
        worker_free(&w[i]);
    free(w);
    if (!st.err && dk_flush(a->dst) < 0)
        fail_img(&st, a->dst, dk_image_errno(a->dst));
    r = st.err;
    if (r < 0)
        dk_error_set(err, r, "%s", st.errmsg);
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.salvage_mu);
    pthread_mutex_destroy(&st.mu);
    free(st.starts);
    return r;
}
