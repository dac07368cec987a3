/* check_lvm.c - the LVM2 reader: the text metadata parser on good and
 * hostile input (depth, sizes, strings, numbers, node cap), the VG/LV
 * model (segments, stripes, PV ranges, snapshots, names) and its extent
 * mapping, and the on-disk PV label and metadata areas (CRCs, bounds,
 * circular wrap) from synthetic disks in memory.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lvm.h"
#include "util/endian.h"

static char err[256];

static int parse(const char *text, struct lvm_node **root)
{
    return lvm_text_parse(text, strlen(text), root, err, sizeof(err));
}

/* ---------------------------------------------------------- text */

START_TEST(text_ok)
{
    struct lvm_node *root;
    const char *t = "# comment\nvg {\n id = \"a\\\"b\\\\c\" # trailing\n"
                    " seqno = 12\n neg = -5\n f = 1.5\n"
                    " status = [\"READ\", \"VISIBLE\"]\n empty = []\n"
                    " sub { x = 'single' }\n}\ncontents = \"Text\"\nversion = 1\n";
    ck_assert_int_eq(parse(t, &root), 0);
    const struct lvm_node *vg = lvm_node_get(root, "vg");
    ck_assert_ptr_nonnull(vg);
    ck_assert_str_eq(lvm_node_str(vg, "id"), "a\"b\\c");
    int64_t v;
    ck_assert(lvm_node_int(vg, "seqno", &v) && v == 12);
    ck_assert(lvm_node_int(vg, "neg", &v) && v == -5);
    ck_assert(!lvm_node_int(vg, "f", &v));
    ck_assert(!lvm_node_int(vg, "id", &v));
    ck_assert(lvm_node_has_flag(vg, "status", "VISIBLE"));
    ck_assert(!lvm_node_has_flag(vg, "status", "WRITE"));
    ck_assert(!lvm_node_has_flag(vg, "empty", "READ"));
    ck_assert_str_eq(lvm_node_str(lvm_node_get(vg, "sub"), "x"), "single");
    ck_assert(lvm_node_int(root, "version", &v) && v == 1);
    ck_assert_ptr_null(lvm_node_get(vg, "missing"));
    lvm_node_free(root);
    /* A NUL ends the text, as lvm2 writes it. */
    const char with_nul[] = "a = 1\0garbage {{{";
    ck_assert_int_eq(lvm_text_parse(with_nul, sizeof(with_nul), &root, err, sizeof(err)), 0);
    lvm_node_free(root);
}
END_TEST

START_TEST(text_hostile)
{
    static const char *const bad[] = {
        "a = ", "a 1", "a = [1, 2", "a = [1 2]", "a = [[1]]", "a = \"open",
        "a = \"x\\", "s { a = 1", "}", "a = 1 }", "= 1", "a = 99999999999999999999",
        "a = 9223372036854775808", "a = -", "a = 12abc", "a = {", "a = @",
        "s { t { u = [\"x\",] } }",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lvm_node *root = (void *)1;
        err[0] = 0;
        ck_assert_msg(parse(bad[i], &root) == -EINVAL, "accepted: %s", bad[i]);
        ck_assert_ptr_null(root);
        ck_assert_msg(strncmp(err, "metadata line ", 14) == 0, "%s: %s", bad[i], err);
        ck_assert(strchr(err, '\n') == NULL);
    }
    struct lvm_node *root;
    ck_assert_int_eq(parse("a = 9223372036854775807\nb = -9223372036854775807", &root), 0);
    lvm_node_free(root);
    ck_assert_int_eq(parse("", &root), 0);
    ck_assert_ptr_null(root->child);
    lvm_node_free(root);
    ck_assert_int_eq(parse("x = 1\ny = \n", &root), -EINVAL);
    ck_assert_str_eq(err, "metadata line 3: unexpected end of text");
}
END_TEST

