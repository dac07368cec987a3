#!/usr/bin/env bash
# guest-lvm.sh - LVM2 logical volumes as guest devices, on fixtures built
# by lvmfix.py from the on-disk format (no lvm2 tools, no loop devices):
# list-filesystems/list-lvs, ls/cat with sha256 through a linear LV over
# two PVs and a 2-stripe LV, inspect finding the root on an LV with fstab
# naming LVs by /dev/mapper, /dev/VG/LV and UUID=, writes through LVs
# (checked with e2fsck -fn and debugfs on the LV read back from the raw
# export), a VG over two images (qcow2 + vmdk) in the shell, a missing PV,
# an unsupported segment type, and damaged metadata (one-line errors, no
# crash).
set -u
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$SRCDIR/tests/interop/guest-fixture.bash"
guest_requires python3
. "$SRCDIR/tests/interop/lvm-fixture.bash"

lvm_python_disk "$T/a.raw" "$T/layout.json"
A=$T/a.raw
RND_SHA=$(sha256sum < "$T/lvroot/data/random.bin" | cut -d' ' -f1)
STR_SHA=$(sha256sum < "$T/lvdata/striped.bin" | cut -d' ' -f1)

echo "--- list-filesystems, list-lvs"
expect_eq "$("$DK" list-filesystems "$A")" "/dev/sda1: LVM2_member
/dev/sda2: LVM2_member
/dev/testvg/data-lv: ext4
/dev/testvg/mirror: unknown
/dev/testvg/orig: ext2
/dev/testvg/root: ext4
/dev/testvg/snap: unknown" "list-filesystems"
expect_eq "$("$DK" list-lvs "$A")" "/dev/testvg/data-lv
/dev/testvg/mirror
/dev/testvg/orig
/dev/testvg/root
/dev/testvg/snap" "list-lvs"
"$DK" list-lvs -l "$A" | grep -qx '/dev/testvg/data-lv size=16777216 pvs=2 stripes=2 uuid=LVdata-BBBB-cccc-DDDD-eeee-FFFF-ggggHH status=ok' ||
    fail "list-lvs -l data-lv"
"$DK" list-filesystems -l "$A" | grep -q "^/dev/testvg/root: ext4 label=LVROOT uuid=$LV_ROOT_UUID size=41943040$" ||
    fail "list-filesystems -l root"

echo "--- reads through linear (two PVs) and striped LVs"
expect_eq "$("$DK" cat -m /dev/testvg/root "$A" /data/random.bin | sha256sum | cut -d' ' -f1)" "$RND_SHA" "root sha"
expect_eq "$("$DK" cat -m /dev/mapper/testvg-data--lv "$A" /striped.bin | sha256sum | cut -d' ' -f1)" "$STR_SHA" "striped sha (mapper name)"
expect_eq "$("$DK" ls -m /dev/testvg/data-lv "$A" /dir)" "file3" "ls striped"
expect_eq "$("$DK" cat "$A" /srv/data/dir/file3)" "on the striped lv" "fstab UUID= mount"
expect_eq "$("$DK" cat "$A" /srv/again/dir/file3)" "on the striped lv" "fstab /dev/VG/LV mount"
"$DK" ls -R "$A" /srv | grep -qx '/srv/data/striped.bin' || fail "ls -R enters the LV mount"
mkdir "$T/out"; "$DK" copy-out "$A" /data/random.bin "$T/out" || fail "copy-out"
expect_eq "$(sha256sum < "$T/out/random.bin" | cut -d' ' -f1)" "$RND_SHA" "copy-out sha"
"$DK" df "$A" | grep -q '^testvg/root\|/dev/testvg/root' || { "$DK" df "$A"; fail "df lists the LV"; }

echo "--- inspect: root on an LV, fstab by mapper name, /dev/VG/LV and UUID="
ins=$("$DK" inspect "$A")
printf '%s\n' "$ins" | grep -qx 'root: /dev/testvg/root' || fail "inspect root: $ins"
printf '%s\n' "$ins" | grep -qx '    /srv/data: /dev/testvg/data-lv' || fail "inspect UUID= mount"
printf '%s\n' "$ins" | grep -qx '    /srv/again: /dev/testvg/data-lv' || fail "inspect /dev/VG/LV mount"
"$DK" inspect --output json "$A" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["root"]=="/dev/testvg/root", d' ||
    fail "inspect json"

