#!/usr/bin/env bash
# convert-options.sh - convert's qemu-img options beyond the basics, each
# checked against qemu-img doing the same: --salvage on a damaged qcow2
# (the same bytes as qemu-img convert --salvage, one merged report line),
# -C copy offloading (copy_file_range seen by strace when installed, same
# content, refused with -c/-S/--salvage as qemu-img refuses), -r rate limit
# (a lower bound on the time only: sleeping too little is the bug to catch),
# --target-image-opts with -n (plain and LUKS targets).
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3
cd "$T" || exit 1

# 4 MiB: 3 MiB of data (a pattern with 1 MiB of random data inside), then
# a 1 MiB hole.
qemu-img create -q -f raw src.raw 4M
qemu-io -f raw -c 'write -P 0x41 0 3M' src.raw >/dev/null
write_random src.raw 1M 1M

note "--salvage: a corrupt compressed cluster reads as zeros, like qemu-img"
qemu-img convert -c -O qcow2 src.raw bad.qcow2
python3 - bad.qcow2 <<'EOF'
import struct, sys
f = open(sys.argv[1], 'r+b'); h = f.read(104)
cb = struct.unpack('>I', h[20:24])[0]; l1 = struct.unpack('>Q', h[40:48])[0]
f.seek(l1); l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + 8 * 3); e = struct.unpack('>Q', f.read(8))[0]     # guest cluster 3
assert e >> 62 == 1, "cluster 3 is not compressed"
f.seek(e & ((1 << (62 - (cb - 8))) - 1)); f.write(b'\xff' * 16)
EOF
sum=$(sha bad.qcow2)
rc=0; "$DISKKIT" convert -O raw bad.qcow2 nosalvage.raw 2>err.txt || rc=$?
[ "$rc" = 1 ] || fail "convert of a damaged image without --salvage: exit $rc"
[ ! -e nosalvage.raw ] || fail "failed convert left its output"
grep -q "corrupt" err.txt || fail "no reason given: $(cat err.txt)"
"$DISKKIT" convert --salvage -O raw bad.qcow2 dk.raw 2>err.txt || fail "--salvage failed"
qemu-img convert --salvage -O raw bad.qcow2 q.raw 2>/dev/null
cmp -s dk.raw q.raw || fail "--salvage output differs from qemu-img's"
cmp -s dk.raw src.raw && fail "--salvage: the damaged cluster was not zeroed (bad fixture)"
assert_eq "$(grep -c 'error while reading offset 196608 (65536 bytes' err.txt)" 1 \
    "--salvage reports one merged line for the cluster"
assert_eq "$(sha bad.qcow2)" "$sum" "the damaged input unchanged"
"$DISKKIT" convert -q --salvage -O qcow2 bad.qcow2 dk.qcow2 2>err.txt || fail "--salvage -q"
[ -s err.txt ] && fail "--salvage -q printed: $(cat err.txt)"
qemu-img compare -q -F raw dk.qcow2 q.raw || fail "--salvage into qcow2 differs"
qemu-img check -q dk.qcow2 || fail "--salvage qcow2 output not clean"
# Block status failing too (an L2 table pointer past the end of file).
qemu-img convert -O qcow2 src.raw l2bad.qcow2
python3 - l2bad.qcow2 <<'EOF'
import struct, sys
f = open(sys.argv[1], 'r+b'); h = f.read(104)
l1 = struct.unpack('>Q', h[40:48])[0]
f.seek(l1); f.write(struct.pack('>Q', (1 << 63) | (1 << 40)))
EOF
"$DISKKIT" convert --salvage -O raw l2bad.qcow2 dk2.raw 2>err.txt ||
    fail "--salvage with a broken L1 entry: $(cat err.txt)"
assert_eq "$(stat -c %s dk2.raw)" $((4 << 20)) "salvaged size"
cmp -s dk2.raw <(head -c $((4 << 20)) /dev/zero) || fail "unreadable data did not become zeros"
grep -q "error while reading offset 0 " err.txt || fail "--salvage L1: no report line"

