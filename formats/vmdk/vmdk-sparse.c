/* vmdk-sparse.c - hosted sparse extents: the 512-byte header, the grain
 * directory (GD) and its redundant copy, grain tables (GT) and grain
 * allocation.
 *
 * Spec: "Virtual Disk Format 1.1", "Hosted Sparse Extent Header" and
 * "Grain Directories and Grain Tables". A GD entry is the sector of a GT
 * (0: absent); a GT entry is the sector of a grain, 0 = unallocated (reads
 * from the parent, or zeros), 1 = zeroed grain (version >= 2 with flag
 * bit 2).
 *
 * Invariants:
 *  1. e->gd (and e->rgd) mirror the on-disk directories; a GT in the cache
 *     mirrors the on-disk primary GT.
 *  2. Write ordering on allocation: grain data, then the GT entries
 *     (primary, redundant), then for a new GT the GD entries. A crash at
 *     any point leaves at most leaked space, never an entry pointing at
 *     unwritten data.
 *  3. New grains and GTs are appended at the (grain-aligned) end of file,
 *     as qemu does; e->file_size tracks that end.
 * Growing (vmdk_sparse_grow): new GTs at the end of file, GD entries in the
 * slack of the last GD sector or GD and RGD moved to the end of file.
 * Known gaps: no fragmentation reuse of leaked grains; compressed grains
 * of a stream extent are never overwritten (stream files are write-once).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmdk.h"

void vmdk_header_decode(const uint8_t *b, struct vmdk_header *h)
{
    h->version = dk_le32(b + 4);
    h->flags = dk_le32(b + 8);
    h->capacity = dk_le64(b + 12);
    h->grain_size = dk_le64(b + 20);
    h->desc_offset = dk_le64(b + 28);
    h->desc_size = dk_le64(b + 36);
    h->num_gtes = dk_le32(b + 44);
    h->rgd_offset = dk_le64(b + 48);
    h->gd_offset = dk_le64(b + 56);
    h->overhead = dk_le64(b + 64);
    h->unclean = b[72];
    memcpy(h->nl_check, b + 73, 4);
    h->compress = dk_le16(b + 77);
}

void vmdk_header_encode(const struct vmdk_header *h, uint8_t *b)
{
    memset(b, 0, VMDK_SECTOR);
    memcpy(b, "KDMV", 4);
    dk_put_le32(b + 4, h->version);
    dk_put_le32(b + 8, h->flags);
    dk_put_le64(b + 12, h->capacity);
    dk_put_le64(b + 20, h->grain_size);
    dk_put_le64(b + 28, h->desc_offset);
    dk_put_le64(b + 36, h->desc_size);
    dk_put_le32(b + 44, h->num_gtes);
    dk_put_le64(b + 48, h->rgd_offset);
    dk_put_le64(b + 56, h->gd_offset);
    dk_put_le64(b + 64, h->overhead);
    b[72] = h->unclean;
    memcpy(b + 73, "\n \r\n", 4);
    dk_put_le16(b + 77, h->compress);
}

/* " (extent file NAME" for extents in their own file, "" for the image
 * file itself (the core already names it); callers close the paren. */
static const char *where(const struct vmdk_extent *e)
{
    static __thread char buf[4200];
    if (!e->own_file)
        return "";
    snprintf(buf, sizeof(buf), " (extent file %s", e->file->path);
    return buf;
}

/* Checks that a table of LEN bytes at sector SEC lies inside the file. */
static bool table_inside(uint64_t sec, uint64_t len, uint64_t file_size)
{
    return sec <= file_size / VMDK_SECTOR &&
           dk_range_inside(sec * VMDK_SECTOR, len, file_size);
}

static uint64_t gd_entries(const struct vmdk_header *h)
{
    return dk_div_round_up(h->capacity, (uint64_t)h->num_gtes * h->grain_size);
}

