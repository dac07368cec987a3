/* vdi-grow.c - growing a VDI whose block map has no room for the new
 * size: the first data blocks are moved to the end of the file and the
 * bigger map takes their place (what VBoxManage modifymedium --resize
 * does), in steps that each leave a valid image on disk.
 *
 * Layout rules (checked against the readers): VirtualBox VDI.cpp
 * vdiValidateHeader wants offset_bmap >= 512 and offset_data >=
 * offset_bmap + 4 * blocks_in_image; qemu block/vdi.c vdi_open checks
 * only sector alignment, disk_size <= blocks_in_image * block_size and
 * the block count, and reads the map wherever offset_bmap points. Both
 * therefore accept the map moved away from the header (a gap at 512..)
 * and slack after it; so does vdi_header_validate. qemu (and VirtualBox)
 * allocate new blocks at index blocks_allocated, so an image they write to
 * must keep its data block indices dense (0..blocks_allocated-1); qemu-img
 * check wants every index < blocks_in_image, no index used twice and
 * blocks_allocated equal to the referenced count.
 *
 * Terms: n0 = old blocks_in_image, ba = blocks_allocated (the image must
 * be dense: check -r all compacts one that is not), stride = block_size +
 * block_extra, k = slots freed at the front (k * stride >= new map bytes),
 * m = min(ba, k) slots in use among them (moved), c0 = max(ba, k) the slot
 * of the first copy. Copy j of slot j (j < m) lands in slot c0 + j, so it
 * is slot c0 + j - k >= 0 after renumbering.
 *
 * Steps (each ends with fdatasync; "entries" are map entries):
 *  1. copy slots 0..m-1 to c0.. (past the data end: still unreferenced);
 *  2. with spare room in the old map for k more entries ("dummies" at
 *     positions n0..n0+k-1, past the disk size, so never guest-visible):
 *     write dummy j -> copy j (j < m) or slot j (m <= j < k), then the
 *     header with blocks_in_image n0 + k, blocks_allocated c0 + m: the
 *     image is dense again, the copies referenced by dummies. Without that
 *     room (the old map fills its last sector, e.g. qemu-made sizes that
 *     are multiples of 128 MiB): only blocks_allocated = c0 + m;
 *  3. dummy j -> slot j, then the guest entry that used slot j -> copy j
 *     (same data in both); now slots 0..k-1 are referenced by dummies only
 *     (or by nothing, without dummies);
 *  4. write the new map (indices - k, new entries free, or preallocated
 *     for static images) over slots 0..k-1, extend a static file;
 *  5. one header write: offset_bmap = old offset_data, offset_data += k *
 *     stride, blocks_allocated c0 + m - k, the new size and block count.
 * What a crash leaves: before 2's header write the old image (plus
 * unreferenced copies past its end); after 5 the new one. In between, with
 * dummies, an image of the old size whose hidden dummies hold k blocks:
 * qemu-img check clean, dense, safe for any writer. Without dummies, the
 * count is k above the referenced blocks in between: qemu-img check
 * reports "allocated blocks mismatch" (diskkit check: k leaked blocks),
 * but no data is lost and qemu or VirtualBox writing to it allocate past
 * the copies. (Keeping the count instead would pass qemu-img check but let
 * qemu's allocator, which takes index blocks_allocated, overwrite copy 0.)
 * Also between the two writes of step 3, slot j or copy j is used by a
 * guest entry and a dummy at once; the data are identical, diskkit ignores
 * the dummy, qemu-img check would count it.
 * Images without dummy room whose data fill the map (ba + k > n0, e.g. a
 * static 1 GiB image made by qemu-img) are refused: no intermediate state
 * exists that both readers accept. The next grow (vdi_grow_prepare) clears
 * hidden entries and compacts the data blocks, so resizing again after a
 * crash finishes the job.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vdi.h"

struct grow_plan {
    uint32_t n0, n;        /* blocks_in_image before, after */
    uint32_t ba;           /* blocks_allocated before (= referenced) */
    uint32_t k, m, c0;     /* see the file comment */
    uint32_t *pos;         /* pos[j]: guest entry using slot j, j < m */
    bool dummies;          /* the old map has room for k more entries */
    uint64_t old_od, new_od;
    uint64_t map_bytes;    /* new map, rounded up to a sector */
};

