/* chain.c - operations across a backing chain: safe rebase and commit.
 *
 * rebase (qemu-img rebase without -u): the top layer must read the same
 * before and after its backing file is switched. For every range that the
 * top layer leaves unallocated, the content seen through the old chain is
 * compared with the content of the new backing image (zeros past its end,
 * or everywhere when detaching); clusters that differ are copied from the
 * old chain into the top layer. Ranges the top layer already stores are
 * never touched. Only then is the header rewritten (dk_set_backing), so a
 * failure half-way leaves an image that still reads correctly through its
 * old backing file.
 *
 * commit (qemu-img commit): every range stored in a layer above the base
 * (the first backing layer, or a deeper one: qemu-img commit -b) is read
 * through the top image and written into the base, which the caller opened
 * writable (DK_OPEN_BACKING_RW, or dk_open_chain_rw for a deeper base);
 * ranges where an intermediate layer is shorter than the top read as zeros
 * and are committed as zeros. The base grows first when the top is larger
 * and never shrinks. Then, for a commit into the first backing layer and
 * unless DK_COMMIT_KEEP, the top layer is emptied with a discard over the
 * whole image and verified to be unallocated everywhere (reads fall through
 * to the committed data). A deeper commit leaves the top as it is (qemu:
 * -b implies -d); the layers in between keep their old data.
 *
 * Invariants:
 *  1. Data moves in chunks of at most CHAIN_CHUNK bytes, aligned to the
 *     image's cluster size where the extents allow, so memory stays bounded.
 *  2. Nothing is written before all reads of a chunk succeeded.
 *
 * Known gap: the top layer is emptied by discard, so formats without
 * discard support report an error after the data was committed (as qemu
 * does for formats without make_empty).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CHAIN_CHUNK (1u << 20)   /* bytes read/compared per step */

static void report(dk_progress_fn progress, void *opaque, uint64_t done, uint64_t total)
{
    if (progress)
        progress(opaque, done, total);
}

/* Moves an error from another handle onto IMG, keeping the message. */
static int carry(struct dk_image *img, struct dk_image *from, int r)
{
    if (from != img)
        dk_set_error(img, r, "%s", dk_image_errmsg(from));
    return r;
}

/* Reads what NB (new backing, may be NULL) holds at OFF; zeros past its end. */
static int new_backing_read(struct dk_image *img, struct dk_image *nb, uint8_t *buf,
                            size_t len, uint64_t off)
{
    size_t n = 0;
    if (nb && off < nb->size) {
        n = (size_t)DK_MIN((uint64_t)len, nb->size - off);
        int r = dk_pread(nb, buf, n, off);
        if (r < 0)
            return carry(img, nb, r);
    }
    memset(buf + n, 0, len - n);
    return 0;
}

/* Writes OLD[0..len) at OFF into IMG's top layer (zeros efficiently). */
static int write_run(struct dk_image *img, const uint8_t *old, size_t len, uint64_t off)
{
    if (dk_is_zero(old, len))
        return dk_pwrite_zeroes(img, off, len, 0);
    return dk_pwrite(img, old, len, off);
}

/* One unallocated range of the top layer, at most CHAIN_CHUNK bytes: copy
 * the clusters whose old content differs from the new backing's. */
static int rebase_chunk(struct dk_image *img, struct dk_image *nb, uint8_t *old,
                        uint8_t *new, size_t len, uint64_t off, uint64_t cs)
{
    int r = dk_pread(img, old, len, off);
    if (r < 0)
        return r;
    r = new_backing_read(img, nb, new, len, off);
    if (r < 0)
        return r;
    size_t run_start = 0, run_len = 0;
    for (size_t pos = 0; pos < len;) {
        /* Step to the next cluster boundary (absolute), or the chunk end. */
        uint64_t next = dk_round_down(off + pos, cs) + cs;
        size_t n = (size_t)DK_MIN((uint64_t)(len - pos), next - (off + pos));
        bool differs = memcmp(old + pos, new + pos, n) != 0;
        if (differs) {
            if (!run_len)
                run_start = pos;
            run_len += n;
        }
        if ((!differs || pos + n == len) && run_len) {
            r = write_run(img, old + run_start, run_len, off + run_start);
            if (r < 0)
                return r;
            run_len = 0;
        }
        pos += n;
    }
    return 0;
}

int dk_rebase(struct dk_image *img, struct dk_image *new_backing, const char *name,
              const char *fmt, dk_progress_fn progress, void *opaque)
{
    if (img->read_only)
        return dk_check_request(img, 0, 0, true);
    uint64_t cs = dk_image_cluster_size(img);
    if (!dk_is_pow2(cs) || cs > CHAIN_CHUNK)
        cs = 512;
    uint8_t *old = malloc(CHAIN_CHUNK), *new = malloc(CHAIN_CHUNK);
    int r = 0;
    if (!old || !new) {
        r = dk_set_error(img, -ENOMEM, "out of memory");
        goto out;
    }
    for (uint64_t off = 0; off < img->size;) {
        report(progress, opaque, off, img->size);
        struct dk_extent e;
        r = dk_block_status(img, off, img->size - off, DK_BS_THIS_LAYER, &e);
        if (r < 0)
            goto out;
        if (e.flags) {          /* stored in the top layer: keep as it is */
            off += e.length;
            continue;
        }
        uint64_t end = off + e.length;
        while (off < end) {
            /* Chunks end on CHAIN_CHUNK boundaries to keep reads aligned. */
            uint64_t lim = dk_round_down(off, CHAIN_CHUNK) + CHAIN_CHUNK;
            size_t n = (size_t)(DK_MIN(end, lim) - off);
            r = rebase_chunk(img, new_backing, old, new, n, off, cs);
            if (r < 0)
                goto out;
            off += n;
        }
    }
    r = dk_flush(img);
    if (r == 0)
        r = dk_set_backing(img, name, fmt);
    if (r == 0)
        report(progress, opaque, img->size, img->size);
out:
    free(old);
    free(new);
    return r;
}

