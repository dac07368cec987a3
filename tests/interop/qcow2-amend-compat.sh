#!/usr/bin/env bash
# qcow2-amend-compat.sh - `diskkit amend` compat=1.1 / compat=0.10 and
# refcount_bits=N on qcow2, with qemu-img 7.2 as the oracle: every case is
# also run through `qemu-img amend` on a copy and both must agree on the
# verdict (succeed or refuse). A refused amend must leave the image
# byte-for-byte unchanged; a successful one must pass `qemu-img check`,
# report the new compat / refcount bits and keep the guest content of the
# active layer and of every snapshot (also through a backing file).
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3
need_format qcow2
cd "$T"

qcheck() {      # IMG WHAT: qemu-img check and diskkit check must be clean
    qemu-img check "$1" >chk.txt 2>&1 || { cat chk.txt >&2; fail "qemu-img check $1 ($2)"; }
    "$DISKKIT" check "$1" >chk.txt 2>&1 || { cat chk.txt >&2; fail "diskkit check $1 ($2)"; }
}
info_has() {    # IMG LINE WHAT: `qemu-img info` prints LINE (trimmed)
    qemu-img info "$1" | sed 's/^ *//' | grep -qx "$2" || fail "$3: info lacks '$2'"
}
same() {        # A B WHAT: identical guest content
    qemu-img compare -q "$1" "$2" || fail "$3: content differs"
}
snap_same() {   # A B SNAP WHAT: snapshot SNAP reads the same in A and B
    qemu-img convert -l "snapshot.name=$3" -O raw "$1" sa.raw
    qemu-img convert -l "snapshot.name=$3" -O raw "$2" sb.raw
    cmp -s sa.raw sb.raw || fail "$4: snapshot $3 differs"
}
# both IMG OPTS WHAT: amend copies dk.IMG (diskkit) and q.IMG (qemu-img);
# the verdicts must agree; DK_RC gets diskkit's exit code.
both() {
    local img=$1 opts=$2 what=$3 q_rc=0
    cp "$img" "dk.$img"
    cp "$img" "q.$img"
    DK_RC=0
    "$DISKKIT" amend -o "$opts" "dk.$img" 2>dk.err || DK_RC=$?
    qemu-img amend -o "$opts" "q.$img" 2>q.err || q_rc=$?
    grep -qi 'sanitizer\|runtime error' dk.err && { cat dk.err >&2; fail "$what: sanitizer"; }
    [ "$DK_RC" = "$q_rc" ] ||
        fail "$what: diskkit exit $DK_RC, qemu-img exit $q_rc: $(cat dk.err q.err)"
    if [ "$DK_RC" != 0 ]; then
        cmp -s "$img" "dk.$img" || fail "$what: the refused amend changed the image"
        [ "$(wc -l < dk.err)" = 1 ] && grep -q '^diskkit: amend: ' dk.err ||
            { cat dk.err >&2; fail "$what: expected one 'diskkit: amend:' error line"; }
        echo "refused as qemu-img does: $what: $(cat dk.err)"
    else
        echo "accepted as qemu-img does: $what"
    fi
    return 0
}
expect_ok()      { both "$@"; [ "$DK_RC" = 0 ] || fail "$3: refused: $(cat dk.err)"; }
expect_refused() { both "$@"; [ "$DK_RC" != 0 ] || fail "$3: accepted"; }

qemu-img create -q -f raw base.raw 4M
qemu-io -f raw -c 'write -P 0x07 0 4M' base.raw >/dev/null

note "-o help lists compat and refcount_bits"
"$DISKKIT" amend -o help -f qcow2 >help.txt
grep -q '^  compat=' help.txt || fail "amend -o help lacks compat"
grep -q '^  refcount_bits=' help.txt || fail "amend -o help lacks refcount_bits"

