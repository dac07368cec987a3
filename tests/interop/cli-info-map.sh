#!/usr/bin/env bash
# cli-info-map.sh - diskkit create / info / map / compare against qemu-img:
# identical "Formatting" lines for raw, info (human and JSON contract keys),
# map JSON entry-for-entry, compare verdicts and exit codes, on raw images.
# (qcow2 and backing chains: cli-qcow2.sh.)
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io mkfs.ext4 python3

note "create raw: same Formatting line as qemu-img"
(cd "$T" && "$DISKKIT" create -f raw a.raw 1G) > "$T/dk.txt"
(cd "$T" && qemu-img create -f raw b.raw 1G) | sed 's/b\.raw/a.raw/' > "$T/q.txt"
diff "$T/q.txt" "$T/dk.txt" || fail "create raw line"
(cd "$T" && "$DISKKIT" create -f raw -o preallocation=falloc c.raw 1.5M) > "$T/dk.txt"
assert_eq "$(cat "$T/dk.txt")" "Formatting 'c.raw', fmt=raw size=1572864 preallocation=falloc" \
    "create raw with preallocation"
assert_eq "$(stat -c %s "$T/c.raw")" 1572864 "size with suffix"
[ -z "$("$DISKKIT" create -q -f raw "$T/q.raw" 1M)" ] || fail "create -q not quiet"
"$DISKKIT" create -f raw -o help | grep -q '^  size=<size> ' || fail "create -o help"

note "info on raw: human identical, JSON contract keys identical"
make_tree "$T/tree" 1024
make_ext4_image "$T/disk.raw" 16M "$T/tree"
truncate -s 24M "$T/disk.raw"
write_random "$T/disk.raw" 18M 64k
write_zeros "$T/disk.raw" raw 20M 1M
diff <(qemu-img info -f raw "$T/disk.raw") <("$DISKKIT" info -f raw "$T/disk.raw") ||
    fail "info human differs"
info_same "$T/disk.raw" raw
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); \
  assert "cluster-size" not in d and d["dirty-flag"] is False' "$T/.dk.json" ||
    fail "raw JSON must have dirty-flag false and no cluster-size"
"$DISKKIT" info "$T/disk.raw" | grep -q '^file format: raw$' || fail "probed raw"

note "map on raw (sparse, data, explicit zeros) identical to qemu-img"
map_same "$T/disk.raw" raw
map_same "$T/disk.raw" raw --start-offset 1M --max-length 19M
map_same "$T/disk.raw" raw --start-offset 100M
diff <(qemu-img map -f raw "$T/disk.raw") <("$DISKKIT" map -f raw "$T/disk.raw") ||
    fail "human map differs"

note "compare: exit codes 0/1/2 and -s"
cp --sparse=always "$T/disk.raw" "$T/copy.raw"
assert_rc 0 "$DISKKIT" compare -f raw -F raw "$T/disk.raw" "$T/copy.raw"
out=$("$DISKKIT" compare "$T/disk.raw" "$T/copy.raw")
assert_eq "$out" "Images are identical." "compare message"
write_pattern "$T/copy.raw" raw 5000 1 0x55
assert_rc 1 "$DISKKIT" compare "$T/disk.raw" "$T/copy.raw"
diff <(qemu-img compare "$T/disk.raw" "$T/copy.raw") \
     <("$DISKKIT" compare "$T/disk.raw" "$T/copy.raw") || fail "mismatch message"
assert_rc 2 "$DISKKIT" compare "$T/disk.raw" "$T/nonexistent"
expect_clean_failure "$DISKKIT" compare "$T/disk.raw" "$T/nonexistent" >/dev/null
truncate -s 30M "$T/grown.raw"; cp --sparse=always "$T/disk.raw" "$T/grown.raw"
truncate -s 30M "$T/grown.raw"
diff <(qemu-img compare "$T/disk.raw" "$T/grown.raw") \
     <("$DISKKIT" compare "$T/disk.raw" "$T/grown.raw") || fail "size-mismatch messages"
assert_rc 1 "$DISKKIT" compare -s "$T/disk.raw" "$T/grown.raw"
diff <(qemu-img compare -s "$T/disk.raw" "$T/grown.raw") \
     <("$DISKKIT" compare -s "$T/disk.raw" "$T/grown.raw") || fail "strict size message"
[ -z "$("$DISKKIT" compare -q "$T/disk.raw" "$T/grown.raw")" ] || fail "compare -q"

echo "cli-info-map: all passed"
