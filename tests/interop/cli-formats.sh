#!/usr/bin/env bash
# cli-formats.sh - convert, info, map and compare across every format of
# the build against qemu-img: raw -> FMT -> raw round trips (content via
# qemu-img compare), and qemu-made FMT images read back (map JSON entry for
# entry, info contract keys). Formats not in the build are skipped.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io mkfs.ext4 python3

make_tree "$T/tree" 1024
make_ext4_image "$T/disk.raw" 16M "$T/tree"
truncate -s 20M "$T/disk.raw"
write_random "$T/disk.raw" 17M 256k
tested=0
for fmt in qcow2 vmdk vdi; do
    has_format "$fmt" || { note "$fmt: not in this build"; continue; }
    note "$fmt: raw -> $fmt -> raw"
    "$DISKKIT" convert -f raw -O "$fmt" "$T/disk.raw" "$T/dk.$fmt"
    qemu-img compare -q -f raw -F "$fmt" "$T/disk.raw" "$T/dk.$fmt" ||
        fail "raw -> $fmt content"
    qemu-img check -q -f "$fmt" "$T/dk.$fmt" || fail "$fmt output fails qemu-img check"
    "$DISKKIT" convert -f "$fmt" -O raw "$T/dk.$fmt" "$T/back.raw"
    cmp "$T/disk.raw" "$T/back.raw" || fail "$fmt -> raw content"
    assert_rc 0 "$DISKKIT" compare "$T/disk.raw" "$T/dk.$fmt"

    note "$fmt: images made by qemu-img read back the same"
    qemu-img convert -q -f raw -O "$fmt" "$T/disk.raw" "$T/q.$fmt"
    map_same "$T/q.$fmt" "$fmt"
    info_same "$T/q.$fmt" "$fmt"
    assert_rc 0 "$DISKKIT" compare -F "$fmt" "$T/disk.raw" "$T/q.$fmt"
    tested=$((tested + 1))
done
[ "$tested" -gt 0 ] || skip "no non-raw format in this build"
echo "cli-formats: $tested formats passed"
