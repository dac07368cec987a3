/* check_qcow2.c - qcow2 driver: header decode/encode/validate, compressed
 * descriptors, refcount entries of every width, and scenarios through the
 * public API (create, write, read, zero, backing chains, compressed
 * writes, resize, snapshots, dirty rebuild, extended L2). When qemu-img
 * is installed, images made here must pass `qemu-img check` and compare
 * equal to a raw reference. Damaged images: check_qcow2_bad.c.
 */

#include "qcow2-test.h"

/* --------------------------------------------------------- header */

static struct qcow2_header good_header(void)
{
    struct qcow2_header h = {
        .magic = QCOW2_MAGIC, .version = 3, .cluster_bits = 16, .size = 1 << 30,
        .l1_size = 2, .l1_table_offset = 0x30000, .refcount_table_offset = 0x10000,
        .refcount_table_clusters = 1, .refcount_order = 4, .header_length = 112,
        .compatible = 1, .autoclear = 2,
    };
    return h;
}

START_TEST(header_round_trip)
{
    for (int v = 2; v <= 3; v++) {
        struct qcow2_header h = good_header(), d;
        h.version = (uint32_t)v;
        if (v == 2) {
            h.header_length = 72;
            h.compatible = h.autoclear = 0;
        } else {
            h.compression_type = 1;
            h.incompatible = QCOW2_INCOMPAT_COMPRESSION;
        }
        h.backing_file_offset = 0x200;
        h.backing_file_size = 7;
        uint8_t buf[112] = { 0 };
        qcow2_header_encode(&h, buf);
        ck_assert_uint_eq(dk_be32(buf), QCOW2_MAGIC);
        ck_assert_int_eq(qcow2_header_decode(buf, sizeof(buf), &d), 0);
        uint8_t again[112] = { 0 };        /* compare bytes, not struct padding */
        qcow2_header_encode(&d, again);
        ck_assert_mem_eq(buf, again, sizeof(buf));
        ck_assert_uint_eq(d.size, h.size);
        ck_assert_uint_eq(d.l1_table_offset, h.l1_table_offset);
        ck_assert_uint_eq(d.header_length, h.header_length);
        ck_assert_uint_eq(d.compression_type, h.compression_type);
        ck_assert_uint_eq(d.refcount_order, 4);
        char msg[256];
        ck_assert_int_eq(qcow2_header_validate(&d, 1 << 20, msg, sizeof(msg)), 0);
    }
    struct qcow2_header d;
    uint8_t shortbuf[80] = { 0 };
    dk_put_be32(shortbuf + 4, 3);
    ck_assert_int_lt(qcow2_header_decode(shortbuf, 60, &d), 0);
    ck_assert_int_lt(qcow2_header_decode(shortbuf, 80, &d), 0);   /* v3 needs 104 */
}
END_TEST

struct bad_case {
    const char *what;
    void (*mutate)(struct qcow2_header *h);
    const char *expect;
};

#define MUT(name, body) static void name(struct qcow2_header *h) { body; }
MUT(m_magic, h->magic = 0x12345678)
MUT(m_version, h->version = 4)
MUT(m_cbits_lo, h->cluster_bits = 8)
MUT(m_cbits_hi, h->cluster_bits = 22)
MUT(m_hlen, h->header_length = 100)
MUT(m_hlen_odd, h->header_length = 108)
MUT(m_rorder, h->refcount_order = 7)
MUT(m_bname_len, { h->backing_file_offset = 0x200; h->backing_file_size = 1024; })
MUT(m_bname_out, { h->backing_file_offset = 0xfff0; h->backing_file_size = 100; })
MUT(m_crypt, h->crypt_method = 3)
MUT(m_l1_huge, h->l1_size = 0x40000000)
MUT(m_l1_small, h->size = 1ull << 40)
MUT(m_l1_unaligned, h->l1_table_offset = 0x30008)
MUT(m_l1_eof, h->l1_table_offset = 0x1000000)
MUT(m_rt_eof, h->refcount_table_offset = 0x2000000)
MUT(m_rt_none, h->refcount_table_clusters = 0)
MUT(m_rt_huge, h->refcount_table_clusters = 1000)
MUT(m_snaps, { h->nb_snapshots = 70000; h->snapshots_offset = 0x40000; })
MUT(m_snap_eof, { h->nb_snapshots = 1; h->snapshots_offset = 0x4000000; })
MUT(m_comp, h->compression_type = 1)
MUT(m_comp_unknown, { h->compression_type = 2; h->incompatible = 8; })

