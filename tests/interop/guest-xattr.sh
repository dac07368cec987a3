#!/usr/bin/env bash
# guest-xattr.sh - extended attributes of guest files: getxattrs, setxattr,
# removexattr (and the shell's), on an ext4 made by mkfs.ext4 -d whose
# attributes debugfs set (user., trusted., security.selinux with its NUL,
# a POSIX ACL), read and changed through qcow2; after the changes the
# exported filesystem passes e2fsck -fn and debugfs reads back the bytes
# diskkit wrote (the ACL in the kernel's xattr format both ways).
. "$(dirname "$0")/lib.sh"
need qemu-img mkfs.ext4 debugfs e2fsck
cd "$T" || exit 1

mkdir -p tree/etc
echo guest > tree/etc/hostname
ln -s hostname tree/etc/link
mkfs.ext4 -q -F -d tree fs.img 16M >/dev/null || fail "mkfs.ext4 -d"
printf 'system_u:object_r:etc_t:s0\0' > selinux.val
# struct posix_acl_xattr: version 2, then user::rw- user:1000:r-- group::r--
# mask::r-- other::--- (ids of the tags without one are 0, as libext2fs
# gives them back; the kernel writes -1 there and ignores both)
printf '\x02\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x02\x00\x04\x00\xe8\x03\x00\x00'\
'\x04\x00\x04\x00\x00\x00\x00\x00\x10\x00\x04\x00\x00\x00\x00\x00\x20\x00\x00\x00\x00\x00\x00\x00' \
    > acl.val
debugfs -w -f - fs.img >/dev/null 2>&1 <<'EOF'
ea_set /etc/hostname user.comment "first line"
ea_set -f selinux.val /etc/hostname security.selinux
ea_set /etc/hostname trusted.x 1
ea_set -f acl.val /etc/hostname system.posix_acl_access
EOF
debugfs -R 'ea_list /etc/hostname' fs.img 2>/dev/null | grep -q posix_acl_access ||
    fail "fixture: debugfs did not set the attributes"
qemu-img convert -f raw -O qcow2 fs.img fs.qcow2

note "getxattrs prints what debugfs stored"
"$DISKKIT" getxattrs fs.qcow2 /etc/hostname > got.txt || fail "getxattrs"
acl_hex=$(od -An -tx1 -v acl.val | tr -d ' \n')
sort > want.txt <<EOF
# file: /etc/hostname
security.selinux="system_u:object_r:etc_t:s0"
system.posix_acl_access=0x$acl_hex
trusted.x="1"
user.comment="first line"
EOF
grep -v '^$' got.txt | sort > got.sorted
diff -u want.txt got.sorted || fail "getxattrs output"
"$DISKKIT" getxattrs -h fs.qcow2 /etc/link > link.txt || fail "getxattrs -h"
[ "$(grep -c = link.txt)" = 0 ] || fail "-h read the target's attributes"
[ "$(grep -c = <("$DISKKIT" getxattrs fs.qcow2 /etc/link))" = 4 ] ||
    fail "getxattrs did not follow the symlink"

note "setxattr / removexattr through qcow2"
"$DISKKIT" setxattr fs.qcow2 user.comment "second" /etc/hostname || fail "setxattr replace"
"$DISKKIT" setxattr fs.qcow2 user.bin 0x00ff10 /etc/hostname || fail "setxattr hex"
"$DISKKIT" removexattr fs.qcow2 trusted.x /etc/hostname || fail "removexattr"
"$DISKKIT" setxattr fs.qcow2 system.posix_acl_default "$(printf '0x%s' "$acl_hex")" /etc ||
    fail "setxattr ACL"
"$DISKKIT" shell -c 'setxattr user.shell yes /etc/hostname; removexattr user.bin /etc/hostname' \
    fs.qcow2 || fail "shell setxattr/removexattr"
"$DISKKIT" shell --ro -c 'getxattrs /etc/hostname' fs.qcow2 | grep -qx 'user.shell="yes"' ||
    fail "shell getxattrs"
qemu-img check -q fs.qcow2 || fail "qcow2 not clean after attribute changes"
qemu-img convert -O raw fs.qcow2 out.img
e2fsck -fn out.img >fsck.txt 2>&1 || { cat fsck.txt; fail "e2fsck -fn after attribute changes"; }
debugfs -R 'ea_list /etc/hostname' out.img 2>/dev/null > list.txt
grep -q 'user.comment (6) = "second"' list.txt || { cat list.txt; fail "debugfs: user.comment"; }
grep -q 'user.shell' list.txt || fail "debugfs: user.shell missing"
grep -q 'trusted.x\|user.bin' list.txt && fail "debugfs: removed attributes still there"
debugfs -R 'ea_get -f acl.out /etc system.posix_acl_default' out.img >/dev/null 2>&1
cmp -s acl.val acl.out || fail "debugfs reads the default ACL differently"

note "errors: one line, exit 1, image unchanged"
sum=$(sha fs.qcow2)
for args in "removexattr fs.qcow2 user.none /etc/hostname" \
            "setxattr fs.qcow2 bogus.ns v /etc/hostname" \
            "setxattr fs.qcow2 user.x 0xzz /etc/hostname" \
            "getxattrs fs.qcow2 /nonexistent" \
            "setxattr fs.qcow2 user.x v /nonexistent"; do
    # shellcheck disable=SC2086
    rc=0; "$DISKKIT" $args >out.txt 2>err.txt || rc=$?
    [ "$rc" = 1 ] || fail "$args: exit $rc"
    [ "$(wc -l <err.txt)" = 1 ] && grep -q '^diskkit: ' err.txt || fail "$args: $(cat err.txt)"
done
assert_eq "$(sha fs.qcow2)" "$sum" "refused changes left the image alone"
echo "guest-xattr: all passed"
