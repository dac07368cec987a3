#!/usr/bin/env bash
# fuse-lvm.sh - diskkit-mount -m /dev/VG/LV: the linear LV over two PVs
# and the striped LV of the lvmfix.py fixture (guest-lvm.sh) mounted read
# only and read-write through qcow2; after unmount the LV, read back from
# the raw export, passes e2fsck -fn and debugfs sees the new file.
source "$(dirname "$0")/fuse/lib.sh"
fuse_init
require mkfs.ext4 e2fsck debugfs sfdisk sha256sum python3
. "$SRCDIR/tests/interop/guest-fixture.bash"
. "$SRCDIR/tests/interop/lvm-fixture.bash"
cd "$T"
lvm_python_disk "$T/a.raw" "$T/layout.json"
qemu-img convert -f raw -O qcow2 a.raw a.qcow2
RND_SHA=$(sha256sum < lvroot/data/random.bin | cut -d' ' -f1)

fuse_mount r -f qcow2 --ro -m /dev/mapper/testvg-root a.qcow2 || die "mount root LV"
[ "$(sha256sum < r/data/random.bin | cut -d' ' -f1)" = "$RND_SHA" ] || die "root LV sha"
[ "$(cat r/etc/hostname)" = guesthost ] || die "root LV hostname"
fuse_umount r || die "unmount r"

fuse_mount d -f qcow2 -m /dev/testvg/data-lv a.qcow2 || die "mount striped LV rw"
cmp d/striped.bin lvdata/striped.bin || die "striped LV content"
cp lvroot/data/random.bin d/copied.bin
echo "via fuse" > d/dir/fuse.txt
fuse_umount d || die "unmount d"
wait_unlocked a.qcow2 qcow2

qemu-img convert -O raw a.qcow2 back.raw
sed "s|$T/a.raw|$T/back.raw|g" layout.json > back.json
python3 "$SRCDIR/tests/interop/lvmfix.py" get back.json data-lv data.out
e2fsck -fn data.out > fsck.log 2>&1 || { cat fsck.log; die "e2fsck striped LV"; }
[ "$(debugfs -R 'cat /dir/fuse.txt' data.out 2>/dev/null)" = "via fuse" ] || die "debugfs fuse.txt"
[ "$(debugfs -R 'dump /copied.bin /dev/stdout' data.out 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$RND_SHA" ] ||
    die "debugfs copied.bin"
mkdir -p m
! timeout 20 "$MOUNTER" -f qcow2 -m /dev/testvg/mirror a.qcow2 m 2>err || die "raid1 LV mounted"
[ "$(wc -l < err)" = 1 ] && grep -q '^diskkit-mount: .*LV testvg/mirror: segment type raid1 not supported' err ||
    die "bad error: $(cat err)"
echo PASS
