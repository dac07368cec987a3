/* check_vhdx.c - VHDX structure parsing (formats/vhdx/vhdx-parse.c):
 * CRC-32C, header decode/encode/validate/pick, log fields, region table,
 * metadata table and items, BAT index arithmetic (chunk ratio and the
 * sector bitmap interleave). Image-level tests are in
 * tests/interop/vhdx.sh. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/vhdx/vhdx.h"

static const uint8_t g_bat[16] = { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                   0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };
static const uint8_t g_meta[16] = { 0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                    0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e };
static const uint8_t g_items[5][16] = {
    { 0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
      0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b },   /* file parameters */
    { 0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
      0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8 },   /* disk size */
    { 0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
      0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46 },   /* page 83 */
    { 0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
      0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f },   /* logical sector */
    { 0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44,
      0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56 },   /* physical sector */
};
static char msg[256];

START_TEST(crc32c_known_values)
{
    /* RFC 3720 B.4 test vectors. */
    uint8_t buf[32];
    memset(buf, 0, sizeof(buf));
    ck_assert_uint_eq(vhdx_crc32c(0, buf, 32), 0x8a9136aau);
    memset(buf, 0xff, sizeof(buf));
    ck_assert_uint_eq(vhdx_crc32c(0, buf, 32), 0x62a8ab43u);
    ck_assert_uint_eq(vhdx_crc32c(0, "123456789", 9), 0xe3069283u);
    /* Running CRC over pieces equals one pass. */
    uint32_t c = vhdx_crc32c(0, "1234", 4);
    ck_assert_uint_eq(vhdx_crc32c(c, "56789", 5), 0xe3069283u);
    /* The checksum field is taken as zero. */
    uint8_t a[16] = "abcdXXXXefghijkl", b[16] = "abcd\0\0\0\0efghijkl";
    ck_assert_uint_eq(vhdx_checksum(a, 16, 4), vhdx_crc32c(0, b, 16));
}
END_TEST

static void make_header(uint8_t *buf, uint64_t seq)
{
    memset(buf, 0, VHDX_HEADER_SIZE);
    dk_put_le32(buf, VHDX_HEADER_SIG);
    dk_put_le64(buf + 8, seq);
    buf[16] = 0x42;
    dk_put_le16(buf + 66, 1);
    dk_put_le32(buf + 68, 1 << 20);
    dk_put_le64(buf + 72, 1 << 20);
    dk_put_le32(buf + 4, vhdx_checksum(buf, VHDX_HEADER_SIZE, 4));
}

START_TEST(header_rules)
{
    uint8_t buf[VHDX_HEADER_SIZE];
    struct vhdx_header h;
    make_header(buf, 7);
    ck_assert_int_eq(vhdx_header_decode(buf, 79, &h), -EINVAL);
    ck_assert_int_eq(vhdx_header_decode(buf, sizeof(buf), &h), 0);
    ck_assert_uint_eq(h.sequence, 7);
    ck_assert_uint_eq(h.log_offset, 1 << 20);
    ck_assert_int_eq(vhdx_header_validate(buf, &h, msg, sizeof(msg)), 0);
    buf[4000] ^= 1;                               /* checksum covers 4 KiB */
    ck_assert_int_eq(vhdx_header_validate(buf, &h, msg, sizeof(msg)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "checksum"));
    make_header(buf, 7);
    h.signature = 0x12345678;
    ck_assert_int_eq(vhdx_header_validate(buf, &h, msg, sizeof(msg)), -EINVAL);
    dk_put_le16(buf + 66, 2);
    dk_put_le32(buf + 4, vhdx_checksum(buf, VHDX_HEADER_SIZE, 4));
    vhdx_header_decode(buf, sizeof(buf), &h);
    ck_assert_int_eq(vhdx_header_validate(buf, &h, msg, sizeof(msg)), -EINVAL);
}
END_TEST

