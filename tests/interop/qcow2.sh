#!/usr/bin/env bash
# qcow2.sh - qcow2 interop with qemu-img/qemu-io as the oracle, both ways:
#  - diskkit create makes the same bytes as qemu-img create;
#  - images diskkit writes (convert, -c zlib/zstd, cluster sizes, refcount
#    widths, v2/v3, lazy refcounts, preallocation, backing chains) pass
#    `qemu-img check` and `qemu-img compare`;
#  - images qemu writes (compressed, zero clusters, snapshots, chains) read
#    back exactly, and `map`/`info --output json` print what qemu-img prints.
# Env: DISKKIT (path of build/diskkit). Exit 77 when qemu tools are missing.
set -u
DISKKIT=${DISKKIT:-build/diskkit}
for t in qemu-img qemu-io python3; do
    command -v $t >/dev/null || { echo "$t not installed"; exit 77; }
done
[ -x "$DISKKIT" ] || { echo "diskkit binary missing ($DISKKIT)"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
dk() { "$DISKKIT" "$@"; }
qcheck() { qemu-img check -q "$1" >/dev/null 2>&1; }

# Source with random data, a zero region and a compressible text region.
head -c 6M /dev/urandom > src.raw
dd if=/dev/zero of=src.raw bs=1M seek=2 count=1 conv=notrunc status=none
head -c 3M /dev/urandom | base64 | head -c 4M >> src.raw
truncate -s 24M src.raw

# 1. fresh images are byte-identical to qemu-img create
for o in "" compat=0.10 lazy_refcounts=on compression_type=zstd cluster_size=4k \
         refcount_bits=1 preallocation=metadata "backing_file=src.raw,backing_fmt=raw"; do
    rm -f a.qcow2 b.qcow2
    dk create -q -f qcow2 ${o:+-o $o} a.qcow2 24M >/dev/null &&
        qemu-img create -q -f qcow2 ${o:+-o $o} b.qcow2 24M &&
        cmp -s a.qcow2 b.qcow2 && ok "create ${o:-default} identical" ||
        bad "create ${o:-default} differs from qemu-img"
done

# 2. info --output json: format-specific part as qemu-img prints it
for o in compat=1.1 compat=0.10 lazy_refcounts=on,refcount_bits=64; do
    rm -f a.qcow2
    qemu-img create -q -f qcow2 -o $o a.qcow2 1G
    dk info --output json a.qcow2 > d.json && qemu-img info --output json a.qcow2 > q.json &&
    python3 - d.json q.json <<'EOF' && ok "info $o" || bad "info $o"
import json, sys
d, q = (json.load(open(f)) for f in sys.argv[1:3])
for k in ("format-specific", "cluster-size", "virtual-size", "dirty-flag", "format"):
    if d.get(k) != q.get(k):
        sys.exit("%s: %r != %r" % (k, d.get(k), q.get(k)))
if list(d["format-specific"]["data"]) != list(q["format-specific"]["data"]):
    sys.exit("key order differs")
EOF
done

# 3. diskkit writes, qemu-img checks and compares
for o in cluster_size=512 cluster_size=4k cluster_size=64k cluster_size=2M \
         refcount_bits=1 refcount_bits=8 refcount_bits=64,cluster_size=4k compat=0.10 \
         lazy_refcounts=on preallocation=metadata preallocation=falloc; do
    rm -f o.qcow2
    dk convert -q -f raw -O qcow2 -o $o src.raw o.qcow2 && qcheck o.qcow2 &&
        qemu-img compare -q -f raw -F qcow2 src.raw o.qcow2 && ok "convert -o $o" ||
        bad "convert -o $o"
done
for c in zlib zstd; do
    for cs in 4k 64k; do
        rm -f c.qcow2
        dk convert -q -c -f raw -O qcow2 -o compression_type=$c,cluster_size=$cs src.raw c.qcow2 &&
            qcheck c.qcow2 && qemu-img compare -q -f raw -F qcow2 src.raw c.qcow2 &&
            qemu-img check c.qcow2 | grep -q 'compressed clusters' &&
            ok "convert -c $c $cs" || bad "convert -c $c $cs"
    done
done

# 4. qemu writes, diskkit reads
for o in compression_type=zlib compression_type=zstd "compression_type=zlib,cluster_size=512"; do
    rm -f q.qcow2
    qemu-img convert -c -f raw -O qcow2 -o $o src.raw q.qcow2 &&
        dk compare -q q.qcow2 src.raw && ok "read qemu -c $o" || bad "read qemu -c $o"
done
cp src.raw ref.raw
rm -f q.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 q.qcow2 24M
for f in q.qcow2 ref.raw; do
    fmt=qcow2; [ $f = ref.raw ] && fmt=raw
    [ $fmt = qcow2 ] && qemu-img convert -n -f raw -O qcow2 src.raw q.qcow2
    qemu-io -f $fmt -c 'write -P 0x33 1000 70000' -c 'write -z 5M 1M' \
        -c 'write -P 7 23M 4097' $f >/dev/null
done
dk compare -q q.qcow2 ref.raw && ok "read qemu v2 image" || bad "read qemu v2 image"

rm -f x.qcow2
qemu-img create -q -f qcow2 -o extended_l2=on -b src.raw -F raw x.qcow2 24M &&
    qemu-io -c 'write -P 1 4k 2k' -c 'write -z 70k 10k' -c 'write -P 2 1M 300k' x.qcow2 \
        >/dev/null && qemu-img convert -O raw x.qcow2 x.raw && dk compare -q x.qcow2 x.raw &&
    dk map --output json x.qcow2 > d.json && qemu-img map --output json x.qcow2 > q.json &&
    cmp -s d.json q.json && ok "read extended_l2 image" || bad "read extended_l2 image"

# 5. backing chain of depth 3 (raw <- qcow2 <- qcow2), mixed writers
rm -f mid.qcow2 top.qcow2
dk create -q -f qcow2 -b src.raw -F raw -o cluster_size=4k mid.qcow2 >/dev/null &&
    qemu-io -c 'write -P 0x44 100k 300k' -c 'write -z 8M 64k' mid.qcow2 >/dev/null &&
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 &&
    qemu-io -c 'write -P 0x55 1M 5k' top.qcow2 >/dev/null &&
    qemu-img convert -O raw top.qcow2 chain.raw &&
    dk compare -q top.qcow2 chain.raw && qcheck mid.qcow2 && ok "backing chain depth 3" ||
    bad "backing chain depth 3"
dk map --output json top.qcow2 > d.json && qemu-img map --output json top.qcow2 > q.json &&
    cmp -s d.json q.json && ok "map of a chain as qemu-img" || bad "map of a chain differs"
rm -f ov.qcow2
dk convert -q -O qcow2 -B mid.qcow2 -F qcow2 chain.raw ov.qcow2 && qcheck ov.qcow2 &&
    qemu-img compare -q ov.qcow2 chain.raw && ok "convert -B overlay" || bad "convert -B overlay"

# 6. internal snapshot made by qemu: read it with -l
rm -f s.qcow2
qemu-img convert -O qcow2 src.raw s.qcow2 && qemu-img snapshot -c snap1 s.qcow2 &&
    qemu-io -c 'write -P 9 0 1M' s.qcow2 >/dev/null &&
    dk convert -q -l snap1 -O raw s.qcow2 snap.raw && cmp -s snap.raw src.raw &&
    ok "snapshot read with -l" || bad "snapshot read with -l"

# 7. bad images fail with one line and stay unchanged
rm -f bad.qcow2
qemu-img create -q -f qcow2 bad.qcow2 1M
printf '\x00\x00\x00\x1e' | dd of=bad.qcow2 bs=1 seek=20 conv=notrunc status=none
sum=$(md5sum < bad.qcow2)
out=$(dk info -f qcow2 bad.qcow2 2>&1); rc=$?
[ $rc -ne 0 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q cluster_bits &&
    [ "$(md5sum < bad.qcow2)" = "$sum" ] && ok "bad cluster_bits refused" ||
    bad "bad cluster_bits: rc=$rc '$out'"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all qcow2 interop checks passed"