/* Writes V[0..CNT) little-endian at file offset OFF. */
static int put_entries(struct dk_image *img, const uint32_t *v, uint32_t cnt, uint64_t off)
{
    uint8_t buf[16384];
    const uint32_t per = sizeof(buf) / 4;
    for (uint32_t i = 0; i < cnt;) {
        uint32_t c = DK_MIN(per, cnt - i);
        for (uint32_t j = 0; j < c; j++)
            dk_put_le32(buf + j * 4, v[i + j]);
        int r = dk_file_pwrite(img->file, buf, (size_t)c * 4, off + (uint64_t)i * 4);
        if (r < 0)
            return dk_set_error(img, r, "vdi: cannot write the block map: %s", strerror(-r));
        i += c;
    }
    return 0;
}

static int sync_file(struct dk_image *img)
{
    int r = dk_file_flush(img->file);
    return r < 0 ? dk_set_error(img, r, "flush: %s", strerror(-r)) : 0;
}

/* Fills P for growing to N blocks; refuses what cannot be done safely. */
static int plan(struct dk_image *img, uint32_t n, struct grow_plan *p)
{
    struct vdi_state *s = img->priv;
    memset(p, 0, sizeof(*p));
    p->n0 = s->hdr.blocks_in_image;
    p->n = n;
    p->ba = s->hdr.blocks_allocated;
    p->old_od = s->hdr.offset_data;
    p->map_bytes = dk_round_up((uint64_t)n * 4, VDI_SECTOR_SIZE);
    p->k = (uint32_t)dk_div_round_up(p->map_bytes, s->stride);
    p->m = DK_MIN(p->ba, p->k);
    p->c0 = DK_MAX(p->ba, p->k);
    p->new_od = p->old_od + (uint64_t)p->k * s->stride;
    if (p->new_od > UINT32_MAX)
        return dk_set_error(img, -EFBIG, "vdi: the moved data would start at %" PRIu64
                            ", beyond the 32-bit data offset", p->new_od);
    /* Dense: every slot below ba used once (vdi_scan_map found no bad entry). */
    uint32_t used = 0;
    for (uint32_t b = 0; b < p->n0; b++)
        used += vdi_entry_allocated(s->map[b]);
    if (used != p->ba || s->next_index != p->ba)
        return dk_set_error(img, -EIO, "vdi: cannot move data blocks: blocks allocated "
                            "(%" PRIu32 ") does not match the %" PRIu32 " blocks in use; "
                            "repair with 'diskkit check -r all' first", p->ba, used);
    uint64_t room = (p->old_od - s->hdr.offset_bmap) / 4;
    p->dummies = room >= (uint64_t)p->n0 + p->k;
    if (!p->dummies && (uint64_t)p->c0 + p->m > p->n0)
        return dk_set_error(img, -ENOTSUP, "vdi: cannot grow: moving the map frees %" PRIu32
                            " data block(s) by copying them, but the map is full to its last "
                            "sector and %" PRIu32 " of its %" PRIu32 " blocks are allocated; "
                            "no crash-safe order exists, convert the image instead",
                            p->k, p->ba, p->n0);
    p->pos = malloc((size_t)(p->m ? p->m : 1) * sizeof(uint32_t));
    if (!p->pos)
        return dk_set_error(img, -ENOMEM, "out of memory");
    for (uint32_t b = 0; b < p->n0; b++)
        if (vdi_entry_allocated(s->map[b]) && s->map[b] < p->m)
            p->pos[s->map[b]] = b;
    return 0;
}

/* Step 1: copies slots 0..m-1 to c0.. through the bounce buffer. */
static int copy_front(struct dk_image *img, const struct grow_plan *p)
{
    struct vdi_state *s = img->priv;
    size_t bs = s->hdr.block_size;
    if (!s->bounce && !(s->bounce = malloc(bs)))
        return dk_set_error(img, -ENOMEM, "out of memory");
    for (uint32_t j = 0; j < p->m; j++) {
        uint64_t from = p->old_od + (uint64_t)j * s->stride;
        uint64_t to = p->old_od + (uint64_t)(p->c0 + j) * s->stride;
        for (uint64_t done = 0; done < s->stride;) {
            size_t len = (size_t)DK_MIN((uint64_t)bs, s->stride - done);
            int r = dk_file_pread_eof0(img->file, s->bounce, len, from + done);
            if (r == 0)
                r = dk_file_pwrite(img->file, s->bounce, len, to + done);
            if (r < 0)
                return dk_set_error(img, r, "vdi: moving data block %" PRIu32 ": %s", j,
                                    strerror(-r));
            done += len;
        }
    }
    uint64_t end = p->old_od + (uint64_t)(p->c0 + p->m) * s->stride;
    s->file_size = DK_MAX(s->file_size, end);
    return sync_file(img);
}