START_TEST(header_pick)
{
    struct vhdx_header h[2];
    memset(h, 0, sizeof(h));
    h[0].sequence = 5, h[1].sequence = 6;
    bool both[2] = { true, true }, first[2] = { true, false }, second[2] = { false, true },
         none[2] = { false, false };
    ck_assert_int_eq(vhdx_header_pick(h, both), 1);
    h[0].sequence = 9;
    ck_assert_int_eq(vhdx_header_pick(h, both), 0);
    ck_assert_int_eq(vhdx_header_pick(h, second), 1);     /* only valid one wins */
    ck_assert_int_eq(vhdx_header_pick(h, first), 0);
    ck_assert_int_eq(vhdx_header_pick(h, none), -1);
    h[1].sequence = 9;                                    /* equal, differing */
    h[1].log_length = 1;
    ck_assert_int_eq(vhdx_header_pick(h, both), -1);
    h[1].log_length = 0;                                  /* equal, identical */
    ck_assert_int_eq(vhdx_header_pick(h, both), 0);
}
END_TEST

START_TEST(log_fields)
{
    struct vhdx_header h;
    memset(&h, 0, sizeof(h));
    h.log_offset = 1 << 20, h.log_length = 1 << 20;
    ck_assert_int_eq(vhdx_log_fields_validate(&h, 4 << 20, msg, sizeof(msg)), 0);
    ck_assert_int_eq(vhdx_log_fields_validate(&h, (2 << 20) - 1, msg, sizeof(msg)), -EINVAL);
    h.log_offset = 4096;
    ck_assert_int_eq(vhdx_log_fields_validate(&h, 4 << 20, msg, sizeof(msg)), -EINVAL);
    h.log_offset = UINT64_MAX & ~0xfffffull;              /* overflow-safe */
    ck_assert_int_eq(vhdx_log_fields_validate(&h, 4 << 20, msg, sizeof(msg)), -EINVAL);
    h.log_offset = 1 << 20, h.log_version = 1;
    ck_assert_int_eq(vhdx_log_fields_validate(&h, 4 << 20, msg, sizeof(msg)), -ENOTSUP);
}
END_TEST

static uint8_t *make_regions(uint64_t bat_off, uint32_t bat_len, uint32_t extra_flags)
{
    uint8_t *t = calloc(1, VHDX_REGION_SIZE);
    dk_put_le32(t, VHDX_REGION_SIG);
    dk_put_le32(t + 8, extra_flags ? 3 : 2);
    memcpy(t + 16, g_bat, 16);
    dk_put_le64(t + 32, bat_off);
    dk_put_le32(t + 40, bat_len);
    dk_put_le32(t + 44, 1);
    memcpy(t + 48, g_meta, 16);
    dk_put_le64(t + 64, 3 << 20);
    dk_put_le32(t + 72, 1 << 20);
    dk_put_le32(t + 76, 1);
    if (extra_flags) {
        memset(t + 80, 0x77, 16);
        dk_put_le64(t + 96, 8 << 20);
        dk_put_le32(t + 104, 1 << 20);
        dk_put_le32(t + 108, extra_flags);
    }
    dk_put_le32(t + 4, vhdx_checksum(t, VHDX_REGION_SIZE, 4));
    return t;
}

START_TEST(region_rules)
{
    struct vhdx_layout l;
    uint8_t *t = make_regions(2 << 20, 1 << 20, 0);
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)), 0);
    ck_assert_uint_eq(l.bat.offset, 2 << 20);
    ck_assert_uint_eq(l.meta.offset, 3 << 20);
    /* Past EOF, overflowing, unaligned, overlapping. */
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 3 << 20, &l, msg, sizeof(msg)),
                     -EINVAL);
    free(t);
    t = make_regions(UINT64_MAX & ~0xfffffull, 1 << 20, 0);
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)),
                     -EINVAL);
    free(t);
    t = make_regions((2 << 20) + 4096, 1 << 20, 0);
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)),
                     -EINVAL);
    free(t);
    t = make_regions(3 << 20, 1 << 20, 0);
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)),
                     -EINVAL);
    free(t);
    /* Unknown optional region: fine; unknown required: refused. */
    t = make_regions(2 << 20, 1 << 20, 2);
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)), 0);
    free(t);
    t = make_regions(2 << 20, 1 << 20, 1);
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)),
                     -ENOTSUP);
    /* Bad checksum, bad signature, too many entries, missing metadata. */
    t[100] ^= 1;
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)),
                     -EINVAL);
    free(t);
    t = make_regions(2 << 20, 1 << 20, 0);
    dk_put_le32(t + 8, 2048);
    dk_put_le32(t + 4, vhdx_checksum(t, VHDX_REGION_SIZE, 4));
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)),
                     -EINVAL);
    dk_put_le32(t + 8, 1);
    dk_put_le32(t + 4, vhdx_checksum(t, VHDX_REGION_SIZE, 4));
    ck_assert_int_eq(vhdx_region_parse(t, VHDX_REGION_SIZE, 16 << 20, &l, msg, sizeof(msg)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "metadata"));
    free(t);
}
END_TEST