# --------------------------------------------------------------- upgrade
note "compat=1.1 on a v2 image with backing file, data and a snapshot"
qemu-img create -q -f qcow2 -o compat=0.10 -b base.raw -F raw v2.qcow2 4M
qemu-io -c 'write -P 0x11 0 512k' -c 'write -P 0x22 1M 64k' v2.qcow2 >/dev/null
qemu-img snapshot -c s1 v2.qcow2
qemu-io -c 'write -P 0x33 0 64k' -c 'write -P 0x44 3M 64k' v2.qcow2 >/dev/null
expect_ok v2.qcow2 compat=1.1 "upgrade"
qcheck dk.v2.qcow2 "upgrade"
info_same dk.v2.qcow2 qcow2
info_has dk.v2.qcow2 "compat: 1.1" "upgrade"
info_has dk.v2.qcow2 "backing file: base.raw" "upgrade"
same v2.qcow2 dk.v2.qcow2 "upgrade"
qemu-io -c 'read -P 0x07 2M 64k' dk.v2.qcow2 | grep -q '^read' || fail "upgrade: backing data"
snap_same v2.qcow2 dk.v2.qcow2 s1 "upgrade"
cmp -s -n 65536 dk.v2.qcow2 q.v2.qcow2 || fail "upgrade: header cluster differs from qemu-img's"
qemu-img snapshot -a s1 dk.v2.qcow2 || fail "upgrade: qemu-img snapshot -a"
qcheck dk.v2.qcow2 "upgrade, snapshot applied"
qemu-img convert -l snapshot.name=s1 -O raw v2.qcow2 s1.raw
qemu-img compare -q -f raw -F qcow2 s1.raw dk.v2.qcow2 || fail "upgrade: applied snapshot content"

note "compat=1.1 on a v2 image whose snapshot entries have no extra data"
qemu-img create -q -f qcow2 -o compat=0.10 v2x.qcow2 4M
qemu-io -c 'write -P 0x55 0 256k' v2x.qcow2 >/dev/null
qemu-img snapshot -c old v2x.qcow2
qemu-io -c 'write -P 0x66 0 64k' v2x.qcow2 >/dev/null
python3 - v2x.qcow2 <<'PY'
# Rewrite the snapshot table in place with extra_size 0 (a v2 writer may).
import struct, sys
f = open(sys.argv[1], 'r+b')
hdr = f.read(72)
nb, off = struct.unpack('>IQ', hdr[60:72])
f.seek(off); raw = f.read(65536)
out, p = b'', 0
for _ in range(nb):
    l1o, l1s, il, nl, ds, dn, clk, vms, ex = struct.unpack('>QIHHIIQII', raw[p:p + 40])
    ids = raw[p + 40 + ex:p + 40 + ex + il + nl]
    e = struct.pack('>QIHHIIQII', l1o, l1s, il, nl, ds, dn, clk, vms, 0) + ids
    out += e + b'\0' * (-len(e) % 8)
    p += (40 + ex + il + nl + 7) // 8 * 8
f.seek(off); f.write(out + b'\0' * (p - len(out)))
PY
qcheck v2x.qcow2 "hand-made v2 snapshot table"
expect_ok v2x.qcow2 compat=1.1 "upgrade, short snapshot entries"
qcheck dk.v2x.qcow2 "upgrade, short snapshot entries"
same v2x.qcow2 dk.v2x.qcow2 "upgrade, short snapshot entries"
snap_same v2x.qcow2 dk.v2x.qcow2 old "upgrade, short snapshot entries"
qemu-img snapshot -a old dk.v2x.qcow2 && qcheck dk.v2x.qcow2 "upgraded snapshot applied" ||
    fail "upgrade, short snapshot entries: snapshot -a"

note "unknown header extensions survive both ways, header cluster as qemu-img writes it"
qemu-img create -q -f qcow2 -o compat=0.10 -b base.raw -F raw ux.qcow2 4M
qemu-io -c 'write -P 0x77 0 64k' ux.qcow2 >/dev/null
python3 - ux.qcow2 <<'PY'
# Append an unknown extension (type 0x12345678) after the known ones.
import struct, sys
f = open(sys.argv[1], 'r+b')
c0 = bytearray(f.read(65536))
boff, bsize = struct.unpack('>QI', c0[8:20])
name = bytes(c0[boff:boff + bsize])
exts, p = [], 72
while True:
    t, l = struct.unpack('>II', c0[p:p + 8])
    if t == 0:
        break
    exts.append((t, bytes(c0[p + 8:p + 8 + l])))
    p += 8 + (l + 7) // 8 * 8