static const struct bad_case bad_cases[] = {
    { "magic", m_magic, "bad magic" },
    { "version", m_version, "unsupported version 4" },
    { "cluster_bits low", m_cbits_lo, "cluster_bits 8 out of range" },
    { "cluster_bits high", m_cbits_hi, "cluster_bits 22 out of range" },
    { "header_length", m_hlen, "invalid header_length" },
    { "header_length align", m_hlen_odd, "invalid header_length" },
    { "refcount_order", m_rorder, "refcount_order 7" },
    { "backing name length", m_bname_len, "longer than 1023" },
    { "backing name outside", m_bname_out, "outside the header cluster" },
    { "crypt method", m_crypt, "unknown encryption method" },
    { "huge l1", m_l1_huge, "exceeds the 32 MiB limit" },
    { "l1 too small", m_l1_small, "too small for the image size" },
    { "l1 unaligned", m_l1_unaligned, "not cluster aligned" },
    { "l1 past eof", m_l1_eof, "L1 table at 0x1000000 lies beyond end of file" },
    { "reftable past eof", m_rt_eof, "refcount table at 0x2000000 lies beyond end" },
    { "no reftable", m_rt_none, "no refcount table" },
    { "huge reftable", m_rt_huge, "exceeds the 8 MiB limit" },
    { "snapshot count", m_snaps, "70000 snapshots exceed" },
    { "snapshot table eof", m_snap_eof, "snapshot table at 0x4000000" },
    { "compression bit", m_comp, "needs incompatible feature bit 3" },
    { "compression type", m_comp_unknown, "unknown compression type 2" },
};

START_TEST(header_validation_failures)
{
    const struct bad_case *c = &bad_cases[_i];
    struct qcow2_header h = good_header();
    c->mutate(&h);
    char msg[256] = "";
    ck_assert_msg(qcow2_header_validate(&h, 4 << 20, msg, sizeof(msg)) == -EINVAL,
                  "%s accepted", c->what);
    ck_assert_msg(strstr(msg, c->expect), "%s: got '%s'", c->what, msg);
}
END_TEST

START_TEST(compressed_descriptors)
{
    static const uint32_t bits[] = { 9, 12, 16, 21 };
    for (size_t i = 0; i < DK_ARRAY_SIZE(bits); i++) {
        uint32_t cb = bits[i], x = 62 - (cb - 8);
        uint64_t offs[] = { 0x10000 + 17, 0x123456789ull, (1ull << x) - 600 };
        for (size_t j = 0; j < 3; j++) {
            uint64_t len = (1ull << cb) - 3;
            uint64_t e = qcow2_compressed_encode(offs[j], len, cb), h, n;
            ck_assert(e & QCOW2_OFLAG_COMPRESSED);
            qcow2_compressed_decode(e | QCOW2_OFLAG_COPIED, cb, &h, &n);
            ck_assert_uint_eq(h, offs[j]);
            ck_assert_uint_ge(n, len);            /* whole sectors */
            ck_assert_uint_lt(n - len, 512);
            ck_assert_uint_eq((h + n) % 512, 0);
        }
    }
    /* 64 KiB clusters: offset in bits 0-53, sector count in 54-61. */
    uint64_t h, n;
    qcow2_compressed_decode((3ull << 54) | 0x1000, 16, &h, &n);
    ck_assert_uint_eq(h, 0x1000);
    ck_assert_uint_eq(n, 4 * 512);
}
END_TEST

START_TEST(refcount_entries)
{
    for (uint32_t order = 0; order <= 6; order++) {
        uint8_t blk[512];
        uint64_t n = 512 * 8 >> order;
        uint64_t max = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
        memset(blk, 0, sizeof(blk));
        for (uint64_t i = 0; i < n; i++)
            qcow2_rc_set_entry(blk, order, i, (i * 2654435761u) & max);
        for (uint64_t i = 0; i < n; i++)
            ck_assert_uint_eq(qcow2_rc_get_entry(blk, order, i), (i * 2654435761u) & max);
        qcow2_rc_set_entry(blk, order, 5, max);
        ck_assert_uint_eq(qcow2_rc_get_entry(blk, order, 5), max);
        ck_assert_uint_eq(qcow2_rc_get_entry(blk, order, 4), (4 * (uint64_t)2654435761u) & max);
        ck_assert_uint_eq(qcow2_rc_get_entry(blk, order, 6), (6 * (uint64_t)2654435761u) & max);
    }
    /* sub-byte widths count from the least significant bit */
    uint8_t b[1] = { 0 };
    qcow2_rc_set_entry(b, 0, 0, 1);
    ck_assert_uint_eq(b[0], 1);
    qcow2_rc_set_entry(b, 1, 3, 2);
    ck_assert_uint_eq(b[0], 0x81);
}
END_TEST

