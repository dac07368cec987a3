/* check_luks_keys.c - LUKS1 key slot add/erase (lib/crypto-luks-keys.c):
 * adds and erases on an in-memory area, every refusal with qemu 7.2's
 * message (and nothing written), and crash safety: the write sequence is
 * cut at every pwrite/sync and the area left behind must still satisfy
 * the invariants of the file header (an active slot always unlocks with
 * the passphrase it was sealed with; passphrases not being removed keep
 * working). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#define P(s) (const unsigned char *)(s), strlen(s)

static uint8_t *area;
static size_t area_len;
static uint8_t master[DK_LUKS_MAX_KEY_BYTES];

/* A fresh area (aes-128-cbc-plain64: 64000-byte slots, quick) with
 * passphrase "zero" in slot 0. */
static void make_area(void)
{
    struct dk_luks_create_params p = {
        .spec = { DK_CIPHER_AES_128, DK_CMODE_CBC, DK_IVGEN_PLAIN64, DK_HASH_SHA256 },
        .hash = DK_HASH_SHA256, .iter_time_ms = 1,
    };
    struct dk_luks *l = NULL;
    struct dk_error e = { 0 };
    free(area);
    ck_assert_msg(dk_luks_create(&p, P("zero"), &area, &area_len, &l, &e) == 0, "%s", e.msg);
    memcpy(master, l->master_key, sizeof(master));
    dk_luks_free(l);
}

/* The in-memory "disk": writes land in BUF; call number FAIL_AT (pwrite
 * or sync, counted from 0) fails with -EIO and so do all after it. */
struct mem {
    uint8_t *buf;
    size_t len;
    int calls, fail_at;
};

static int mem_pwrite(void *opaque, const void *b, size_t len, uint64_t off)
{
    struct mem *m = opaque;
    if (m->fail_at >= 0 && m->calls++ >= m->fail_at)
        return -EIO;
    ck_assert(off <= m->len && len <= m->len - off);
    memcpy(m->buf + off, b, len);
    return 0;
}

static int mem_sync(void *opaque)
{
    struct mem *m = opaque;
    return m->fail_at >= 0 && m->calls++ >= m->fail_at ? -EIO : 0;
}

static void set_old(struct dk_luks_amend *a, const char *pass)
{
    a->old_secret = (const unsigned char *)pass;
    a->old_len = strlen(pass);
}

static void set_new(struct dk_luks_amend *a, const char *pass)
{
    a->new_secret = (const unsigned char *)pass;
    a->new_len = strlen(pass);
}

static struct dk_luks_amend add_opts(const char *new_pass)
{
    return (struct dk_luks_amend){ .activate = true, .has_iter_time = true,
                                   .iter_time_ms = 1, .key = (const unsigned char *)"zero", .key_len = 4,
                                   .new_secret = (const unsigned char *)new_pass,
                                   .new_len = strlen(new_pass) };
}

static struct dk_luks_amend erase_opts(void)
{
    return (struct dk_luks_amend){ .activate = false, .key = (const unsigned char *)"zero",
                                   .key_len = 4 };
}

/* Prepares and writes A into the global area; returns what prepare said
 * (and ERR), asserting a refused change wrote nothing. */
static int change(const struct dk_luks_amend *a, struct dk_error *err)
{
    struct dk_luks_change *c = NULL;
    uint8_t *before = malloc(area_len);
    memcpy(before, area, area_len);
    memset(err, 0, sizeof(*err));
    int r = dk_luks_change_prepare(area, area_len, a, &c, err);
    ck_assert_mem_eq(before, area, area_len);   /* prepare never writes */
    free(before);
    if (r == 0) {
        struct mem m = { area, area_len, 0, -1 };
        struct dk_luks_io io = { mem_pwrite, mem_sync, &m };
        ck_assert_msg(dk_luks_change_write(c, &io, err) == 0, "%s", err->msg);
    }
    dk_luks_change_free(c);
    return r;
}

/* Slot that PASS unlocks in BUF, or -1; asserts the master key. */
static int unlocks(const uint8_t *buf, const char *pass)
{
    struct dk_luks *l = NULL;
    struct dk_error e = { 0 };
    int r = dk_luks_unlock(buf, area_len, P(pass), &l, &e);
    if (r == -EACCES)
        return -1;
    ck_assert_msg(r == 0, "%s", e.msg);
    ck_assert_mem_eq(l->master_key, master, l->hdr.key_bytes);
    int slot = l->slot;
    dk_luks_free(l);
    return slot;
}

