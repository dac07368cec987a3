/* vhdx-create.c - creating VHDX images (create -f vhdx, convert -O vhdx).
 *
 * Spec: MS-VHDX 1.0. The layout is the one qemu 7.2 writes, so both tools
 * produce the same structure (GUIDs and sequence numbers are random):
 *   0        "vhdxfile" and the creator in UTF-16
 *   64 KiB   header 1 (sequence S), 128 KiB header 2 (S + 1); log GUID
 *            zero (no log in use), log at 1 MiB of log_size bytes
 *   192/256  two identical region tables: BAT at round_up(1 MiB + log,
 *            1 MiB), its length the BAT rounded up to 1 MiB; metadata
 *            (1 MiB) right after
 *   metadata table with the five required items at 64 KiB into it
 *   data     from the end of the BAT + 5 MiB: fixed images get every
 *            block there (FULLY_PRESENT, the file sized to hold them,
 *            sparse), dynamic ones none (NOT_PRESENT); block_state_zero
 *            (qemu's default) writes ZERO entries instead, for fixed
 *            images too, as qemu does.
 * No log entry is ever written: creation writes every structure in place
 * before the image is used, as qemu does.
 *
 * Known gaps: 512-byte logical sectors only (like qemu); no preallocation
 * modes other than the sparse file.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "vhdx.h"

int vhdx_random(void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = getrandom((uint8_t *)buf + got, len - got, 0);
        if (n < 0 && errno != EINTR)
            return -errno;
        got += n > 0 ? (size_t)n : 0;
    }
    return 0;
}

int vhdx_new_guid(uint8_t *g)
{
    int r = vhdx_random(g, 16);
    /* Version 4; data3 is little-endian, so its top nibble is in byte 7. */
    g[7] = (uint8_t)((g[7] & 0x0f) | 0x40);
    g[8] = (uint8_t)((g[8] & 0x3f) | 0x80);
    return r;
}

void vhdx_header_encode(const struct vhdx_header *h, uint8_t *buf)
{
    memset(buf, 0, VHDX_HEADER_SIZE);
    dk_put_le32(buf, VHDX_HEADER_SIG);
    dk_put_le64(buf + 8, h->sequence);
    memcpy(buf + 16, h->file_write_guid, 16);
    memcpy(buf + 32, h->data_write_guid, 16);
    memcpy(buf + 48, h->log_guid, 16);
    dk_put_le16(buf + 64, h->log_version);
    dk_put_le16(buf + 66, h->version);
    dk_put_le32(buf + 68, h->log_length);
    dk_put_le64(buf + 72, h->log_offset);
    dk_put_le32(buf + 4, vhdx_checksum(buf, VHDX_HEADER_SIZE, 4));
}

/* What the options ask for, checked and rounded like qemu does. */
struct plan {
    uint64_t size;
    uint32_t log_size, block_size;
    bool fixed, zero_state;
    struct vhdx_layout lay;
    uint64_t data_off, file_end;
};

static int size_opt(const struct dk_create_ctx *c, const char *key, uint64_t *v)
{
    const char *s = dk_opts_get(c->opts, key);
    if (!s)
        return 0;
    if (dk_parse_size(s, v) < 0)
        return dk_error_set(c->err, -EINVAL, "Invalid %s '%s'", key, s);
    return 1;
}