START_TEST(l2_entry_types)
{
    struct qcow2_state s = { .v3 = true };
    ck_assert_int_eq(cl_type(&s, 0), CL_UNALLOC);
    ck_assert_int_eq(cl_type(&s, 1), CL_ZERO);
    ck_assert_int_eq(cl_type(&s, 0x50000 | 1), CL_ZERO_ALLOC);
    ck_assert_int_eq(cl_type(&s, 0x50000 | QCOW2_OFLAG_COPIED), CL_NORMAL);
    ck_assert_int_eq(cl_type(&s, QCOW2_OFLAG_COMPRESSED | 1), CL_COMPRESSED);
    s.v3 = false;   /* v2 has no zero flag */
    ck_assert_int_eq(cl_type(&s, 0x50000 | 1), CL_NORMAL);
}
END_TEST

static const char *const variants[] = {
    "cluster_size=512", "cluster_size=4k", NULL, "cluster_size=2M",
    "refcount_bits=1,cluster_size=4k", "refcount_bits=8", "refcount_bits=64,cluster_size=512",
    "compat=0.10", "lazy_refcounts=on", "preallocation=metadata", "compression_type=zstd",
};

START_TEST(write_read_variants)
{
    const char *opts = variants[_i];
    enum { SIZE = 6 << 20 };
    uint8_t *ref = calloc(1, SIZE);
    const char *f = strdup(tmp("v.qcow2"));
    create(f, SIZE, opts);
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    write_both(img, ref, 0, 100, 1);                        /* partial first cluster */
    write_both(img, ref, 70000, 1 << 20, 2);                /* unaligned multi-cluster */
    write_both(img, ref, 3 << 20, 2 << 20, 3);              /* aligned run */
    write_both(img, ref, 3 * 1048576 + 1000, 5000, 4);      /* in-place overwrite */
    write_both(img, ref, SIZE - 777, 777, 5);               /* image end */
    ck_assert_int_eq(dk_pwrite_zeroes(img, 3 << 20, 1 << 20, DK_ZERO_MAY_UNMAP), 0);
    memset(ref + (3 << 20), 0, 1 << 20);
    ck_assert_int_eq(dk_pwrite_zeroes(img, 100000, 300000, 0), 0);
    memset(ref + 100000, 0, 300000);
    expect_content(img, ref, SIZE);
    ck_assert_int_eq(dk_close(img), 0);
    img = open_img(f, NULL, 0);
    ck_assert_str_eq(dk_image_format(img), "qcow2");
    expect_content(img, ref, SIZE);
    dk_close(img);
    qemu_verify(f, ref, SIZE);
    free(ref);
    free((void *)f);
}
END_TEST

START_TEST(fresh_image_layout)
{
    const char *f = strdup(tmp("e.qcow2"));
    create(f, 1 << 30, NULL);
    uint8_t h[0x200];
    int fd = open(f, O_RDONLY);
    ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    off_t end = lseek(fd, 0, SEEK_END);
    close(fd);
    /* as qemu-img create: v3, 64k clusters, L1 at cluster 3 of 2 entries,
     * 112-byte header, feature table of 8 entries */
    ck_assert_uint_eq(dk_be32(h + 4), 3);
    ck_assert_uint_eq(dk_be32(h + 20), 16);
    ck_assert_uint_eq(dk_be32(h + 36), 2);
    ck_assert_uint_eq(dk_be64(h + 40), 0x30000);
    ck_assert_uint_eq(dk_be32(h + 100), 112);
    ck_assert_uint_eq(dk_be32(h + 112), QCOW2_EXT_FEATURES);
    ck_assert_uint_eq(dk_be32(h + 116), 384);
    ck_assert_int_eq(end, 3 * 65536 + 16);
    struct dk_image *img = open_img(f, "qcow2", 0);
    struct dk_info info;
    ck_assert_int_eq(dk_info(img, &info), 0);
    ck_assert_uint_eq(info.cluster_size, 65536);
    ck_assert_int_eq(info.dirty, 0);
    const struct dk_val *d = dk_val_get(info.format_specific, "data");
    ck_assert_ptr_nonnull(d);
    static const char *const keys[] = { "compat", "compression-type", "lazy-refcounts",
                                        "refcount-bits", "corrupt", "extended-l2" };
    ck_assert_uint_eq(d->v.kids.n, 6);
    for (size_t i = 0; i < 6; i++)
        ck_assert_str_eq(d->v.kids.items[i].key, keys[i]);
    ck_assert_str_eq(dk_val_get(d, "compat")->v.s, "1.1");
    dk_info_free(&info);
    struct dk_extent ext;
    ck_assert_int_eq(dk_block_status(img, 0, 1 << 30, DK_BS_THIS_LAYER, &ext), 0);
    ck_assert_uint_eq(ext.length, 1 << 30);
    ck_assert_uint_eq(ext.flags, 0);
    dk_close(img);
    free((void *)f);
}
END_TEST

