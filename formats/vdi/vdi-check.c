/* vdi-check.c - consistency check and repair of the VDI block map.
 *
 * What counts as what (qemu-img check exit codes: 2 corruption, 3 leaks):
 *  - corruption: a map entry beyond blocks_in_image, two entries sharing a
 *    data block, an entry whose data lies past the end of the file, or a
 *    blocks_allocated count below the highest data block in use (the next
 *    allocation would overwrite a live block);
 *  - leak: a data block index below max(blocks_allocated, highest in use,
 *    whole blocks in the file) that no entry refers to. qemu-img check
 *    calls any count mismatch a corruption; we call a count that is only
 *    too high a leak, as it loses space but no data.
 * Repair (qemu-img 7.2 repairs nothing for VDI):
 *  - DK_FIX_ERRORS clears bad entries (the block then reads as zeros: its
 *    data is unknown or belongs to another block) and raises a count that
 *    is too low;
 *  - DK_FIX_LEAKS compacts: the highest data blocks are copied into the
 *    holes (data first, synced, then the entry moves), the count becomes
 *    the number of referenced blocks and a dynamic file is cut after them,
 *    which leaves what qemu-img check accepts.
 * Results follow qemu's convention: corruptions/leaks count what remains,
 * *_fixed what was repaired.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdi.h"

#define NO_OWNER UINT32_MAX

struct check_ctx {
    struct dk_image *img;
    struct vdi_state *s;
    unsigned fix;
    struct dk_check_result *res;
    dk_report_fn report;
    void *opaque;
    uint32_t *owner;        /* data block index -> guest block, or NO_OWNER */
    uint32_t referenced;    /* entries pointing at a valid block */
    uint32_t top;           /* highest referenced index + 1 */
    bool map_changed;
};