/* A metadata table with the five required items at 64 KiB + 32 k. */
static uint8_t *make_meta(void)
{
    uint8_t *t = calloc(1, VHDX_META_TABLE_SIZE);
    memcpy(t, VHDX_META_SIG, 8);
    dk_put_le16(t + 10, 5);
    for (int k = 0; k < 5; k++) {
        uint8_t *e = t + 32 + 32 * k;
        memcpy(e, g_items[k], 16);
        dk_put_le32(e + 16, VHDX_META_TABLE_SIZE + 32 * k);
        dk_put_le32(e + 20, k == 2 ? 16 : 8);
        dk_put_le32(e + 24, VHDX_META_REQUIRED);
    }
    return t;
}

static int decode(uint32_t bs, uint64_t size, uint32_t lss, uint32_t pss, uint32_t flags,
                  struct vhdx_layout *l)
{
    uint8_t item[VHDX_M_COUNT][16];
    uint32_t off[VHDX_M_COUNT] = { 1, 1, 1, 1, 1, UINT32_MAX };
    memset(item, 0, sizeof(item));
    memset(l, 0, sizeof(*l));
    dk_put_le32(item[VHDX_M_PARAMS], bs);
    dk_put_le32(item[VHDX_M_PARAMS] + 4, flags);
    dk_put_le64(item[VHDX_M_SIZE], size);
    dk_put_le32(item[VHDX_M_LOGICAL], lss);
    dk_put_le32(item[VHDX_M_PHYSICAL], pss);
    return vhdx_meta_decode(item, off, l, msg, sizeof(msg));
}

START_TEST(metadata_rules)
{
    uint32_t off[VHDX_M_COUNT];
    uint8_t *t = make_meta();
    ck_assert_int_eq(vhdx_meta_table_parse(t, 1 << 20, off, msg, sizeof(msg)), 0);
    ck_assert_uint_eq(off[VHDX_M_LOGICAL], VHDX_META_TABLE_SIZE + 96);
    ck_assert_uint_eq(off[VHDX_M_PARENT], UINT32_MAX);
    /* Item outside the region; region smaller than the table. */
    ck_assert_int_eq(vhdx_meta_table_parse(t, VHDX_META_TABLE_SIZE + 100, off, msg,
                                           sizeof(msg)), -EINVAL);
    ck_assert_int_eq(vhdx_meta_table_parse(t, 4096, off, msg, sizeof(msg)), -EINVAL);
    /* Item inside the table area. */
    dk_put_le32(t + 32 + 16, 100);
    ck_assert_int_eq(vhdx_meta_table_parse(t, 1 << 20, off, msg, sizeof(msg)), -EINVAL);
    free(t);
    /* Duplicate, missing, unknown required, unknown optional. */
    t = make_meta();
    memcpy(t + 32 + 32, g_items[0], 16);
    ck_assert_int_eq(vhdx_meta_table_parse(t, 1 << 20, off, msg, sizeof(msg)), -EINVAL);
    memset(t + 32 + 32, 0x55, 16);
    ck_assert_int_eq(vhdx_meta_table_parse(t, 1 << 20, off, msg, sizeof(msg)), -ENOTSUP);
    dk_put_le32(t + 32 + 32 + 24, 0);
    ck_assert_int_eq(vhdx_meta_table_parse(t, 1 << 20, off, msg, sizeof(msg)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "virtual disk size"));
    dk_put_le16(t + 10, 2048);
    ck_assert_int_eq(vhdx_meta_table_parse(t, 1 << 20, off, msg, sizeof(msg)), -EINVAL);
    memcpy(t, "metadatX", 8);
    ck_assert_int_eq(vhdx_meta_table_parse(t, 1 << 20, off, msg, sizeof(msg)), -EINVAL);
    free(t);
}
END_TEST