/* Slot I of the header in BUF is active (BUF must decode). */
static bool active_in(const uint8_t *buf, int i)
{
    struct dk_luks_header h;
    struct dk_error e = { 0 };
    ck_assert_msg(dk_luks_decode(buf, area_len, area_len, &h, &e) == 0, "%s", e.msg);
    return h.slots[i].active == DK_LUKS_SLOT_ACTIVE;
}

static bool active(int i)
{
    return active_in(area, i);
}

static void refused(const struct dk_luks_amend *a, const char *msg)
{
    struct dk_error e;
    ck_assert_int_lt(change(a, &e), 0);
    ck_assert_str_eq(e.msg, msg);
}

START_TEST(add_first_free_and_explicit)
{
    make_area();
    struct dk_luks_amend a = add_opts("one");
    struct dk_error e;
    ck_assert_msg(change(&a, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(unlocks(area, "one"), 1);
    ck_assert_int_eq(unlocks(area, "zero"), 0);
    a = add_opts("five");
    a.has_keyslot = true;
    a.keyslot = 5;
    ck_assert_msg(change(&a, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(unlocks(area, "five"), 5);
    /* The first free one is now 2. */
    a = add_opts("two");
    ck_assert_msg(change(&a, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(unlocks(area, "two"), 2);
    ck_assert(active(0) && active(1) && active(2) && !active(3) && active(5));
}
END_TEST

START_TEST(add_refusals)
{
    make_area();
    struct dk_luks_amend a = add_opts("x");
    a.new_secret = NULL;
    refused(&a, "'new-secret' is required to activate a keyslot");
    a = add_opts("x");
    set_old(&a, "zero");
    refused(&a, "'old-secret' must not be given when activating keyslots");
    a = add_opts("x");
    a.has_keyslot = true;
    a.keyslot = 8;
    refused(&a, "Invalid keyslot 8 specified, must be between 0 and 7");
    a.keyslot = -1;
    refused(&a, "Invalid keyslot 4294967295 specified, must be between 0 and 7");
    a.keyslot = 0;
    refused(&a, "Refusing to overwrite active keyslot 0 - please erase it first");
    a = add_opts("x");
    a.key = (const unsigned char *)"wrong";
    a.key_len = 5;
    refused(&a, "Invalid password, cannot unlock any keyslot");
    for (int i = 1; i < DK_LUKS_NUM_SLOTS; i++) {
        struct dk_error e;
        a = add_opts("same");
        ck_assert_msg(change(&a, &e) == 0, "%s", e.msg);
    }
    a = add_opts("x");
    refused(&a, "Can't add a keyslot - all keyslots are in use");
}
END_TEST

START_TEST(add_forced_overwrite)
{
    make_area();
    struct dk_luks_amend a = add_opts("new");
    struct dk_error e;
    a.has_keyslot = true;
    a.keyslot = 0;
    a.force = true;
    ck_assert_msg(change(&a, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(unlocks(area, "new"), 0);
    ck_assert_int_eq(unlocks(area, "zero"), -1);
}
END_TEST

START_TEST(erase_by_slot_and_by_old_secret)
{
    make_area();
    struct dk_error e;
    struct dk_luks_amend a = add_opts("dup");
    ck_assert(change(&a, &e) == 0);
    ck_assert(change(&a, &e) == 0);               /* slots 1 and 2: "dup" */
    a = add_opts("three");
    ck_assert(change(&a, &e) == 0);               /* slot 3 */
    a = erase_opts();
    set_old(&a, "dup");
    ck_assert_msg(change(&a, &e) == 0, "%s", e.msg);
    ck_assert(!active(1) && !active(2) && active(0) && active(3));
    ck_assert_int_eq(unlocks(area, "dup"), -1);
    a = erase_opts();
    a.has_keyslot = true;
    a.keyslot = 3;
    set_old(&a, "three");
    ck_assert_msg(change(&a, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(unlocks(area, "three"), -1);
    ck_assert_int_eq(unlocks(area, "zero"), 0);
    /* An erased slot: no salt, no iterations, random material. */
    struct dk_luks_header h;
    ck_assert(dk_luks_decode(area, area_len, area_len, &h, &e) == 0);
    static const uint8_t zero[DK_LUKS_SALT_LEN];
    ck_assert_uint_eq(h.slots[3].iterations, 0);
    ck_assert_mem_eq(h.slots[3].salt, zero, sizeof(zero));
}
END_TEST

START_TEST(erase_refusals)
{
    make_area();
    struct dk_luks_amend a = erase_opts();
    refused(&a, "To erase keyslot(s), either explicit keyslot index or the password "
            "currently contained in them must be given");
    set_new(&a, "x");
    refused(&a, "'new-secret' must not be given when erasing keyslots");
    a = erase_opts();
    a.has_iter_time = true;
    refused(&a, "'iter-time' must not be given when erasing keyslots");
    a = erase_opts();
    a.has_keyslot = true;
    a.keyslot = -1;
    refused(&a, "Invalid keyslot -1 specified, must be between 0 and 7");
    a.keyslot = 1;
    refused(&a, "Given keyslot 1 is already erased (inactive) ");
    a.keyslot = 0;
    refused(&a, "Attempt to erase the only active keyslot 0 which will erase all the data "
            "in the image irreversibly - refusing operation");
    set_old(&a, "wrong");
    refused(&a, "Given keyslot 0 doesn't contain the given old password for erase "
            "operation");
    a = erase_opts();
    set_old(&a, "wrong");
    refused(&a, "No keyslots match given (old) password for erase operation");
    set_old(&a, "zero");
    refused(&a, "All the active keyslots match the (old) password that was given and "
            "erasing them will erase all the data in the image irreversibly - refusing "
            "operation");
    /* --force erases the last slot. */
    a.force = true;
    struct dk_error e;
    ck_assert_msg(change(&a, &e) == 0, "%s", e.msg);
    ck_assert(!active(0));
}
END_TEST

/* Runs A with the writes cut at every call, each time from the same start
 * area; CHECK judges the area left behind. Returns how many calls the
 * full sequence makes. */
static int cut_everywhere(const struct dk_luks_amend *a, void (*check)(const uint8_t *))
{
    struct dk_luks_change *c = NULL;
    struct dk_error e = { 0 };
    ck_assert_msg(dk_luks_change_prepare(area, area_len, a, &c, &e) == 0, "%s", e.msg);
    uint8_t *disk = malloc(area_len);
    int total = 0;
    for (int cut = 0;; cut++) {
        memcpy(disk, area, area_len);
        struct mem m = { disk, area_len, 0, cut };
        struct dk_luks_io io = { mem_pwrite, mem_sync, &m };
        int r = dk_luks_change_write(c, &io, &e);
        check(disk);
        if (r == 0) {
            total = cut;
            break;
        }
        ck_assert_int_eq(r, -EIO);
    }
    free(disk);
    dk_luks_change_free(c);
    return total;
}

/* After a cut: "zero" always works; slot 1 active => it holds "new". */
static void check_add(const uint8_t *disk)
{
    ck_assert_int_eq(unlocks(disk, "zero"), 0);
    if (active_in(disk, 1))
        ck_assert_int_eq(unlocks(disk, "new"), 1);
}

/* Forced overwrite of slot 1 ("old") with "new": "zero" always works;
 * slot 1 active => "old" or "new" unlocks it. */
static void check_overwrite(const uint8_t *disk)
{
    ck_assert_int_eq(unlocks(disk, "zero"), 0);
    if (active_in(disk, 1))
        ck_assert(unlocks(disk, "new") == 1 || unlocks(disk, "old") == 1);
}

/* Erase of slot 1 ("old"): "zero" always works; slot 1 active => its
 * material is intact ("old" unlocks). */
static void check_erase(const uint8_t *disk)
{
    ck_assert_int_eq(unlocks(disk, "zero"), 0);
    if (active_in(disk, 1))
        ck_assert_int_eq(unlocks(disk, "old"), 1);
    else
        ck_assert_int_eq(unlocks(disk, "old"), -1);
}

START_TEST(crash_order)
{
    make_area();
    struct dk_luks_amend a = add_opts("new");
    /* material, sync, header, sync */
    ck_assert_int_eq(cut_everywhere(&a, check_add), 4);
    struct dk_error e;
    a = add_opts("old");
    ck_assert(change(&a, &e) == 0);
    a = add_opts("new");
    a.has_keyslot = true;
    a.keyslot = 1;
    a.force = true;
    /* header (slot 1 off), sync, material, sync, header, sync */
    ck_assert_int_eq(cut_everywhere(&a, check_overwrite), 6);
    a = erase_opts();
    a.has_keyslot = true;
    a.keyslot = 1;
    /* header, sync, random material, sync */
    ck_assert_int_eq(cut_everywhere(&a, check_erase), 4);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("luks_keys");
    TCase *t = tcase_create("slots");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, add_first_free_and_explicit);
    tcase_add_test(t, add_refusals);
    tcase_add_test(t, add_forced_overwrite);
    tcase_add_test(t, erase_by_slot_and_by_old_secret);
    tcase_add_test(t, erase_refusals);
    tcase_add_test(t, crash_order);
    suite_add_tcase(s, t);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(area);
    return failed ? 1 : 0;
}