echo "--- unsupported segment type, hidden LVs, unknown LV"
expect_eq "$(expect_err "$DK" ls -m /dev/testvg/mirror "$A" /)" \
    "diskkit: ls: LV testvg/mirror: segment type raid1 not supported" "raid1 message"
expect_eq "$(expect_err "$DK" ls -m /dev/testvg/snap "$A" /)" \
    "diskkit: ls: LV testvg/snap: snapshot (copy-on-write store) not supported" "snapshot message"
expect_eq "$("$DK" cat -m /dev/testvg/orig "$A" /file3)" "on the striped lv" "snapshot origin readable"
cp "$A" "$T/snap.raw"
expect_eq "$(echo x | expect_err "$DK" write -f raw -m /dev/testvg/orig "$T/snap.raw" /x)" \
    "diskkit: write: LV testvg/orig has snapshots: writing it would corrupt them" "origin write refused"
cmp "$A" "$T/snap.raw" || fail "refused write changed the image"
expect_err "$DK" ls -m /dev/testvg/mirror_rimage_0 "$A" / | grep -q 'no such device' || fail "hidden LV"
expect_err "$DK" ls -m /dev/testvg/nope "$A" / | grep -q 'no such device' || fail "unknown LV"

echo "--- writes through LVs (qcow2 over the raw), e2fsck and debugfs"
qemu-img convert -O qcow2 "$A" "$T/a.qcow2"
Q=$T/a.qcow2
echo "written via lv" | "$DK" write "$Q" /etc/motd || fail "write to root LV"
"$DK" copy-in "$Q" "$T/out/random.bin" /srv/data/dir || fail "copy-in to striped LV"
"$DK" mkdir -p -m /dev/mapper/testvg-root "$Q" /new/dir || fail "mkdir -m mapper"
"$DK" rm -m /dev/testvg/root "$Q" /etc/link-fast || fail "rm on LV"
expect_eq "$("$DK" cat "$Q" /etc/motd)" "written via lv" "read back"
expect_eq "$("$DK" cat "$Q" /srv/data/dir/random.bin | sha256sum | cut -d' ' -f1)" "$RND_SHA" "copy-in sha"
qemu-img convert -O raw "$Q" "$T/back.raw"
sed "s|$A|$T/back.raw|g" "$T/layout.json" > "$T/back.json"
python3 "$SRCDIR/tests/interop/lvmfix.py" get "$T/back.json" root "$T/root.out"
python3 "$SRCDIR/tests/interop/lvmfix.py" get "$T/back.json" data-lv "$T/data.out"
e2fsck -fn "$T/root.out" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "e2fsck root LV"; }
e2fsck -fn "$T/data.out" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "e2fsck data LV"; }
expect_eq "$(debugfs -R 'cat /etc/motd' "$T/root.out" 2>/dev/null)" "written via lv" "debugfs root"
debugfs -R 'ls /new' "$T/root.out" 2>/dev/null | grep -q dir || fail "debugfs mkdir"
expect_eq "$(debugfs -R 'dump /dir/random.bin /dev/stdout' "$T/data.out" 2>/dev/null | sha256sum | cut -d' ' -f1)" \
    "$RND_SHA" "debugfs striped copy-in"
# The mirror LV's extents and the PV metadata are untouched.
cmp <(head -c 1048576 "$A") <(head -c 1048576 "$T/back.raw") || fail "MBR area changed"
"$DK" shell -c 'write /etc/issue "via shell"; cat /etc/issue' "$Q" | grep -qx 'via shell' || fail "shell write on LV"

echo "--- VG over two images (vmdk + qcow2), stale metadata copy, missing PV"
lvm_python_pair "$T/b1.raw" "$T/b2.raw" "$T/layout2.json"
qemu-img convert -O vmdk "$T/b1.raw" "$T/b1.vmdk"
qemu-img convert -O qcow2 "$T/b2.raw" "$T/b2.qcow2"
out=$("$DK" shell --ro -c 'list-lvs; cat -m /dev/vg2/span /data/random.bin' "$T/b1.vmdk" "$T/b2.qcow2" | head -2)
expect_eq "$out" "/dev/vg2/both
/dev/vg2/span" "two-image list-lvs (newest seqno wins)"
expect_eq "$("$DK" shell --ro -c 'cat -m /dev/vg2/span /data/random.bin' "$T/b1.vmdk" "$T/b2.qcow2" | sha256sum | cut -d' ' -f1)" \
    "$RND_SHA" "span sha"