int vmdk_header_validate(const struct vmdk_header *h, uint64_t fsize, struct dk_error *err)
{
    if (h->version < 1 || h->version > 3)
        return dk_error_set(err, -ENOTSUP, "vmdk: unsupported VMDK version %u", h->version);
    if (!dk_is_pow2(h->grain_size) || h->grain_size > VMDK_MAX_GRAIN_SECTORS)
        return dk_error_set(err, -EINVAL,
            "vmdk: invalid grain size %llu sectors (must be a power of two, at most 1 GiB)",
            (unsigned long long)h->grain_size);
    if (h->num_gtes == 0 || h->num_gtes > VMDK_MAX_GTES)
        return dk_error_set(err, -EINVAL, "vmdk: invalid number of grain table entries %u "
                            "(must be 1..%u)", h->num_gtes, VMDK_MAX_GTES);
    if (h->capacity > VMDK_MAX_SECTORS)
        return dk_error_set(err, -EFBIG, "vmdk: capacity of %llu sectors is too large",
                            (unsigned long long)h->capacity);
    if ((h->flags & VMDK_FLAG_COMPRESSED) && h->compress != VMDK_COMPRESS_DEFLATE)
        return dk_error_set(err, -ENOTSUP, "vmdk: unsupported compression algorithm %u",
                            h->compress);
    uint64_t n = gd_entries(h);
    if (n > VMDK_MAX_GD_ENTRIES)
        return dk_error_set(err, -EFBIG, "vmdk: grain directory of %llu entries is too large",
                            (unsigned long long)n);
    if (!table_inside(h->gd_offset, n * 4, fsize))
        return dk_error_set(err, -EINVAL,
            "vmdk: grain directory at sector %llu lies beyond end of file",
            (unsigned long long)h->gd_offset);
    if ((h->flags & VMDK_FLAG_RGD) && !table_inside(h->rgd_offset, n * 4, fsize))
        return dk_error_set(err, -EINVAL,
            "vmdk: redundant grain directory at sector %llu lies beyond end of file",
            (unsigned long long)h->rgd_offset);
    if (h->desc_size &&
        (h->desc_size > VMDK_MAX_DESC_BYTES / VMDK_SECTOR ||
         !table_inside(h->desc_offset, h->desc_size * VMDK_SECTOR, fsize)))
        return dk_error_set(err, -EINVAL, "vmdk: embedded descriptor (sector %llu, %llu "
                            "sectors) is too large or beyond end of file",
                            (unsigned long long)h->desc_offset,
                            (unsigned long long)h->desc_size);
    if (h->gd_offset != VMDK_GD_AT_END && h->overhead > fsize / VMDK_SECTOR)
        return dk_error_set(err, -EINVAL,
            "vmdk: file truncated, expecting at least %llu bytes",
            (unsigned long long)h->overhead * VMDK_SECTOR);
    return 0;
}

static int load_dir(struct dk_image *img, struct vmdk_extent *e, uint64_t sec, uint32_t **out)
{
    size_t bytes = (size_t)e->gd_entries * 4;
    uint8_t *raw = malloc(bytes ? bytes : 1);
    uint32_t *d = malloc((bytes ? bytes : 1));
    if (!raw || !d) {
        free(raw), free(d);
        return dk_set_error(img, -ENOMEM, "out of memory");
    }
    int r = bytes ? dk_file_pread(e->file, raw, bytes, sec * VMDK_SECTOR) : 0;
    for (size_t i = 0; r == 0 && i < e->gd_entries; i++)
        d[i] = dk_le32(raw + 4 * i);
    free(raw);
    if (r < 0) {
        free(d);
        return dk_set_error(img, r, "vmdk: %s: cannot read grain directory: %s",
                            e->file->path, strerror(-r));
    }
    *out = d;
    return 0;
}