START_TEST(backing_chain_depth3)
{
    enum { SIZE = 2 << 20 };
    uint8_t *ref = malloc(SIZE);
    fill(ref, SIZE, 9);
    char base[600], mid[600], top[600];
    snprintf(base, sizeof(base), "%s/base.raw", tmpdir);
    snprintf(mid, sizeof(mid), "%s/mid.qcow2", tmpdir);
    snprintf(top, sizeof(top), "%s/top.qcow2", tmpdir);
    save_raw(base, ref, SIZE);
    create(mid, 0, "backing_file=base.raw,backing_fmt=raw,cluster_size=4k");
    struct dk_image *img = open_img(mid, "qcow2", DK_OPEN_RDWR);
    write_both(img, ref, 5000, 10000, 11);
    ck_assert_int_eq(dk_pwrite_zeroes(img, 65536, 65536, 0), 0);
    memset(ref + 65536, 0, 65536);
    ck_assert_int_eq(dk_close(img), 0);
    create(top, 0, "backing_file=mid.qcow2,backing_fmt=qcow2,cluster_size=64k");
    img = open_img(top, "qcow2", DK_OPEN_RDWR);
    ck_assert_uint_eq(dk_image_size(img), SIZE);
    write_both(img, ref, 1234, 100, 12);        /* COW from mid and base */
    write_both(img, ref, 65536 + 7, 9, 13);     /* COW of a zero cluster below */
    write_both(img, ref, SIZE - 10, 10, 14);
    expect_content(img, ref, SIZE);
    struct dk_extent ext;
    ck_assert_int_eq(dk_block_status(img, 131072, 65536, 0, &ext), 0);
    ck_assert_int_eq(ext.depth, 2);
    ck_assert_int_eq(dk_close(img), 0);
    qemu_verify(top, ref, SIZE);
    free(ref);
}
END_TEST

/* commit -b: base.raw <- mid.qcow2 <- top.qcow2 (top larger than both),
 * found by name and by path, opened with only the base writable, and
 * committed; the base then reads as the top did, mid and top unchanged. */