/* Step 2: dummies at n0..n0+k-1 referencing the copies and the unused
 * front slots, made visible to the count by the header. */
static int add_dummies(struct dk_image *img, const struct grow_plan *p)
{
    struct vdi_state *s = img->priv;
    for (uint32_t j = 0; j < p->k; j++)
        s->map[p->n0 + j] = j < p->m ? p->c0 + j : j;
    int r = put_entries(img, s->map + p->n0, p->k, s->hdr.offset_bmap + (uint64_t)p->n0 * 4);
    if (r == 0)
        r = sync_file(img);
    if (r < 0)
        return r;
    s->hdr.blocks_in_image = p->n0 + p->k;
    s->hdr.blocks_allocated = p->c0 + p->m;
    if ((r = vdi_write_header(img)) == 0)
        r = sync_file(img);
    if (r < 0) {
        s->hdr.blocks_in_image = p->n0;
        s->hdr.blocks_allocated = p->ba;
    }
    return r;
}

/* Step 2 without room for dummies: only the count covers the copies, so no
 * writer can reuse their slots; the front slots are leaked until step 5. */
static int raise_count(struct dk_image *img, const struct grow_plan *p)
{
    struct vdi_state *s = img->priv;
    s->hdr.blocks_allocated = p->c0 + p->m;
    int r = vdi_write_header(img);
    if (r == 0)
        r = sync_file(img);
    if (r < 0)
        s->hdr.blocks_allocated = p->ba;
    return r;
}

/* Step 3: the guest entries move to the copies; the dummies, if any, take
 * the front slots. */
static int repoint(struct dk_image *img, const struct grow_plan *p)
{
    struct vdi_state *s = img->priv;
    int r;
    if (p->dummies && p->m) {
        for (uint32_t j = 0; j < p->m; j++)
            s->map[p->n0 + j] = j;
        r = put_entries(img, s->map + p->n0, p->m, s->hdr.offset_bmap + (uint64_t)p->n0 * 4);
        if (r < 0)
            return r;
    }
    for (uint32_t j = 0; j < p->m; j++) {
        s->map[p->pos[j]] = p->c0 + j;
        r = put_entries(img, s->map + p->pos[j], 1,
                        s->hdr.offset_bmap + (uint64_t)p->pos[j] * 4);
        if (r < 0)
            return r;
    }
    return sync_file(img);
}

/* Step 4: the new map NM (N entries), renumbered, over the front slots.
 * Static images get their new blocks allocated after the last one, the
 * file extended. *BA is the new count. */
static int write_moved_map(struct dk_image *img, const struct grow_plan *p, uint32_t *nm,
                           uint32_t *ba)
{
    struct vdi_state *s = img->priv;
    bool is_static = s->hdr.image_type == VDI_TYPE_STATIC;
    *ba = p->c0 + p->m - p->k;
    for (uint32_t b = 0; b < p->n; b++) {
        uint32_t e = b < p->n0 ? s->map[b] : VDI_MAP_UNALLOCATED;
        if (b >= p->n0)
            e = is_static ? (*ba)++ : VDI_MAP_UNALLOCATED;
        else if (vdi_entry_allocated(e) && e < p->k)   /* step 3 moved them all */
            return dk_corrupt(img, "vdi: block map entry %" PRIu32 " still uses data "
                              "block %" PRIu32 " after the move", b, e);
        else if (vdi_entry_allocated(e))
            e -= p->k;
        nm[b] = e;
    }
    int r = put_entries(img, nm, p->n, p->old_od);
    uint64_t tail = p->map_bytes - (uint64_t)p->n * 4;
    if (r == 0 && tail) {
        uint8_t pad[VDI_SECTOR_SIZE] = { 0 };
        r = dk_file_pwrite(img->file, pad, (size_t)tail, p->old_od + (uint64_t)p->n * 4);
        if (r < 0)
            return dk_set_error(img, r, "vdi: cannot write the block map: %s", strerror(-r));
    }
    uint64_t end = p->new_od + (uint64_t)*ba * s->stride;
    if (r == 0 && is_static && end > s->file_size) {
        r = dk_file_truncate(img->file, end);
        if (r < 0)
            return dk_set_error(img, r, "vdi: cannot grow the file: %s", strerror(-r));
        s->file_size = end;
    }
    return r < 0 ? r : sync_file(img);
}