int vmdk_sparse_open(struct dk_image *img, struct vmdk_extent *e)
{
    uint8_t b[VMDK_SECTOR];
    struct dk_error err = { 0 };
    int r = dk_file_size(e->file, &e->file_size);
    if (r == 0)
        r = dk_file_pread_eof0(e->file, b, sizeof(b), 0);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s: %s", e->file->path, strerror(-r));
    if (e->file_size < VMDK_SECTOR || dk_le32(b) != VMDK4_MAGIC)
        return dk_set_error(img, dk_le32(b) == VMDK3_MAGIC ? -ENOTSUP : -EINVAL,
                            dk_le32(b) == VMDK3_MAGIC
                            ? "vmdk: %s: VMFSSPARSE (COWD) extents are not supported"
                            : "vmdk: %s: not a hosted sparse extent (bad magic)",
                            e->file->path);
    vmdk_header_decode(b, &e->h);
    if (e->h.gd_offset == VMDK_GD_AT_END) {
        r = vmdk_stream_footer(e->file, e->file_size, &e->h, &err);
        if (r < 0)
            return dk_set_error(img, r, "%s%s%s", err.msg, where(e), e->own_file ? ")" : "");
    }
    r = vmdk_header_validate(&e->h, e->file_size, &err);
    if (r < 0)
        return dk_set_error(img, r, "%s%s%s", err.msg, where(e), e->own_file ? ")" : "");
    e->compressed = e->h.compress == VMDK_COMPRESS_DEFLATE;
    e->markers = e->h.flags & VMDK_FLAG_MARKERS;
    e->zeroed_grain = e->h.version >= 2 && (e->h.flags & VMDK_FLAG_ZERO_GRAIN);
    if (e->h.version == 3 && !e->compressed && !img->read_only)
        return dk_set_error(img, -EINVAL, "vmdk: %s: VMDK version 3 must be read only",
                            e->file->path);
    e->grain_bytes = e->h.grain_size * VMDK_SECTOR;
    e->gd_entries = (uint32_t)gd_entries(&e->h);
    r = load_dir(img, e, e->h.gd_offset, &e->gd);
    if (r == 0 && (e->h.flags & VMDK_FLAG_RGD))
        r = load_dir(img, e, e->h.rgd_offset, &e->rgd);
    return r;
}

void vmdk_sparse_close(struct vmdk_extent *e)
{
    for (int i = 0; i < VMDK_GT_CACHE; i++)
        free(e->cache[i].gt);
    free(e->gd);
    free(e->rgd);
    e->gd = e->rgd = NULL;
}

uint32_t *vmdk_sparse_gt(struct dk_image *img, struct vmdk_extent *e, uint32_t idx)
{
    struct vmdk_gt_slot *s = &e->cache[idx % VMDK_GT_CACHE];
    if (s->valid && s->gd_index == idx)
        return s->gt;
    size_t bytes = (size_t)e->h.num_gtes * 4;
    uint64_t sec = e->gd[idx];
    if (!table_inside(sec, bytes, e->file_size)) {
        dk_corrupt(img, "vmdk: grain table %u at offset 0x%llx lies beyond end of file%s%s",
                   idx, (unsigned long long)sec * VMDK_SECTOR, where(e),
                   e->own_file ? ")" : "");
        return NULL;
    }
    uint8_t raw[VMDK_MAX_GTES * 4];
    if (!s->gt && !(s->gt = malloc(VMDK_MAX_GTES * 4))) {
        dk_set_error(img, -ENOMEM, "out of memory");
        return NULL;
    }
    s->valid = false;
    int r = dk_file_pread(e->file, raw, bytes, sec * VMDK_SECTOR);
    if (r < 0) {
        dk_set_error(img, r, "vmdk: %s: cannot read grain table: %s", e->file->path,
                     strerror(-r));
        return NULL;
    }
    for (uint32_t i = 0; i < e->h.num_gtes; i++)
        s->gt[i] = dk_le32(raw + 4 * i);
    s->gd_index = idx;
    s->valid = true;
    return s->gt;
}

int vmdk_sparse_gte(struct dk_image *img, struct vmdk_extent *e, uint64_t gi, uint32_t *gte)
{
    uint64_t idx = gi / e->h.num_gtes;
    *gte = 0;
    if (e->sw.active && vmdk_swriter_lookup(e, gi, gte))
        return 0;
    if (idx >= e->gd_entries || e->gd[idx] == 0)
        return 0;
    uint32_t *gt = vmdk_sparse_gt(img, e, (uint32_t)idx);
    if (!gt)
        return -EIO;
    *gte = gt[gi % e->h.num_gtes];
    if (*gte == VMDK_GTE_ZERO && !e->zeroed_grain)
        return dk_corrupt(img, "vmdk: %s: grain table entry 1 (zeroed grain) without "
                          "the zeroed-grain feature", e->file->path);
    return 0;
}