static void say(struct check_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(struct check_ctx *c, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (c->report)
        c->report(c->opaque, line);
}

/* Counts one corruption for entry B; clears the entry when fixing. */
static void bad_entry(struct check_ctx *c, uint32_t b, const char *what)
{
    if (c->fix & DK_FIX_ERRORS) {
        say(c, "Repairing block %" PRIu32 ": %s (entry cleared)", b, what);
        c->s->map[b] = VDI_MAP_UNALLOCATED;
        c->map_changed = true;
        c->res->corruptions_fixed++;
    } else {
        say(c, "ERROR: block %" PRIu32 ": %s", b, what);
        c->res->corruptions++;
    }
}

static void scan_entries(struct check_ctx *c)
{
    struct vdi_state *s = c->s;
    uint32_t n = s->hdr.blocks_in_image;
    char what[128];
    for (uint32_t b = 0; b < n; b++) {
        uint32_t e = s->map[b];
        if (!vdi_entry_allocated(e))
            continue;
        if (e >= n) {
            snprintf(what, sizeof(what), "data block index %" PRIu32 " too large", e);
            bad_entry(c, b, what);
        } else if (c->owner[e] != NO_OWNER) {
            snprintf(what, sizeof(what), "data block index %" PRIu32 " also used by block %"
                     PRIu32, e, c->owner[e]);
            bad_entry(c, b, what);
        } else if (!dk_range_inside(vdi_block_host(s, e), vdi_block_need(s, b),
                                    s->file_size)) {
            snprintf(what, sizeof(what), "data block %" PRIu32 " lies beyond the end of "
                     "the file", e);
            bad_entry(c, b, what);
        } else {
            c->owner[e] = b;
            c->referenced++;
            c->top = DK_MAX(c->top, e + 1);
        }
    }
}

/* Moves data block FROM to the free index TO and repoints its entry. */
static int move_block(struct check_ctx *c, uint32_t from, uint32_t to)
{
    struct vdi_state *s = c->s;
    size_t bs = s->hdr.block_size;
    if (!s->bounce && !(s->bounce = malloc(bs)))
        return dk_set_error(c->img, -ENOMEM, "out of memory");
    int r = dk_file_pread_eof0(c->img->file, s->bounce, bs, vdi_block_host(s, from));
    if (r == 0)
        r = dk_file_pwrite(c->img->file, s->bounce, bs, vdi_block_host(s, to));
    if (r == 0)
        r = dk_file_flush(c->img->file);
    if (r < 0)
        return dk_set_error(c->img, r, "vdi: moving data block %" PRIu32 ": %s", from,
                            strerror(-r));
    uint32_t b = c->owner[from];
    s->map[b] = to;
    c->owner[to] = b;
    c->owner[from] = NO_OWNER;
    /* The entry must reach the disk before a later move reuses FROM. */
    return vdi_write_map(c->img, b, b + 1);
}

/* Packs the referenced blocks into indices 0..referenced-1. */
static int compact(struct check_ctx *c)
{
    uint32_t hole = 0, t = c->top;
    for (;;) {
        while (hole < t && c->owner[hole] != NO_OWNER)
            hole++;
        while (t > hole && c->owner[t - 1] == NO_OWNER)
            t--;
        if (hole >= t)
            break;
        int r = move_block(c, t - 1, hole);
        if (r < 0)
            return r;
        t--;
    }
    c->top = c->referenced;
    return 0;
}

static void count_leaks(struct check_ctx *c, uint32_t *leaks)
{
    struct vdi_state *s = c->s;
    uint64_t in_file = s->file_size > s->hdr.offset_data
                       ? (s->file_size - s->hdr.offset_data) / s->stride : 0;
    uint64_t end = DK_MAX(DK_MAX((uint64_t)s->hdr.blocks_allocated, c->top), in_file);
    end = DK_MIN(end, (uint64_t)s->hdr.blocks_in_image);
    *leaks = 0;
    for (uint32_t i = 0; i < end; i++)
        if (c->owner[i] == NO_OWNER)
            (*leaks)++;
}

/* Repairs leaks by compaction and fixes the count; writes map and header. */
static int repair(struct check_ctx *c, uint32_t leaks)
{
    struct vdi_state *s = c->s;
    int r;
    if (c->map_changed &&
        (r = vdi_write_map(c->img, 0, s->hdr.blocks_in_image)) < 0)
        return r;
    /* With corruptions left, entries may point at holes: do not move blocks. */
    if ((c->fix & DK_FIX_LEAKS) && leaks && !c->res->corruptions) {
        if ((r = compact(c)) < 0)
            return r;
        s->hdr.blocks_allocated = c->referenced;
        if (s->hdr.image_type == VDI_TYPE_DYNAMIC)
            s->trunc_pending = true;
        c->res->leaks_fixed += leaks;
        say(c, "Repaired %" PRIu32 " leaked blocks", leaks);
    } else if (s->hdr.blocks_allocated < c->top && (c->fix & DK_FIX_ERRORS)) {
        s->hdr.blocks_allocated = c->top;
    }
    s->next_index = DK_MAX(s->hdr.blocks_allocated, c->top);
    s->hdr_dirty = true;
    if ((r = vdi_flush(c->img)) < 0)
        return r;
    return vdi_scan_map(c->img);
}

static int run_check(struct check_ctx *c)
{
    struct vdi_state *s = c->s;
    scan_entries(c);
    if (s->hdr.blocks_allocated < c->top) {
        bool fixing = c->fix & DK_FIX_ERRORS;
        say(c, "%s: blocks allocated is %" PRIu32 " but data block %" PRIu32 " is in use",
            fixing ? "Repairing" : "ERROR", s->hdr.blocks_allocated, c->top - 1);
        if (fixing)
            c->res->corruptions_fixed++;
        else
            c->res->corruptions++;
    }
    uint32_t leaks;
    count_leaks(c, &leaks);
    if (leaks && !(c->fix & DK_FIX_LEAKS)) {
        say(c, "Leaked blocks: %" PRIu32 " data blocks are not referenced (blocks "
            "allocated %" PRIu32 ", referenced %" PRIu32 ")", leaks,
            s->hdr.blocks_allocated, c->referenced);
        c->res->leaks += leaks;
    }
    if (!c->fix || (!c->map_changed && !leaks && s->hdr.blocks_allocated >= c->top))
        return 0;
    return repair(c, leaks);
}

int vdi_check(struct dk_image *img, unsigned fix, struct dk_check_result *res,
              dk_report_fn report, void *opaque)
{
    struct vdi_state *s = img->priv;
    uint32_t n = s->hdr.blocks_in_image;
    struct check_ctx c = { .img = img, .s = s, .fix = fix, .res = res,
                           .report = report, .opaque = opaque };
    c.owner = malloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    if (!c.owner)
        return dk_set_error(img, -ENOMEM, "out of memory");
    memset(c.owner, 0xff, (size_t)n * sizeof(uint32_t));
    /* Pending allocations first, so the file matches what we check. */
    int r = img->read_only ? 0 : vdi_flush(img);
    if (r == 0)
        r = run_check(&c);
    if (r < 0)
        res->check_errors++;
    free(c.owner);
    return r;
}