/* Step 5: the header switch, one sector. On failure the handle keeps the
 * old header (the sector is either old or new on disk). */
static int switch_header(struct dk_image *img, const struct grow_plan *p, uint32_t ba,
                         uint64_t nsize)
{
    struct vdi_state *s = img->priv;
    struct vdi_header old = s->hdr;
    s->hdr.offset_bmap = (uint32_t)p->old_od;
    s->hdr.offset_data = (uint32_t)p->new_od;
    s->hdr.blocks_in_image = p->n;
    s->hdr.blocks_allocated = ba;
    s->hdr.disk_size = nsize;
    int r = vdi_write_header(img);
    if (r == 0)
        r = sync_file(img);
    if (r < 0)
        s->hdr = old;
    return r;
}

/* Runs steps 1-5. The handle's header and map follow what is on disk
 * after each step, so after an error it still describes the file. */
static int run_steps(struct dk_image *img, const struct grow_plan *p, uint64_t nsize)
{
    struct vdi_state *s = img->priv;
    uint32_t ba = 0;
    int r = 0;
    if (p->m && (r = copy_front(img, p)) < 0)
        return r;
    if (p->m && (r = p->dummies ? add_dummies(img, p) : raise_count(img, p)) < 0)
        return r;
    if (p->m && (r = repoint(img, p)) < 0)
        return r;
    uint32_t *nm = malloc((size_t)p->n * 4);
    if (!nm)
        return dk_set_error(img, -ENOMEM, "out of memory for a %" PRIu32 "-entry block map",
                            p->n);
    if ((r = write_moved_map(img, p, nm, &ba)) < 0 ||
        (r = switch_header(img, p, ba, nsize)) < 0) {
        free(nm);
        return r;
    }
    free(s->map);
    s->map = nm;
    return 0;
}

int vdi_grow_moving(struct dk_image *img, uint32_t n, uint64_t nsize)
{
    struct vdi_state *s = img->priv;
    struct grow_plan p;
    int r = plan(img, n, &p);
    if (r < 0) {
        free(p.pos);
        return r;
    }
    size_t entries = DK_MAX((size_t)n, (size_t)p.n0 + p.k);
    uint32_t *m = realloc(s->map, entries * 4);
    if (!m) {
        free(p.pos);
        return dk_set_error(img, -ENOMEM, "out of memory for a %" PRIu32 "-entry block map", n);
    }
    s->map = m;
    for (size_t i = p.n0; i < entries; i++)
        s->map[i] = VDI_MAP_UNALLOCATED;
    r = run_steps(img, &p, nsize);
    free(p.pos);
    int r2 = vdi_scan_map(img);
    return r < 0 ? r : r2;
}

/* Makes the image dense and free of hidden entries before a grow.
 * Entries past the guest size that hold data blocks (the dummies of a grow
 * interrupted after step 2) would become visible, with stale data, when
 * the disk grows over them; indices that are not dense (a grow without
 * dummies interrupted after step 3) would make the front slots look used.
 * Both are undone by the repair of vdi-check.c: hidden entries cleared,
 * then the data blocks compacted to 0..count-1 (crash-safe, see there). */
int vdi_grow_prepare(struct dk_image *img)
{
    struct vdi_state *s = img->priv;
    uint64_t gb = dk_div_round_up(vdi_guest_size(&s->hdr), s->hdr.block_size);
    bool hidden = false;
    uint32_t used = 0;
    for (uint64_t b = 0; b < s->hdr.blocks_in_image; b++) {
        if (!vdi_entry_allocated(s->map[b]))
            continue;
        if (b < gb) {
            used++;
            continue;
        }
        s->map[b] = VDI_MAP_UNALLOCATED;
        vdi_mark_dirty(s, (uint32_t)b);
        hidden = true;
    }
    if (!hidden && used == s->hdr.blocks_allocated && s->next_index == used)
        return 0;
    struct dk_check_result res = { 0 };
    int r = vdi_check(img, DK_FIX_LEAKS | DK_FIX_ERRORS, &res, NULL, NULL);
    if (r == 0 && (res.corruptions || res.leaks))
        r = dk_set_error(img, -EIO, "vdi: cannot compact the data blocks before growing; "
                         "run 'diskkit check -r all'");
    return r;
}