/* Appends a zeroed GT for GD entry IDX (and its redundant copy). */
static int alloc_gt(struct dk_image *img, struct vmdk_extent *e, uint32_t idx)
{
    size_t bytes = dk_round_up((uint64_t)e->h.num_gtes * 4, VMDK_SECTOR);
    uint8_t *z = calloc(1, bytes);
    if (!z)
        return dk_set_error(img, -ENOMEM, "out of memory");
    uint64_t pos = dk_round_up(e->file_size, VMDK_SECTOR), rpos = 0;
    int r = dk_file_pwrite(e->file, z, bytes, pos);
    if (r == 0 && e->rgd) {
        rpos = pos + bytes;
        r = dk_file_pwrite(e->file, z, bytes, rpos);
    }
    free(z);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s: writing grain table: %s", e->file->path,
                            strerror(-r));
    e->file_size = (rpos ? rpos : pos) + bytes;
    uint8_t le[4];
    dk_put_le32(le, (uint32_t)(pos / VMDK_SECTOR));
    r = dk_file_pwrite(e->file, le, 4, e->h.gd_offset * VMDK_SECTOR + 4ull * idx);
    if (r == 0 && e->rgd) {
        dk_put_le32(le, (uint32_t)(rpos / VMDK_SECTOR));
        r = dk_file_pwrite(e->file, le, 4, e->h.rgd_offset * VMDK_SECTOR + 4ull * idx);
    }
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s: writing grain directory: %s",
                            e->file->path, strerror(-r));
    e->gd[idx] = (uint32_t)(pos / VMDK_SECTOR);
    if (e->rgd)
        e->rgd[idx] = (uint32_t)(rpos / VMDK_SECTOR);
    return 0;
}

/* Sets the GT entry of grain GI to VAL on disk (primary, then redundant). */
static int set_gte(struct dk_image *img, struct vmdk_extent *e, uint64_t gi, uint32_t val)
{
    uint32_t idx = (uint32_t)(gi / e->h.num_gtes), j = (uint32_t)(gi % e->h.num_gtes);
    int r;
    if (idx >= e->gd_entries)
        return dk_corrupt(img, "vmdk: %s: grain %llu lies beyond the grain directory",
                          e->file->path, (unsigned long long)gi);
    if (e->gd[idx] == 0 && (r = alloc_gt(img, e, idx)) < 0)
        return r;
    uint32_t *gt = vmdk_sparse_gt(img, e, idx);
    if (!gt)
        return -EIO;
    uint8_t le[4];
    dk_put_le32(le, val);
    r = dk_file_pwrite(e->file, le, 4, (uint64_t)e->gd[idx] * VMDK_SECTOR + 4ull * j);
    if (r == 0 && e->rgd && e->rgd[idx] &&
        table_inside(e->rgd[idx], (uint64_t)e->h.num_gtes * 4, e->file_size))
        r = dk_file_pwrite(e->file, le, 4, (uint64_t)e->rgd[idx] * VMDK_SECTOR + 4ull * j);
    if (r < 0)
        return dk_set_error(img, r, "vmdk: %s: writing grain table: %s", e->file->path,
                            strerror(-r));
    gt[j] = val;
    return 0;
}