note "-C: copy offloading"
qemu-img convert -O qcow2 src.raw plain.qcow2
for in in src.raw plain.qcow2; do
    rm -f off.raw
    if command -v strace >/dev/null && strace -o /dev/null true 2>/dev/null; then
        # (LeakSanitizer cannot run under ptrace: off for this one run.)
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
            strace -f -e trace=copy_file_range -o trace.txt "$DISKKIT" convert -C -O raw $in off.raw ||
            fail "-C from $in"
        grep -q 'copy_file_range(' trace.txt || fail "-C from $in made no copy_file_range call"
    else
        "$DISKKIT" convert -C -O raw $in off.raw || fail "-C from $in"
    fi
    cmp -s off.raw src.raw || fail "-C from $in: content differs"
done
# Where offload cannot apply (compressed source, qcow2 output) it copies anyway.
"$DISKKIT" convert -C -O raw bad.qcow2 off2.raw 2>/dev/null && fail "-C hid a read error"
qemu-img convert -c -O qcow2 src.raw z.qcow2
"$DISKKIT" convert -C -O raw z.qcow2 off3.raw && cmp -s off3.raw src.raw ||
    fail "-C from a compressed image"
"$DISKKIT" convert -C -O qcow2 src.raw off.qcow2 && qemu-img compare -q -F raw off.qcow2 src.raw ||
    fail "-C into qcow2"
for bad in "-c -O qcow2" "-S 64k -O raw" "--salvage -O raw"; do
    # shellcheck disable=SC2086
    rc=0; "$DISKKIT" convert -C $bad src.raw never.img 2>err.txt || rc=$?
    [ "$rc" = 1 ] || fail "-C $bad: exit $rc"
    [ "$(wc -l <err.txt)" = 1 ] || fail "-C $bad: not one line"
    [ ! -e never.img ] || fail "-C $bad created the output"
done
grep -q "Cannot use copy offloading in salvaging mode" err.txt || fail "-C --salvage message"

note "-r: rate limit"
start=$(date +%s%N)
"$DISKKIT" convert -r 2M -O raw src.raw slow.raw || fail "-r 2M"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
cmp -s slow.raw src.raw || fail "-r: content differs"
# 3 MiB of data (the last MiB is a hole, which does not count) at 2 MiB/s:
# at least 1.5 s.
[ "$ms" -ge 1400 ] || fail "-r 2M copied 3 MiB of data in $ms ms"
rc=0; "$DISKKIT" convert -r fast -O raw src.raw never.raw 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "-r with a bad rate: exit $rc"

note "--target-image-opts"
qemu-img create -q -f qcow2 t.qcow2 4M
"$DISKKIT" convert -n --target-image-opts src.raw driver=qcow2,file.filename=t.qcow2 ||
    fail "--target-image-opts"
qemu-img compare -q -F raw t.qcow2 src.raw || fail "--target-image-opts content"
rc=0; "$DISKKIT" convert --target-image-opts src.raw driver=qcow2,file.filename=t.qcow2 \
    2>err.txt || rc=$?
[ "$rc" = 1 ] && grep -q "requires use of -n" err.txt || fail "--target-image-opts without -n"
SEC="--object secret,id=k,data=targetpw"
qemu_create -f qcow2 $SEC -o encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=10 \
    e.qcow2 4M || fail "fixture: LUKS target"
"$DISKKIT" convert -n $SEC --target-image-opts src.raw \
    driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=k || fail "LUKS target"
qemu-img compare -q $SEC --image-opts driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=k \
    driver=raw,file.filename=src.raw || fail "LUKS target content"
sum=$(sha e.qcow2)
rc=0; "$DISKKIT" convert -n --target-image-opts src.raw \
    driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=nope 2>err.txt || rc=$?
[ "$rc" = 1 ] && grep -q "no secret with id 'nope'" err.txt || fail "unknown target secret"
assert_eq "$(sha e.qcow2)" "$sum" "target untouched by a refused convert"
echo "convert-options: all passed"