expect_eq "$("$DK" shell --ro -c 'cat -m /dev/vg2/both /striped.bin' "$T/b1.vmdk" "$T/b2.qcow2" | sha256sum | cut -d' ' -f1)" \
    "$STR_SHA" "two-image stripes sha"
"$DK" shell -m /dev/vg2/span -c 'write /two "two images"' "$T/b1.vmdk" "$T/b2.qcow2" || fail "write across images"
expect_eq "$("$DK" shell --ro -c 'cat -m /dev/vg2/span /two' "$T/b1.vmdk" "$T/b2.qcow2")" "two images" "two-image write"
"$DK" list-lvs -l "$T/b2.qcow2" | grep -q 'status=LV vg2/span: PV pvA (uuid PVAaaaBBBBccccDDDDeeeeFFFFggggHH) is missing' ||
    fail "missing PV status"
expect_eq "$(expect_err "$DK" cat -m /dev/vg2/span "$T/b2.qcow2" /etc/hostname)" \
    "diskkit: cat: LV vg2/span: PV pvA (uuid PVAaaaBBBBccccDDDDeeeeFFFFggggHH) is missing" "missing PV message"

echo "--- damaged metadata: warnings, one-line errors, no crash"
damage() {   # KIND PVS...: copy of a.raw with those PVs damaged
    cp "$A" "$T/bad.raw"; sed "s|$A|$T/bad.raw|g" "$T/layout.json" > "$T/bad.json"
    local kind=$1; shift
    for pv in "$@"; do python3 "$SRCDIR/tests/interop/lvmfix.py" corrupt "$T/bad.json" "$pv" "$kind"; done
}
for kind in mda-crc text-crc huge-size wrap-lie bad-text; do
    damage $kind pv0 pv1
    "$DK" list-filesystems "$T/bad.raw" > "$T/lf.out" 2> "$T/lf.err"; rc=$?
    [ $rc -eq 0 ] || fail "$kind: list-filesystems exit $rc"
    [ "$(grep -c . "$T/lf.err")" -eq 2 ] && ! grep -qv '^diskkit: list-filesystems: warning: /dev/sda[12]: LVM2 PV: ' "$T/lf.err" ||
        { cat "$T/lf.err"; fail "$kind: one warning line per PV"; }
    ! grep -q testvg "$T/lf.out" || fail "$kind: LVs should be gone"
    "$DK" ls -m /dev/testvg/root "$T/bad.raw" / 2> "$T/ls.err"; rc=$?
    [ $rc -eq 1 ] || fail "$kind: ls exit $rc (signal?)"
    tail -n 1 "$T/ls.err" | grep -qx 'diskkit: ls: /dev/testvg/root: no such device in this guest' || fail "$kind: ls message"
    echo "$kind: $(head -n 1 "$T/lf.err")"
done
grep -q 'checksum mismatch' <(damage mda-crc pv0 pv1; "$DK" list-lvs "$T/bad.raw" 2>&1) || fail "mda-crc message"
# One damaged copy: the other PV's metadata still assembles the VG.
damage text-crc pv0
expect_eq "$("$DK" cat "$T/bad.raw" /srv/data/dir/file3 2>/dev/null)" "on the striped lv" "second metadata copy used"
damage label-crc pv0
"$DK" list-lvs -l "$T/bad.raw" 2>"$T/lv.err" | grep -q 'root .*PV pv0 .* is missing' || fail "label-crc: pv0 missing"
grep -q 'LVM2 label checksum mismatch' "$T/lv.err" || fail "label-crc warning"
damage huge-extents pv0 pv1
"$DK" list-lvs -l "$T/bad.raw" > "$T/lv.out" 2>&1; rc=$?
[ $rc -eq 0 ] || fail "huge-extents: exit $rc"
grep -q "root .*status=LV testvg/root: segment segment1: size overflows" "$T/lv.out" || { cat "$T/lv.out"; fail "huge-extents status"; }
expect_err "$DK" cat -m /dev/testvg/root "$T/bad.raw" /etc/hostname | grep -q 'LV testvg/root: ' || fail "huge-extents message"
echo "PASS"