START_TEST(item_rules)
{
    struct vhdx_layout l;
    ck_assert_int_eq(decode(32 << 20, 10ull << 30, 512, 4096, 0, &l), 0);
    ck_assert_uint_eq(l.chunk_ratio, 128);                 /* 2^23 * 512 / 32 MiB */
    ck_assert_uint_eq(l.payload_blocks, 320);
    ck_assert_uint_eq(l.bat_entries, 320 + 2);
    ck_assert_int_eq(decode(1 << 20, 4ull << 30, 512, 512, 0, &l), 0);
    ck_assert_uint_eq(l.chunk_ratio, 4096);
    ck_assert_uint_eq(l.bat_entries, 4096);                /* exactly one chunk */
    ck_assert_int_eq(decode(1 << 20, (4ull << 30) + 512, 512, 512, 0, &l), 0);
    ck_assert_uint_eq(l.bat_entries, 4097 + 1);
    ck_assert_int_eq(decode(1 << 20, 1 << 20, 4096, 4096, 0, &l), 0);
    ck_assert_uint_eq(l.chunk_ratio, 32768);
    ck_assert_int_eq(decode(256u << 20, 3ull << 20, 512, 512, 0, &l), 0);
    ck_assert_uint_eq(l.chunk_ratio, 16);
    ck_assert_uint_eq(l.payload_blocks, 1);
    /* Block size: not a power of two, too small, too big. */
    ck_assert_int_eq(decode(3 << 20, 1 << 30, 512, 512, 0, &l), -EINVAL);
    ck_assert_int_eq(decode(1 << 19, 1 << 30, 512, 512, 0, &l), -EINVAL);
    ck_assert_int_eq(decode(512u << 20, 1 << 30, 512, 512, 0, &l), -EINVAL);
    /* Sector sizes, disk size. */
    ck_assert_int_eq(decode(1 << 20, 1 << 30, 1024, 512, 0, &l), -EINVAL);
    ck_assert_int_eq(decode(1 << 20, 1 << 30, 512, 2048, 0, &l), -EINVAL);
    ck_assert_int_eq(decode(1 << 20, 0, 512, 512, 0, &l), -EINVAL);
    ck_assert_int_eq(decode(1 << 20, 1000, 512, 512, 0, &l), -EINVAL);
    ck_assert_int_eq(decode(1 << 20, 4096 + 512, 4096, 512, 0, &l), -EINVAL);
    ck_assert_int_eq(decode(1 << 20, (64ull << 40) + 512, 512, 512, 0, &l), -EINVAL);
    ck_assert_int_eq(decode(1 << 20, 64ull << 40, 512, 512, 0, &l), 0);
    /* Has parent: without a locator invalid; with one unsupported. */
    ck_assert_int_eq(decode(1 << 20, 1 << 30, 512, 512, VHDX_PARAM_HAS_PARENT, &l), -EINVAL);
    ck_assert_int_eq(decode(1 << 20, 1 << 30, 512, 512, VHDX_PARAM_LEAVE_ALLOC, &l), 0);
}
END_TEST

START_TEST(bat_interleave)
{
    struct vhdx_layout l;
    ck_assert_int_eq(decode(32 << 20, 10ull << 30, 512, 512, 0, &l), 0);
    /* chunk ratio 128: entries 0..127 payload, 128 bitmap, 129.. payload */
    ck_assert_uint_eq(vhdx_bat_index(&l, 0), 0);
    ck_assert_uint_eq(vhdx_bat_index(&l, 127), 127);
    ck_assert_uint_eq(vhdx_bat_index(&l, 128), 129);
    ck_assert_uint_eq(vhdx_bat_index(&l, 256), 258);
    ck_assert_uint_eq(vhdx_bat_index(&l, 319), 321);
    ck_assert_uint_eq(vhdx_bitmap_index(&l, 0), 128);
    ck_assert_uint_eq(vhdx_bitmap_index(&l, 127), 128);
    ck_assert_uint_eq(vhdx_bitmap_index(&l, 128), 257);
    ck_assert_uint_eq(vhdx_bat_index(&l, l.payload_blocks - 1), l.bat_entries - 1);
    /* 4096-byte sectors, 1 MiB blocks: chunk ratio 32768. */
    ck_assert_int_eq(decode(1 << 20, 40ull << 30, 4096, 4096, 0, &l), 0);
    ck_assert_uint_eq(vhdx_bat_index(&l, 32767), 32767);
    ck_assert_uint_eq(vhdx_bat_index(&l, 32768), 32769);
    ck_assert_uint_eq(vhdx_bat_index(&l, l.payload_blocks - 1), l.bat_entries - 1);
}
END_TEST


