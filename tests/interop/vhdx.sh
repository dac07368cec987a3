#!/usr/bin/env bash
# vhdx.sh - VHDX interop with qemu-img as the oracle:
#  1. images qemu-img convert writes (dynamic/fixed, 1/8/32 MiB blocks,
#     block_state_zero on/off) over real ext4 content read back exactly
#     (diskkit convert -O raw == qemu-img convert -O raw); info JSON
#     agrees; map JSON covers the disk and its data extents point at the
#     right bytes (qemu maps VHDX as one data extent: see docs/vhdx.md);
#  2. images written by qemu-io after creation, past 4 GiB so the BAT has
#     a sector-bitmap entry interleaved; a 4096-byte logical sector image
#     (qemu 7.2 cannot open those: the source raw is the oracle);
#  3. guest commands (ls, cat) on ext4 inside a VHDX;
#  4. check agrees with qemu-img check (exit code, clean output);
#  5. bad input made by python3 from a good image: one line, non-zero
#     exit, no signal, input unchanged, no hang; a damaged-image loop;
#     a log that needs replay is replayed in memory like qemu-img check -r
#     all replays it into the file (the image stays untouched);
#  6. images diskkit writes (convert -O vhdx variants, create + qemu-io,
#     guest writes into qemu-made images) pass qemu-img check and compare;
#     read-write opens of a dirty-log or damaged image are refused.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io mkfs.ext4 python3 sha256sum
need_format vhdx
PY=$(python3 -c 'import sys; print(sys.executable)')
cd "$T"
dk() { timeout 120 "$DISKKIT" "$@"; }