START_TEST(text_caps)
{
    struct lvm_node *root;
    char *t = malloc(8 * LVM_TEXT_MAX_DEPTH + 64);
    size_t k = 0;
    for (unsigned i = 0; i < LVM_TEXT_MAX_DEPTH - 1; i++)
        k += (size_t)sprintf(t + k, "s {");
    k += (size_t)sprintf(t + k, "a = 1");
    for (unsigned i = 0; i < LVM_TEXT_MAX_DEPTH - 1; i++)
        t[k++] = '}';
    t[k] = 0;
    ck_assert_int_eq(parse(t, &root), 0);           /* just inside the cap */
    lvm_node_free(root);
    memmove(t + 3, t, k + 1);
    memcpy(t, "s {", 3);
    strcat(t, "}");
    ck_assert_int_eq(parse(t, &root), -EINVAL);
    ck_assert(strstr(err, "nested deeper") != NULL);
    free(t);
    /* A string longer than the cap. */
    size_t n = LVM_TEXT_MAX_STRING + 16;
    t = malloc(n + 16);
    memset(t, 'x', n + 16);
    memcpy(t, "a = \"", 5);
    strcpy(t + n, "\"");
    ck_assert_int_eq(parse(t, &root), -EINVAL);
    ck_assert(strstr(err, "string longer") != NULL);
    free(t);
    /* More values than the node cap: an array of single digits. */
    n = (size_t)LVM_TEXT_MAX_NODES + 8;
    t = malloc(2 * n + 16);
    k = (size_t)sprintf(t, "a = [");
    for (size_t i = 0; i < n; i++)
        t[k++] = '1', t[k++] = ',';
    strcpy(t + k, "1]");
    ck_assert_int_eq(parse(t, &root), -EINVAL);
    ck_assert(strstr(err, "more than") != NULL);
    free(t);
}
END_TEST

/* ----------------------------------------------------------- VG */

#define VG_HEAD "vg0 { id = \"VGID\" seqno = 4 extent_size = 8192\n" \
    "physical_volumes {\n" \
    " pv0 { id = \"aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg\" pe_start = 2048 pe_count = 10 }\n" \
    " pv1 { id = \"AAAAAA-bbbb-cccc-dddd-eeee-ffff-gggggg\" pe_start = 2048 pe_count = 10 } }\n"

static struct lvm_vg *vg_of(const char *lvs)
{
    char t[4096];
    snprintf(t, sizeof(t), "%slogical_volumes { %s } }", VG_HEAD, lvs);
    struct lvm_vg *vg;
    ck_assert_msg(lvm_vg_parse(t, strlen(t), &vg, err, sizeof(err)) == 0, "%s", err);
    return vg;
}

static void place(struct lvm_vg *vg)
{
    for (size_t i = 0; i < vg->npvs; i++) {
        vg->pvs[i].present = true;
        vg->pvs[i].disk = (unsigned)i;
        vg->pvs[i].dev_off = 1000000 * (i + 1);
        vg->pvs[i].dev_size = 1048576 + 10 * 4194304ull;
    }
    lvm_vg_finish(vg);
}