/* Writes a log entry at POS of LOG (LEN bytes): one "desc" for file
 * offset DOFF holding bytes FILL, one "zero" for ZOFF/ZLEN. Returns the
 * entry length. */
static uint32_t put_entry(uint8_t *log, uint32_t len, uint32_t pos, uint64_t seq,
                          const uint8_t *guid, uint64_t doff, uint8_t fill,
                          uint64_t zoff, uint64_t zlen)
{
    uint8_t e[8192];
    memset(e, 0, sizeof(e));
    dk_put_le32(e, VHDX_LOG_SIG);
    dk_put_le32(e + 8, sizeof(e));
    dk_put_le64(e + 16, seq);
    dk_put_le32(e + 24, 2);
    memcpy(e + 32, guid, 16);
    dk_put_le64(e + 48, 1 << 20);
    dk_put_le64(e + 56, 1 << 20);
    uint8_t *d = e + 64;                      /* "desc" */
    memcpy(d, "desc", 4);
    memset(d + 4, fill, 4);                   /* trailing bytes */
    memset(d + 8, fill, 8);                   /* leading bytes */
    dk_put_le64(d + 16, doff);
    dk_put_le64(d + 24, seq);
    d += 32;                                  /* "zero" */
    memcpy(d, "zero", 4);
    dk_put_le64(d + 8, zlen);
    dk_put_le64(d + 16, zoff);
    dk_put_le64(d + 24, seq);
    uint8_t *ds = e + 4096;                   /* data sector */
    memcpy(ds, "data", 4);
    dk_put_le32(ds + 4, (uint32_t)(seq >> 32));
    memset(ds + 8, fill, 4084);
    dk_put_le32(ds + 4092, (uint32_t)seq);
    dk_put_le32(e + 4, vhdx_checksum(e, sizeof(e), 4));
    for (uint32_t i = 0; i < sizeof(e); i += 4096)   /* may wrap */
        memcpy(log + (pos + i) % len, e + i, 4096);
    return sizeof(e);
}

