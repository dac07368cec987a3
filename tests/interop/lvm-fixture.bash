# lvm-fixture.bash - LVM2 guest disks for the guest-lvm*.sh tests (sourced,
# not run). Two ways to build them:
#  - lvm_python_disk: PVs, VG metadata and LVs written by lvmfix.py from
#    the on-disk format (no lvm2 tools, no loop devices);
#  - lvm_real_disk: pvcreate/vgcreate/lvcreate on loop devices over the
#    raw file (lvm2 tools with --driverloaded n, so no device-mapper), the
#    layout read back with pvs/lvs; skipped (77) when that cannot run.
# Either way the ext4 contents are made with mkfs.ext4 -d and copied into
# the LV extents by lvmfix.py put, which also reads LVs back (get).
# Callers set $T and source guest-fixture.bash first.

LVMFIX="python3 $SRCDIR/tests/interop/lvmfix.py"
LV_ROOT_UUID=2d6f5c1e-7a8b-4c9d-8e0f-1a2b3c4d5e6f
LV_DATA_UUID=3e7a6d2f-8b9c-4dae-9f10-2b3c4d5e6f70

# The root tree of the LVM guest: the fixture root with an fstab naming
# LVs three ways (mapper name, /dev/VG/LV, UUID=).
lvm_trees() {
    [ -d "$T/lvroot" ] && return 0
    make_root_tree "$T/lvroot"
    cat > "$T/lvroot/etc/fstab" <<FSTAB
/dev/mapper/testvg-root / ext4 defaults 0 1
UUID=$LV_DATA_UUID /srv/data ext4 defaults 0 2
/dev/testvg/data-lv /srv/again ext4 defaults 0 2
FSTAB
    mkdir -p "$T/lvroot/srv/data" "$T/lvroot/srv/again" "$T/lvdata/dir"
    echo "on the striped lv" > "$T/lvdata/dir/file3"
    head -c 2000000 /dev/urandom > "$T/lvdata/striped.bin"
    make_fs ext4 "$T/lvroot" 40 LVROOT "$LV_ROOT_UUID" "$T/lvroot.img"
    make_fs ext4 "$T/lvdata" 16 LVDATA "$LV_DATA_UUID" "$T/lvdata.img"
}