exts.append((0x12345678, b'diskkit-unknown'))
out = b''.join(struct.pack('>II', t, len(d)) + d + b'\0' * (-len(d) % 8) for t, d in exts)
out += b'\0' * 8
c0[72:] = b'\0' * (65536 - 72)
c0[72:72 + len(out)] = out
c0[72 + len(out):72 + len(out) + len(name)] = name
c0[8:16] = struct.pack('>Q', 72 + len(out))
f.seek(0)
f.write(c0)
PY
qcheck ux.qcow2 "fixture with an unknown extension"
expect_ok ux.qcow2 compat=1.1 "upgrade with an unknown extension"
cmp -s -n 65536 dk.ux.qcow2 q.ux.qcow2 || fail "upgrade: header cluster differs from qemu-img's"
grep -q diskkit-unknown dk.ux.qcow2 || fail "upgrade dropped the unknown extension"
mv dk.ux.qcow2 ux3.qcow2
expect_ok ux3.qcow2 compat=0.10 "downgrade with an unknown extension"
mv q.ux.qcow2 uq.qcow2
qemu-img amend -o compat=0.10 uq.qcow2
cmp -s -n 65536 dk.ux3.qcow2 uq.qcow2 || fail "downgrade: header cluster differs from qemu-img's"
grep -q diskkit-unknown dk.ux3.qcow2 || fail "downgrade dropped the unknown extension"
qcheck dk.ux3.qcow2 "downgrade with an unknown extension"
same ux.qcow2 dk.ux3.qcow2 "up- and downgrade with an unknown extension"

# ------------------------------------------------------------- downgrade
# Zero clusters of every kind: allocated ones shared with a snapshot
# (write -z keeps the allocation), unallocated ones over backing data
# (write -z -u, and in a range never written), one only in the snapshot;
# compressed clusters; lazy refcounts on.
mkdown() {      # NAME [create options]
    qemu-img create -q -f qcow2 -o lazy_refcounts=on "${@:2}" "$1" 4M
    qemu-io -c 'write -P 0x11 0 1M' -c 'write -c -P 0x12 1M 64k' -c 'write -c -P 0x13 1088k 64k' \
        -c 'write -z 3M 64k' "$1" >/dev/null
    qemu-img snapshot -c s1 "$1"
    qemu-io -c 'write -z 0 128k' -c 'write -z -u 256k 64k' -c 'write -z 2M 128k' \
        -c 'write -P 0x14 3M 64k' "$1" >/dev/null
}
note "compat=0.10 on a v3 image with zero and compressed clusters, a snapshot, backing"
mkdown d.qcow2 -b base.raw -F raw
qemu-img info d.qcow2 | grep -q 'lazy refcounts: true' || fail "fixture: lazy refcounts"
qemu-img map --output=json d.qcow2 | grep -q '"zero": true, "data": false, "offset"' ||
    fail "fixture: no allocated zero cluster"
expect_ok d.qcow2 compat=0.10 "downgrade with backing"
qcheck dk.d.qcow2 "downgrade with backing"
info_same dk.d.qcow2 qcow2
info_has dk.d.qcow2 "compat: 0.10" "downgrade with backing"
same d.qcow2 dk.d.qcow2 "downgrade with backing"
qemu-io -c 'read -P 0 0 128k' -c 'read -P 0 256k 64k' -c 'read -P 0 2M 128k' \
    -c 'read -P 0x12 1M 64k' dk.d.qcow2 >rd.txt
[ "$(grep -c '^read' rd.txt)" = 4 ] || { cat rd.txt; fail "downgrade: zero clusters over backing"; }
snap_same d.qcow2 dk.d.qcow2 s1 "downgrade with backing"
qemu-img convert -l snapshot.name=s1 -O raw dk.d.qcow2 s1.raw
qemu-io -f raw -c 'read -P 0 3M 64k' s1.raw | grep -q '^read' ||
    fail "downgrade: the snapshot's zero cluster reads the backing file"
qemu-img snapshot -a s1 dk.d.qcow2 && qcheck dk.d.qcow2 "downgraded snapshot applied" ||
    fail "downgrade: snapshot -a"

note "compat=0.10 without a backing file"
mkdown n.qcow2
expect_ok n.qcow2 compat=0.10 "downgrade without backing"
qcheck dk.n.qcow2 "downgrade without backing"
info_has dk.n.qcow2 "compat: 0.10" "downgrade without backing"
same n.qcow2 dk.n.qcow2 "downgrade without backing"
snap_same n.qcow2 dk.n.qcow2 s1 "downgrade without backing"