START_TEST(vg_linear_striped)
{
    struct lvm_vg *vg = vg_of(
        "root { id = \"R\" status = [\"READ\", \"VISIBLE\"] segment_count = 2\n"
        " segment2 { start_extent = 3 extent_count = 1 type = \"striped\" stripe_count = 1"
        "  stripes = [ \"pv1\", 5 ] }\n"
        " segment1 { start_extent = 0 extent_count = 3 type = \"striped\" stripe_count = 1"
        "  stripes = [ \"pv0\", 2 ] } }\n"
        "st { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 4"
        " type = \"striped\" stripe_count = 2 stripe_size = 128 stripes = [\"pv0\", 6, \"pv1\", 0] } }\n"
        "my-lv { segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1"
        " stripes = [\"pv0\", 9] } }");
    ck_assert_str_eq(vg->name, "vg0");
    ck_assert_uint_eq(vg->extent_size, 4194304);
    ck_assert_uint_eq(vg->nlvs, 3);
    place(vg);
    struct lvm_lv *root = &vg->lvs[0], *st = &vg->lvs[1], *my = &vg->lvs[2];
    ck_assert_str_eq(root->error, "");
    ck_assert(root->visible && st->visible && !my->visible);
    ck_assert_str_eq(root->device, "/dev/vg0/root");
    ck_assert_str_eq(my->mapper, "/dev/mapper/vg0-my--lv");
    ck_assert_uint_eq(root->size, 4 * 4194304ull);
    unsigned disk;
    uint64_t at, run;
    lvm_lv_map(vg, root, 100, &disk, &at, &run);     /* pv0, extent 2 */
    ck_assert_uint_eq(disk, 0);
    ck_assert_uint_eq(at, 1000000 + 1048576 + 2 * 4194304ull + 100);
    ck_assert_uint_eq(run, 3 * 4194304ull - 100);
    lvm_lv_map(vg, root, 3 * 4194304ull + 7, &disk, &at, &run);   /* pv1, extent 5 */
    ck_assert_uint_eq(disk, 1);
    ck_assert_uint_eq(at, 2000000 + 1048576 + 5 * 4194304ull + 7);
    ck_assert_uint_eq(run, 4194304 - 7);
    /* 64 KiB chunks alternate: chunk 0 pv0, 1 pv1, 2 pv0 row 1, ... */
    lvm_lv_map(vg, st, 65536 + 10, &disk, &at, &run);
    ck_assert_uint_eq(disk, 1);
    ck_assert_uint_eq(at, 2000000 + 1048576 + 10);
    ck_assert_uint_eq(run, 65536 - 10);
    lvm_lv_map(vg, st, 2 * 65536, &disk, &at, &run);
    ck_assert_uint_eq(disk, 0);
    ck_assert_uint_eq(at, 1000000 + 1048576 + 6 * 4194304ull + 65536);
    lvm_lv_map(vg, st, st->size - 1, &disk, &at, &run);
    ck_assert_uint_eq(disk, 1);
    ck_assert_uint_eq(run, 1);
    lvm_vg_free(vg);
}
END_TEST

START_TEST(vg_unsupported)
{
    struct lvm_vg *vg = vg_of(
        "r1 { status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1"
        " type = \"raid1\" } }\n"
        "gap { segment1 { start_extent = 1 extent_count = 1 type = \"striped\" stripe_count = 1"
        " stripes = [\"pv0\", 0] } }\n"
        "beyond { segment1 { start_extent = 0 extent_count = 2 type = \"striped\""
        " stripe_count = 1 stripes = [\"pv0\", 9] } }\n"
        "nopv { segment1 { start_extent = 0 extent_count = 1 type = \"striped\""
        " stripe_count = 1 stripes = [\"pv7\", 0] } }\n"
        "odd { segment1 { start_extent = 0 extent_count = 3 type = \"striped\""
        " stripe_count = 2 stripe_size = 128 stripes = [\"pv0\", 0, \"pv1\", 0] } }\n"
        "badchunk { segment1 { start_extent = 0 extent_count = 2 type = \"striped\""
        " stripe_count = 2 stripe_size = 3000 stripes = [\"pv0\", 0, \"pv1\", 0] } }\n"
        "short { segment1 { start_extent = 0 extent_count = 2 type = \"striped\""
        " stripe_count = 2 stripe_size = 128 stripes = [\"pv0\", 0] } }\n"
        "huge { segment1 { start_extent = 0 extent_count = 4611686018427387904"
        " type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 0] } }\n"
        "origin { segment1 { start_extent = 0 extent_count = 1 type = \"striped\""
        " stripe_count = 1 stripes = [\"pv0\", 0] } }\n"
        "cow { segment1 { start_extent = 0 extent_count = 1 type = \"striped\""
        " stripe_count = 1 stripes = [\"pv0\", 1] } }\n"
        "snapshot0 { segment1 { start_extent = 0 extent_count = 1 type = \"snapshot\""
        " origin = \"origin\" cow_store = \"cow\" } }");
    place(vg);
    static const char *const want[][2] = {
        { "r1", "LV vg0/r1: segment type raid1 not supported" },
        { "gap", "LV vg0/gap: segments leave a gap or overlap at extent 0" },
        { "beyond", "LV vg0/beyond: segment segment1: extents beyond the end of PV pv0" },
        { "nopv", "LV vg0/nopv: segment segment1: unknown PV pv7" },
        { "odd", "LV vg0/odd: segment segment1: bad stripe_count or stripes" },
        { "badchunk", "LV vg0/badchunk: segment segment1: bad stripe_size" },
        { "short", "LV vg0/short: segment segment1: bad stripes list" },
        { "huge", "LV vg0/huge: segment segment1: size overflows" },
        { "cow", "LV vg0/cow: snapshot (copy-on-write store) not supported" },
        { "origin", "" },
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct lvm_lv *lv = NULL;
        for (size_t k = 0; k < vg->nlvs; k++)
            if (!strcmp(vg->lvs[k].name, want[i][0]))
                lv = &vg->lvs[k];
        ck_assert_ptr_nonnull(lv);
        ck_assert_str_eq(lv->error, want[i][1]);
    }
    for (size_t k = 0; k < vg->nlvs; k++)
        if (!strcmp(vg->lvs[k].name, "origin"))
            ck_assert(strstr(vg->lvs[k].no_write, "has snapshots") != NULL);
    lvm_vg_free(vg);
}
END_TEST

