/* ext2io.c - the libext2fs bridge: an io_manager over a dk_image view.
 *
 * Implements struct struct_io_manager (e2fsprogs lib/ext2fs/ext2_io.h) so
 * that ext2fs_open2() reads and writes a guest device (a partition: image,
 * offset, length; or an LVM logical volume, see lib/guest-lvm.c) through
 * the public image API, whatever the format and backing chain.
 * libext2fs only passes a name to open(), so views are kept in a small
 * registry and named "diskkit:<id>".
 *
 * Contract kept with libext2fs: errors are errno values or EXT2_ET_*
 * codes; a negative block count means a byte count; set_blksize is
 * honoured; every channel carries EXT2_ET_MAGIC_IO_CHANNEL; unsupported
 * options return EXT2_ET_INVALID_ARGUMENT and unsupported operations
 * EXT2_ET_UNIMPLEMENTED.
 *
 * Caching: a small direct-mapped cache of filesystem blocks avoids going
 * through the image layers for the same inode-table and directory blocks
 * over and over (libext2fs re-reads them on every inode lookup), and
 * sequential misses read RA_BLOCKS ahead. Writes invalidate cached copies
 * and are gathered into up to WRUNS pending runs of at most WBUF_MAX
 * bytes (a rewrite inside a run updates it in place, a write just past
 * its end extends it); a run is written to the image before any read or
 * partial write overlapping it, when its slot is needed, and on flush and
 * close. Runs never overlap, so their write order does not matter. Channels are used under their dk_fs lock, so
 * none of this needs locking of its own.
 *
 * Known gaps: discard/zeroout are not passed down (libext2fs falls back to
 * writing zeros where it needs them); no readahead.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "util/util.h"

/* Registry capacity: one slot per open dk_fs; 256 is far more than the
 * 26 disks x 128 partitions anyone opens at once through one process. */
#define REG_MAX 256
/* Block cache: 1024 slots of up to 64 KiB; blocks are usually 4 KiB, so
 * this is ~4 MiB per open filesystem. */
#define CACHE_SLOTS 1024
#define CACHE_MAX_BLOCK 65536
/* Sequential misses read this many blocks at once (file data is read by
 * libext2fs one block per call). */
#define RA_BLOCKS 32
/* Contiguous writes are gathered up to 1 MiB before they reach the image
 * (libext2fs writes file data one block per call; one image write per
 * block costs a cluster update each time on qcow2). */
#define WBUF_MAX (1u << 20)
/* Pending runs kept at once: file data, plus the inode-table, extent and
 * directory blocks libext2fs rewrites in between, each gather in place. */
#define WRUNS 4

struct view {
    bool used;
    unsigned id;
    struct dk_gdev dev;
    bool writable;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct view reg[REG_MAX];
static unsigned reg_next_id = 1;

struct chan {
    struct view v;
    struct struct_io_stats stats;
    uint8_t *cache;                    /* CACHE_SLOTS * block_size */
    uint64_t *tags;                    /* block number + 1, 0 = empty */
    uint64_t next_miss;                /* block after the last miss (readahead) */
    uint8_t *ra;                       /* RA_BLOCKS * block_size */
    struct run {                       /* pending writes, disjoint ranges */
        uint8_t *buf;                  /* WBUF_MAX bytes */
        uint64_t off;                  /* offset in the view */
        size_t len;                    /* 0 = slot free */
        uint64_t used;                 /* last use (for replacement) */
    } runs[WRUNS];
    uint64_t clock;
};

static pthread_once_t et_once = PTHREAD_ONCE_INIT;

static void et_init(void)
{
    initialize_ext2_error_table();      /* error_message() for EXT2_ET_* */
}

int dk_ext2io_register_dev(const struct dk_gdev *dev, bool writable, char *name,
                           size_t namelen)
{
    pthread_once(&et_once, et_init);
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < REG_MAX; i++) {
        if (reg[i].used)
            continue;
        reg[i] = (struct view){ true, reg_next_id++, *dev, writable };
        snprintf(name, namelen, "diskkit:%u", reg[i].id);
        pthread_mutex_unlock(&reg_lock);
        return 0;
    }
    pthread_mutex_unlock(&reg_lock);
    return -EMFILE;
}

int dk_ext2io_register(struct dk_image *img, uint64_t off, uint64_t size,
                       bool writable, char *name, size_t namelen)
{
    struct dk_gdev dev = { .img = img, .off = off, .size = size };
    return dk_ext2io_register_dev(&dev, writable, name, namelen);
}

void dk_ext2io_unregister(const char *name)
{
    unsigned id;
    if (sscanf(name, "diskkit:%u", &id) != 1)
        return;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < REG_MAX; i++)
        if (reg[i].used && reg[i].id == id)
            reg[i].used = false;
    pthread_mutex_unlock(&reg_lock);
}

