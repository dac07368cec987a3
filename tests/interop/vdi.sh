#!/usr/bin/env bash
# vdi.sh - VDI interop with qemu-img as the oracle, both ways:
#  1. images qemu-img writes (dynamic, static) over real ext4 content read
#     back exactly; map and info --output json agree with qemu-img;
#  2. VDIs diskkit writes (dynamic, static; from raw, and from qcow2 when
#     the qcow2 driver is built) pass qemu-img check and compare;
#  3. spec-built fixtures (python3 struct) for layouts qemu never writes: a
#     0xFFFFFFFE entry, a VBoxManage-style odd disk size;
#  4. bad input: one-line error, non-zero exit, no signal, file unchanged;
#  5. random damage to header and map: clean exits only;
#  6. check exit codes and check -r all (when the check command exists).
# Env: DISKKIT (path of the CLI). Exit 77 when a tool is missing.
set -u
DISKKIT=${DISKKIT:-build/diskkit}
for t in qemu-img qemu-io mkfs.ext4 python3 sha256sum; do
    command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
[ -x "$DISKKIT" ] || { echo "SKIP: $DISKKIT not built"; exit 77; }
DISKKIT=$(realpath "$DISKKIT")
# The interpreter itself, not a version-manager shim (a second per call).
PY=$(python3 -c 'import sys; print(sys.executable)')
T=$(mktemp -d /tmp/diskkit-vdi.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok()   { echo "ok: $*"; }
dk()   { timeout 120 "$DISKKIT" "$@"; }   # a hang shows as exit 124

# ---------------------------------------------------------------- content
mkdir -p tree/sub
for i in 1 2 3 4 5 6; do head -c $((i * 300000)) /dev/urandom > "tree/f$i"; done
cp -r /etc/ssl tree/sub/ 2>/dev/null || true
seq 1 200000 > tree/sub/numbers.txt
mkfs.ext4 -q -F -d tree fs.img 24M || { echo "SKIP: mkfs.ext4 -d failed"; exit 77; }
truncate -s 40M disk.raw
dd if=fs.img of=disk.raw bs=1M seek=1 conv=notrunc status=none
head -c 1M /dev/urandom | dd of=disk.raw bs=1M seek=30 conv=notrunc status=none
head -c 4096 /dev/urandom | dd of=disk.raw bs=512 seek=$((35 * 2048 + 1)) conv=notrunc status=none
printf 'tail' | dd of=disk.raw bs=1 seek=$((40 * 1048576 - 4)) conv=notrunc status=none

# ------------------------------------------------- 1. qemu-img writes, we read
json_same() {   # file1 file2 keys...: the listed keys of two JSON objects agree
    "$PY" - "$@" <<'EOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bad = [k for k in sys.argv[3:] if a.get(k) != b.get(k)]
if bad:
    print("differ:", {k: (a.get(k), b.get(k)) for k in bad}); sys.exit(1)
EOF
}
for kind in dynamic static; do
    opt=; [ $kind = static ] && opt="-o static=on"
    qemu-img convert -f raw -O vdi $opt disk.raw q-$kind.vdi
    dk compare disk.raw q-$kind.vdi >/dev/null && ok "qemu $kind: compare" ||
        fail "qemu $kind: diskkit compare differs"
    dk convert -O raw q-$kind.vdi back-$kind.raw && cmp -s disk.raw back-$kind.raw &&
        ok "qemu $kind: convert back is byte-identical" || fail "qemu $kind: convert back"
    dk map --output json q-$kind.vdi > dk.map; qemu-img map --output json q-$kind.vdi > q.map
    cmp -s dk.map q.map && ok "qemu $kind: map json identical" || fail "qemu $kind: map differs"
    sync   # actual-size is st_blocks: let delayed allocation settle first
    dk info --output json q-$kind.vdi > dk.json; qemu-img info --output json q-$kind.vdi > q.json
    json_same dk.json q.json filename format virtual-size actual-size cluster-size \
        dirty-flag format-specific backing-filename encrypted &&
        ok "qemu $kind: info json agrees" || fail "qemu $kind: info json"
done

# ------------------------------------------- 2. diskkit writes, qemu-img checks
qemu_ok() {    # image reference-raw what
    if qemu-img check -q -f vdi "$1" && qemu-img compare -q -f vdi -F raw "$1" "$2"; then
        ok "$3: qemu-img check + compare"
    else
        fail "$3: qemu-img check/compare"
    fi
}
dk convert -f raw -O vdi disk.raw d-dynamic.vdi && qemu_ok d-dynamic.vdi disk.raw "raw->vdi"
dk convert -f raw -O vdi -o static=on disk.raw d-static.vdi &&
    qemu_ok d-static.vdi disk.raw "raw->vdi static"
[ "$(stat -c %s d-static.vdi)" = $((40 * 1048576 + 512 + 512)) ] &&
    ok "static file fully sized" || fail "static file size $(stat -c %s d-static.vdi)"
for kind in dynamic static; do
    dk map --output json d-$kind.vdi > dk.map; qemu-img map --output json d-$kind.vdi > q.map
    cmp -s dk.map q.map && ok "diskkit $kind: map json identical for both tools" ||
        fail "diskkit $kind: map differs"
    sync   # actual-size is st_blocks: let delayed allocation settle first
    dk info --output json d-$kind.vdi > dk.json; qemu-img info --output json d-$kind.vdi > q.json
    json_same dk.json q.json filename format virtual-size actual-size cluster-size \
        dirty-flag format-specific && ok "diskkit $kind: info json agrees" ||
        fail "diskkit $kind: info json"
done
dk convert -O vdi q-dynamic.vdi d-from-vdi.vdi && qemu_ok d-from-vdi.vdi disk.raw "vdi->vdi"
qemu-img convert -O qcow2 disk.raw src.qcow2
if dk info src.qcow2 2>/dev/null | grep -q 'file format: qcow2'; then
    dk convert -O vdi src.qcow2 d-qcow2.vdi && qemu_ok d-qcow2.vdi disk.raw "qcow2->vdi"
    dk convert -O vdi -o static=on src.qcow2 d-qcow2s.vdi &&
        qemu_ok d-qcow2s.vdi disk.raw "qcow2->vdi static"
else
    echo "note: qcow2 driver not built here, qcow2->vdi not tested"
fi
dk create -f vdi c.vdi 1000000 >/dev/null && qemu-img check -q c.vdi &&
    qemu-img info c.vdi | grep -q '(1000448 bytes)' && ok "create odd size like qemu" ||
    fail "create odd size"

# --------------------------------------------------- 3. spec-built fixtures
# mkvdi OUT SIZE MAP PAYLOAD: a v1.1 dynamic VDI; MAP is a comma list of
# entries (-1 = 0xFFFFFFFF, -2 = 0xFFFFFFFE), data block i holds PAYLOAD
# byte i+1 repeated. Also writes OUT.expect, the raw content it must read as.
mkvdi() {
    "$PY" - "$@" <<'EOF'
import struct, sys
out, size, entries = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")]
bs = 1 << 20
n = len(entries)
ents = [e & 0xffffffff for e in entries]
alloc = sum(1 for e in ents if e < 0xfffffffe)
bmap = 512
data = 512 + ((n * 4 + 511) // 512) * 512
h = bytearray(512)
t = b"<<< Oracle VM VirtualBox Disk Image >>>\n"; h[0:len(t)] = t
struct.pack_into("<IIIII", h, 64, 0xbeda107f, 0x00010001, 0x190, 1, 0)
struct.pack_into("<IIIIIII", h, 340, bmap, data, 0, 0, 0, 512, 0)
struct.pack_into("<QIIII", h, 368, size, bs, 0, n, alloc)
h[392:408] = bytes(range(1, 17))
f = bytearray(h) + bytearray(data - 512)
for i, e in enumerate(ents):
    struct.pack_into("<I", f, bmap + 4 * i, e)
nblk = max([e + 1 for e in ents if e < 0xfffffffe] or [0])
for i in range(nblk):
    f += bytes([i + 1]) * bs
open(out, "wb").write(f)
exp = bytearray()
for e in ents:
    exp += bytes([e + 1]) * bs if e < 0xfffffffe else bytes(bs)
open(out + ".expect", "wb").write(exp[:(size + 511) // 512 * 512])
EOF
}
mkvdi zero.vdi $((4 << 20)) 0,-2,-1,1
dk convert -O raw zero.vdi zero.raw && cmp -s zero.raw zero.vdi.expect &&
    ok "0xFFFFFFFE entry reads as zeros" || fail "0xFFFFFFFE entry"
qemu-img compare -q -F raw zero.vdi zero.vdi.expect && ok "qemu agrees on the fixture" ||
    fail "qemu disagrees on the zero-entry fixture"
dk map --output json zero.vdi > dk.map; qemu-img map --output json zero.vdi > q.map
cmp -s dk.map q.map && ok "zero-entry map like qemu" || fail "zero-entry map differs"
mkvdi odd.vdi $((3 * 1048576 + 1001)) 0,1,2,3
dk info --output json odd.vdi > dk.json; qemu-img info --output json odd.vdi > q.json
json_same dk.json q.json virtual-size && ok "odd disk size rounded like qemu" ||
    fail "odd disk size"
dk convert -O raw odd.vdi odd.raw && cmp -s odd.raw odd.vdi.expect &&
    ok "odd disk size reads" || fail "odd disk size content"
dk convert -O vdi odd.vdi odd2.vdi && qemu_ok odd2.vdi odd.vdi.expect "odd size vdi->vdi"

# ------------------------------------------------------------ 4. bad input
# patch FILE OFFSET u32...: little-endian words at OFFSET
patch() {
    "$PY" - "$@" <<'EOF'
import struct, sys
f, off = sys.argv[1], int(sys.argv[2])
with open(f, "r+b") as fh:
    fh.seek(off)
    for v in sys.argv[3:]:
        fh.write(struct.pack("<I", int(v, 0) & 0xffffffff))
EOF
}
expect_error() {   # what file command...: fails cleanly, leaves FILE unchanged
    local what=$1 file=$2; shift 2
    local sum; sum=$(sha256sum < "$file")
    "$@" > out.txt 2> err.txt
    local rc=$?
    local lines; lines=$(wc -l < err.txt)
    if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $rc -ge 128 ]; then
        fail "$what: exit $rc"
    elif [ "$lines" -ne 1 ] || ! grep -q '^diskkit: ' err.txt; then
        fail "$what: stderr is not one diskkit line: $(cat err.txt)"
    elif [ "$(sha256sum < "$file")" != "$sum" ]; then
        fail "$what: input changed"
    else
        ok "$what: $(cat err.txt)"
    fi
}
bad() { mkvdi "$1" $((4 << 20)) 0,1,2,3; }
bad b1.vdi; patch b1.vdi 516 77
expect_error "entry out of range" b1.vdi dk convert -O raw b1.vdi o.raw
bad b2.vdi; patch b2.vdi 520 0
expect_error "duplicate entry" b2.vdi dk convert -O raw b2.vdi o.raw
bad b3.vdi; patch b3.vdi 72 0x1000
expect_error "header size lies" b3.vdi dk info b3.vdi
bad b4.vdi; patch b4.vdi 388 5
expect_error "blocks allocated > blocks" b4.vdi dk info b4.vdi
bad b5.vdi; patch b5.vdi 340 0x10000000
expect_error "block map offset past EOF" b5.vdi dk convert -O raw b5.vdi o.raw
bad b6.vdi; truncate -s $((1024 + 2 * 1048576 + 4096)) b6.vdi
expect_error "truncated file" b6.vdi dk convert -O raw b6.vdi o.raw
bad b7.vdi; patch b7.vdi 376 3000
expect_error "block size not a power of two" b7.vdi dk info b7.vdi
bad b8.vdi; patch b8.vdi 440 1
expect_error "parent UUID (differencing)" b8.vdi dk info b8.vdi
bad b9.vdi; patch b9.vdi 384 0xffffffff
expect_error "huge block count" b9.vdi dk info b9.vdi
bad b10.vdi; truncate -s 300 b10.vdi
expect_error "truncated header" b10.vdi dk info -f vdi b10.vdi
bad b11.vdi; patch b11.vdi 368 0 $((64 << 20))
expect_error "disk size beyond the blocks" b11.vdi dk info b11.vdi
bad b12.vdi; patch b12.vdi 76 3
expect_error "undo image" b12.vdi dk info b12.vdi

# Random damage to header and map: never a signal, a hang or a sanitizer
# report; exit 0 (harmless change) or 1 (refused) only.
"$PY" - <<'EOF'
import random
random.seed(20261122)
base = bytearray(open("zero.vdi", "rb").read())
for i in range(100):
    f = bytearray(base)
    for _ in range(random.randint(1, 4)):
        off = random.choice([64, 68, 72, 76, 340, 344, 360, 368, 372, 376, 380, 384, 388,
                             424, 440, 512, 516, 520, 524]) + random.randint(0, 3)
        f[off] = random.randint(0, 255)
    if i % 10 == 0:
        f = f[:random.randint(0, len(f))]
    open("fz%03d.vdi" % i, "wb").write(f)
EOF
fz_bad=0
for f in fz*.vdi; do
    dk convert -f vdi -O raw "$f" fz.raw > /dev/null 2> fz.err; rc=$?
    if [ $rc -gt 1 ] || grep -q 'Sanitizer\|runtime error' fz.err; then
        fz_bad=$((fz_bad + 1)); echo "fuzz $f: exit $rc: $(head -c 300 fz.err)"
    fi
    rm -f "$f" fz.raw
done
[ $fz_bad -eq 0 ] && ok "100 damaged images: clean exits" || fail "$fz_bad damaged images crashed"

# ------------------------------------------------------- 5. check / repair
if dk check --help >/dev/null 2>&1; then
    check_rc() {   # file expected-rc what
        dk check "$1" > out.txt 2>&1; local rc=$?
        [ $rc -eq "$2" ] && ok "check $3: exit $rc" || fail "check $3: exit $rc, want $2"
    }
    repair() {     # file what
        dk check -r all "$1" > out.txt 2>&1
        if dk check "$1" > /dev/null 2>&1 && qemu-img check -q "$1"; then
            ok "check -r all $2: clean for both"
        else
            fail "check -r all $2: not clean"; cat out.txt
        fi
    }
    check_rc d-dynamic.vdi 0 "good image"
    bad c1.vdi; patch c1.vdi 516 77;     check_rc c1.vdi 2 "out of range"; repair c1.vdi "out of range"
    bad c2.vdi; patch c2.vdi 520 0;      check_rc c2.vdi 2 "duplicate";    repair c2.vdi "duplicate"
    bad c3.vdi; patch c3.vdi 512 -1;     check_rc c3.vdi 3 "leak";         repair c3.vdi "leak"
    bad c4.vdi; patch c4.vdi 388 2;      check_rc c4.vdi 2 "count too low"; repair c4.vdi "count too low"
    dk check --output json c3.vdi > c.json 2>/dev/null
    "$PY" -c 'import json,sys; d=json.load(open("c.json")); sys.exit(d.get("leaks",0)!=0 or d.get("corruptions",0)!=0)' &&
        ok "check json after repair" || fail "check json after repair"
    # Data of surviving blocks is intact after compaction (c3: block 0 gone).
    mkvdi c3.ref $((4 << 20)) -1,1,2,3
    qemu-img compare -q -F raw c3.vdi c3.ref.expect && ok "repair kept the data" ||
        fail "repair lost data"
else
    echo "note: no check command in this build, check/repair not tested via the CLI"
fi

echo "$fails failure(s)"
[ $fails -eq 0 ]
