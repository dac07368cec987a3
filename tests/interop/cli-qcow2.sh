#!/usr/bin/env bash
# cli-qcow2.sh - the CLI commands on qcow2 images and backing chains,
# against qemu-img: map JSON entry-for-entry and info on qemu-made images
# (data, zero and compressed clusters, overlays), create + qemu-img check,
# convert raw->qcow2, qcow2->raw, -c, -B (only differing clusters written),
# -l snapshots, compare across formats. Skips until the qcow2 driver is in
# the build.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io mkfs.ext4 python3
need_format qcow2

make_tree "$T/tree" 2048
make_ext4_image "$T/disk.raw" 24M "$T/tree"
truncate -s 32M "$T/disk.raw"
write_random "$T/disk.raw" 26M 512k
write_zeros "$T/disk.raw" raw 28M 1M

note "qcow2 made by qemu-img: data, zero clusters, compressed clusters, chain"
qemu-img convert -q -f raw -O qcow2 "$T/disk.raw" "$T/base.qcow2"
qemu-img convert -q -c -f raw -O qcow2 "$T/disk.raw" "$T/comp.qcow2"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$T/top.qcow2" 32M
qemu-io -f qcow2 -c 'write -P 0x11 1M 128k' -c 'write -z 4M 256k' \
        -c 'write -P 0x12 25M 64k' "$T/top.qcow2" >/dev/null
for img in base.qcow2 comp.qcow2 top.qcow2; do
    map_same "$T/$img" qcow2
    info_same "$T/$img" qcow2
    diff <(qemu-img info -f qcow2 "$T/$img" | grep -v '^disk size') \
         <("$DISKKIT" info -f qcow2 "$T/$img" | grep -v '^disk size') ||
        fail "info human differs for $img"
done
map_same "$T/top.qcow2" qcow2 --start-offset 3M --max-length 3M
info_same "$T/top.qcow2" qcow2 --backing-chain
diff <(qemu-img map -f qcow2 "$T/top.qcow2") <("$DISKKIT" map -f qcow2 "$T/top.qcow2") ||
    fail "human map of a chain differs"

note "preallocation=metadata: data clusters in host holes map as zeros, like qemu-img"
qemu-img create -q -f qcow2 -o cluster_size=4k,preallocation=metadata "$T/pre.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x33 1M 256k' -c 'write -P 0x34 40M 4k' "$T/pre.qcow2" >/dev/null
map_same "$T/pre.qcow2" qcow2
diff <(qemu-img map -f qcow2 "$T/pre.qcow2") <("$DISKKIT" map -f qcow2 "$T/pre.qcow2") ||
    fail "human map of a metadata-preallocated image differs"
"$DISKKIT" convert -f qcow2 -O raw "$T/pre.qcow2" "$T/pre.raw" &&
    qemu-img compare -q -f qcow2 -F raw "$T/pre.qcow2" "$T/pre.raw" ||
    fail "metadata-preallocated image reads differently"

note "create qcow2: same Formatting lines as qemu-img"
for args in "-f qcow2 X 1G" "-f qcow2 -o cluster_size=4k,compat=0.10 X 1M" \
            "-f qcow2 -o lazy_refcounts=on,compression_type=zstd,refcount_bits=8 X 3M" \
            "-f qcow2 -b base.qcow2 -F qcow2 X"; do
    # shellcheck disable=SC2086
    dk=$(cd "$T" && "$DISKKIT" create ${args/X/f1.qcow2})
    # shellcheck disable=SC2086
    q=$(cd "$T" && qemu-img create ${args/X/f1.qcow2})
    assert_eq "$dk" "$q" "create $args"
done

note "create qcow2 and overlays; qemu-img check passes"
"$DISKKIT" create -q -f qcow2 "$T/new.qcow2" 64M
qemu-img check -q "$T/new.qcow2" || fail "new qcow2 fails qemu-img check"
"$DISKKIT" create -q -f qcow2 -b new.qcow2 -F qcow2 "$T/ov.qcow2"
assert_eq "$(qemu-img info --output=json "$T/ov.qcow2" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["backing-filename"], d["virtual-size"])')" \
    "new.qcow2 67108864" "overlay backing and size"
expect_clean_failure "$DISKKIT" create -f qcow2 -b new.qcow2 "$T/nofmt.qcow2"
[ ! -e "$T/nofmt.qcow2" ] || fail "failed create left a file"

