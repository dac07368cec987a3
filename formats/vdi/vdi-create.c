/* vdi-create.c - creating VDI images (dynamic and static), growing them,
 * and the info hook.
 *
 * create writes what qemu-img 7.2 writes: the QEMU header text, version
 * 1.1, header size 0x180, block map at 512, data at 512 + the map rounded
 * up to a sector, no geometry, 1 MiB blocks, random (version 4, GUID byte
 * order) image and last-snapshot UUIDs; the size is rounded up to 512.
 * Static images have every block allocated with the identity map and the
 * file sized to hold them (sparse with preallocation=off, the default;
 * reserved with falloc, written with full, as qemu does).
 *
 * Resize: qemu-img 7.2 cannot resize VDI at all. We grow in place when the
 * bigger block map fits in the space before the data, else vdi-grow.c
 * moves the first data blocks to the end and puts the map in their place
 * (as VirtualBox does). Static images get the new blocks allocated (the
 * file is extended sparse). Shrinking is refused.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdi.h"

static const char vdi_text[] = "<<< QEMU VM Virtual Disk Image >>>\n";

/* Fills H for a new image of SIZE bytes (already sector-aligned). */
static int new_header(struct vdi_header *h, uint64_t size, bool is_static)
{
    uint32_t blocks = (uint32_t)dk_div_round_up(size, VDI_BLOCK_SIZE_DEFAULT);
    memset(h, 0, sizeof(*h));
    memcpy(h->text, vdi_text, sizeof(vdi_text) - 1);
    h->signature = VDI_SIGNATURE;
    h->version = VDI_VERSION_1_1;
    h->header_size = VDI_HEADER_V1_SIZE;
    h->image_type = is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC;
    h->offset_bmap = VDI_HEADER_SECTOR;
    h->offset_data = VDI_HEADER_SECTOR +
                     (uint32_t)dk_round_up((uint64_t)blocks * 4, VDI_SECTOR_SIZE);
    h->sector_size = VDI_SECTOR_SIZE;
    h->disk_size = size;
    h->block_size = VDI_BLOCK_SIZE_DEFAULT;
    h->blocks_in_image = blocks;
    h->blocks_allocated = is_static ? blocks : 0;
    int r = dk_random_uuid(h->uuid_image, true);
    return r < 0 ? r : dk_random_uuid(h->uuid_last_snap, true);
}

/* Writes a map of N entries at OFF: identity when STATIC, else unallocated. */
static int write_new_map(struct dk_file *f, uint64_t off, uint32_t n, bool is_static)
{
    uint8_t buf[16384];
    const uint32_t per = sizeof(buf) / 4;
    for (uint32_t b = 0; b < n;) {
        uint32_t k = DK_MIN(per, n - b);
        for (uint32_t i = 0; i < k; i++)
            dk_put_le32(buf + i * 4, is_static ? b + i : VDI_MAP_UNALLOCATED);
        int r = dk_file_pwrite(f, buf, (size_t)k * 4, off + (uint64_t)b * 4);
        if (r < 0)
            return r;
        b += k;
    }
    return 0;
}

/* PREALLOC (off, falloc, full) applies to the data of static images only;
 * qemu ignores it for dynamic ones, and so do we. */
static int write_new_image(struct dk_file *f, const struct vdi_header *h,
                           const char *prealloc)
{
    uint8_t sector[VDI_HEADER_SECTOR] = { 0 };
    vdi_header_encode(h, sector);
    int r = f->is_blockdev ? 0 : dk_file_truncate(f, 0);
    if (r == 0)
        r = dk_file_pwrite(f, sector, sizeof(sector), 0);
    if (r == 0)
        r = write_new_map(f, h->offset_bmap, h->blocks_in_image,
                          h->image_type == VDI_TYPE_STATIC);
    uint64_t end = h->offset_data + (uint64_t)h->blocks_allocated * h->block_size;
    if (r == 0 && !f->is_blockdev)
        r = dk_file_truncate(f, end);
    uint64_t dlen = end - h->offset_data;
    if (r == 0 && dlen && prealloc && !strcmp(prealloc, "falloc"))
        r = dk_file_fallocate(f, h->offset_data, dlen);
    else if (r == 0 && dlen && prealloc && !strcmp(prealloc, "full"))
        r = dk_file_prealloc_full(f, h->offset_data, dlen);
    if (r == 0)
        r = dk_file_flush(f);
    return r;
}

