#!/usr/bin/env bash
# guest-lvm-real.sh - LVM2 guests made by the real lvm2 tools: pvcreate,
# vgcreate, lvcreate and lvextend on loop devices over two partitions of
# a raw file, with --driverloaded n (no device-mapper needed: LVs are
# created inactive and unzeroed). The layout is read back with pvs/lvs,
# the ext4 contents are copied into the extents with lvmfix.py, and the
# disk is converted to qcow2 and vmdk. Skipped (77) when lvm2 or loop
# devices are not usable (not root, no /dev/loop-control, a container).
set -u
T=$(mktemp -d)
LOOPS=()
cleanup() { for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
. "$SRCDIR/tests/interop/guest-fixture.bash"
guest_requires python3 losetup pvcreate vgcreate lvcreate lvextend lvs pvs
. "$SRCDIR/tests/interop/lvm-fixture.bash"
[ "$(id -u)" = 0 ] || { echo "SKIP: loop devices need root"; exit 77; }

R=$T/real.raw
truncate -s 112M "$R"
printf 'label: dos\nstart=2048, size=131072, type=8e\nstart=133120, size=81920, type=8e\n' |
    sfdisk -q "$R" >/dev/null
attach() {   # START_SECTOR SIZE_SECTORS: sets $L (no subshell: LOOPS must see it)
    L=$(losetup -f --show -o $(($1 * 512)) --sizelimit $(($2 * 512)) "$R" 2>/dev/null) ||
        { echo "SKIP: losetup cannot attach a loop device here"; exit 77; }
    LOOPS+=("$L")
}
attach 2048 131072; L1=$L
attach 133120 81920; L2=$L
export LVM_SYSTEM_DIR=$T/lvmsys LVM_SUPPRESS_FD_WARNINGS=1
mkdir -p "$LVM_SYSTEM_DIR"
cat > "$LVM_SYSTEM_DIR/lvm.conf" <<CONF
devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 }
backup { backup = 0 archive = 0 }
CONF
lvm() { "$@" --devices "$L1,$L2" >>"$T/lvm.log" 2>&1; }
lvm pvcreate -y "$L1" "$L2" && lvm vgcreate -s 4m testvg "$L1" "$L2" ||
    { tail -n 3 "$T/lvm.log"; echo "SKIP: pvcreate/vgcreate do not work here"; exit 77; }
LVOPT=(--driverloaded n -an -Zn -y)
lvm lvcreate "${LVOPT[@]}" -l 8 -n root testvg "$L1" || { cat "$T/lvm.log"; fail "lvcreate root"; }
lvm lvextend --driverloaded n -l +2 testvg/root "$L2" || { cat "$T/lvm.log"; fail "lvextend root"; }
lvm lvcreate "${LVOPT[@]}" -i 2 -I 64k -l 4 -n data-lv testvg || { cat "$T/lvm.log"; fail "lvcreate striped"; }
HAVE_RAID=0
lvm lvcreate "${LVOPT[@]}" --type raid1 -m 1 -l 1 -n mirror testvg && HAVE_RAID=1
[ $HAVE_RAID = 1 ] || tail -n 2 "$T/lvm.log"
echo "raid1 LV created: $HAVE_RAID"

# The layout as lvm2 reports it, in lvmfix.py's JSON form.
pvs --devices "$L1,$L2" --noheadings --units b --nosuffix --separator '|' \
    -o pv_name,pe_start > "$T/pvs.txt" 2>/dev/null
lvs --devices "$L1,$L2" --noheadings --units b --nosuffix --separator '|' \
    -o lv_name,seg_start_pe,seg_size_pe,stripes,stripe_size,seg_pe_ranges testvg > "$T/lvs.txt" 2>/dev/null