note "compare across formats"
assert_rc 0 "$DISKKIT" compare "$T/disk.raw" "$T/comp.qcow2"
assert_rc 1 "$DISKKIT" compare "$T/disk.raw" "$T/top.qcow2"
note "convert raw -> qcow2 -> raw"
"$DISKKIT" convert -f raw -O qcow2 "$T/disk.raw" "$T/c.qcow2"
qemu-img check -q "$T/c.qcow2" || fail "convert output fails qemu-img check"
qemu-img compare -q -f raw -F qcow2 "$T/disk.raw" "$T/c.qcow2" || fail "raw->qcow2 content"
"$DISKKIT" convert -f qcow2 -O raw "$T/c.qcow2" "$T/back.raw"
cmp "$T/disk.raw" "$T/back.raw" || fail "qcow2->raw content"
"$DISKKIT" convert -O raw "$T/top.qcow2" "$T/flat.raw"     # probed, whole chain
qemu-img compare -q -F raw "$T/top.qcow2" "$T/flat.raw" || fail "chain flattening"
"$DISKKIT" convert -O qcow2 -o cluster_size=4096 "$T/disk.raw" "$T/c4k.qcow2"
qemu-img check -q "$T/c4k.qcow2" || fail "cluster_size=4096 output fails check"
qemu-img compare -q "$T/disk.raw" "$T/c4k.qcow2" || fail "cluster_size=4096 content"

note "convert -c (compressed qcow2)"
"$DISKKIT" convert -c -f raw -O qcow2 "$T/disk.raw" "$T/cc.qcow2"
qemu-img check -q "$T/cc.qcow2" || fail "-c output fails check"
qemu-img compare -q -f raw "$T/disk.raw" "$T/cc.qcow2" || fail "-c content"
[ "$(stat -c %s "$T/cc.qcow2")" -lt "$(stat -c %s "$T/c.qcow2")" ] || fail "-c did not compress"

note "convert -B: an overlay holding only the clusters that differ"
cp "$T/disk.raw" "$T/changed.raw"
write_pattern "$T/changed.raw" raw 2M 64k 0x33            # one changed cluster
write_zeros "$T/changed.raw" raw 26M 64k                  # data -> zeros
"$DISKKIT" convert -f raw -O qcow2 -B base.qcow2 -F qcow2 "$T/changed.raw" "$T/diff.qcow2"
qemu-img check -q "$T/diff.qcow2" || fail "-B output fails check"
qemu-img compare -q -f raw -F qcow2 "$T/changed.raw" "$T/diff.qcow2" || fail "-B content"
qemu-img map --output=json "$T/diff.qcow2" > "$T/diff.map"
python3 - "$T/diff.map" <<'PY' || fail "-B wrote clusters that did not change"
import json, sys
m = json.load(open(sys.argv[1]))
top = [(e["start"], e["length"]) for e in m if e["depth"] == 0 and e["present"]]
want = [(2 << 20, 65536), (26 << 20, 65536)]
assert top == want, "overlay allocations %r, expected %r" % (top, want)
PY

note "convert -l SNAPSHOT"
cp "$T/base.qcow2" "$T/snap.qcow2"
qemu-img snapshot -c before "$T/snap.qcow2"
qemu-io -f qcow2 -c 'write -P 0x99 0 1M' "$T/snap.qcow2" >/dev/null
"$DISKKIT" convert -l before -O raw "$T/snap.qcow2" "$T/before.raw"
cmp "$T/before.raw" "$T/disk.raw" || fail "-l NAME"
"$DISKKIT" convert -l snapshot.id=1 -O raw "$T/snap.qcow2" "$T/before1.raw"
cmp "$T/before1.raw" "$T/disk.raw" || fail "-l snapshot.id=1"
expect_clean_failure "$DISKKIT" convert -l nosuch -O raw "$T/snap.qcow2" "$T/none.raw"
[ ! -e "$T/none.raw" ] || fail "output left after a bad -l"
note "encrypted qcow2 (LUKS) in and out of convert, info, compare"
SEC="--object secret,id=s0,data=diskkit-pw"
# shellcheck disable=SC2086
"$DISKKIT" convert $SEC -O qcow2 -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 \
    "$T/disk.raw" "$T/enc.qcow2"
qemu-img compare $SEC --image-opts driver=raw,file.filename="$T/disk.raw" \
    driver=qcow2,file.filename="$T/enc.qcow2",encrypt.key-secret=s0 >/dev/null ||
    fail "encrypted output differs"
info_same "$T/enc.qcow2" qcow2
# shellcheck disable=SC2086
"$DISKKIT" convert $SEC -O raw "$T/enc.qcow2" "$T/dec.raw"
cmp "$T/disk.raw" "$T/dec.raw" || fail "decrypting convert"
# shellcheck disable=SC2086
assert_rc 0 "$DISKKIT" compare $SEC "$T/disk.raw" "$T/enc.qcow2"
assert_rc 2 "$DISKKIT" compare "$T/disk.raw" "$T/enc.qcow2"
expect_clean_failure "$DISKKIT" convert -O raw "$T/enc.qcow2" "$T/nokey.raw"
[ ! -e "$T/nokey.raw" ] || fail "output left after a missing secret"
echo "cli-qcow2: all passed"