START_TEST(vg_missing_pv_and_device_size)
{
    struct lvm_vg *vg = vg_of(
        "a { segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1"
        " stripes = [\"pv1\", 0] } }\n"
        "b { segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1"
        " stripes = [\"pv0\", 9] } }");
    vg->pvs[0].present = true;
    vg->pvs[0].dev_size = 1048576 + 9 * 4194304ull;     /* one extent short */
    lvm_vg_finish(vg);
    ck_assert_str_eq(vg->lvs[0].error,
                     "LV vg0/a: PV pv1 (uuid AAAAAAbbbbccccddddeeeeffffgggggg) is missing");
    ck_assert_str_eq(vg->lvs[1].error,
                     "LV vg0/b: extents beyond the end of the device of PV pv0");
    lvm_vg_free(vg);
}
END_TEST

START_TEST(vg_bad)
{
    static const char *const bad[] = {
        "vg0 { id = \"x\" seqno = 1 }",                                /* no extent_size */
        "vg0 { id = \"x\" seqno = 1 extent_size = 0 physical_volumes { } }",
        "vg0 { id = \"x\" seqno = -1 extent_size = 8 }",
        "a { } b { }",                                                  /* two VGs */
        "contents = \"x\"",                                             /* no VG */
        "-vg { id = \"x\" seqno = 1 extent_size = 8 }",                 /* bad name */
        "vg0 { id = \"x\" seqno = 1 extent_size = 8 physical_volumes { } }",
        "vg0 { id = \"x\" seqno = 1 extent_size = 8 physical_volumes {"
        " pv0 { id = \"short\" pe_start = 1 pe_count = 1 } } }",
        VG_HEAD "logical_volumes { ../x { } } }",
        VG_HEAD "logical_volumes { a { } a { } } }",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lvm_vg *vg = (void *)1;
        ck_assert_msg(lvm_vg_parse(bad[i], strlen(bad[i]), &vg, err, sizeof(err)) == -EINVAL,
                      "accepted %zu", i);
        ck_assert_ptr_null(vg);
        ck_assert(err[0] != 0);
    }
}
END_TEST

/* ------------------------------------------------------ on disk */

#define DISK_SIZE (2u << 20)
static uint8_t disk[DISK_SIZE];
static int fail_reads;

static int mem_read(void *opaque, void *buf, size_t len, uint64_t off)
{
    if (fail_reads || off > DISK_SIZE || len > DISK_SIZE - off)
        return -EIO;
    memcpy(buf, disk + off, len);
    return 0;
}

static const char text[] = VG_HEAD "}";
#define MDA_OFF 4096u
#define MDA_SIZE 65536u

