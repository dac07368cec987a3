#!/usr/bin/env bash
# qcow2-resize-snapshots.sh - resizing qcow2 images that have internal
# snapshots, with qemu-img 7.2 as the oracle: a v3 shrink keeps every
# snapshot whole (apply by qemu-img or diskkit brings back its size and
# data) and gives the same image as qemu-img's shrink; snapshots taken
# after a shrink and a grow restore their own sizes; grow with snapshots;
# convert/measure -l and info on such images match qemu-img; v2 images with
# snapshots are refused and left untouched; SIGKILL during a shrink leaves
# at most leaked clusters. Cluster sizes 64 KiB (one L2 table) and 4 KiB
# (many L2 tables and refcount blocks past the new end).
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3 cmp
need_format qcow2

vsize() { qemu-img info --output=json "$1" | python3 -c \
    'import json, sys; print(json.load(sys.stdin)["virtual-size"])'; }
clean() {   # IMG WHAT: qemu-img check finds no corruption and no leak
    local rc=0
    qemu-img check -q "$1" || rc=$?
    [ $rc = 0 ] || fail "$2: qemu-img check exit $rc"
}
size_is() { assert_eq "$(vsize "$1")" "$2" "$3: virtual size"; }
same() {    # A B WHAT: same virtual size and content (qemu-img compare)
    size_is "$2" "$(vsize "$1")" "$3"
    qemu-img compare -q "$1" "$2" || fail "$3: content differs"
}
MiB=$((1024 * 1024))

# orig.raw: 64 MiB, random data and patterns over the first 60 MiB
truncate -s 64M "$T/orig.raw"
write_random "$T/orig.raw" 0 20M
write_pattern "$T/orig.raw" raw 20M 20M 0x5a
write_random "$T/orig.raw" 40M 20M