int dk_ext2_errno(errcode_t e)
{
    if (e == 0)
        return 0;
    if (e > 0 && e < 4096)              /* a plain errno */
        return -(int)e;
    switch (e) {
    case EXT2_ET_NO_MEMORY: return -ENOMEM;
    case EXT2_ET_RO_FILSYS: return -EROFS;
    case EXT2_ET_DIR_NO_SPACE: case EXT2_ET_BLOCK_ALLOC_FAIL:
    case EXT2_ET_INODE_ALLOC_FAIL: return -ENOSPC;
    case EXT2_ET_FILE_NOT_FOUND: return -ENOENT;
    case EXT2_ET_NO_DIRECTORY: return -ENOTDIR;
    case EXT2_ET_DIR_EXISTS: return -EEXIST;
    case EXT2_ET_FILE_TOO_BIG: return -EFBIG;
    case EXT2_ET_SYMLINK_LOOP: return -ELOOP;
    case EXT2_ET_UNIMPLEMENTED: case EXT2_ET_UNSUPP_FEATURE:
    case EXT2_ET_RO_UNSUPP_FEATURE: return -ENOTSUP;
    default: return -EIO;
    }
}

static errcode_t ch_open(const char *name, int flags, io_channel *out)
{
    unsigned id;
    struct view v = { 0 };
    if (!name || sscanf(name, "diskkit:%u", &id) != 1)
        return EXT2_ET_BAD_DEVICE_NAME;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < REG_MAX; i++)
        if (reg[i].used && reg[i].id == id)
            v = reg[i];
    pthread_mutex_unlock(&reg_lock);
    if (!v.used)
        return EXT2_ET_BAD_DEVICE_NAME;
    if ((flags & IO_FLAG_RW) && !v.writable)
        return EROFS;
    io_channel ch = calloc(1, sizeof(*ch));
    struct chan *c = calloc(1, sizeof(*c));
    char *nm = strdup(name);
    if (!ch || !c || !nm) {
        free(ch), free(c), free(nm);
        return EXT2_ET_NO_MEMORY;
    }
    c->v = v;
    c->stats.num_fields = 2;
    ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
    ch->manager = dk_ext2_io_manager;
    ch->name = nm;
    ch->block_size = 1024;
    ch->refcount = 1;
    ch->flags = flags;
    ch->private_data = c;
    *out = ch;
    return 0;
}

static void cache_drop(struct chan *c)
{
    free(c->cache);
    free(c->tags);
    free(c->ra);
    c->cache = NULL;
    c->tags = NULL;
    c->ra = NULL;
}

static errcode_t run_flush(struct chan *c, struct run *w)
{
    if (w->len == 0)
        return 0;
    int r = dk_gdev_pwrite(&c->v.dev, w->buf, w->len, w->off);
    c->stats.bytes_written += w->len;
    w->len = 0;
    return r < 0 ? EXT2_ET_SHORT_WRITE : 0;
}

/* Writes every pending run (all of them, or those overlapping OFF/LEN). */
static errcode_t wflush_overlap(struct chan *c, uint64_t off, uint64_t len)
{
    errcode_t first = 0;
    for (int i = 0; i < WRUNS; i++) {
        struct run *w = &c->runs[i];
        if (w->len && dk_ranges_overlap(w->off, w->len, off, len)) {
            errcode_t e = run_flush(c, w);
            first = first ? first : e;
        }
    }
    return first;
}

static errcode_t wflush(struct chan *c)
{
    return wflush_overlap(c, 0, UINT64_MAX);
}

static errcode_t ch_close(io_channel ch)
{
    if (!ch || ch->magic != EXT2_ET_MAGIC_IO_CHANNEL)
        return EXT2_ET_MAGIC_IO_CHANNEL;
    if (--ch->refcount > 0)
        return 0;
    struct chan *c = ch->private_data;
    errcode_t e = wflush(c);
    cache_drop(c);
    for (int i = 0; i < WRUNS; i++)
        free(c->runs[i].buf);
    free(c);
    free(ch->name);
    free(ch);
    return e;
}

static errcode_t ch_set_blksize(io_channel ch, int blksize)
{
    if (ch->magic != EXT2_ET_MAGIC_IO_CHANNEL)
        return EXT2_ET_MAGIC_IO_CHANNEL;
    if (blksize < 512 || blksize > CACHE_MAX_BLOCK || (blksize & (blksize - 1)))
        return EXT2_ET_INVALID_ARGUMENT;
    struct chan *c = ch->private_data;
    if (ch->block_size != blksize) {
        errcode_t e = wflush(c);
        if (e)
            return e;
        cache_drop(c);
    }
    ch->block_size = blksize;
    return 0;
}