START_TEST(log_find_and_replay)
{
    const uint32_t len = 1 << 20;
    uint8_t *log = calloc(1, len), guid[16], other[16];
    memset(guid, 0x5a, 16);
    memset(other, 0x33, 16);
    struct vhdx_log_seq seq;
    struct vhdx_overlay o;
    memset(&o, 0, sizeof(o));
    /* Empty log: nothing. */
    ck_assert_int_eq(vhdx_log_find(log, len, guid, &seq), 0);
    ck_assert_uint_eq(seq.count, 0);
    /* An old sequence (5, 6) and a newer one (9, 10) wrapping the end;
     * an entry under another GUID is ignored. */
    put_entry(log, len, 0, 5, guid, 0x200000, 0x11, 0, 0);
    put_entry(log, len, 8192, 6, guid, 0x201000, 0x22, 0, 0);
    put_entry(log, len, 65536, 20, other, 0x200000, 0x77, 0, 0);
    ck_assert_int_eq(vhdx_log_find(log, len, guid, &seq), 0);
    ck_assert_uint_eq(seq.start, 0);
    ck_assert_uint_eq(seq.count, 2);
    ck_assert_uint_eq(seq.last.sequence, 6);
    put_entry(log, len, len - 8192, 9, guid, 0x200000, 0x33, 0x300000, 0x2000);
    ck_assert_int_eq(vhdx_log_find(log, len, guid, &seq), 0);
    ck_assert_uint_eq(seq.start, len - 8192);
    ck_assert_uint_eq(seq.count, 1);          /* 9 is followed by 5, not 10 */
    ck_assert_uint_eq(seq.last.sequence, 9);
    /* Put 10 right after 9 (that is, at 0, over the old 5). */
    put_entry(log, len, 0, 10, guid, 0x200000, 0x44, 0, 0);
    ck_assert_int_eq(vhdx_log_find(log, len, guid, &seq), 0);
    ck_assert_uint_eq(seq.start, len - 8192);
    ck_assert_uint_eq(seq.count, 2);
    ck_assert_uint_eq(seq.last.sequence, 10);
    ck_assert_int_eq(vhdx_log_build(log, len, guid, &seq, &o), 0);
    ck_assert_uint_eq(o.n, 3);                /* desc 9, zero 9, desc 10 */
    uint8_t buf[3 * 4096];
    memset(buf, 0xee, sizeof(buf));
    vhdx_overlay_apply(&o, buf, sizeof(buf), 0x200000 - 4096);
    ck_assert_uint_eq(buf[0], 0xee);          /* before: untouched */
    ck_assert_uint_eq(buf[4096], 0x44);       /* 10 wins over 9 */
    ck_assert_uint_eq(buf[8191], 0x44);
    ck_assert_uint_eq(buf[8192], 0xee);
    memset(buf, 0xee, sizeof(buf));
    vhdx_overlay_apply(&o, buf, sizeof(buf), 0x300000 - 4096);
    ck_assert_uint_eq(buf[4095], 0xee);
    ck_assert_uint_eq(buf[4096], 0);          /* zero descriptor, 8 KiB */
    ck_assert_uint_eq(buf[3 * 4096 - 1], 0);
    ck_assert(vhdx_overlay_touches(&o, 0x301fff, 1));
    ck_assert(!vhdx_overlay_touches(&o, 0x302000, 4096));
    vhdx_overlay_free(&o);
    /* A damaged data sector makes entry 9 invalid: 10 alone is left. */
    log[len - 4096 + 100] ^= 1;
    ck_assert_int_eq(vhdx_log_find(log, len, guid, &seq), 0);
    ck_assert_uint_eq(seq.start, 0);
    ck_assert_uint_eq(seq.count, 1);
    ck_assert_uint_eq(seq.last.sequence, 10);
    /* Bad descriptor sequence number: invalid even with a good CRC. */
    put_entry(log, len, 0, 10, guid, 0x200000, 0x44, 0, 0);
    dk_put_le64(log + 64 + 24, 8);
    dk_put_le32(log + 4, 0);
    dk_put_le32(log + 4, vhdx_checksum(log, 8192, 4));
    ck_assert_int_eq(vhdx_log_find(log, len, guid, &seq), 0);
    ck_assert_uint_eq(seq.last.sequence, 6);  /* back to the old sequence */
    free(log);
}
END_TEST

START_TEST(header_encode_round_trip)
{
    struct vhdx_header h, d;
    uint8_t buf[VHDX_HEADER_SIZE];
    memset(&h, 0, sizeof(h));
    h.signature = VHDX_HEADER_SIG;
    h.sequence = 0x0123456789abcdefull;
    ck_assert_int_eq(vhdx_new_guid(h.file_write_guid), 0);
    ck_assert_int_eq(h.file_write_guid[7] >> 4, 4);     /* version 4, LE data3 */
    memset(h.data_write_guid, 0xd1, 16);
    h.version = 1;
    h.log_length = 2 << 20;
    h.log_offset = 1 << 20;
    vhdx_header_encode(&h, buf);
    ck_assert_int_eq(buf[8], 0xef);
    ck_assert_int_eq(buf[15], 0x01);
    ck_assert_int_eq(vhdx_header_decode(buf, sizeof(buf), &d), 0);
    ck_assert_int_eq(vhdx_header_validate(buf, &d, msg, sizeof(msg)), 0);
    h.checksum = d.checksum;
    ck_assert(memcmp(&h, &d, sizeof(h)) == 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vhdx");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, crc32c_known_values);
    tcase_add_test(tc, header_rules);
    tcase_add_test(tc, header_pick);
    tcase_add_test(tc, header_encode_round_trip);
    tcase_add_test(tc, log_fields);
    tcase_add_test(tc, region_rules);
    tcase_add_test(tc, metadata_rules);
    tcase_add_test(tc, item_rules);
    tcase_add_test(tc, bat_interleave);
    tcase_add_test(tc, log_find_and_replay);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