note "compat=0.10 on a dirty image (lazy refcounts, writer killed)"
qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 4M
bash -c "qemu-io -c 'write -P 0x21 0 1M' -c 'write -z 2M 64k' -c abort dirty.qcow2; true" \
    >/dev/null 2>&1
qemu-img info dirty.qcow2 | grep -q 'cleanly shut down: no' || fail "fixture: dirty bit not set"
expect_ok dirty.qcow2 compat=0.10 "downgrade of a dirty image"
qcheck dk.dirty.qcow2 "downgrade of a dirty image"
same q.dirty.qcow2 dk.dirty.qcow2 "downgrade of a dirty image"

note "compat=0.10 on a LUKS image: zero clusters get encrypted zeros"
SEC="--object secret,id=s0,data=amendpw"
eopts() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=s0"; }
# qemu's PBKDF calibration fails now and then on a busy machine ("Unable
# to get accurate CPU usage"): retry as qcow2-luks.sh does.
for i in 1 2 3 4 5 6 7 8; do
    qemu-img create -q -f qcow2 $SEC \
        -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 e.qcow2 4M \
        2>/dev/null && break
done
[ -s e.qcow2 ] || fail "fixture: LUKS image not created"
qemu-io $SEC --image-opts -c 'write -P 0x1e 0 1M' -c 'write -z 0 64k' -c 'write -z 2M 64k' \
    "$(eopts e.qcow2)" >/dev/null
cp e.qcow2 dk.e.qcow2
"$DISKKIT" amend -o compat=0.10 dk.e.qcow2 2>dk.err && fail "LUKS downgrade without the key"
cmp -s e.qcow2 dk.e.qcow2 || fail "LUKS downgrade without the key changed the image"
"$DISKKIT" amend $SEC --image-opts -o compat=0.10 "$(eopts dk.e.qcow2)" ||
    fail "LUKS downgrade with the key"
qemu-img check $SEC --image-opts "$(eopts dk.e.qcow2)" >chk.txt 2>&1 ||
    { cat chk.txt; fail "LUKS downgrade: qemu-img check"; }
info_has dk.e.qcow2 "compat: 0.10" "LUKS downgrade"
qemu-img compare $SEC --image-opts "$(eopts e.qcow2)" "$(eopts dk.e.qcow2)" >/dev/null ||
    fail "LUKS downgrade: content differs"

note "compat=0.10 refusals and combinations, verdicts as qemu-img's"
qemu-img create -q -f qcow2 -o refcount_bits=64 r64.qcow2 4M
qemu-io -c 'write -P 0x31 0 1M' -c 'write -z 2M 64k' r64.qcow2 >/dev/null
expect_refused r64.qcow2 compat=0.10 "downgrade of a 64-bit refcount image"
expect_ok r64.qcow2 compat=0.10,refcount_bits=16 "downgrade with refcount_bits=16"
qcheck dk.r64.qcow2 "downgrade with refcount_bits=16"
info_same dk.r64.qcow2 qcow2
info_has dk.r64.qcow2 "compat: 0.10" "downgrade with refcount_bits=16"
info_has dk.r64.qcow2 "refcount bits: 16" "downgrade with refcount_bits=16"
same r64.qcow2 dk.r64.qcow2 "downgrade with refcount_bits=16"
expect_refused r64.qcow2 compat=0.10,lazy_refcounts=on "downgrade with lazy_refcounts=on"

qemu-img create -q -f qcow2 -o compression_type=zstd zc.qcow2 4M
qemu-io -c 'write -c -P 0x41 0 64k' -c 'write -z 1M 64k' zc.qcow2 >/dev/null
expect_refused zc.qcow2 compat=0.10 "downgrade of zstd with compressed clusters"
qemu-img create -q -f qcow2 -o compression_type=zstd zn.qcow2 4M
qemu-io -c 'write -P 0x42 0 64k' zn.qcow2 >/dev/null
expect_ok zn.qcow2 compat=0.10 "downgrade of zstd without compressed clusters"
qcheck dk.zn.qcow2 "downgrade of zstd without compressed clusters"
info_has dk.zn.qcow2 "compression type: zlib" "zstd downgrade"