START_TEST(commit_into_deeper_layer)
{
    enum { SIZE = 1 << 20, TOP = 3 << 19 };
    uint8_t *ref = calloc(1, TOP);
    fill(ref, SIZE, 21);
    char base[600], mid[600], top[600];
    snprintf(base, sizeof(base), "%s/base.raw", tmpdir);
    snprintf(mid, sizeof(mid), "%s/mid.qcow2", tmpdir);
    snprintf(top, sizeof(top), "%s/top.qcow2", tmpdir);
    save_raw(base, ref, SIZE);
    create(mid, 0, "backing_file=base.raw,backing_fmt=raw,cluster_size=4k");
    struct dk_image *img = open_img(mid, "qcow2", DK_OPEN_RDWR);
    write_both(img, ref, 4096, 20000, 22);
    ck_assert_int_eq(dk_pwrite_zeroes(img, 65536, 8192, 0), 0);
    memset(ref + 65536, 0, 8192);
    ck_assert_int_eq(dk_close(img), 0);
    create(top, TOP, "backing_file=mid.qcow2,backing_fmt=qcow2,cluster_size=64k");
    img = open_img(top, "qcow2", DK_OPEN_RDWR);
    write_both(img, ref, 10000, 70000, 23);
    write_both(img, ref, TOP - 100, 100, 24);   /* past the end of mid and base */
    expect_content(img, ref, TOP);
    ck_assert_int_eq(dk_close(img), 0);
    size_t mid_len, top_len;
    uint8_t *mid_before = slurp(mid, &mid_len), *top_before = slurp(top, &top_len);

    img = open_img(top, "qcow2", 0);
    int depth = 0;
    ck_assert_ptr_eq(dk_chain_find(img, "base.raw", &depth), dk_image_backing(dk_image_backing(img)));
    ck_assert_int_eq(depth, 2);
    ck_assert_ptr_nonnull(dk_chain_find(img, base, &depth));   /* by path */
    ck_assert_int_eq(depth, 2);
    ck_assert_ptr_eq(dk_chain_find(img, "mid.qcow2", &depth), dk_image_backing(img));
    ck_assert_int_eq(depth, 1);
    ck_assert_ptr_null(dk_chain_find(img, top, NULL));
    ck_assert_ptr_null(dk_chain_find(img, "nothing", NULL));
    /* The base is read-only in a plain open: the commit is refused. */
    ck_assert_int_eq(dk_commit_to(img, dk_image_backing(dk_image_backing(img)), 0, NULL, NULL),
                     -EROFS);
    ck_assert_int_eq(dk_commit_to(img, img, 0, NULL, NULL), -EINVAL);
    dk_close(img);

    struct dk_open_opts o = { .format = "qcow2" };
    struct dk_error e = { 0 };
    ck_assert_ptr_null(dk_open_chain_rw(top, &o, 3, &e));
    ck_assert_int_eq(e.code, -ENOENT);
    img = dk_open_chain_rw(top, &o, 2, &e);
    ck_assert_msg(img != NULL, "open: %s", e.msg);
    struct dk_image *b = dk_chain_find(img, "base.raw", NULL);
    ck_assert(dk_image_read_only(img));
    ck_assert(dk_image_read_only(dk_image_backing(img)));
    ck_assert(!dk_image_read_only(b));
    int r = dk_commit_to(img, b, 0, NULL, NULL);
    ck_assert_msg(r == 0, "commit: %s", dk_image_errmsg(img));
    ck_assert_int_eq(dk_close(img), 0);

    img = open_img(base, "raw", 0);
    ck_assert_uint_eq(dk_image_size(img), TOP);
    expect_content(img, ref, TOP);
    dk_close(img);
    size_t len;
    uint8_t *after = slurp(mid, &len);
    ck_assert(len == mid_len && !memcmp(after, mid_before, len));
    free(after);
    after = slurp(top, &len);
    ck_assert(len == top_len && !memcmp(after, top_before, len));
    free(after);
    free(mid_before);
    free(top_before);
    free(ref);
}
END_TEST

START_TEST(compressed_write_read)
{
    enum { SIZE = 1 << 20, CS = 65536 };
    const char *comp[] = { "compression_type=zlib", "compression_type=zstd" };
    const char *f = strdup(tmp("c.qcow2"));
    create(f, SIZE, comp[_i]);
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    uint8_t *ref = calloc(1, SIZE), *out = malloc(CS);
    for (uint64_t off = 0; off < SIZE; off += CS) {
        if (off == 3 * CS)
            fill(ref + off, CS, 77);             /* incompressible: stored plain */
        else
            for (size_t i = 0; i < CS; i++)
                ref[off + i] = (uint8_t)("diskkit"[i % 7] + off / CS);
        ssize_t n = img->drv->compress(img, ref + off, CS, out, CS);
        ck_assert_int_ge(n, 0);
        ck_assert(off != 3 * CS || n == 0);
        ck_assert_int_eq(img->drv->write_compressed(img, off, out, (size_t)n, ref + off, CS), 0);
    }
    struct dk_extent ext;
    ck_assert_int_eq(dk_block_status(img, 0, SIZE, 0, &ext), 0);
    ck_assert(ext.flags & DK_BS_COMPRESSED);
    expect_content(img, ref, SIZE);
    write_both(img, ref, CS + 100, 50, 3);       /* rewrite part of a compressed cluster */
    expect_content(img, ref, SIZE);
    ck_assert_int_eq(dk_close(img), 0);
    qemu_verify(f, ref, SIZE);
    free(ref);
    free(out);
    free((void *)f);
}
END_TEST