static int plan_image(const struct dk_create_ctx *c, struct plan *p)
{
    const char *sub = dk_opts_get(c->opts, "subformat");
    const char *zero = dk_opts_get(c->opts, "block_state_zero");
    uint64_t log = VHDX_MIB, bs = 0;
    int r;
    memset(p, 0, sizeof(*p));
    p->size = dk_round_up(c->size, 512);
    if (p->size > VHDX_MAX_DISK_SIZE)
        return dk_error_set(c->err, -EINVAL, "Image size too large; max of 64TB");
    if (sub && strcmp(sub, "dynamic") && strcmp(sub, "fixed"))
        return dk_error_set(c->err, -EINVAL, "Invalid subformat '%s' (dynamic or fixed)", sub);
    p->fixed = sub && !strcmp(sub, "fixed");
    p->zero_state = !zero || dk_parse_bool(zero) == 1;
    if ((r = size_opt(c, "log_size", &log)) < 0 || (r = size_opt(c, "block_size", &bs)) < 0)
        return r;
    log = dk_round_up(log, VHDX_MIB);
    if (log == 0 || log > UINT32_MAX - VHDX_MIB + 1)
        return dk_error_set(c->err, -EINVAL, "Log size must be a multiple of 1 MB, "
                            "at least 1 MB and smaller than 4 GB");
    bs = DK_MIN(dk_round_up(bs, VHDX_MIB), (uint64_t)VHDX_BLOCK_MAX);
    if (bs == 0)                /* qemu's automatic choice */
        bs = p->size > (32ull << 40) ? 64 << 20 : p->size > (100ull << 30) ? 32 << 20 :
             p->size > (1ull << 30) ? 16 << 20 : 8 << 20;
    if (!dk_is_pow2(bs))
        return dk_error_set(c->err, -EINVAL, "Block size must be a power of two");
    p->log_size = (uint32_t)log;
    p->block_size = (uint32_t)bs;
    struct vhdx_layout *l = &p->lay;
    l->block_size = p->block_size;
    l->logical_sector = l->physical_sector = 512;
    l->disk_size = p->size;
    l->chunk_ratio = VHDX_SECTORS_PER_CHUNK * 512 / bs;
    l->payload_blocks = dk_div_round_up(p->size, bs);
    l->bat_entries = l->payload_blocks ? l->payload_blocks +
                     (l->payload_blocks - 1) / l->chunk_ratio : 0;
    l->bat.offset = dk_round_up(VHDX_MIB + log, VHDX_MIB);
    uint64_t bat_len = DK_MAX(dk_round_up(l->bat_entries * 8, VHDX_MIB), VHDX_MIB);
    l->bat.length = (uint32_t)bat_len;
    l->meta.offset = l->bat.offset + bat_len;
    l->meta.length = (uint32_t)VHDX_MIB;
    p->data_off = l->bat.offset + bat_len + 5 * VHDX_MIB;
    p->file_end = p->fixed ? p->data_off + p->size : p->data_off;
    return 0;
}