qemu-img create -q -f qcow2 -o extended_l2=on x2.qcow2 4M
qemu-io -c 'write -P 0x43 0 64k' x2.qcow2 >/dev/null
expect_refused x2.qcow2 compat=0.10 "downgrade with extended L2 entries"
qemu-img create -q -f qcow2 sz.qcow2 4M
qemu-io -c 'write -P 0x51 0 64k' sz.qcow2 >/dev/null
qemu-img snapshot -c s sz.qcow2
qemu-img resize -q sz.qcow2 8M
expect_refused sz.qcow2 compat=0.10 "downgrade with a snapshot of another size"
qemu-img create -q -f qcow2 -o compat=0.10 v2s.qcow2 4M
expect_refused v2s.qcow2 refcount_bits=8 "refcount_bits=8 on v2"
expect_refused v2s.qcow2 lazy_refcounts=on "lazy_refcounts=on on v2"
expect_refused v2s.qcow2 compat=2.0 "unknown compat level"
expect_ok v2s.qcow2 compat=1.1,refcount_bits=8,lazy_refcounts=on "upgrade + refcount_bits + lazy"
qcheck dk.v2s.qcow2 "upgrade + refcount_bits + lazy"
info_has dk.v2s.qcow2 "refcount bits: 8" "upgrade + refcount_bits"
info_has dk.v2s.qcow2 "lazy refcounts: true" "upgrade + lazy"

# --------------------------------------------------------- refcount_bits
note "refcount_bits 16->1, 16->64, 64->8 with data and a snapshot"
qemu-img create -q -f qcow2 rc.qcow2 4M
qemu-io -c 'write -P 0x61 0 1M' -c 'write -c -P 0x62 2M 64k' rc.qcow2 >/dev/null
qemu-img snapshot -c s1 rc.qcow2
qemu-io -c 'write -P 0x63 0 64k' -c 'write -P 0x64 3M 64k' rc.qcow2 >/dev/null
expect_refused rc.qcow2 refcount_bits=1 "refcount_bits=1 with shared clusters"
expect_refused rc.qcow2 refcount_bits=12 "refcount_bits=12"
expect_ok rc.qcow2 refcount_bits=64 "refcount_bits=64"
for img in dk.rc.qcow2; do
    qcheck $img "refcount_bits=64"
    info_has $img "refcount bits: 64" "refcount_bits=64"
    same rc.qcow2 $img "refcount_bits=64"
    snap_same rc.qcow2 $img s1 "refcount_bits=64"
done
mv dk.rc.qcow2 rc64.qcow2
expect_ok rc64.qcow2 refcount_bits=8 "refcount_bits 64->8"
qcheck dk.rc64.qcow2 "refcount_bits 64->8"
info_same dk.rc64.qcow2 qcow2
info_has dk.rc64.qcow2 "refcount bits: 8" "refcount_bits 64->8"
same rc.qcow2 dk.rc64.qcow2 "refcount_bits 64->8"
snap_same rc.qcow2 dk.rc64.qcow2 s1 "refcount_bits 64->8"
# The new structure is usable by both writers.
"$DISKKIT" snapshot -c s2 dk.rc64.qcow2 || fail "snapshot after refcount_bits change"
qemu-io -c 'write -P 0x65 1M 256k' dk.rc64.qcow2 >/dev/null
qcheck dk.rc64.qcow2 "writes after refcount_bits 64->8"

note "-p prints progress up to 100%"
cp rc.qcow2 p.qcow2
"$DISKKIT" amend -p -o refcount_bits=32 p.qcow2 2>p.err || fail "amend -p"
tr '\r' '\n' < p.err | grep -q '^    (100.00/100%)$' || { cat p.err; fail "amend -p: no progress"; }
tr '\r' '\n' < p.err | grep -q '^    ([1-9][0-9]*\.[0-9][0-9]/100%)$' ||
    fail "amend -p: no intermediate progress"
qcheck p.qcow2 "amend -p"