START_TEST(resize_grow_shrink)
{
    enum { SIZE = 1 << 20 };
    const char *f = strdup(tmp("r.qcow2"));
    create(f, SIZE, "cluster_size=512");
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    uint8_t *ref = calloc(1, 8 << 20);
    write_both(img, ref, 1000, 5000, 1);
    ck_assert_int_eq(dk_resize(img, 8 << 20, NULL, 0), 0);   /* L1 moves */
    write_both(img, ref, 7 << 20, 100000, 2);
    expect_content(img, ref, 8 << 20);
    ck_assert_int_lt(dk_resize(img, 4 << 20, NULL, 0), 0);
    ck_assert_int_eq(dk_resize(img, 4 << 20, NULL, DK_RESIZE_SHRINK), 0);
    ck_assert_int_eq(dk_resize(img, 6 << 20, "metadata", 0), 0);
    expect_content(img, ref, 6 << 20);
    ck_assert_int_eq(dk_close(img), 0);
    qemu_verify(f, ref, 6 << 20);
    free(ref);
    free((void *)f);
}
END_TEST

START_TEST(lazy_dirty_rebuild)
{
    /* Simulate a crash: refcounts lost, dirty bit set. Reopening read-write
     * rebuilds them from the L1/L2 walk. */
    enum { SIZE = 4 << 20 };
    const char *f = strdup(tmp("l.qcow2"));
    create(f, SIZE, "lazy_refcounts=on,cluster_size=4k");
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    uint8_t *ref = calloc(1, SIZE);
    write_both(img, ref, 0, 300000, 1);
    ck_assert_int_eq(dk_close(img), 0);
    uint8_t zero[4096] = { 0 };
    poke(f, 0x2000, zero, sizeof(zero));                 /* wipe the refcount block */
    poke_be64(f, 72, QCOW2_INCOMPAT_DIRTY);
    img = open_img(f, "qcow2", 0);
    struct dk_info info;
    ck_assert_int_eq(dk_info(img, &info), 0);
    ck_assert_int_eq(info.dirty, 1);
    dk_info_free(&info);
    dk_close(img);
    img = open_img(f, "qcow2", DK_OPEN_RDWR);
    write_both(img, ref, 1 << 20, 5000, 2);
    expect_content(img, ref, SIZE);
    ck_assert_int_eq(dk_close(img), 0);
    qemu_verify(f, ref, SIZE);
    free(ref);
    free((void *)f);
}
END_TEST

START_TEST(qemu_images_read_back)
{
    if (!have_qemu_img() || system("qemu-io --version >/dev/null 2>&1") != 0)
        return;
    static const char *const opts[] = { "compression_type=zlib,cluster_size=4k",
                                        "compression_type=zstd", "compat=0.10" };
    char cmd[1600];
    for (size_t i = 0; i < DK_ARRAY_SIZE(opts); i++) {
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && rm -f q.qcow2 q.raw && qemu-img create -q -f raw q.raw 2M && "
                 "qemu-io -f raw -c 'write -P 0x5a 0 300k' -c 'write -P 7 1M 65k' q.raw "
                 ">/dev/null && qemu-img convert -c -O qcow2 -o %s q.raw q.qcow2 && "
                 "qemu-io -c 'write -P 9 1500k 1k' -c 'write -z 100k 8k' q.qcow2 >/dev/null && "
                 "qemu-io -f raw -c 'write -P 9 1500k 1k' -c 'write -z 100k 8k' q.raw >/dev/null",
                 tmpdir, opts[i]);
        ck_assert_int_eq(system(cmd), 0);
        size_t n;
        uint8_t *ref = slurp(tmp("q.raw"), &n);
        struct dk_image *img = open_img(tmp("q.qcow2"), NULL, 0);
        expect_content(img, ref, n);
        dk_close(img);
        free(ref);
    }
}
END_TEST