# lvm_python_disk OUT [LAYOUT]: MBR with p1 = PV pv0 (64 MiB) and p2 = PV
# pv1 (40 MiB); VG testvg, 4 MiB extents: root (40 MiB, linear over both
# PVs), data-lv (16 MiB, 2 stripes of 64 KiB), mirror (raid1, not
# readable), mirror_rimage_0 (hidden), orig (ext2) with an old-style
# snapshot snap (COW store, not readable) through the hidden snapshot0.
lvm_python_disk() {
    local out=$1 layout=${2:-$T/layout.json}
    lvm_trees
    rm -f "$out"; truncate -s 112M "$out"
    printf 'label: dos\nstart=2048, size=131072, type=8e\nstart=133120, size=81920, type=8e\n' |
        sfdisk -q "$out" >/dev/null
    cat > "$T/spec.json" <<SPEC
{ "vg": "testvg", "vgid": "aaaaaaBBBBccccDDDDeeeeFFFFggggHH", "extent": 4194304,
  "layout": "$layout", "seqno": 7,
  "pvs": { "pv0": { "img": "$out", "off": 1048576, "size": 67108864,
                    "pe_start": 1048576, "mda_size": 1043968,
                    "uuid": "PV0aaaBBBBccccDDDDeeeeFFFFggggHH" },
           "pv1": { "img": "$out", "off": 68157440, "size": 41943040,
                    "pe_start": 1048576, "mda_size": 1043968, "wrap": true,
                    "uuid": "PV1aaaBBBBccccDDDDeeeeFFFFggggHH" } },
  "lvs": { "root": { "uuid": "LVrootBBBBccccDDDDeeeeFFFFggggHH", "segs": [
              { "start": 0, "count": 8, "stripes": [["pv0", 0]] },
              { "start": 8, "count": 2, "stripes": [["pv1", 0]] } ] },
           "data-lv": { "uuid": "LVdataBBBBccccDDDDeeeeFFFFggggHH", "segs": [
              { "start": 0, "count": 4, "stripe_size": 65536,
                "stripes": [["pv0", 8], ["pv1", 2]] } ] },
           "mirror": { "uuid": "LVmirrBBBBccccDDDDeeeeFFFFggggHH", "segs": [
              { "start": 0, "count": 1, "type": "raid1", "stripes": [["pv0", 12]] } ] },
           "mirror_rimage_0": { "uuid": "LVhiddBBBBccccDDDDeeeeFFFFggggHH", "hidden": true,
              "segs": [ { "start": 0, "count": 1, "stripes": [["pv0", 13]] } ] },
           "orig": { "uuid": "LVorigBBBBccccDDDDeeeeFFFFggggHH", "segs": [
              { "start": 0, "count": 1, "stripes": [["pv0", 10]] } ] },
           "snap": { "uuid": "LVsnapBBBBccccDDDDeeeeFFFFggggHH", "segs": [
              { "start": 0, "count": 1, "stripes": [["pv0", 11]] } ] },
           "snapshot0": { "uuid": "LVsn0aBBBBccccDDDDeeeeFFFFggggHH", "hidden": true, "segs": [
              { "start": 0, "count": 1, "type": "snapshot", "stripes": [],
                "extra": { "chunk_size": 8, "origin": "orig", "cow_store": "snap" } } ] } } }
SPEC
    $LVMFIX mkvg "$T/spec.json" || { echo "lvmfix mkvg failed"; exit 1; }
    make_fs ext2 "$T/lvdata/dir" 4 ORIG "$DATA_UUID" "$T/orig.img"
    $LVMFIX put "$layout" orig "$T/orig.img"
    $LVMFIX put "$layout" root "$T/lvroot.img"
    $LVMFIX put "$layout" data-lv "$T/lvdata.img"
}

# lvm_python_pair A B LAYOUT: whole-disk PVs on two images, VG vg2 with
# span (linear, 3 extents on each) and both (2 stripes); A also holds an
# older copy of the metadata (seqno 1, no LVs): the newest must win.
lvm_python_pair() {
    lvm_trees
    rm -f "$1" "$2"; truncate -s 24M "$1"; truncate -s 24M "$2"
    cat > "$T/spec2.json" <<SPEC
{ "vg": "vg2", "vgid": "vg2aaaBBBBccccDDDDeeeeFFFFggggHH", "extent": 4194304,
  "layout": "$3", "seqno": 3, "stale_pv": "pvA",
  "pvs": { "pvA": { "img": "$1", "off": 0, "size": 25165824, "pe_start": 1048576,
                    "mda_size": 1043968, "uuid": "PVAaaaBBBBccccDDDDeeeeFFFFggggHH" },
           "pvB": { "img": "$2", "off": 0, "size": 25165824, "pe_start": 1048576,
                    "mda_size": 1043968, "uuid": "PVBaaaBBBBccccDDDDeeeeFFFFggggHH" } },
  "lvs": { "span": { "uuid": "LVspanBBBBccccDDDDeeeeFFFFggggHH", "segs": [
              { "start": 0, "count": 3, "stripes": [["pvA", 0]] },
              { "start": 3, "count": 3, "stripes": [["pvB", 0]] } ] },
           "both": { "uuid": "LVbothBBBBccccDDDDeeeeFFFFggggHH", "segs": [
              { "start": 0, "count": 4, "stripe_size": 131072,
                "stripes": [["pvA", 3], ["pvB", 3]] } ] } } }
SPEC
    $LVMFIX mkvg "$T/spec2.json" || { echo "lvmfix mkvg failed"; exit 1; }
    make_fs ext4 "$T/lvroot" 24 SPAN "$LV_ROOT_UUID" "$T/span.img"
    $LVMFIX put "$3" span "$T/span.img"
    $LVMFIX put "$3" both "$T/lvdata.img"
}