qemu-img create -q -f qcow2 r1.qcow2 4M
qemu-io -c 'write -P 0x71 0 1M' -c 'write -c -P 0x72 2M 64k' r1.qcow2 >/dev/null
expect_ok r1.qcow2 refcount_bits=1 "refcount_bits 16->1 without sharing"
qcheck dk.r1.qcow2 "refcount_bits=1"
info_has dk.r1.qcow2 "refcount bits: 1" "refcount_bits=1"
same r1.qcow2 dk.r1.qcow2 "refcount_bits=1"
qemu-io -c 'write -P 0x73 3M 128k' dk.r1.qcow2 >/dev/null
qcheck dk.r1.qcow2 "writes after refcount_bits=1"
expect_refused dk.r1.qcow2 compat=0.10 "downgrade of a 1-bit refcount image"

# ------------------------------------------------------------ crash safety
# A preloaded shim ends diskkit (exit 99) just before its Nth pwrite, for
# every N of a complete run: the file must then pass qemu-img check with at
# most leaks (exit 0 or 3; diskkit check agrees), read exactly as before
# (active layer and snapshot), and a second amend must complete.
if command -v cc >/dev/null 2>&1; then
    cat > shim.c <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>
static long calls, at = -1;
static ssize_t do_write(int fd, const void *b, size_t n, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
    if (at < 0)
        at = getenv("CRASH_AT") ? atol(getenv("CRASH_AT")) : 0;
    if (++calls == at)
        _exit(99);
    return real(fd, b, n, off);
}
ssize_t pwrite(int fd, const void *b, size_t n, off_t off) { return do_write(fd, b, n, off); }
ssize_t pwrite64(int fd, const void *b, size_t n, off_t off) { return do_write(fd, b, n, off); }
__attribute__((destructor)) static void report(void)
{
    FILE *o = getenv("CRASH_COUNT") ? fopen(getenv("CRASH_COUNT"), "w") : NULL;
    if (o) { fprintf(o, "%ld\n", calls); fclose(o); }
}
EOF
    cc -shared -fPIC -o shim.so shim.c -ldl || fail "building the crash shim"
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
    crash_each() {  # IMG OPTS SNAP WHAT
        local img=$1 opts=$2 snap=$3 what=$4 n rc rq rd total
        cp "$img" c.qcow2
        CRASH_COUNT=$PWD/count LD_PRELOAD=$PWD/shim.so "$DISKKIT" amend -o "$opts" c.qcow2 ||
            fail "$what: amend under the shim"
        total=$(cat count)
        [ "$total" -ge 3 ] || fail "$what: only $total writes counted"
        for n in $(seq 1 "$total"); do
            cp "$img" c.qcow2
            rc=0
            CRASH_AT=$n LD_PRELOAD=$PWD/shim.so "$DISKKIT" amend -o "$opts" c.qcow2 \
                2>/dev/null || rc=$?
            [ "$rc" = 99 ] || fail "$what: crash before write $n: exit $rc"
            rq=0; qemu-img check c.qcow2 >chk.txt 2>&1 || rq=$?
            rd=0; "$DISKKIT" check c.qcow2 >/dev/null 2>&1 || rd=$?
            [ "$rq" = 0 ] || [ "$rq" = 3 ] ||
                { cat chk.txt; fail "$what: crash before write $n: qemu-img check exit $rq"; }
            [ "$rq" = "$rd" ] || fail "$what: crash before write $n: diskkit check $rd, qemu $rq"
            same "$img" c.qcow2 "$what: crash before write $n"
            [ -z "$snap" ] || snap_same "$img" c.qcow2 "$snap" "$what: crash before write $n"
            "$DISKKIT" amend -o "$opts" c.qcow2 || fail "$what: amend after crash $n"
            rq=0; qemu-img check c.qcow2 >/dev/null 2>&1 || rq=$?
            [ "$rq" = 0 ] || [ "$rq" = 3 ] || fail "$what: amend after crash $n: check $rq"
        done
        echo "crash before each of $total writes: consistent: $what"
    }
    note "crash safety: a crash before any write leaves at most leaks"
    crash_each d.qcow2 compat=0.10 s1 "downgrade"
    crash_each v2x.qcow2 compat=1.1 old "upgrade with snapshot table rewrite"
    crash_each rc.qcow2 refcount_bits=64 s1 "refcount_bits 16->64"
    crash_each r64.qcow2 compat=0.10,refcount_bits=16 "" "refcount_bits=16 + downgrade"
else
    echo "note: no C compiler, crash-safety cases skipped"
fi

echo "qcow2 amend compat/refcount_bits: all checks passed"
