#!/usr/bin/env bash
# fuse-raw.sh - diskkit-mount --raw: MOUNTPOINT/disk reads exactly what
# `qemu-img convert -O raw` produces, for every format this build has
# (raw, qcow2, vmdk, vdi, vpc, a qcow2-over-qcow2 chain); writes through it land
# in the image (qemu-io reads them back, qemu-img check is clean); --ro,
# size changes and mkfs on the disk file behave.
source "$(dirname "$0")/fuse/lib.sh"
fuse_init
cd "$T"
SIZE=64M

# Source disk with a few recognisable areas and holes.
qemu-img create -q -f raw base.raw $SIZE
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 5M 3M' \
        -c 'write -P 0x33 63M 1M' base.raw >/dev/null
head -c 700000 /dev/urandom > rnd
dd if=rnd of=base.raw bs=4096 seek=4000 conv=notrunc status=none

check_read() {   # FMT IMAGE [extra mount args]
    local fmt=$1 img=$2
    shift 2
    qemu-img convert -O raw "$img" "expect.$fmt.raw"
    fuse_mount "m.$fmt" -f "$fmt" --raw --ro "$@" "$img" || die "mount $fmt"
    [ "$(stat -c %s "m.$fmt/disk")" = "$(stat -c %s "expect.$fmt.raw")" ] ||
        die "$fmt: size of disk differs"
    [ "$(stat -c %a "m.$fmt/disk")" = 444 ] || die "$fmt: --ro disk is not mode 0444"
    cmp "m.$fmt/disk" "expect.$fmt.raw" || die "$fmt: content differs from qemu-img convert"
    # Large and unaligned reads across area boundaries.
    dd if="m.$fmt/disk" bs=1M skip=4 count=5 status=none | cmp - <(dd if="expect.$fmt.raw" \
        bs=1M skip=4 count=5 status=none) || die "$fmt: 1 MiB reads differ"
    dd if="m.$fmt/disk" bs=777 skip=21000 count=300 status=none | cmp - <(dd if="expect.$fmt.raw" \
        bs=777 skip=21000 count=300 status=none) || die "$fmt: odd-sized reads differ"
    fuse_umount "m.$fmt" || die "unmount $fmt"
    echo "ok: raw read $fmt"
}

check_read raw base.raw
tested=raw
for fmt in qcow2 vmdk vdi vpc; do
    have_format $fmt || { echo "note: format $fmt not in this build, not tested"; continue; }
    qemu-img convert -q -f raw -O $fmt base.raw "base.$fmt"
    check_read $fmt "base.$fmt"
    tested="$tested $fmt"
done
if have_format qcow2; then
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
    qemu-io -f qcow2 -c 'write -P 0x44 4M 2M' -c 'write -z 6M 1M' top.qcow2 >/dev/null
    check_read qcow2 top.qcow2
    tested="$tested qcow2-chain"
fi

# Writes: through the image format when there is one, else raw.
WFMT=raw; have_format qcow2 && WFMT=qcow2
qemu-img convert -q -f raw -O $WFMT base.raw "w.$WFMT"
fuse_mount w -f $WFMT --raw "w.$WFMT" || die "mount rw"
[ "$(stat -c %a w/disk)" = 644 ] || die "rw disk is not mode 0644"
head -c 3145728 /dev/zero | tr '\0' '\253' > ab       # 3 MiB of 0xab
dd if=ab of=w/disk bs=1M seek=10 conv=notrunc status=none || die "dd write"
dd if=ab of=w/disk bs=4096 seek=8191 count=1 conv=notrunc status=none || die "unaligned write"
! truncate -s 1M w/disk 2>/dev/null || die "truncate to another size was allowed"
truncate -s $SIZE w/disk || die "truncate to the same size failed"
! dd if=ab of=w/disk bs=1M seek=64 count=1 conv=notrunc status=none 2>/dev/null ||
    die "write past the end succeeded"
cmp -n 1048576 w/disk base.raw || die "first MiB changed"
fuse_umount w || die "unmount rw"
qemu-io -f $WFMT -c 'read -P 0xab 10M 3M' -c 'read -P 0xab 33550336 4096' \
    -c 'read -P 0x33 63M 1M' "w.$WFMT" | grep -q "read 1048576/1048576" ||
    die "written bytes not in the image"
qemu-io -f $WFMT -c 'read -P 0xab 10M 3M' "w.$WFMT" | grep -q Pattern && die "pattern mismatch"
if [ $WFMT = qcow2 ]; then
    qemu-img check -q w.qcow2 || die "qemu-img check after raw writes"
fi
echo "ok: writes through $WFMT"

# qemu's --image-opts form names the file and the driver.
fuse_mount io --raw --ro --image-opts "driver=raw,file.filename=$T/base.raw" || die "--image-opts"
cmp io/disk base.raw || die "--image-opts mount differs"
fuse_umount io || die "unmount --image-opts"
! timeout 20 "$MOUNTER" --raw --ro --image-opts "driver=raw,file.filename=base.raw,encrypt.key-secret=k" io \
    2>err || die "missing secret accepted"
grep -q "no secret with id 'k'" err || die "bad message: $(cat err)"

# --ro refuses writes.
fuse_mount r -f raw --raw --ro base.raw || die "mount ro"
! dd if=ab of=r/disk bs=4096 count=1 conv=notrunc status=none 2>/dev/null || die "--ro write"
fuse_umount r || die "unmount ro"

# A filesystem made on the disk file is a valid filesystem in the image.
if command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null; then
    qemu-img create -q -f $WFMT fs.$WFMT 32M
    fuse_mount f -f $WFMT --raw fs.$WFMT || die "mount for mkfs"
    mkfs.ext4 -q -F f/disk || die "mkfs.ext4 on the disk file"
    fuse_umount f || die "unmount after mkfs"
    qemu-img convert -O raw fs.$WFMT fs.export.raw || die "export"
    e2fsck -fn fs.export.raw >/dev/null || die "e2fsck of the filesystem made through the mount"
    echo "ok: mkfs.ext4 through the mount"
fi
echo "tested formats: $tested"