/* Byte range of COUNT blocks (or -COUNT bytes) at BLOCK, checked against
 * the view. */
static errcode_t span(io_channel ch, unsigned long long block, int count,
                      uint64_t *off, size_t *len)
{
    struct chan *c = ch->private_data;
    uint64_t bytes = count < 0 ? (uint64_t)-(int64_t)count
                               : (uint64_t)count * (uint64_t)ch->block_size;
    uint64_t o;
    if (__builtin_mul_overflow(block, (uint64_t)ch->block_size, &o) ||
        !dk_range_inside(o, bytes, c->v.dev.size))
        return EXT2_ET_LLSEEK_FAILED;
    *off = o;
    *len = (size_t)bytes;
    return 0;
}

static int cache_ready(io_channel ch, struct chan *c)
{
    if (c->cache)
        return 1;
    c->cache = malloc((size_t)CACHE_SLOTS * (size_t)ch->block_size);
    c->tags = calloc(CACHE_SLOTS, sizeof(*c->tags));
    if (!c->cache || !c->tags) {
        cache_drop(c);
        return 0;
    }
    return 1;
}

/* Forgets cached copies of bytes OFF..OFF+LEN of the view. */
static void cache_invalidate(io_channel ch, struct chan *c, uint64_t off, size_t len)
{
    if (!c->tags || len == 0)
        return;
    uint64_t bs = (uint64_t)ch->block_size;
    uint64_t first = off / bs, last = (off + len - 1) / bs;
    if (last - first >= CACHE_SLOTS) {
        memset(c->tags, 0, CACHE_SLOTS * sizeof(*c->tags));
        return;
    }
    for (uint64_t b = first; b <= last; b++)
        if (c->tags[b % CACHE_SLOTS] == b + 1)
            c->tags[b % CACHE_SLOTS] = 0;
}

/* A cache miss on BLOCK (one block into DATA): reads ahead when the
 * previous miss was the block before. */
static errcode_t read_miss(io_channel ch, struct chan *c, uint64_t block, void *data)
{
    size_t bs = (size_t)ch->block_size;
    uint64_t nblocks = c->v.dev.size / bs, n = 1;
    if (block == c->next_miss && (c->ra || (c->ra = malloc(RA_BLOCKS * bs))))
        n = nblocks - block < RA_BLOCKS ? nblocks - block : RA_BLOCKS;
    uint8_t *buf = n > 1 ? c->ra : data;
    c->next_miss = block + 1;
    errcode_t e = wflush_overlap(c, block * bs, n * bs);
    if (e)
        return e;
    if (dk_gdev_pread(&c->v.dev, buf, (size_t)(n * bs), block * bs) < 0)
        return EXT2_ET_SHORT_READ;
    c->stats.bytes_read += n * bs;
    for (uint64_t i = 0; i < n; i++) {
        size_t slot = (size_t)((block + i) % CACHE_SLOTS);
        memcpy(c->cache + slot * bs, buf + i * bs, bs);
        c->tags[slot] = block + i + 1;
    }
    if (n > 1) {
        memcpy(data, buf, bs);
        c->next_miss = block + n;
    }
    return 0;
}

static errcode_t ch_read_blk64(io_channel ch, unsigned long long block, int count,
                               void *data)
{
    if (ch->magic != EXT2_ET_MAGIC_IO_CHANNEL)
        return EXT2_ET_MAGIC_IO_CHANNEL;
    struct chan *c = ch->private_data;
    uint64_t off;
    size_t len;
    errcode_t e = span(ch, block, count, &off, &len);
    if (e)
        return e;
    if (count == 1 && cache_ready(ch, c)) {
        size_t slot = (size_t)(block % CACHE_SLOTS);
        if (c->tags[slot] == block + 1) {
            memcpy(data, c->cache + slot * (size_t)ch->block_size, len);
            return 0;
        }
        return read_miss(ch, c, block, data);
    }
    if ((e = wflush_overlap(c, off, len)))
        return e;
    if (dk_gdev_pread(&c->v.dev, data, len, off) < 0)
        return EXT2_ET_SHORT_READ;
    c->stats.bytes_read += len;
    return 0;
}

static errcode_t ch_read_blk(io_channel ch, unsigned long block, int count, void *data)
{
    return ch_read_blk64(ch, block, count, data);
}

/* Puts a write into a pending run: in place, appended, or a new run
 * (evicting the least recently used). Returns 1 when it could not be
 * gathered (too big, no memory): the caller writes it through. */