/* ---------------------------------------------------------------- commit */

/* Finds how the range [OFF, OFF+*LEN) reads through the layers above BASE:
 * *ABOVE is set when some layer between IMG and BASE (BASE excluded) stores
 * it, *ZERO when the first such layer says it reads as zeros without data.
 * An intermediate layer shorter than OFF reads as zeros for the layers above
 * it, so it counts as storing zeros. *LEN shrinks to the run whose answer is
 * the same. */
static int status_above(struct dk_image *img, struct dk_image *base, uint64_t off,
                        uint64_t *len, bool *above, bool *zero)
{
    *above = *zero = false;
    for (struct dk_image *l = img; l && l != base; l = l->backing) {
        if (off >= l->size) {           /* past a shorter intermediate layer */
            *above = *zero = true;
            return 0;
        }
        *len = DK_MIN(*len, l->size - off);
        struct dk_extent e;
        int r = dk_block_status(l, off, *len, DK_BS_THIS_LAYER, &e);
        if (r < 0)
            return carry(img, l, r);
        *len = DK_MIN(*len, e.length);
        if (e.flags) {
            *above = true;
            *zero = !(e.flags & DK_BS_DATA) && (e.flags & DK_BS_ZERO);
            return 0;
        }
    }
    return 0;
}

/* Copies [OFF, OFF+LEN), as it reads through IMG, into BASE. */
static int commit_range(struct dk_image *img, struct dk_image *base, uint64_t off,
                        uint64_t len, bool zero, uint8_t *buf)
{
    if (zero) {
        /* Unmapping is only right when nothing below BASE shows through. */
        int r = dk_pwrite_zeroes(base, off, len, base->backing ? 0 : DK_ZERO_MAY_UNMAP);
        return r < 0 ? carry(img, base, r) : 0;
    }
    for (uint64_t end = off + len; off < end;) {
        size_t n = (size_t)DK_MIN((uint64_t)CHAIN_CHUNK, end - off);
        int r = dk_pread(img, buf, n, off);
        if (r < 0)
            return r;
        r = dk_pwrite(base, buf, n, off);
        if (r < 0)
            return carry(img, base, r);
        off += n;
    }
    return 0;
}

/* Deallocates every cluster of the top layer and checks that it worked. */
static int empty_top(struct dk_image *img)
{
    int r = dk_discard(img, 0, img->size);
    if (r == 0)
        r = dk_flush(img);
    for (uint64_t off = 0; r == 0 && off < img->size;) {
        struct dk_extent e;
        r = dk_block_status(img, off, img->size - off, DK_BS_THIS_LAYER, &e);
        if (r == 0 && e.flags)
            return dk_set_error(img, -ENOTSUP,
                "the data was committed, but format %s could not deallocate the "
                "top image's clusters to empty it (use -d to keep it)", img->drv->name);
        off += e.length;
    }
    return r;
}

struct dk_image *dk_chain_find(struct dk_image *img, const char *name, int *depth)
{
    char *want = realpath(name, NULL);
    struct dk_image *found = NULL;
    int d = 1;
    for (struct dk_image *l = img; l->backing && !found; l = l->backing, d++) {
        if (l->backing_name && !strcmp(l->backing_name, name)) {
            found = l->backing;
            break;
        }
        char *have = want ? realpath(l->backing->filename, NULL) : NULL;
        if (have && !strcmp(have, want))
            found = l->backing;
        free(have);
        if (found)
            break;
    }
    free(want);
    if (found && depth)
        *depth = d;
    return found;
}

int dk_commit_to(struct dk_image *img, struct dk_image *base, unsigned flags,
                 dk_progress_fn progress, void *opaque)
{
    if (!img->backing)
        return dk_set_error(img, -EINVAL, "Image does not have a backing file");
    struct dk_image *l = img->backing;
    while (l && l != base)
        l = l->backing;
    if (!base || !l)
        return dk_set_error(img, -EINVAL, "the commit target is not in the backing chain");
    /* Only a commit into the direct backing file may empty the top: with
     * layers in between, the emptied top would read their stale data. */
    bool empty = base == img->backing && !(flags & DK_COMMIT_KEEP);
    if (base->read_only || (empty && img->read_only))
        return dk_set_error(img, -EROFS,
            "commit needs the image and its backing file opened read-write");
    int r = 0;
    if (img->size > base->size && (r = dk_resize(base, img->size, NULL, 0)) < 0)
        return carry(img, base, r);
    uint8_t *buf = malloc(CHAIN_CHUNK);
    if (!buf)
        return dk_set_error(img, -ENOMEM, "out of memory");
    for (uint64_t off = 0; off < img->size;) {
        report(progress, opaque, off, img->size);
        uint64_t len = img->size - off;
        bool above, zero;
        r = status_above(img, base, off, &len, &above, &zero);
        if (r < 0)
            goto out;
        if (above && (r = commit_range(img, base, off, len, zero, buf)) < 0)
            goto out;
        off += len;
    }
    r = dk_flush(base);
    if (r < 0) {
        carry(img, base, r);
        goto out;
    }
    if (empty)
        r = empty_top(img);
    if (r == 0)
        report(progress, opaque, img->size, img->size);
out:
    free(buf);
    return r;
}

int dk_commit(struct dk_image *img, unsigned flags, dk_progress_fn progress, void *opaque)
{
    if (!img->backing)
        return dk_set_error(img, -EINVAL, "Image does not have a backing file");
    return dk_commit_to(img, img->backing, flags, progress, opaque);
}
