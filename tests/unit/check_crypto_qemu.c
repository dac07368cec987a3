/* check_crypto_qemu.c - the crypto objects against qemu, before the qcow2
 * driver uses them. qemu-img/qemu-io make encrypted qcow2 images; this
 * test walks the qcow2 header, FDE extension and L1/L2 itself (minimal,
 * trusted input), then:
 *  - unlocks qemu's LUKS header and decrypts qemu-written data with the
 *    IV of the HOST sector (and checks the guest sector does not work);
 *  - decrypts legacy AES data with the IV of the GUEST sector;
 *  - replaces the LUKS area with one from dk_luks_create plus data
 *    encrypted by us, and has qemu-io verify the pattern (and refuse a
 *    wrong passphrase); same for legacy AES data we encrypt.
 * Exits 77 (skip) when qemu-img or qemu-io is missing. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "util/endian.h"

#define CLUSTER 65536u

static char dir[64];

static int run(const char *fmt, const char *file, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), fmt, file);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    return pclose(p);
}

/* qemu-img's PBKDF2 calibration fails now and then on fast machines
 * ("Unable to get accurate CPU usage" when a trial run takes < 1 ms of
 * CPU time): retry a few times. */
static int create(const char *fmt, const char *file, char *out, size_t cap)
{
    int r = -1;
    for (int i = 0; i < 8 && r; i++)
        r = run(fmt, file, out, cap);
    return r;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    uint8_t *b = malloc(*len);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void put(const char *path, const void *buf, size_t len, uint64_t off)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* Host offset of the cluster holding guest offset GOFF (64 KiB clusters). */
static uint64_t host_of(const uint8_t *img, uint64_t goff)
{
    ck_assert_uint_eq(dk_be32(img + 20), 16);
    uint64_t l1 = dk_be64(img + 40);
    uint64_t idx = goff / CLUSTER;
    uint64_t l2 = dk_be64(img + l1 + 8 * (idx / (CLUSTER / 8))) & 0x00fffffffffffe00ull;
    ck_assert_uint_ne(l2, 0);
    uint64_t h = dk_be64(img + l2 + 8 * (idx % (CLUSTER / 8))) & 0x00fffffffffffe00ull;
    ck_assert_uint_ne(h, 0);
    return h;
}

/* The FDE header extension (0x0537be77): offset and length. */
static void fde_of(const uint8_t *img, uint64_t *off, uint64_t *len)
{
    uint32_t p = dk_be32(img + 100);   /* v3 header_length */
    for (;;) {
        uint32_t type = dk_be32(img + p), elen = dk_be32(img + p + 4);
        ck_assert_uint_ne(type, 0);
        if (type == 0x0537be77u) {
            *off = dk_be64(img + p + 8);
            *len = dk_be64(img + p + 16);
            return;
        }
        p += 8 + ((elen + 7) & ~7u);
    }
}

#define SECRET "--object secret,id=s,data=pw "
#define SECRET_BAD "--object secret,id=s,data=pW "
#define OPTS "--image-opts driver=qcow2,file.filename=%s,encrypt.key-secret=s "

START_TEST(luks_both_ways)
{
    char path[128], out[4096];
    snprintf(path, sizeof(path), "%s/luks.qcow2", dir);
    ck_assert_int_eq(create("qemu-img create -q -f qcow2 " SECRET "-o encrypt.format=luks,"
                         "encrypt.key-secret=s,encrypt.iter-time=10 %s 1M", path, out,
                         sizeof(out)), 0);
    ck_assert_int_eq(run("qemu-io " SECRET OPTS "-c 'write -q -P 0x5a 128k 64k'", path, out,
                         sizeof(out)), 0);
    size_t len;
    uint8_t *img = slurp(path, &len);
    ck_assert_uint_eq(dk_be32(img + 32), 2);   /* crypt_method LUKS */
    uint64_t foff, flen;
    fde_of(img, &foff, &flen);
    ck_assert(foff + flen <= len);
    struct dk_luks *l = NULL;
    struct dk_error e = { 0 };
    ck_assert_int_eq(dk_luks_unlock(img + foff, flen, (const unsigned char *)"pW", 2, &l, &e),
                     -EACCES);
    ck_assert_msg(dk_luks_unlock(img + foff, flen, (const unsigned char *)"pw", 2, &l, &e) == 0,
                  "%s", e.msg);
    uint64_t h = host_of(img, 128 * 1024);
    uint8_t *c = malloc(CLUSTER), want[CLUSTER];
    memset(want, 0x5a, CLUSTER);
    memcpy(c, img + h, CLUSTER);
    ck_assert_int_eq(dk_sector_decrypt(l->cipher, c, CLUSTER, 128 * 1024 / 512), 0);
    ck_assert_mem_ne(c, want, CLUSTER);       /* not the guest sector ... */
    memcpy(c, img + h, CLUSTER);
    ck_assert_int_eq(dk_sector_decrypt(l->cipher, c, CLUSTER, h / 512), 0);
    ck_assert_mem_eq(c, want, CLUSTER);       /* ... the host sector */
    dk_luks_free(l);

    /* Our header + our data: qemu must read the pattern back. */
    struct dk_luks_create_params p = {
        .spec = { DK_CIPHER_AES_256, DK_CMODE_XTS, DK_IVGEN_PLAIN64, 0 },
        .hash = DK_HASH_SHA256, .iter_time_ms = 10,
    };
    uint8_t *area;
    size_t alen;
    ck_assert_int_eq(dk_luks_create(&p, (const unsigned char *)"pw", 2, &area, &alen, &l, &e), 0);
    ck_assert_uint_eq(alen, flen);
    memset(c, 0xa5, CLUSTER);
    ck_assert_int_eq(dk_sector_encrypt(l->cipher, c, CLUSTER, h / 512), 0);
    put(path, area, alen, foff);
    put(path, c, CLUSTER, h);
    ck_assert_int_eq(run("qemu-io " SECRET OPTS "-c 'read -P 0xa5 128k 64k'", path, out,
                         sizeof(out)), 0);
    ck_assert_msg(strstr(out, "read 65536/65536") && !strstr(out, "verification failed"),
                  "%s", out);
    ck_assert_int_ne(run("qemu-io " SECRET_BAD OPTS "-c 'read 0 512' 2>&1", path, out,
                         sizeof(out)), 0);
    ck_assert_msg(strstr(out, "Invalid password"), "%s", out);
    ck_assert_int_eq(run("qemu-img check -q " SECRET OPTS, path, out, sizeof(out)), 0);
    dk_luks_free(l);
    free(area);
    free(c);
    free(img);
}
END_TEST

START_TEST(legacy_aes_both_ways)
{
    char path[128], out[4096];
    snprintf(path, sizeof(path), "%s/aes.qcow2", dir);
    ck_assert_int_eq(create("qemu-img create -q -f qcow2 " SECRET "-o encrypt.format=aes,"
                         "encrypt.key-secret=s %s 1M", path, out, sizeof(out)), 0);
    ck_assert_int_eq(run("qemu-io " SECRET OPTS "-c 'write -q -P 0x5a 192k 64k'", path, out,
                         sizeof(out)), 0);
    size_t len;
    uint8_t *img = slurp(path, &len);
    ck_assert_uint_eq(dk_be32(img + 32), 1);   /* crypt_method AES */
    struct dk_sector_cipher *k = NULL;
    ck_assert_int_eq(dk_qcow_aes_new(&k, (const unsigned char *)"pw", 2, NULL), 0);
    uint64_t h = host_of(img, 192 * 1024);
    ck_assert_uint_ne(h, 192 * 1024);
    uint8_t *c = malloc(CLUSTER), want[CLUSTER];
    memset(want, 0x5a, CLUSTER);
    memcpy(c, img + h, CLUSTER);
    ck_assert_int_eq(dk_sector_decrypt(k, c, CLUSTER, 192 * 1024 / 512), 0);
    ck_assert_mem_eq(c, want, CLUSTER);       /* guest sector IV */
    memset(c, 0xa5, CLUSTER);
    ck_assert_int_eq(dk_sector_encrypt(k, c, CLUSTER, 192 * 1024 / 512), 0);
    put(path, c, CLUSTER, h);
    ck_assert_int_eq(run("qemu-io " SECRET OPTS "-c 'read -P 0xa5 192k 64k'", path, out,
                         sizeof(out)), 0);
    ck_assert_msg(strstr(out, "read 65536/65536") && !strstr(out, "verification failed"),
                  "%s", out);
    dk_sector_cipher_free(k);
    free(c);
    free(img);
}
END_TEST

int main(void)
{
    if (system("command -v qemu-img >/dev/null && command -v qemu-io >/dev/null")) {
        printf("qemu-img or qemu-io not installed\n");
        return 77;
    }
    snprintf(dir, sizeof(dir), "/tmp/dk-crypto-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    Suite *s = suite_create("crypto_qemu");
    TCase *t = tcase_create("qemu");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, luks_both_ways);
    tcase_add_test(t, legacy_aes_both_ways);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd))
        failed++;
    return failed ? 1 : 0;
}
