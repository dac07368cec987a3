/* check_inspect.c - the mount table lookup used for guest paths
 * (dk_inspect_resolve): longest mountpoint by whole components. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "diskkit.h"

static struct dk_mountpoint mounts[] = {
    { "/", "/dev/sda2" }, { "/boot", "/dev/sda1" }, { "/boot/efi", "/dev/sda3" },
    { "/srv/data", "/dev/sda5" },
};
static const struct dk_inspect ins = { .mounts = mounts, .nmounts = 4 };

static void expect(const char *path, const char *dev, const char *rest)
{
    char buf[64];
    const char *d = dk_inspect_resolve(&ins, path, buf, sizeof(buf));
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d, dev);
    ck_assert_str_eq(buf, rest);
}

START_TEST(longest_prefix)
{
    expect("/", "/dev/sda2", "/");
    expect("/etc/fstab", "/dev/sda2", "/etc/fstab");
    expect("/boot", "/dev/sda1", "/");
    expect("/boot/", "/dev/sda1", "/");
    expect("/boot/grub/grub.cfg", "/dev/sda1", "/grub/grub.cfg");
    expect("/bootx/y", "/dev/sda2", "/bootx/y");
    expect("/boot/efi/EFI", "/dev/sda3", "/EFI");
    expect("/boot/efix", "/dev/sda1", "/efix");
    expect("/srv/data/dir/f", "/dev/sda5", "/dir/f");
    expect("/srv", "/dev/sda2", "/srv");
}
END_TEST

START_TEST(rejects)
{
    char buf[8];
    ck_assert_ptr_null(dk_inspect_resolve(&ins, "relative", buf, sizeof(buf)));
    ck_assert_ptr_null(dk_inspect_resolve(&ins, NULL, buf, sizeof(buf)));
    ck_assert_ptr_null(dk_inspect_resolve(&ins, "/a/long/path/here", buf, sizeof(buf)));
    struct dk_inspect empty = { 0 };
    ck_assert_ptr_null(dk_inspect_resolve(&empty, "/x", buf, sizeof(buf)));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("inspect");
    TCase *t = tcase_create("resolve");
    tcase_add_test(t, longest_prefix);
    tcase_add_test(t, rejects);
    suite_add_tcase(s, t);
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
