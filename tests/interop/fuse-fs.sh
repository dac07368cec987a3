#!/usr/bin/env bash
# fuse-fs.sh - diskkit-mount filesystem mode. An ext4 made by `mkfs.ext4 -d`
# from a tree with known sha256s, modes, owners and links is listed and read
# back exactly, on a whole-disk filesystem and on /dev/sda1 of an MBR disk
# (through qcow2 when this build has it). Then files are written, renamed,
# linked, truncated and deleted through the mount; after unmount the
# filesystem passes `e2fsck -fn` and debugfs shows the changes.
source "$(dirname "$0")/fuse/lib.sh"
fuse_init
require mkfs.ext4 e2fsck debugfs sfdisk sha256sum
cd "$T"
export TZ=UTC

# The reference tree.
mkdir -p tree/etc tree/data/sub tree/empty
echo "guest-host" > tree/etc/hostname
head -c 3000000 /dev/urandom > tree/data/big.bin
head -c 4097 /dev/urandom > tree/data/sub/odd.bin
: > tree/data/zero-length
ln -s ../etc/hostname tree/data/link
ln tree/data/sub/odd.bin tree/data/hard.bin
chmod 0640 tree/etc/hostname
chown 1234:5678 tree/etc/hostname
listing() {   # DIR: one line per entry: path type mode uid gid size [sha|target]
    (cd "$1" && find . -mindepth 1 -not -path ./lost+found | LC_ALL=C sort | while read -r p; do
        if [ -L "$p" ]; then echo "$p link $(readlink "$p")"
        elif [ -f "$p" ]; then echo "$p $(stat -c '%F %a %u %g %s %h' "$p") $(sha256sum < "$p" | cut -c1-64)"
        else echo "$p $(stat -c '%F %a %u %g' "$p")"; fi
    done)
}
listing tree > expect.list
mkfs.ext4 -q -F -d tree -L guestfs fs.img 48M >/dev/null || die "mkfs.ext4 -d"
debugfs -w -R 'ea_set /etc/hostname user.origin guest' fs.img >/dev/null 2>&1 ||
    die "debugfs ea_set"

# An MBR disk with the filesystem as partition 1 (at 1 MiB).
qemu-img create -q -f raw disk.raw 64M
echo 'start=2048, size=98304, type=83' | sfdisk -q disk.raw >/dev/null || die sfdisk
dd if=fs.img of=disk.raw bs=1M seek=1 conv=notrunc status=none
FMT=raw; IMG=disk.raw
if have_format qcow2; then
    qemu-img convert -f raw -O qcow2 disk.raw disk.qcow2; FMT=qcow2; IMG=disk.qcow2
fi

# Read-only: whole-disk filesystem, then the partition by name.
fuse_mount w -f raw --ro fs.img || die "mount whole-disk fs"
listing w > got.list
diff -u expect.list got.list || die "whole-disk listing differs"
[ "$(df --output=fstype w | tail -1)" = fuse.diskkit ] || die "df type"
fuse_umount w || die "unmount w"
fuse_mount p -f $FMT --ro -m /dev/sda1 "$IMG" || die "mount /dev/sda1"
listing p > got.list
diff -u expect.list got.list || die "partition listing differs"
! touch p/newfile 2>/dev/null || die "--ro allowed a create"
fuse_umount p || die "unmount p"
! timeout 20 "$MOUNTER" -f $FMT -m /dev/sda7 "$IMG" p 2>err || die "missing device accepted"
[ "$(wc -l < err)" = 1 ] && grep -q '^diskkit-mount: ' err || die "bad error: $(cat err)"
echo "ok: read-only listing of $FMT"