int vmdk_sparse_write(struct dk_image *img, struct vmdk_extent *e, const uint8_t *buf,
                      size_t len, uint64_t off)
{
    uint64_t gi = off / e->grain_bytes, in = off % e->grain_bytes;
    uint32_t gte;
    int r = vmdk_sparse_gte(img, e, gi, &gte);
    if (r < 0)
        return r;
    if (gte > VMDK_GTE_ZERO) {
        if (e->compressed)
            return dk_set_error(img, -ENOTSUP, "vmdk: %s: cannot overwrite a compressed "
                                "grain of a streamOptimized image", e->file->path);
        r = dk_file_pwrite(e->file, buf, len, (uint64_t)gte * VMDK_SECTOR + in);
        return r < 0 ? dk_set_error(img, r, "vmdk: %s: write: %s", e->file->path,
                                    strerror(-r)) : 0;
    }
    uint8_t *g = malloc(e->grain_bytes);
    if (!g)
        return dk_set_error(img, -ENOMEM, "out of memory");
    if (gte == 0 && len < e->grain_bytes && img->backing &&
        (r = vmdk_parent_check(img)) == 0)
        r = dk_read_backing(img, g, e->grain_bytes, e->start + gi * e->grain_bytes);
    else
        memset(g, 0, e->grain_bytes);
    memcpy(g + in, buf, len);
    uint64_t pos = dk_round_up(e->file_size, e->grain_bytes);
    if (r == 0 && (pos + e->grain_bytes) / VMDK_SECTOR > UINT32_MAX)
        r = dk_set_error(img, -EFBIG, "vmdk: %s: extent file would exceed 2 TiB",
                         e->file->path);
    if (r == 0 && (r = dk_file_pwrite(e->file, g, e->grain_bytes, pos)) < 0)
        dk_set_error(img, r, "vmdk: %s: write: %s", e->file->path, strerror(-r));
    free(g);
    if (r < 0)
        return r;
    e->file_size = pos + e->grain_bytes;
    return set_gte(img, e, gi, (uint32_t)(pos / VMDK_SECTOR));
}