static void put_label(void)
{
    uint8_t *l = disk + 512;
    memset(l, 0, 512);
    memcpy(l, "LABELONE", 8);
    dk_put_le64(l + 8, 1);
    dk_put_le32(l + 20, 32);
    memcpy(l + 24, "LVM2 001", 8);
    memcpy(l + 32, "aaaaaabbbbccccddddeeeeffffgggggg", 32);
    dk_put_le64(l + 64, DISK_SIZE);
    dk_put_le64(l + 72, 1048576);                   /* data area, then terminator */
    dk_put_le64(l + 104, MDA_OFF);                  /* metadata area */
    dk_put_le64(l + 112, MDA_SIZE);
    dk_put_le32(l + 16, lvm_crc(LVM_INITIAL_CRC, l + 20, 512 - 20));
}

/* Metadata text at TOFF of the area (wrapping if it runs past the end). */
static void put_mda(uint64_t toff, uint64_t tlen_override)
{
    uint8_t *h = disk + MDA_OFF;
    size_t len = sizeof(text) - 1;
    memset(h, 0, 512);
    memcpy(h + 4, " LVM2 x[5A%r0N*>", 16);
    dk_put_le32(h + 20, 1);
    dk_put_le64(h + 24, MDA_OFF);
    dk_put_le64(h + 32, MDA_SIZE);
    size_t first = len < MDA_SIZE - toff ? len : (size_t)(MDA_SIZE - toff);
    memcpy(disk + MDA_OFF + toff, text, first);
    memcpy(disk + MDA_OFF + 512, text + first, len - first);
    dk_put_le64(h + 40, toff);
    dk_put_le64(h + 48, tlen_override ? tlen_override : len);
    dk_put_le32(h + 56, lvm_crc(LVM_INITIAL_CRC, text, len));
    dk_put_le32(h, lvm_crc(LVM_INITIAL_CRC, h + 4, 512 - 4));
}

static int read_pv(struct lvm_pvlabel *lb)
{
    return lvm_pv_read(mem_read, NULL, 0, DISK_SIZE, lb, err, sizeof(err));
}

START_TEST(pv_ok_and_wrap)
{
    struct lvm_pvlabel lb;
    memset(disk, 0, sizeof(disk));
    put_label();
    put_mda(512, 0);
    ck_assert_int_eq(read_pv(&lb), 0);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(lb.uuid, "aaaaaabbbbccccddddeeeeffffgggggg");
    ck_assert_uint_eq(lb.ntext, 1);
    ck_assert_str_eq(lb.text[0], text);
    lvm_pvlabel_free(&lb);
    put_mda(MDA_SIZE - 100, 0);                     /* wraps after 100 bytes */
    ck_assert_int_eq(read_pv(&lb), 0);
    ck_assert_uint_eq(lb.ntext, 1);
    ck_assert_str_eq(lb.text[0], text);
    lvm_pvlabel_free(&lb);
    /* No label: not a PV. Read errors are errors. */
    memset(disk + 512, 0, 512);
    ck_assert_int_eq(read_pv(&lb), 1);
    put_label();
    fail_reads = 1;
    ck_assert_int_eq(read_pv(&lb), -EIO);
    fail_reads = 0;
}
END_TEST