cat "$T/pvs.txt" "$T/lvs.txt"
python3 - "$R" "$L1" "$L2" "$T/pvs.txt" "$T/lvs.txt" > "$T/layout.json" <<'PY'
import json, sys
raw, l1, l2, pvs, lvs = sys.argv[1:]
off = {l1: 2048 * 512, l2: 133120 * 512}
layout = {"extent": 4 << 20, "pvs": {}, "lvs": {}}
for line in open(pvs):
    name, pe_start = [x.strip() for x in line.split("|")]
    layout["pvs"][name] = {"img": raw, "off": off[name], "pe_start": int(pe_start)}
for line in open(lvs):
    name, start, count, n, ssize, ranges = [x.strip() for x in line.split("|")]
    stripes = [[r.rsplit(":", 1)[0], int(r.rsplit(":", 1)[1].split("-")[0])] for r in ranges.split()]
    seg = {"start": int(start), "count": int(count), "stripes": stripes}
    if int(n) > 1:
        seg["stripe_size"] = int(ssize)
    layout["lvs"].setdefault(name, []).append(seg)
json.dump(layout, sys.stdout)
PY
for l in "${LOOPS[@]}"; do losetup -d "$l"; done; LOOPS=()
lvm_trees
$LVMFIX put "$T/layout.json" root "$T/lvroot.img"
$LVMFIX put "$T/layout.json" data-lv "$T/lvdata.img"
RND_SHA=$(sha256sum < "$T/lvroot/data/random.bin" | cut -d' ' -f1)
STR_SHA=$(sha256sum < "$T/lvdata/striped.bin" | cut -d' ' -f1)

for fmt in qcow2 vmdk; do
    echo "--- $fmt"
    I=$T/real.$fmt
    qemu-img convert -O $fmt "$R" "$I"
    "$DK" list-filesystems "$I" | grep -qx '/dev/testvg/root: ext4' || fail "$fmt: root listed"
    "$DK" list-filesystems "$I" | grep -qx '/dev/testvg/data-lv: ext4' || fail "$fmt: data-lv listed"
    "$DK" list-lvs -l "$I" | grep -q '^/dev/testvg/root size=41943040 pvs=2 stripes=1 .* status=ok$' || fail "$fmt: root -l"
    [ $HAVE_RAID = 0 ] || "$DK" list-lvs -l "$I" | grep -q 'status=LV testvg/mirror: segment type raid1 not supported' ||
        fail "$fmt: raid1 status"
    ! "$DK" list-lvs "$I" | grep -q rimage || fail "$fmt: hidden sub-LVs listed"
    expect_eq "$("$DK" cat "$I" /data/random.bin | sha256sum | cut -d' ' -f1)" "$RND_SHA" "$fmt: root sha"
    expect_eq "$("$DK" cat "$I" /srv/data/striped.bin | sha256sum | cut -d' ' -f1)" "$STR_SHA" "$fmt: striped sha"
    "$DK" inspect "$I" | grep -qx 'root: /dev/testvg/root' || fail "$fmt: inspect root"
    echo "real $fmt" | "$DK" write "$I" /srv/data/dir/new.txt || fail "$fmt: write striped LV"
    "$DK" mkdir "$I" /etc/real-$fmt || fail "$fmt: mkdir root LV"
    qemu-img convert -O raw "$I" "$T/back.raw"
    sed "s|$R|$T/back.raw|g" "$T/layout.json" > "$T/back.json"
    $LVMFIX get "$T/back.json" root "$T/root.out"
    $LVMFIX get "$T/back.json" data-lv "$T/data.out"
    e2fsck -fn "$T/root.out" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "$fmt: e2fsck root"; }
    e2fsck -fn "$T/data.out" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "$fmt: e2fsck data"; }
    expect_eq "$(debugfs -R 'cat /dir/new.txt' "$T/data.out" 2>/dev/null)" "real $fmt" "$fmt: debugfs"
    debugfs -R 'ls /etc' "$T/root.out" 2>/dev/null | grep -q "real-$fmt" || fail "$fmt: debugfs mkdir"
done
echo PASS