START_TEST(extended_l2_read)
{
    if (!have_qemu_img() || system("qemu-io --version >/dev/null 2>&1") != 0)
        return;
    char cmd[1600];
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && head -c 2M /dev/urandom > b.raw && qemu-img create -q -f qcow2 "
             "-o extended_l2=on -b b.raw -F raw x.qcow2 2M && qemu-io -c 'write -P 1 4k 2k' "
             "-c 'write -z 70k 10k' -c 'write -P 2 1M 300k' x.qcow2 >/dev/null && "
             "qemu-img convert -O raw x.qcow2 x.raw", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    size_t n;
    uint8_t *ref = slurp(tmp("x.raw"), &n);
    char x[600];
    snprintf(x, sizeof(x), "%s/x.qcow2", tmpdir);
    struct dk_image *img = open_img(x, NULL, 0);
    expect_content(img, ref, n);
    struct dk_extent e;   /* subcluster granularity: 2 KiB at 4 KiB is data */
    ck_assert_int_eq(dk_block_status(img, 4096, 8192, DK_BS_THIS_LAYER, &e), 0);
    ck_assert_uint_eq(e.length, 2048);
    ck_assert(e.flags & DK_BS_OFFSET_VALID);
    ck_assert_int_eq(dk_block_status(img, 6144, 8192, DK_BS_THIS_LAYER, &e), 0);
    ck_assert_uint_eq(e.flags, 0);
    dk_close(img);
    struct dk_open_opts o = { .format = "qcow2", .flags = DK_OPEN_RDWR };
    struct dk_error err = { 0 };
    ck_assert_ptr_null(dk_open(x, &o, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "extended L2"));
    free(ref);
}
END_TEST

/* Writes after `qemu-img snapshot -c`: shared L2 tables and data clusters
 * are copied on write; the snapshot still reads the old data, opened with
 * dk_open_opts.snapshot, and qemu-img check finds no leak or error. */
START_TEST(snapshot_copy_on_write)
{
    if (!have_qemu_img())
        return;
    enum { SIZE = 2 << 20 };
    const char *f = strdup(tmp("s.qcow2"));
    create(f, SIZE, "cluster_size=4k");
    struct dk_image *img = open_img(f, "qcow2", DK_OPEN_RDWR);
    uint8_t *ref = calloc(1, SIZE), *old = malloc(SIZE);
    write_both(img, ref, 0, SIZE, 1);
    ck_assert_int_eq(dk_close(img), 0);
    memcpy(old, ref, SIZE);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "qemu-img snapshot -c snap1 '%s'", f);
    ck_assert_int_eq(system(cmd), 0);
    img = open_img(f, "qcow2", DK_OPEN_RDWR);
    write_both(img, ref, 5000, 100000, 2);
    ck_assert_int_eq(dk_pwrite_zeroes(img, 1 << 20, 65536, DK_ZERO_MAY_UNMAP), 0);
    memset(ref + (1 << 20), 0, 65536);
    expect_content(img, ref, SIZE);
    ck_assert_int_eq(dk_close(img), 0);
    qemu_verify(f, ref, SIZE);
    struct dk_open_opts o = { .format = "qcow2", .snapshot = "snap1" };
    struct dk_error e = { 0 };
    img = dk_open(f, &o, &e);
    ck_assert_msg(img != NULL, "%s", e.msg);
    ck_assert(dk_image_read_only(img));
    expect_content(img, old, SIZE);
    struct dk_snapshot *sn;
    size_t n;
    ck_assert_int_eq(dk_snapshot_list(img, &sn, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(sn[0].name, "snap1");
    ck_assert_str_eq(sn[0].id, "1");
    dk_snapshots_free(sn, n);
    dk_close(img);
    free(ref);
    free(old);
    free((void *)f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("qcow2");
    TCase *t = tcase_create("t");
    tcase_add_test(t, header_round_trip);
    tcase_add_loop_test(t, header_validation_failures, 0, (int)DK_ARRAY_SIZE(bad_cases));
    tcase_add_test(t, compressed_descriptors);
    tcase_add_test(t, refcount_entries);
    tcase_add_test(t, l2_entry_types);
    suite_add_tcase(s, t);
    TCase *io = tcase_create("io");
    tcase_add_checked_fixture(io, setup, teardown);
    tcase_set_timeout(io, 60);
    tcase_add_loop_test(io, write_read_variants, 0, (int)DK_ARRAY_SIZE(variants));
    tcase_add_test(io, fresh_image_layout);
    tcase_add_test(io, backing_chain_depth3);
    tcase_add_test(io, commit_into_deeper_layer);
    tcase_add_loop_test(io, compressed_write_read, 0, 2);
    tcase_add_test(io, resize_grow_shrink);
    tcase_add_test(io, lazy_dirty_rebuild);
    tcase_add_test(io, qemu_images_read_back);
    tcase_add_test(io, extended_l2_read);
    tcase_add_test(io, snapshot_copy_on_write);
    suite_add_tcase(s, io);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