int vmdk_sparse_zero(struct dk_image *img, struct vmdk_extent *e, uint64_t first, uint64_t n)
{
    for (uint64_t gi = first; gi < first + n; gi++) {
        int r = set_gte(img, e, gi, VMDK_GTE_ZERO);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------------ grow */

static int write_zeros(struct dk_file *f, uint64_t off, uint64_t len)
{
    static const uint8_t z[64 * 1024];
    while (len) {
        size_t n = (size_t)DK_MIN(len, (uint64_t)sizeof(z));
        int r = dk_file_pwrite(f, z, n, off);
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

/* Writes entries [FIRST, FIRST+N) of directory D at byte offset OFF. */
static int write_dir(struct dk_file *f, const uint32_t *d, uint32_t first, uint32_t n,
                     uint64_t off)
{
    uint8_t *raw = malloc((size_t)n * 4 + 1);
    if (!raw)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        dk_put_le32(raw + 4ull * i, d[first + i]);
    int r = dk_file_pwrite(f, raw, (size_t)n * 4, off);
    free(raw);
    return r;
}

/* Grains past the old end inside the last old GT must be unallocated, or
 * growing would expose whatever they hold. */
static int check_tail(struct dk_image *img, struct vmdk_extent *e)
{
    uint32_t last = e->gd_entries - 1;
    uint64_t first = dk_div_round_up(e->h.capacity, e->h.grain_size);
    if (e->gd[last] == 0 || first >= (uint64_t)e->gd_entries * e->h.num_gtes)
        return 0;
    uint32_t *gt = vmdk_sparse_gt(img, e, last);
    if (!gt)
        return -EIO;
    for (uint64_t j = first - (uint64_t)last * e->h.num_gtes; j < e->h.num_gtes; j++)
        if (gt[j] != 0)
            return dk_set_error(img, -EINVAL, "vmdk: %s: grain table %u has entries past "
                                "the end of the disk; refusing to grow over them",
                                e->file->path, last);
    return 0;
}

/* Rewrites capacity and directory offsets in the header sector, keeping
 * every other byte as found. */
static int write_header(struct vmdk_extent *e, const struct vmdk_header *nh)
{
    uint8_t b[VMDK_SECTOR];
    int r = dk_file_pread(e->file, b, sizeof(b), 0);
    if (r < 0)
        return r;
    dk_put_le64(b + 12, nh->capacity);
    dk_put_le64(b + 48, nh->rgd_offset);
    dk_put_le64(b + 56, nh->gd_offset);
    if ((r = dk_file_pwrite(e->file, b, sizeof(b), 0)) < 0)
        return r;
    return dk_file_flush(e->file);
}

/* Lays out the new GTs (and GD, RGD when relocated) from byte POS on:
 * fills the in-memory directories and NH, returns the new end of file. */
static uint64_t grow_layout(struct vmdk_extent *e, uint32_t n, bool relocate, uint64_t pos,
                            struct vmdk_header *nh)
{
    uint64_t gt_bytes = dk_round_up((uint64_t)e->h.num_gtes * 4, VMDK_SECTOR);
    uint64_t dir_bytes = dk_round_up((uint64_t)n * 4, VMDK_SECTOR);
    uint32_t old = e->gd_entries;
    for (uint32_t i = old; i < n; i++) {
        e->gd[i] = (uint32_t)((pos + (i - old) * gt_bytes) / VMDK_SECTOR);
        if (e->rgd)
            e->rgd[i] = (uint32_t)((pos + (n - old + i - old) * gt_bytes) / VMDK_SECTOR);
    }
    uint64_t end = pos + (uint64_t)(n - old) * gt_bytes * (e->rgd ? 2 : 1);
    if (relocate && e->rgd) {
        nh->rgd_offset = end / VMDK_SECTOR;
        end += dir_bytes;
    }
    if (relocate) {
        nh->gd_offset = end / VMDK_SECTOR;
        end += dir_bytes;
    }
    return end;
}

static int grow_dirs(struct vmdk_extent *e, uint32_t n)
{
    uint32_t *d = realloc(e->gd, (size_t)n * 4);
    if (!d)
        return -ENOMEM;
    e->gd = d;
    if (e->rgd) {
        if (!(d = realloc(e->rgd, (size_t)n * 4)))
            return -ENOMEM;
        e->rgd = d;
    }
    return 0;
}

int vmdk_sparse_grow(struct dk_image *img, struct vmdk_extent *e, uint64_t sectors)
{
    struct vmdk_header nh = e->h;
    nh.capacity = sectors;
    uint64_t n64 = gd_entries(&nh);
    if (sectors > VMDK_MAX_SECTORS || n64 > VMDK_MAX_GD_ENTRIES)
        return dk_set_error(img, -EFBIG, "vmdk: %s: %llu sectors is too large for a sparse "
                            "extent", e->file->path, (unsigned long long)sectors);
    uint32_t old = e->gd_entries, n = (uint32_t)n64;
    int r = check_tail(img, e);
    if (r < 0)
        return r;
    /* The directories fill whole sectors: entries up to the end of the
     * last sector are slack that new entries can use in place. */
    bool relocate = (uint64_t)n * 4 > dk_round_up((uint64_t)old * 4, VMDK_SECTOR);
    if (n > old && grow_dirs(e, n) < 0)
        return dk_set_error(img, -ENOMEM, "out of memory");
    uint64_t pos = dk_round_up(e->file_size, VMDK_SECTOR);
    uint64_t end = grow_layout(e, n, relocate, pos, &nh);
    if (end / VMDK_SECTOR > UINT32_MAX)
        return dk_set_error(img, -EFBIG, "vmdk: %s: extent file would exceed 2 TiB",
                            e->file->path);
    /* 1. New GTs, directories, flushed; 2. the header that makes them
     * reachable. A crash before 2 leaves the old extent with extra space. */
    r = write_zeros(e->file, pos, end - pos);
    if (r == 0 && relocate) {
        if (e->rgd)
            r = write_dir(e->file, e->rgd, 0, n, nh.rgd_offset * VMDK_SECTOR);
        if (r == 0)
            r = write_dir(e->file, e->gd, 0, n, nh.gd_offset * VMDK_SECTOR);
    } else if (r == 0 && n > old) {
        uint64_t tail = 4ull * old;
        if (e->rgd)
            r = write_dir(e->file, e->rgd, old, n - old, e->h.rgd_offset * VMDK_SECTOR + tail);
        if (r == 0)
            r = write_dir(e->file, e->gd, old, n - old, e->h.gd_offset * VMDK_SECTOR + tail);
    }
    if (r == 0)
        r = dk_file_flush(e->file);
    if (r == 0)
        r = write_header(e, &nh);
    if (r < 0) {
        dk_file_size(e->file, &e->file_size);
        return dk_set_error(img, r, "vmdk: %s: growing the extent: %s", e->file->path,
                            strerror(-r));
    }
    e->file_size = DK_MAX(e->file_size, end);
    e->h = nh;
    e->gd_entries = n;
    return 0;
}