# vx.py CMD FILE ARGS: edits a VHDX the spec's way (checksums fixed up).
cat > vx.py <<'EOF'
import struct, sys, zlib
def crc32c(b):
    t = crc32c.t
    if t is None:
        t = crc32c.t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82f63b78 if c & 1 else c >> 1
            t.append(c)
    c = 0xffffffff
    for x in b:
        c = t[(c ^ x) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff
crc32c.t = None
def fix(f, off, size):
    struct.pack_into("<I", f, off + 4, 0)
    struct.pack_into("<I", f, off + 4, crc32c(bytes(f[off:off + size])))
def region(f, tab, guid):
    for i in range(struct.unpack_from("<I", f, tab + 8)[0]):
        e = tab + 16 + 32 * i
        if f[e:e + 4] == bytes.fromhex(guid):
            return e
def meta_item(f, guid):
    mo = struct.unpack_from("<Q", f, region(f, 0x30000, "06a27c8b") + 16)[0]
    for i in range(struct.unpack_from("<H", f, mo + 10)[0]):
        e = mo + 32 + 32 * i
        if f[e:e + 4] == bytes.fromhex(guid):
            return mo + struct.unpack_from("<I", f, e + 16)[0]
def bat(f):
    return struct.unpack_from("<Q", f, region(f, 0x30000, "6677c22d") + 16)[0]
def active(f):
    s = [struct.unpack_from("<Q", f, o + 8)[0] for o in (0x10000, 0x20000)]
    return 0x10000 if s[0] > s[1] else 0x20000
cmd, name = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
f = bytearray(open(name, "rb").read())
if cmd == "hdrcrc":            # break the checksum of header N (1, 2)
    for n in args:
        f[0x10000 * int(n) + 200] ^= 0xff
elif cmd == "region":          # move the BAT region in both tables
    for tab in (0x30000, 0x40000):
        struct.pack_into("<Q", f, region(f, tab, "6677c22d") + 16, int(args[0]))
        fix(f, tab, 0x10000)
elif cmd == "size":            # virtual disk size
    struct.pack_into("<Q", f, meta_item(f, "2442a52f"), int(args[0]))
elif cmd == "block":           # block size
    struct.pack_into("<I", f, meta_item(f, "3767a1ca"), int(args[0]))
elif cmd == "lss":             # logical sector size
    struct.pack_into("<I", f, meta_item(f, "1dbf4181"), int(args[0]))
elif cmd == "bat":             # BAT entry N := VALUE
    struct.pack_into("<Q", f, bat(f) + 8 * int(args[0]), int(args[1], 0))
elif cmd == "parent":          # file parameters: has-parent
    struct.pack_into("<I", f, meta_item(f, "3767a1ca") + 4, 2)
elif cmd in ("dirtylog", "logset", "logflip"):
    h = active(f)
    lo = struct.unpack_from("<Q", f, h + 72)[0] + int(args[0]) if args else 0
    assert f[lo:lo + 4] == b"loge", "no log entry"
    if cmd == "dirtylog":      # the active header takes the GUID of the entry at POS
        f[h + 48:h + 64] = f[lo + 32:lo + 48]
        fix(f, h, 4096)
    elif cmd == "logset":      # u64 at FIELD of the entry := VALUE, checksum fixed
        struct.pack_into("<Q", f, lo + int(args[1]), int(args[2]))
        fix(f, lo, struct.unpack_from("<I", f, lo + 8)[0])
    else:                      # damage the last data sector (checksum left bad)
        f[lo + struct.unpack_from("<I", f, lo + 8)[0] - 100] ^= 0xff
open(name, "wb").write(f)
EOF
vx() { "$PY" vx.py "$@"; }

# ---------------------------------------------------------------- content
make_tree tree 3072
make_ext4_image disk.raw 24M tree
truncate -s 72M disk.raw
write_random disk.raw 30M 1M                   # data after a zero gap
write_random disk.raw 47M 3M                   # spans the 48M block boundary
write_random disk.raw $((72 * 1024 - 4))k 4k   # last sector
sum=$(sha disk.raw)

same_raw() {   # IMG WHAT: diskkit and qemu-img read IMG the same
    dk convert -O raw "$1" dk.raw
    qemu-img convert -O raw "$1" q.raw
    cmp -s dk.raw q.raw || fail "$2: diskkit reads differently from qemu-img"
    rm -f dk.raw q.raw
}
# map_ok IMG RAW: diskkit's map JSON covers the disk without gaps, data
# extents with offsets hold the raw bytes, zero extents read as zeros;
# qemu-img map shows one data extent for the whole disk.
map_ok() {
    dk map --output=json "$1" > dk.map
    qemu-img map --output=json "$1" > q.map
    "$PY" - "$1" "$2" <<'EOF' || fail "map of $1"
import json, sys
img, raw = open(sys.argv[1], "rb"), open(sys.argv[2], "rb")
m, q = json.load(open("dk.map")), json.load(open("q.map"))
size = len(raw.read()); raw.seek(0)
assert len(q) == 1 and q[0]["data"] and q[0]["length"] == size, q
pos = 0
for e in m:
    assert e["start"] == pos and e["present"] and e["depth"] == 0, e
    raw.seek(e["start"]); want = raw.read(e["length"])
    if e["zero"]:
        assert want == bytes(len(want)), ("zero extent holds data", e)
    elif e["data"]:
        img.seek(e["offset"]); assert img.read(e["length"]) == want, ("bad offset", e)
    pos += e["length"]
assert pos == size, (pos, size)
EOF
}

# ------------------------------------------------- 1. qemu-img convert
n=0
for sub in dynamic fixed; do
    for bs in 1M 8M 32M; do
        for z in on off; do
            img=q-$sub-$bs-$z.vhdx
            qemu-img convert -f raw -O vhdx -o subformat=$sub,block_size=$bs,block_state_zero=$z \
                disk.raw $img 2>/dev/null
            same_raw $img "$sub $bs zero=$z"
            map_ok $img disk.raw
            info_same $img vhdx
            n=$((n + 1))
        done
    done
done
note "qemu-img convert: $n vhdx variants read back like qemu"
assert_rc 0 "$DISKKIT" compare disk.raw q-dynamic-8M-on.vhdx
dk convert -O qcow2 q-dynamic-1M-on.vhdx out.qcow2
qemu-img compare -q -F raw out.qcow2 disk.raw || fail "vhdx -> qcow2 content"
dk dd if=q-fixed-8M-off.vhdx of=dd.raw bs=1M count=40 skip=2
qemu-img dd -f vhdx -O raw if=q-fixed-8M-off.vhdx of=qdd.raw bs=1M count=40 skip=2
cmp -s dd.raw qdd.raw || fail "dd from vhdx differs from qemu-img dd"
[ "$(sha disk.raw)" = "$sum" ] || fail "source changed"

# ------------------------------------- 2. qemu-io writes, BAT interleave
qemu-img create -q -f vhdx -o block_size=1M big.vhdx 5G
qemu-io -f vhdx -c "write -P 0x11 0 1M" -c "write -P 0x22 4095M 2M" \
    -c "write -P 0x33 4100M 64k" -c "write -P 0x44 $((5 * 1024 - 1))M 1M" \
    -c "write -z 4095M 512k" big.vhdx >/dev/null
dk convert -O raw big.vhdx big-dk.raw
qemu-img convert -O raw big.vhdx big-q.raw
qemu-img compare -q -f raw -F raw big-dk.raw big-q.raw || fail "qemu-io image beyond 4 GiB"
rm -f big-dk.raw big-q.raw
dk map --output=json big.vhdx | grep -q '"start": 4299161600' ||
    fail "block after the sector bitmap entry not mapped"
info_same big.vhdx vhdx
note "qemu-io writes across the sector bitmap entry read back"

# 4096-byte logical sectors: qemu-img convert only writes 512; patch one
# (the BAT layout is the same below one chunk). qemu 7.2 cannot open it.
cp q-dynamic-1M-on.vhdx lss.vhdx
vx lss lss.vhdx 4096
dk convert -O raw lss.vhdx lss.raw && cmp -s lss.raw disk.raw || fail "4096-byte sectors"
if qemu-img info lss.vhdx >/dev/null 2>&1; then note "qemu opens 4096-byte sectors now"; fi

# ---------------------------------------------------------- 3. guest
make_ext4_image fs.raw 32M tree
qemu-img convert -f raw -O vhdx fs.raw fs.vhdx
dk ls fs.vhdx / | grep -qx hello.txt || fail "diskkit ls in vhdx"
[ "$(dk cat fs.vhdx /hello.txt)" = "hello from diskkit" ] || fail "diskkit cat in vhdx"
dk cat fs.vhdx /data/random.bin | cmp -s - tree/data/random.bin || fail "cat a binary"
note "guest ls/cat through vhdx"

# ---------------------------------------------------------- 4. check
for img in q-dynamic-8M-on.vhdx q-fixed-1M-off.vhdx big.vhdx; do
    dk check "$img" > dk.out; qemu-img check "$img" > q.out
    diff q.out dk.out || fail "check output of $img"
    dk check --output=json "$img" > dk.json; qemu-img check --output=json "$img" > q.json
    same_json_keys dk.json q.json filename format check-errors corruptions ||
        fail "check json of $img"
done
cp q-dynamic-8M-on.vhdx trunc.vhdx
vx bat trunc.vhdx 0 $(( (100 << 30) | 6 ))
rc=0; dk check trunc.vhdx > /dev/null 2>&1 || rc=$?
qrc=0; qemu-img check trunc.vhdx > /dev/null 2>&1 || qrc=$?
assert_eq "$rc" "$qrc" "check exit code of a BAT entry past EOF"
assert_eq "$rc" 2 "check exit code of a BAT entry past EOF"

# ------------------------------------------------------- 5. bad input
bad() {   # WHAT FILE CMD...: clean one-line failure, FILE unchanged
    local what=$1 file=$2 before
    shift 2
    before=$(sha "$file")
    note "$what: $(expect_clean_failure "$@")"
    [ "$(sha "$file")" = "$before" ] || fail "$what: input changed"
}
good=q-dynamic-1M-on.vhdx
cp $good h1.vhdx; vx hdrcrc h1.vhdx 1
same_raw h1.vhdx "bad header 1 checksum"
cp $good h2.vhdx; vx hdrcrc h2.vhdx 2
dk convert -O raw h2.vhdx h2.raw && cmp -s h2.raw disk.raw || fail "bad header 2 checksum"
cp $good hb.vhdx; vx hdrcrc hb.vhdx 1 2
bad "both headers bad" hb.vhdx "$DISKKIT" info hb.vhdx
cp $good rg.vhdx; vx region rg.vhdx $((1 << 40))
bad "BAT region past EOF" rg.vhdx "$DISKKIT" convert -O raw rg.vhdx o.raw
cp $good hg.vhdx; vx size hg.vhdx $((60 << 40))
bad "huge BAT (60 TiB disk)" hg.vhdx "$DISKKIT" info hg.vhdx
cp $good hs.vhdx; vx size hs.vhdx $((65 << 40))
bad "disk size over 64 TiB" hs.vhdx "$DISKKIT" info hs.vhdx
for b in 3145728 524288 536870912 0; do
    cp $good bs$b.vhdx; vx block bs$b.vhdx $b
    bad "block size $b" bs$b.vhdx "$DISKKIT" convert -O raw bs$b.vhdx o.raw
done
cp $good ls.vhdx; vx lss ls.vhdx 1024
bad "logical sector 1024" ls.vhdx "$DISKKIT" info ls.vhdx
bad "BAT entry past EOF" trunc.vhdx "$DISKKIT" convert -O raw trunc.vhdx o.raw
cp $good ov.vhdx; vx bat ov.vhdx 3 $(( (1 << 20) | 6 ))
bad "BAT entry over the header section" ov.vhdx "$DISKKIT" convert -O raw ov.vhdx o.raw
cp $good pp.vhdx; vx bat pp.vhdx 2 7
bad "partially present without parent" pp.vhdx "$DISKKIT" convert -O raw pp.vhdx o.raw
cp $good pa.vhdx; vx parent pa.vhdx
bad "differencing image" pa.vhdx "$DISKKIT" info pa.vhdx
cp $good tr.vhdx; truncate -s 1500k tr.vhdx
bad "truncated file" tr.vhdx "$DISKKIT" info tr.vhdx
# A log that needs replay: qemu leaves its log entries in the log after a
# write (each write under a new log GUID); giving the active header the GUID
# of one makes an image qemu refuses to open read-only. Clobbering the BAT
# entries that the logged BAT sector sets shows that the replay is used.
# The oracle is qemu-img check -r all (replay) on a copy, then convert.
qemu-img create -q -f vhdx -o block_size=1M dsrc.vhdx 8M
qemu-io -f vhdx -c "write -P 7 1M 64k" -c "write -P 9 5M 4k" dsrc.vhdx >/dev/null
for pos in 0 8192; do
    cp dsrc.vhdx dirty-$pos.vhdx
    vx dirtylog dirty-$pos.vhdx $pos
    vx bat dirty-$pos.vhdx 1 0
    vx bat dirty-$pos.vhdx 5 0
    before=$(sha dirty-$pos.vhdx)
    qemu-img info dirty-$pos.vhdx >/dev/null 2>&1 && fail "qemu-img opens the dirty-log fixture"
    dk convert -O raw dirty-$pos.vhdx dk.raw
    dk info dirty-$pos.vhdx | grep -q 'file format: vhdx' || fail "info on a dirty log"
    cp dirty-$pos.vhdx replayed.vhdx
    qemu-img check -q -r all replayed.vhdx
    qemu-img convert -O raw replayed.vhdx q.raw
    cmp -s dk.raw q.raw || fail "log replay (entry at $pos) reads unlike qemu's replay"
    [ "$(sha dirty-$pos.vhdx)" = "$before" ] || fail "log replay wrote to the image"
done
qemu-img convert -O raw dsrc.vhdx src.raw
cmp -s dk.raw src.raw || fail "replaying the last entry does not restore the BAT"
note "log replayed in memory like qemu-img check -r all, image untouched"
cp dsrc.vhdx dbad.vhdx; vx dirtylog dbad.vhdx 0; vx logflip dbad.vhdx 0; vx bat dbad.vhdx 1 0
same_raw dbad.vhdx "log entry with a bad checksum is ignored"
cp dsrc.vhdx dtr.vhdx; vx dirtylog dtr.vhdx 0; vx logset dtr.vhdx 0 48 $((1 << 40))
bad "log says the file was truncated" dtr.vhdx "$DISKKIT" convert -O raw dtr.vhdx o.raw

# Random damage to headers, region table, metadata and BAT, checksums
# fixed up half of the time: clean exits (0 or 1) only.
"$PY" - <<'EOF'
import random, struct
exec(open("vx.py").read().split("cmd, name")[0])
random.seed(20261206)
base = bytearray(open("q-dynamic-1M-on.vhdx", "rb").read()[:0x500000])
spots = [0, 0x10000, 0x10040, 0x10048, 0x30000, 0x30008, 0x30010, 0x30028,
         0x300000, 0x30000a, 0x300030, 0x310000, 0x310008, 0x310018, 0x200000, 0x200008]
for i in range(80):
    f = bytearray(base)
    for _ in range(random.randint(1, 4)):
        o = random.choice(spots) + random.randint(0, 15)
        f[o] = random.randint(0, 255)
    if i % 2:
        fix(f, 0x10000, 4096); fix(f, 0x20000, 4096); fix(f, 0x30000, 0x10000)
    if i % 9 == 0:
        f = f[:random.randint(0, len(f))]
    open("fz%03d.vhdx" % i, "wb").write(f)
EOF
fz_bad=0
for f in fz*.vhdx; do
    rc=0; dk convert -f vhdx -O raw "$f" fz.raw > /dev/null 2> fz.err || rc=$?
    if [ $rc -gt 1 ] || grep -q 'Sanitizer\|runtime error' fz.err; then
        fz_bad=$((fz_bad + 1)); echo "fuzz $f: exit $rc: $(head -c 300 fz.err)"
    fi
    rm -f "$f" fz.raw
done
[ $fz_bad -eq 0 ] || fail "$fz_bad damaged images crashed"
note "80 damaged images: clean exits"

# -------------------------------------- 6. diskkit writes, qemu-img checks
qemu_ok() {   # IMG RAW WHAT: passes qemu-img check and compares equal to RAW
    qemu-img check -q -f vhdx "$1" || fail "$3: qemu-img check"
    qemu-img compare -q -f vhdx -F raw "$1" "$2" || fail "$3: qemu-img compare"
}
n=0
for sub in dynamic fixed; do
    for bs in 1M 32M; do
        for z in on off; do
            img=d-$sub-$bs-$z.vhdx
            dk convert -O vhdx -o subformat=$sub,block_size=$bs,block_state_zero=$z \
                disk.raw $img
            qemu_ok $img disk.raw "convert -O vhdx $sub $bs zero=$z"
            same_raw $img "diskkit-made $sub $bs zero=$z"
            map_ok $img disk.raw
            info_same $img vhdx
            n=$((n + 1))
        done
    done
done
note "convert -O vhdx: $n variants pass qemu-img check and compare"
dk convert -O vhdx out.qcow2 from-qcow2.vhdx
qemu_ok from-qcow2.vhdx disk.raw "qcow2 -> vhdx"
dk create -q -f vhdx -o block_size=1M new.vhdx 5G
qemu-img check -q new.vhdx || fail "created image fails qemu-img check"
[ "$(dk create -f vhdx -o log_size=2M,block_size=1M,subformat=fixed f.vhdx 10M)" = \
  "Formatting 'f.vhdx', fmt=vhdx size=10485760 log_size=2097152 block_size=1048576 subformat=fixed" ] ||
    fail "Formatting line differs from qemu-img's"
qemu-io -f vhdx -c "write -P 0x11 0 1M" -c "write -P 0x22 4095M 2M" \
    -c "write -P 0x44 $((5 * 1024 - 1))M 1M" new.vhdx >/dev/null
qemu-img check -q new.vhdx || fail "qemu-io writes into a diskkit image"
dk convert -O raw new.vhdx new-dk.raw
qemu-img convert -O raw new.vhdx new-q.raw
qemu-img compare -q -f raw -F raw new-dk.raw new-q.raw || fail "qemu-io into diskkit image"
rm -f new-dk.raw new-q.raw
note "qemu-io writes into a diskkit-created image read back"

# Guest writes through diskkit into a qemu-made image (past the sector
# bitmap entry too); qemu-img checks and reads them.
qemu-img convert -f raw -O vhdx -o block_size=1M fs.raw gw.vhdx
dk mkdir gw.vhdx /newdir
dk copy-in gw.vhdx tree/data/random.bin /newdir
qemu-img check -q gw.vhdx || fail "guest writes: qemu-img check"
qemu-img convert -O raw gw.vhdx gw.raw
fsck.ext4 -fn gw.raw >/dev/null 2>&1 || fail "guest writes: fsck of qemu's reading"
dk cat -f raw gw.raw /newdir/random.bin | cmp -s - tree/data/random.bin ||
    fail "guest writes: file differs when qemu reads the image"
note "diskkit writes into qemu-made images pass qemu-img check"

# Nothing is written where it must not be.
bad "write open of an image whose log needs replay" dirty-0.vhdx \
    "$DISKKIT" mkdir dirty-0.vhdx /x
grep -q 'cannot open for writing' "$T/.stderr" || fail "dirty log write open message"
bad "write open with a BAT entry past EOF" trunc.vhdx "$DISKKIT" mkdir trunc.vhdx /x
bad "resize" $good "$DISKKIT" resize $good 100M
bad "create: block size not a power of two" disk.raw \
    "$DISKKIT" convert -O vhdx -o block_size=3M disk.raw bad.vhdx
[ ! -e bad.vhdx ] || fail "failed convert left a file"
bad "create: size over 64 TiB" disk.raw "$DISKKIT" create -f vhdx huge.vhdx 65T
echo "vhdx: all passed"