START_TEST(pv_damaged)
{
    struct lvm_pvlabel lb;
    memset(disk, 0, sizeof(disk));
    put_label();
    put_mda(512, 0);
    disk[512 + 200] ^= 1;                           /* label CRC */
    ck_assert_int_eq(read_pv(&lb), -EINVAL);
    ck_assert_str_eq(err, "LVM2 label checksum mismatch");
    put_label();
    dk_put_le64(disk + 512 + 8, 3);                 /* claims another sector */
    dk_put_le32(disk + 512 + 16, lvm_crc(LVM_INITIAL_CRC, disk + 512 + 20, 492));
    ck_assert_int_eq(read_pv(&lb), -EINVAL);
    put_label();
    dk_put_le32(disk + 512 + 20, 490);              /* pv_header offset */
    dk_put_le32(disk + 512 + 16, lvm_crc(LVM_INITIAL_CRC, disk + 512 + 20, 492));
    ck_assert_int_eq(read_pv(&lb), -EINVAL);
    /* An area list with no terminator runs off the sector. */
    put_label();
    for (size_t o = 72; o + 16 <= 512; o += 16)
        dk_put_le64(disk + 512 + o, 1 + o);
    dk_put_le32(disk + 512 + 16, lvm_crc(LVM_INITIAL_CRC, disk + 512 + 20, 492));
    ck_assert_int_eq(read_pv(&lb), -EINVAL);
    ck_assert(strstr(err, "runs past the sector") != NULL);
    /* Damaged metadata areas: the PV is read, the text is not, warned. */
    static const struct { uint64_t toff, tlen; const char *msg; } cases[] = {
        { 512, 1ull << 62, "does not fit" },
        { MDA_SIZE - 16, MDA_SIZE - 256, "does not fit" },
        { 100, 0, "does not fit" },
        { MDA_SIZE, 0, "does not fit" },
        { 512, 20, "text checksum mismatch" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        put_label();
        put_mda(cases[i].toff == 100 || cases[i].toff == MDA_SIZE ? 512 : cases[i].toff,
                cases[i].tlen);
        if (cases[i].toff == 100 || cases[i].toff == MDA_SIZE) {
            dk_put_le64(disk + MDA_OFF + 40, cases[i].toff);
            dk_put_le32(disk + MDA_OFF, lvm_crc(LVM_INITIAL_CRC, disk + MDA_OFF + 4, 508));
        }
        ck_assert_int_eq(read_pv(&lb), 0);
        ck_assert_uint_eq(lb.ntext, 0);
        ck_assert_msg(strstr(err, cases[i].msg) != NULL, "%zu: %s", i, err);
    }
    put_mda(512, 0);
    disk[MDA_OFF + 100] ^= 1;
    ck_assert_int_eq(read_pv(&lb), 0);
    ck_assert_uint_eq(lb.ntext, 0);
    ck_assert(strstr(err, "header at 4096: checksum mismatch") != NULL);
    put_mda(512, 0);                                /* start disagrees */
    dk_put_le64(disk + MDA_OFF + 24, 0);
    dk_put_le32(disk + MDA_OFF, lvm_crc(LVM_INITIAL_CRC, disk + MDA_OFF + 4, 508));
    ck_assert_int_eq(read_pv(&lb), 0);
    ck_assert(strstr(err, "disagrees") != NULL);
    put_mda(512, 0);                                /* area beyond the device */
    dk_put_le64(disk + 512 + 112, DISK_SIZE);
    dk_put_le32(disk + 512 + 16, lvm_crc(LVM_INITIAL_CRC, disk + 512 + 20, 492));
    ck_assert_int_eq(read_pv(&lb), 0);
    ck_assert(strstr(err, "lies outside the PV") != NULL);
}
END_TEST

START_TEST(crc_known)
{
    /* lvm2 calc_crc = ~crc32(~seed): check against zlib's crc32 of "abc". */
    ck_assert_uint_eq(lvm_crc(0xffffffffu, "abc", 3) ^ 0xffffffffu, 0x352441c2u);
    uint32_t a = lvm_crc(LVM_INITIAL_CRC, "hello ", 6);
    ck_assert_uint_eq(lvm_crc(a, "world", 5), lvm_crc(LVM_INITIAL_CRC, "hello world", 11));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("lvm");
    TCase *t1 = tcase_create("text");
    tcase_add_test(t1, text_ok);
    tcase_add_test(t1, text_hostile);
    tcase_add_test(t1, text_caps);
    tcase_set_timeout(t1, 60);
    suite_add_tcase(s, t1);
    TCase *t2 = tcase_create("vg");
    tcase_add_test(t2, vg_linear_striped);
    tcase_add_test(t2, vg_unsupported);
    tcase_add_test(t2, vg_missing_pv_and_device_size);
    tcase_add_test(t2, vg_bad);
    suite_add_tcase(s, t2);
    TCase *t3 = tcase_create("pv");
    tcase_add_test(t3, pv_ok_and_wrap);
    tcase_add_test(t3, pv_damaged);
    tcase_add_test(t3, crc_known);
    suite_add_tcase(s, t3);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