# Changes through a read-write mount.
fuse_mount p -f $FMT -m /dev/sda1 "$IMG" || die "mount rw"
head -c 1500000 /dev/urandom > new.bin
cp new.bin p/data/new.bin || die "cp"
echo hello > p/hello.txt || die "create"
mkdir -p p/newdir/deeper || die "mkdir -p"
mv p/hello.txt p/newdir/deeper/renamed.txt || die "rename"
mv p/data/sub p/moved-sub || die "rename dir"
rm p/data/big.bin || die "unlink"
rmdir p/empty || die "rmdir"
ln -s /etc/hostname p/abs-link || die "symlink"
ln p/data/new.bin p/new-hard.bin || die "link"
chmod 0600 p/data/new.bin || die "chmod"
chown 42:43 p/new-hard.bin || die "chown"
touch -d '2001-02-03 04:05:06 UTC' p/etc/hostname || die "utimens"
printf 'abc' | dd of=p/data/zero-length bs=1 seek=100000 conv=notrunc status=none || die "write at offset"
truncate -s 1000 p/moved-sub/odd.bin || die "truncate"
exec 9<p/newdir/deeper/renamed.txt; rm p/newdir/deeper/renamed.txt
[ "$(cat <&9)" = hello ] || die "unlinked open file unreadable"; exec 9<&-
echo again > p/newdir/deeper/renamed.txt
cmp new.bin p/data/new.bin || die "new file reads back differently"
[ "$(stat -c '%a %h' p/data/new.bin)" = "600 2" ] || die "mode/links of new.bin"
[ "$(stat -c '%u:%g' p/new-hard.bin)" = "42:43" ] || die "owner after chown"
[ "$(stat -c %s p/data/zero-length)" = 100003 ] || die "size after sparse write"
[ "$(readlink p/abs-link)" = /etc/hostname ] || die "readlink"
# Extended attributes, as stored in the guest and written back.
python3 - p <<'EOF2' || die "extended attributes through the mount"
import errno, os, sys
p = sys.argv[1]
assert os.getxattr(p + '/etc/hostname', 'user.origin') == b'guest', 'user.origin'
assert 'user.origin' in os.listxattr(p + '/etc/hostname'), 'listxattr'
os.setxattr(p + '/data/new.bin', 'user.tag', b'v1\x00\xff')
os.setxattr(p + '/data/new.bin', 'user.gone', b'x')
os.removexattr(p + '/data/new.bin', 'user.gone')
assert sorted(os.listxattr(p + '/data/new.bin')) == ['user.tag'], os.listxattr(p + '/data/new.bin')
try:
    os.setxattr(p + '/data/new.bin', 'user.tag', b'v2', os.XATTR_CREATE)
    sys.exit('XATTR_CREATE replaced an attribute')
except OSError as e:
    assert e.errno == errno.EEXIST, e
try:
    os.getxattr(p + '/data/new.bin', 'user.none')
    sys.exit('missing attribute read')
except OSError as e:
    assert e.errno == errno.ENODATA, e
EOF2
fuse_umount p || die "unmount rw"

# Offline checks of the result.
qemu-img convert -O raw "$IMG" out.raw
dd if=out.raw of=out.fs bs=1M skip=1 count=48 status=none
e2fsck -fn out.fs > fsck.out 2>&1 || { cat fsck.out; die "e2fsck -fn after changes"; }
debugfs -R 'ls -l /' out.fs 2>/dev/null > root.ls
for n in moved-sub newdir abs-link new-hard.bin data etc; do
    grep -qw "$n" root.ls || { cat root.ls; die "debugfs: /$n missing"; }
done
grep -qw empty root.ls && die "debugfs: /empty still there"
debugfs -R 'ls -l /data' out.fs 2>/dev/null | grep -qw big.bin && die "big.bin still there"
debugfs -R 'cat /data/new.bin' out.fs 2>/dev/null | cmp - new.bin || die "debugfs: new.bin content"
debugfs -R 'cat /newdir/deeper/renamed.txt' out.fs 2>/dev/null | grep -qx again ||
    die "debugfs: renamed.txt"
debugfs -R 'stat /etc/hostname' out.fs 2>/dev/null | grep -q 'mtime:.*Feb  3 04:05:06 2001' ||
    die "debugfs: mtime not set"
debugfs -R 'ea_get -f tag.out /data/new.bin user.tag' out.fs >/dev/null 2>&1
printf 'v1\000\377' | cmp -s - tag.out || die "debugfs: user.tag not stored as written"
debugfs -R 'ea_list /data/new.bin' out.fs 2>/dev/null | grep -q 'user.gone' &&
    die "debugfs: user.gone still there"
echo "ok: changes through $FMT pass e2fsck and show in debugfs"