int vdi_create(const struct dk_create_ctx *c)
{
    const char *st = dk_opts_get(c->opts, "static");
    bool is_static = st && dk_parse_bool(st) == 1;
    const char *prealloc = dk_opts_get(c->opts, "preallocation");
    if (prealloc && strcmp(prealloc, "off") && strcmp(prealloc, "falloc") &&
        strcmp(prealloc, "full"))
        return dk_error_set(c->err, -EINVAL, "Unsupported preallocation mode: %s", prealloc);
    uint64_t size = dk_round_up(c->size, VDI_SECTOR_SIZE);
    if (size < c->size || dk_div_round_up(size, VDI_BLOCK_SIZE_DEFAULT) > VDI_MAX_BLOCKS)
        return dk_error_set(c->err, -EINVAL, "Unsupported VDI image size (size is %" PRIu64
                            ", max supported is %" PRIu64 ")", c->size,
                            (uint64_t)VDI_MAX_BLOCKS * VDI_BLOCK_SIZE_DEFAULT);
    struct vdi_header h;
    int r = new_header(&h, size, is_static);
    if (r < 0)
        return dk_error_set(c->err, r, "cannot generate a UUID: %s", strerror(-r));
    int fd = open(c->filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return dk_error_set(c->err, -errno, "%s: %s", c->filename, strerror(errno));
    close(fd);
    struct dk_file *f;
    r = dk_file_open(&f, c->filename, true, c->err);
    if (r < 0)
        return r;
    r = write_new_image(f, &h, prealloc);
    if (r < 0)
        dk_error_set(c->err, r, "%s: %s", c->filename, strerror(-r));
    dk_file_close(f);
    return r;
}

/* ------------------------------------------------------------- resize */

/* Gives the new entries [OLD, N) their value: static images allocate them
 * (identity-like indices after the last one used) and grow the file. */
static int grow_entries(struct dk_image *img, uint32_t old, uint32_t n)
{
    struct vdi_state *s = img->priv;
    bool is_static = s->hdr.image_type == VDI_TYPE_STATIC;
    if (is_static && s->next_index > old)
        return dk_set_error(img, -ENOTSUP, "vdi: cannot grow this static image: data "
                            "block indices are in use beyond its block map");
    for (uint32_t b = old; b < n; b++)
        s->map[b] = is_static ? s->next_index++ : VDI_MAP_UNALLOCATED;
    if (!is_static)
        return 0;
    s->hdr.blocks_allocated += n - old;
    uint64_t end = s->hdr.offset_data + (uint64_t)s->next_index * s->stride;
    if (end > s->file_size) {
        int r = dk_file_truncate(img->file, end);
        if (r < 0)
            return dk_set_error(img, r, "vdi: cannot grow the file: %s", strerror(-r));
        s->file_size = end;
    }
    return 0;
}

int vdi_truncate(struct dk_image *img, uint64_t size, const char *prealloc, unsigned flags)
{
    struct vdi_state *s = img->priv;
    (void)flags;
    if (prealloc && strcmp(prealloc, "off"))
        return dk_set_error(img, -ENOTSUP, "vdi: preallocation mode '%s' is not supported "
                            "for resize", prealloc);
    uint64_t nsize = dk_round_up(size, VDI_SECTOR_SIZE);
    if (nsize < img->size)
        return dk_set_error(img, -ENOTSUP, "vdi: shrinking VDI images is not supported");
    if (nsize == img->size)
        return 0;
    if (s->nbad)
        return dk_set_error(img, -EIO, "vdi: the block map has invalid entries; "
                            "repair with 'diskkit check -r all' first");
    int r = vdi_grow_prepare(img);
    if (r < 0)
        return r;
    uint64_t n = dk_div_round_up(nsize, s->hdr.block_size);
    uint32_t old = s->hdr.blocks_in_image;
    uint64_t room = (s->hdr.offset_data - s->hdr.offset_bmap) / 4;
    if (n > VDI_MAX_BLOCKS)
        return dk_set_error(img, -ENOTSUP, "vdi: cannot grow to %" PRIu64 " bytes: more "
                            "than %u blocks", nsize, VDI_MAX_BLOCKS);
    if (n > room) {
        /* The map must move into the first data blocks (vdi-grow.c). */
        r = vdi_flush(img);
        if (r == 0)
            r = vdi_grow_moving(img, (uint32_t)n, nsize);
        if (r == 0)
            img->size = nsize;
        return r;
    }
    r = vdi_flush(img);
    if (r < 0)
        return r;
    if (n > old) {
        uint32_t *m = realloc(s->map, (size_t)n * 4);
        if (!m)
            return dk_set_error(img, -ENOMEM, "out of memory");
        s->map = m;
        if ((r = grow_entries(img, old, (uint32_t)n)) < 0 ||
            (r = vdi_write_map(img, old, (uint32_t)n)) < 0)
            return r;
        s->hdr.blocks_in_image = (uint32_t)n;
    }
    /* New entries and data are on disk before the header points at them. */
    s->hdr.disk_size = nsize;
    s->hdr_dirty = true;
    if ((r = vdi_flush(img)) < 0)
        return r;
    img->size = nsize;
    return 0;
}

/* --------------------------------------------------------------- info */

int vdi_info(struct dk_image *img, struct dk_info *info)
{
    struct vdi_state *s = img->priv;
    /* qemu-img 7.2 prints no format-specific section for VDI. */
    info->cluster_size = s->hdr.block_size;
    return 0;
}