static int gather(struct chan *c, uint64_t off, size_t len, const void *data)
{
    struct run *victim = &c->runs[0];
    c->clock++;
    for (int i = 0; i < WRUNS; i++) {
        struct run *w = &c->runs[i];
        if (w->len && off >= w->off && len <= w->len && off - w->off <= w->len - len) {
            memcpy(w->buf + (off - w->off), data, len);
            w->used = c->clock;
            return 0;
        }
        if (w->len && off == w->off + w->len && len <= WBUF_MAX - w->len &&
            !wflush_overlap(c, off, len)) {
            memcpy(w->buf + w->len, data, len);
            w->len += len;
            w->used = c->clock;
            return 0;
        }
        if (!w->len || (victim->len && w->used < victim->used))
            victim = w;
    }
    if (len >= WBUF_MAX || wflush_overlap(c, off, len) || run_flush(c, victim))
        return 1;
    if (!victim->buf && !(victim->buf = malloc(WBUF_MAX)))
        return 1;
    memcpy(victim->buf, data, len);
    victim->off = off;
    victim->len = len;
    victim->used = c->clock;
    return 0;
}

static errcode_t ch_pwrite(io_channel ch, uint64_t off, size_t len, const void *data)
{
    struct chan *c = ch->private_data;
    if (!(ch->flags & IO_FLAG_RW) || !c->v.writable)
        return EXT2_ET_RO_FILSYS;
    cache_invalidate(ch, c, off, len);
    if (gather(c, off, len, data) == 0)
        return 0;
    errcode_t e = wflush_overlap(c, off, len);
    if (e)
        return e;
    if (dk_gdev_pwrite(&c->v.dev, data, len, off) < 0)
        return EXT2_ET_SHORT_WRITE;
    c->stats.bytes_written += len;
    return 0;
}

static errcode_t ch_write_blk64(io_channel ch, unsigned long long block, int count,
                                const void *data)
{
    if (ch->magic != EXT2_ET_MAGIC_IO_CHANNEL)
        return EXT2_ET_MAGIC_IO_CHANNEL;
    uint64_t off;
    size_t len;
    errcode_t e = span(ch, block, count, &off, &len);
    return e ? e : ch_pwrite(ch, off, len, data);
}

static errcode_t ch_write_blk(io_channel ch, unsigned long block, int count,
                              const void *data)
{
    return ch_write_blk64(ch, block, count, data);
}

static errcode_t ch_write_byte(io_channel ch, unsigned long offset, int count,
                               const void *data)
{
    if (ch->magic != EXT2_ET_MAGIC_IO_CHANNEL)
        return EXT2_ET_MAGIC_IO_CHANNEL;
    struct chan *c = ch->private_data;
    if (count < 0 || !dk_range_inside(offset, (uint64_t)count, c->v.dev.size))
        return EXT2_ET_LLSEEK_FAILED;
    return ch_pwrite(ch, offset, (size_t)count, data);
}

static errcode_t ch_flush(io_channel ch)
{
    if (ch->magic != EXT2_ET_MAGIC_IO_CHANNEL)
        return EXT2_ET_MAGIC_IO_CHANNEL;
    struct chan *c = ch->private_data;
    if (!(ch->flags & IO_FLAG_RW))
        return 0;
    errcode_t e = wflush(c);
    if (e)
        return e;
    return dk_gdev_flush(&c->v.dev) < 0 ? EIO : 0;
}

static errcode_t ch_set_option(io_channel ch, const char *option, const char *arg)
{
    if (ch->magic != EXT2_ET_MAGIC_IO_CHANNEL)
        return EXT2_ET_MAGIC_IO_CHANNEL;
    /* "offset=" is how unix_io is told about partitions; ours come from the
     * registry, so any other offset would be a caller bug. */
    if (!strcmp(option, "offset") && arg && !strcmp(arg, "0"))
        return 0;
    return EXT2_ET_INVALID_ARGUMENT;
}

static errcode_t ch_get_stats(io_channel ch, io_stats *stats)
{
    if (ch->magic != EXT2_ET_MAGIC_IO_CHANNEL)
        return EXT2_ET_MAGIC_IO_CHANNEL;
    struct chan *c = ch->private_data;
    if (stats)
        *stats = &c->stats;
    return 0;
}

static struct struct_io_manager manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "diskkit I/O manager",
    .open = ch_open,
    .close = ch_close,
    .set_blksize = ch_set_blksize,
    .read_blk = ch_read_blk,
    .write_blk = ch_write_blk,
    .flush = ch_flush,
    .write_byte = ch_write_byte,
    .set_option = ch_set_option,
    .get_stats = ch_get_stats,
    .read_blk64 = ch_read_blk64,
    .write_blk64 = ch_write_blk64,
};

io_manager dk_ext2_io_manager = &manager;