for cs in 65536 4096; do
    note "cs=$cs: v3, snapshot s1, active rewritten in part, diskkit shrink to 16M"
    rm -f "$T"/*.qcow2
    qemu-img convert -q -f raw -O qcow2 -o cluster_size=$cs "$T/orig.raw" "$T/d.qcow2"
    qemu-img snapshot -c s1 "$T/d.qcow2"
    # private clusters before and past the new end, shared ones elsewhere
    qemu-io -c 'write -P 0x22 4M 8M' -c 'write -P 0x23 15M 2M' -c 'write -P 0x24 30M 3M' \
        "$T/d.qcow2" >/dev/null
    qemu-img convert -f qcow2 -O raw "$T/d.qcow2" "$T/active.raw"
    head -c 16M "$T/active.raw" > "$T/active16.raw"
    cp "$T/d.qcow2" "$T/q.qcow2"
    out=$("$DISKKIT" resize --shrink "$T/d.qcow2" 16M) || fail "cs=$cs: diskkit shrink"
    assert_eq "$out" "Image resized." "cs=$cs: shrink output"
    clean "$T/d.qcow2" "cs=$cs: after diskkit shrink"
    size_is "$T/d.qcow2" $((16 * MiB)) "cs=$cs: after shrink"
    qemu-img compare -q -f qcow2 -F raw "$T/d.qcow2" "$T/active16.raw" ||
        fail "cs=$cs: first 16M changed by the shrink"

    note "cs=$cs: same shrink by qemu-img"
    qemu-img resize -q --shrink "$T/q.qcow2" 16M
    clean "$T/q.qcow2" "cs=$cs: after qemu-img shrink"
    same "$T/q.qcow2" "$T/d.qcow2" "cs=$cs: diskkit vs qemu-img shrink"
    assert_eq "$(stat -c %s "$T/d.qcow2")" "$(stat -c %s "$T/q.qcow2")" \
        "cs=$cs: file size after shrink (qemu-img's)"
    "$DISKKIT" info --output=json "$T/d.qcow2" > "$T/d.json"
    qemu-img info --output=json "$T/q.qcow2" > "$T/q.json"
    same_json_keys "$T/d.json" "$T/q.json" virtual-size cluster-size snapshots \
        format-specific || fail "cs=$cs: info json differs from qemu-img's"

    note "cs=$cs: convert -l / measure -l of the 64M snapshot on the 16M image"
    "$DISKKIT" convert -l s1 -O raw "$T/d.qcow2" "$T/dl.raw" || fail "cs=$cs: convert -l"
    qemu-img convert -l s1 -O raw "$T/d.qcow2" "$T/ql.raw"
    cmp "$T/dl.raw" "$T/ql.raw" || fail "cs=$cs: convert -l s1 differs from qemu-img's"
    "$DISKKIT" measure -O qcow2 -l s1 "$T/d.qcow2" > "$T/dm.txt" || fail "measure -l"
    qemu-img measure -O qcow2 -l s1 "$T/d.qcow2" > "$T/qm.txt"
    diff "$T/qm.txt" "$T/dm.txt" || fail "cs=$cs: measure -l s1 differs from qemu-img's"

    note "cs=$cs: apply s1 (qemu-img and diskkit) restores 64M and the data"
    cp "$T/d.qcow2" "$T/a1.qcow2"
    qemu-img snapshot -a s1 "$T/a1.qcow2"
    clean "$T/a1.qcow2" "cs=$cs: qemu-img apply after diskkit shrink"
    same "$T/a1.qcow2" "$T/orig.raw" "cs=$cs: qemu-img apply s1"
    cp "$T/d.qcow2" "$T/a2.qcow2"
    "$DISKKIT" snapshot -a s1 "$T/a2.qcow2" || fail "cs=$cs: diskkit apply s1"
    clean "$T/a2.qcow2" "cs=$cs: diskkit apply after diskkit shrink"
    same "$T/a2.qcow2" "$T/orig.raw" "cs=$cs: diskkit apply s1"
    cp "$T/q.qcow2" "$T/a3.qcow2"
    "$DISKKIT" snapshot -a s1 "$T/a3.qcow2" || fail "cs=$cs: diskkit apply (qemu shrink)"
    same "$T/a3.qcow2" "$T/orig.raw" "cs=$cs: diskkit apply s1 after qemu-img shrink"

    note "cs=$cs: snapshots after the shrink (16M) and after a grow (48M)"
    for img in d q; do
        qemu-io -c 'write -P 0x31 1M 1M' "$T/$img.qcow2" >/dev/null
        qemu-img snapshot -c s2 "$T/$img.qcow2"
        qemu-io -c 'write -P 0x32 2M 1M' "$T/$img.qcow2" >/dev/null
    done
    "$DISKKIT" resize "$T/d.qcow2" 48M >/dev/null || fail "cs=$cs: diskkit grow"
    qemu-img resize -q "$T/q.qcow2" 48M
    for img in d q; do
        clean "$T/$img.qcow2" "cs=$cs: grow of $img"
        qemu-io -c 'write -P 0x33 20M 3M' -c 'write -P 0x34 47M 1M' "$T/$img.qcow2" >/dev/null
    done
    "$DISKKIT" snapshot -c s3 "$T/d.qcow2" || fail "cs=$cs: diskkit snapshot s3"
    qemu-img snapshot -c s3 "$T/q.qcow2"
    "$DISKKIT" resize --shrink "$T/d.qcow2" 8M >/dev/null || fail "cs=$cs: 2nd shrink"
    qemu-img resize -q --shrink "$T/q.qcow2" 8M
    clean "$T/d.qcow2" "cs=$cs: second shrink"
    same "$T/q.qcow2" "$T/d.qcow2" "cs=$cs: second shrink"
    for sn in s1 s2 s3; do
        want=$(case $sn in s1) echo 64;; s2) echo 16;; s3) echo 48;; esac)
        cp "$T/d.qcow2" "$T/x.qcow2"
        "$DISKKIT" snapshot -a $sn "$T/x.qcow2" || fail "cs=$cs: diskkit apply $sn"
        cp "$T/q.qcow2" "$T/y.qcow2"
        qemu-img snapshot -a $sn "$T/y.qcow2"
        clean "$T/x.qcow2" "cs=$cs: diskkit apply $sn"
        size_is "$T/x.qcow2" $((want * MiB)) "cs=$cs: apply $sn"
        same "$T/y.qcow2" "$T/x.qcow2" "cs=$cs: apply $sn, diskkit vs qemu-img"
        cp "$T/d.qcow2" "$T/z.qcow2"
        qemu-img snapshot -a $sn "$T/z.qcow2"
        same "$T/y.qcow2" "$T/z.qcow2" "cs=$cs: qemu-img apply $sn on diskkit's image"
    done
done

note "grow with snapshots (plain and preallocation=metadata), write past the old end"
for pa in off metadata; do
    rm -f "$T"/*.qcow2
    qemu-img create -q -f qcow2 -o cluster_size=4096 "$T/g.qcow2" 16M
    qemu-io -c 'write -P 0x41 0 15M' "$T/g.qcow2" >/dev/null
    qemu-img convert -f qcow2 -O raw "$T/g.qcow2" "$T/old.raw"
    qemu-img snapshot -c old "$T/g.qcow2"
    qemu-io -c 'write -P 0x42 8M 8M' "$T/g.qcow2" >/dev/null   # active differs in part
    cp "$T/g.qcow2" "$T/gq.qcow2"
    "$DISKKIT" resize --preallocation=$pa "$T/g.qcow2" 40M >/dev/null || fail "grow ($pa)"
    qemu-img resize -q --preallocation=$pa "$T/gq.qcow2" 40M
    clean "$T/g.qcow2" "grow ($pa)"
    same "$T/gq.qcow2" "$T/g.qcow2" "grow ($pa), diskkit vs qemu-img"
    for img in g gq; do
        qemu-io -c 'write -P 0x43 14M 10M' -c 'write -P 0x44 39M 1M' "$T/$img.qcow2" >/dev/null
    done
    clean "$T/g.qcow2" "write past the old end ($pa)"
    same "$T/gq.qcow2" "$T/g.qcow2" "write past the old end ($pa)"
    "$DISKKIT" snapshot -a old "$T/g.qcow2" || fail "apply old ($pa)"
    clean "$T/g.qcow2" "apply old after grow ($pa)"
    same "$T/g.qcow2" "$T/old.raw" "apply old after grow ($pa)"
done

note "v2 (compat=0.10) with a snapshot: resize refused, image unchanged"
qemu-img create -q -f qcow2 -o compat=0.10 "$T/v2.qcow2" 16M
qemu-io -c 'write -P 0x51 0 4M' "$T/v2.qcow2" >/dev/null
qemu-img snapshot -c s "$T/v2.qcow2"
cp "$T/v2.qcow2" "$T/v2.orig"
for sz in 32M 8M; do
    qemu-img resize -q --shrink "$T/v2.qcow2" $sz 2>/dev/null &&
        fail "qemu-img resized a v2 image with snapshots (oracle changed?)"
    msg=$(expect_clean_failure "$DISKKIT" resize --shrink "$T/v2.qcow2" $sz)
    case $msg in *"v2 image which has snapshots"*) ;; *) fail "v2 message: $msg" ;; esac
    assert_rc 1 "$DISKKIT" resize --shrink "$T/v2.qcow2" $sz
    cmp "$T/v2.qcow2" "$T/v2.orig" || fail "v2 image changed by a refused resize to $sz"
done

note "SIGKILL during shrinks: at most leaks, kept data and the snapshot intact"
qemu-img create -q -f qcow2 -o cluster_size=4096 "$T/k.qcow2" 64M
qemu-io -c 'write -P 0x61 0 60M' "$T/k.qcow2" >/dev/null
qemu-img snapshot -c s1 "$T/k.qcow2"
qemu-io -c 'write -P 0x62 0 2M' -c 'write -P 0x63 30M 30M' "$T/k.qcow2" >/dev/null
qemu-img convert -l s1 -O raw "$T/k.qcow2" "$T/ks1.raw"
qemu-img convert -f qcow2 -O raw "$T/k.qcow2" "$T/kact.raw"
head -c 4M "$T/kact.raw" > "$T/kact4.raw"
rm -f "$T/kact.raw"
mid=0 leaky=0
for delay in 0.01 0.03 0.06 0.1 0.2; do
    cp "$T/k.qcow2" "$T/kk.qcow2"
    "$DISKKIT" resize --shrink "$T/kk.qcow2" 4M >/dev/null &
    pid=$!
    sleep $delay
    kill -KILL $pid 2>/dev/null || true
    rc=0; wait $pid 2>/dev/null || rc=$?
    [ $rc = 137 ] && mid=$((mid + 1))
    crc=0; qemu-img check -q "$T/kk.qcow2" 2>/dev/null || crc=$?
    [ $crc = 0 ] || [ $crc = 3 ] || fail "kill after ${delay}s: qemu-img check exit $crc"
    if [ $crc = 3 ]; then
        leaky=$((leaky + 1))
        qemu-img check -q -r leaks "$T/kk.qcow2" >/dev/null 2>&1 || true
    fi
    clean "$T/kk.qcow2" "kill after ${delay}s, leaks repaired"
    rm -f "$T/kk.raw"
    qemu-img convert -f qcow2 -O raw "$T/kk.qcow2" "$T/kk.raw"
    cmp -n 4M "$T/kk.raw" "$T/kact4.raw" || fail "kill after ${delay}s: first 4M changed"
    qemu-img convert -l s1 -O raw "$T/kk.qcow2" "$T/kl.raw"
    # the read of s1 is cut at the current size (qemu's rule): compare that much
    cmp -n "$(stat -c %s "$T/kl.raw")" "$T/kl.raw" "$T/ks1.raw" ||
        fail "kill after ${delay}s: snapshot s1 data changed"
    qemu-img snapshot -a s1 "$T/kk.qcow2"
    same "$T/kk.qcow2" "$T/ks1.raw" "kill after ${delay}s, then apply s1"
done
echo "kills that interrupted the shrink: $mid of 5 ($leaky left leaked clusters)"
echo "qcow2-resize-snapshots: all passed"