static int write_ident_and_headers(struct dk_file *f, const struct plan *p)
{
    uint8_t buf[VHDX_HEADER_SIZE];
    static const char creator[] = "diskkit";
    memset(buf, 0, sizeof(buf));
    memcpy(buf, VHDX_FILE_SIG, 8);
    for (size_t i = 0; i < sizeof(creator) - 1; i++)
        dk_put_le16(buf + 8 + 2 * i, (uint8_t)creator[i]);       /* UTF-16LE */
    int r = dk_file_pwrite(f, buf, sizeof(buf), 0);
    struct vhdx_header h = { .version = 1, .log_length = p->log_size,
                             .log_offset = VHDX_MIB };
    uint32_t seq;
    if (r == 0)
        r = vhdx_random(&seq, sizeof(seq));
    if (r == 0)
        r = vhdx_new_guid(h.file_write_guid);
    if (r == 0)
        r = vhdx_new_guid(h.data_write_guid);
    for (int i = 0; r == 0 && i < 2; i++) {
        h.sequence = (uint64_t)seq + (uint64_t)i;
        vhdx_header_encode(&h, buf);
        r = dk_file_pwrite(f, buf, sizeof(buf), i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
    }
    return r;
}

static int write_regions(struct dk_file *f, const struct plan *p)
{
    uint8_t *t = calloc(1, VHDX_REGION_SIZE);
    if (!t)
        return -ENOMEM;
    dk_put_le32(t, VHDX_REGION_SIG);
    dk_put_le32(t + 8, 2);
    memcpy(t + 16, vhdx_guid_bat, 16);
    dk_put_le64(t + 32, p->lay.bat.offset);
    dk_put_le32(t + 40, p->lay.bat.length);
    dk_put_le32(t + 44, VHDX_REGION_REQUIRED);
    memcpy(t + 48, vhdx_guid_meta, 16);
    dk_put_le64(t + 64, p->lay.meta.offset);
    dk_put_le32(t + 72, p->lay.meta.length);
    dk_put_le32(t + 76, VHDX_REGION_REQUIRED);
    dk_put_le32(t + 4, vhdx_checksum(t, VHDX_REGION_SIZE, 4));
    int r = dk_file_pwrite(f, t, VHDX_REGION_SIZE, VHDX_REGION1_OFF);
    if (r == 0)
        r = dk_file_pwrite(f, t, VHDX_REGION_SIZE, VHDX_REGION2_OFF);
    free(t);
    return r;
}

static int write_metadata(struct dk_file *f, const struct plan *p)
{
    /* Item order, lengths and flags as qemu writes them. */
    static const uint32_t len[5] = { 8, 8, 16, 4, 4 };
    static const uint32_t flags[5] = { 4, 6, 6, 6, 6 };      /* required, virtual disk */
    uint8_t *t = calloc(1, VHDX_META_TABLE_SIZE + 64);
    if (!t)
        return -ENOMEM;
    memcpy(t, VHDX_META_SIG, 8);
    dk_put_le16(t + 10, 5);
    uint8_t *item = t + VHDX_META_TABLE_SIZE;
    uint32_t off = VHDX_META_TABLE_SIZE;
    for (int k = 0; k < 5; k++) {
        uint8_t *e = t + 32 + 32 * k;
        memcpy(e, vhdx_meta_guid(k), 16);
        dk_put_le32(e + 16, off);
        dk_put_le32(e + 20, len[k]);
        dk_put_le32(e + 24, flags[k]);
        off += len[k];
    }
    dk_put_le32(item, p->block_size);
    dk_put_le32(item + 4, p->fixed ? VHDX_PARAM_LEAVE_ALLOC : 0);
    dk_put_le64(item + 8, p->size);
    int r = vhdx_new_guid(item + 16);                         /* page 83 */
    dk_put_le32(item + 32, 512);
    dk_put_le32(item + 36, 512);
    if (r == 0)
        r = dk_file_pwrite(f, t, VHDX_META_TABLE_SIZE + 40, p->lay.meta.offset);
    free(t);
    return r;
}

/* Fixed and zero-state images need BAT entries; dynamic ones are all zero
 * (NOT_PRESENT), which the sparse file already reads as. Written in
 * pieces: the BAT can be 512 MiB. */
static int write_bat(struct dk_file *f, const struct plan *p)
{
    const struct vhdx_layout *l = &p->lay;
    if (!p->fixed && !p->zero_state)
        return 0;
    const uint64_t per = 8192;
    uint8_t *buf = malloc(per * 8);
    int r = buf ? 0 : -ENOMEM;
    for (uint64_t i = 0; r == 0 && i < l->bat_entries; i += per) {
        uint64_t n = DK_MIN(per, l->bat_entries - i);
        memset(buf, 0, n * 8);
        for (uint64_t b = 0; b < l->payload_blocks; b++) {
            uint64_t idx = vhdx_bat_index(l, b);
            if (idx < i)
                continue;
            if (idx >= i + n)
                break;
            uint64_t e = p->zero_state ? VHDX_BAT_ZERO :
                         (p->data_off + b * l->block_size) | VHDX_BAT_FULLY_PRESENT;
            dk_put_le64(buf + (idx - i) * 8, e);
        }
        r = dk_file_pwrite(f, buf, n * 8, l->bat.offset + i * 8);
    }
    free(buf);
    return r;
}

int vhdx_create(const struct dk_create_ctx *c)
{
    struct plan p;
    int r = plan_image(c, &p);
    if (r < 0)
        return r;
    if (p.size == 0)
        return dk_error_set(c->err, -EINVAL, "vhdx: the image size must not be zero");
    int fd = open(c->filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return dk_error_set(c->err, -errno, "%s: %s", c->filename, strerror(errno));
    close(fd);
    struct dk_file *f;
    if ((r = dk_file_open(&f, c->filename, true, c->err)) < 0)
        return r;
    r = f->is_blockdev ? 0 : dk_file_truncate(f, 0);
    if (r == 0)
        r = write_ident_and_headers(f, &p);
    if (r == 0)
        r = write_regions(f, &p);
    if (r == 0)
        r = write_bat(f, &p);
    if (r == 0)
        r = write_metadata(f, &p);
    if (r == 0 && !f->is_blockdev)
        r = dk_file_truncate(f, p.file_end);
    if (r == 0)
        r = dk_file_flush(f);
    if (r < 0)
        dk_error_set(c->err, r, "%s: %s", c->filename, strerror(-r));
    dk_file_close(f);
    return r;
}

const struct dk_optdesc vhdx_create_opts[] = {
    { "size", DK_OPT_SIZE, "Virtual disk size; max of 64TB.", NULL },
    { "log_size", DK_OPT_SIZE, "Log size; min 1MB.", "1048576" },
    { "block_size", DK_OPT_SIZE,
      "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.", "0" },
    { "subformat", DK_OPT_STRING,
      "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'.", NULL },
    { "block_state_zero", DK_OPT_BOOL,
      "Force use of payload blocks of type 'ZERO'. Non-standard, but default.", NULL },
    { 0 }
};
