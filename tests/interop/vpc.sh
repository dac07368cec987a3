#!/usr/bin/env bash
# vpc.sh - VHD ("vpc") interop with qemu-img 7.2 as the oracle, both ways:
#  1. images qemu-img writes (dynamic and fixed, with and without
#     force_size) over real ext4 content read back exactly; map and info
#     --output json agree; fixed VHDs probe as raw, as in qemu;
#  2. create at sizes where the CHS rounding matters: same virtual size and
#     the same footer fields (geometry, sizes, creator app, type) as qemu;
#  3. VHDs diskkit writes (convert both subformats, dd, convert -n, guest
#     writes) compare identical in qemu-img, and qemu-io writes read back;
#     vpc to every other format; guest commands and diskkit-mount --raw
#     through a vpc;
#  4. differencing disks (spec-built fixtures) read through their parent,
#     read-only; missing parent, wrong parent UUID, absolute or escaping
#     locators fail cleanly;
#  5. bad input: one-line error, non-zero exit, no signal, file unchanged;
#     random damage: clean exits only;
#  6. crash safety: writers killed with SIGKILL, again and again on one
#     image, leave it readable alike by both tools, every 4 KiB either the
#     source data or zeros (no stale data from reused space).
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io mkfs.ext4 python3 sha256sum e2fsck
need_format vpc
cd "$T"
PY=$(python3 -c 'import sys; print(sys.executable)')
dk() { timeout 120 "$DISKKIT" "$@"; }
vsize() { qemu-img info --output=json -f vpc "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }
dksize() { dk info --output=json -f vpc "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }
# expect OUT SIZE: OUT = disk.raw cut or zero-extended to SIZE bytes
expect() { cp disk.raw "$1"; truncate -s "$2" "$1"; }

# ---------------------------------------------------------------- content
make_tree tree 3072
make_ext4_image fs.raw 24M tree
truncate -s 40M disk.raw
dd if=fs.raw of=disk.raw bs=1M seek=1 conv=notrunc status=none
write_random disk.raw 30M 1M
write_random disk.raw $((35 * 1048576 + 512)) 4k
printf 'tail' | dd of=disk.raw bs=1 seek=$((40 * 1048576 - 4)) conv=notrunc status=none

# ------------------------------------------------- 1. qemu-img writes, we read
for v in dynamic fixed dynamic,force_size=on fixed,force_size=on; do
    note "qemu-img convert -O vpc -o subformat=$v"
    qemu-img convert -f raw -O vpc -o subformat=$v disk.raw q.vhd
    vs=$(vsize q.vhd)
    assert_eq "$(dksize q.vhd)" "$vs" "$v: virtual size"
    case $v in *force_size=on) assert_eq "$vs" $((40 << 20)) "$v: force_size keeps the size" ;; esac
    dk convert -f vpc -O raw q.vhd back.raw
    expect ref.raw "$vs"
    cmp back.raw ref.raw || fail "$v: content read back differs"
    map_same q.vhd vpc
    info_same q.vhd vpc
    assert_rc 0 "$DISKKIT" compare -F vpc disk.raw q.vhd
    probed=$(dk info q.vhd | sed -n 's/^file format: //p')
    case $v in
    dynamic*) assert_eq "$probed" vpc "$v: probe" ;;
    fixed*)   assert_eq "$probed" "$(qemu-img info q.vhd | sed -n 's/^file format: //p')" \
                  "$v: probes like qemu (raw)" ;;
    esac
    cp q.vhd "q-${v/,force_size=on/-fs}.vhd"
done

# ------------------------------------------ 2. create: CHS rounding and footer
# footer_fields FILE: the footer fields that must match qemu's (not the
# timestamp, UUID or checksum): features, version, data offset, creator
# app/version/OS, sizes, geometry, type; from the copy at 0 or the end.
footer_fields() {
    "$PY" - "$1" <<'EOF'
import sys
d = open(sys.argv[1], "rb").read()
f = d[:512] if d[:8] == b"conectix" else d[-512:]
print(f[:24].hex(), f[28:64].hex())
EOF
}
for size in 1000000 10M 1000M 1G 4095M 100G 130G 2040G; do
    for fs in off on; do
        qemu-img create -q -f vpc -o force_size=$fs q.vhd $size
        dk create -q -f vpc -o force_size=$fs d.vhd $size
        assert_eq "$(vsize d.vhd)" "$(vsize q.vhd)" "create $size force_size=$fs: qemu's view"
        assert_eq "$(dksize q.vhd)" "$(vsize q.vhd)" "create $size force_size=$fs: our view"
        assert_eq "$(footer_fields d.vhd)" "$(footer_fields q.vhd)" "create $size footer"
        cmp -s -i 512:512 -n 1024 d.vhd q.vhd || fail "create $size: dynamic header differs"
        assert_eq "$(stat -c %s d.vhd)" "$(stat -c %s q.vhd)" "create $size: file size"
    done
done
for size in 1000000 10M 33M; do
    qemu-img create -q -f vpc -o subformat=fixed q.vhd $size
    dk create -q -f vpc -o subformat=fixed d.vhd $size
    assert_eq "$(footer_fields d.vhd)" "$(footer_fields q.vhd)" "create fixed $size footer"
    assert_eq "$(stat -c %s d.vhd)" "$(stat -c %s q.vhd)" "create fixed $size: file size"
done
expect_clean_failure "$DISKKIT" create -f vpc -o force_size=on big.vhd 2041G
expect_clean_failure "$DISKKIT" create -f vpc -o subformat=sparse bad.vhd 1G
"$DISKKIT" create -f vpc -o help | grep -q '^  subformat=' || fail "-o help lacks subformat"
# qemu's "Formatting" line.
assert_eq "$("$DISKKIT" create -f vpc -o subformat=fixed f.vhd 10M)" \
    "$(qemu-img create -f vpc -o subformat=fixed f2.vhd 10M | sed 's/f2.vhd/f.vhd/')" \
    "Formatting line"

# --------------------------------------------- 3. diskkit writes, qemu reads
for v in dynamic fixed dynamic,force_size=on fixed,force_size=on; do
    note "diskkit convert -O vpc -o subformat=$v"
    dk convert -f raw -O vpc -o subformat=$v disk.raw d.vhd
    qemu-img compare -q -f raw -F vpc disk.raw d.vhd || fail "$v: qemu-img compare"
    qv="q-${v/,force_size=on/-fs}.vhd"
    assert_eq "$(vsize d.vhd)" "$(vsize "$qv")" "$v: same virtual size as qemu's"
    assert_eq "$(footer_fields d.vhd)" "$(footer_fields "$qv")" "$v: footer like qemu's"
    map_same d.vhd vpc
    info_same d.vhd vpc
done
note "vpc -> other formats, and back"
for fmt in qcow2 vmdk vdi raw; do
    has_format $fmt || continue
    dk convert -f vpc -O $fmt q-dynamic.vhd o.$fmt
    qemu-img compare -q -f vpc -F $fmt q-dynamic.vhd o.$fmt || fail "vpc -> $fmt"
    dk convert -f $fmt -O vpc o.$fmt o.vhd
    qemu-img compare -q -f $fmt -F vpc o.$fmt o.vhd || fail "$fmt -> vpc"
done
dk convert -O vpc q-dynamic.vhd dd2.vhd
qemu-img compare -q q-dynamic.vhd dd2.vhd || fail "vpc -> vpc"

note "dd"
dk dd -f raw -O vpc if=disk.raw of=dd.vhd bs=64k count=300 skip=10
qemu-img dd -f raw -O vpc if=disk.raw of=qdd.vhd bs=64k count=300 skip=10
qemu-img compare -q dd.vhd qdd.vhd || fail "dd into vpc differs from qemu-img dd"

note "writes into an existing image"
dk create -q -f vpc w.vhd 40M
qemu-io -f vpc -c 'write -P 0xab 3M 100k' -c 'write -P 0xcd 20M 512' w.vhd >/dev/null
dk convert -n -f raw -O vpc fs.raw w.vhd       # the first 24 MiB, partly over qemu's
qemu-io -f vpc -c 'write -P 0xee 39M 4k' w.vhd >/dev/null
qemu-img convert -f vpc -O raw w.vhd w.raw
cp fs.raw wexp.raw; truncate -s "$(vsize w.vhd)" wexp.raw
printf '\xee%.0s' $(seq 4096) | dd of=wexp.raw bs=1M seek=39 conv=notrunc status=none
cmp w.raw wexp.raw || fail "convert -n over qemu-io writes"
dk convert -f vpc -O raw w.vhd w2.raw
cmp w.raw w2.raw || fail "diskkit reads the mixed image differently"
map_same w.vhd vpc

note "guest commands through a vpc"
qemu-img convert -f raw -O vpc fs.raw g.vhd
dk ls g.vhd / | grep -qx hello.txt || fail "ls through vpc"
assert_eq "$(dk cat g.vhd /hello.txt)" "hello from diskkit" "cat through vpc"
dk cat g.vhd /data/random.bin | cmp - tree/data/random.bin || fail "cat random.bin"
head -c 300000 /dev/urandom > new.bin
dk write g.vhd /data/new.bin < new.bin
dk mkdir g.vhd /newdir
qemu-img convert -f vpc -O raw g.vhd g.raw
e2fsck -fn g.raw >/dev/null 2>&1 || fail "ext4 inside the vpc is damaged after guest writes"
dk cat g.vhd /data/new.bin | cmp - new.bin || fail "guest write read back"
dk create -q -f vpc -o subformat=fixed gf.vhd 24M
dk convert -n -f raw -O vpc fs.raw gf.vhd
assert_eq "$(dk cat -f vpc gf.vhd /hello.txt)" "hello from diskkit" "cat through a fixed vpc"

MOUNT=${DISKKIT_MOUNT:-$(dirname "$DISKKIT")/diskkit-mount}
if [ -c /dev/fuse ] && [ -x "$MOUNT" ] && command -v fusermount3 >/dev/null; then
    note "diskkit-mount --raw through a vpc: unaligned writes"
    dk create -q -f vpc fm.vhd 16M
    mkdir mnt
    timeout 20 "$MOUNT" --raw fm.vhd mnt || fail "diskkit-mount --raw"
    head -c 3000000 /dev/urandom > pat.bin
    dd if=pat.bin of=mnt/disk bs=1000 seek=1234 conv=notrunc status=none
    fusermount3 -u mnt
    for i in 1 2 3 4 5 6 7 8 9 10; do qemu-img info fm.vhd >/dev/null 2>&1 && break; sleep 0.5; done
    qemu-img convert -f vpc -O raw fm.vhd fm.raw
    cmp -i 1234000:0 -n 3000000 fm.raw pat.bin || fail "fuse writes through vpc"
    cmp -n 1234000 fm.raw /dev/zero || fail "fuse: bytes before the write"
else
    note "no /dev/fuse or diskkit-mount: FUSE through vpc not tested"
fi

note "check and resize behave like qemu-img 7.2"
assert_rc 63 "$DISKKIT" check q-dynamic.vhd
assert_rc 1 "$DISKKIT" resize q-dynamic.vhd 80M

# ---------------------------------- 4. differencing disks (spec fixtures)
# qemu-img cannot make them (and 7.2 reads them without their parent), so
# the fixture is built from the spec: mkdiff BASE CHILD LOCATOR [bad-uuid]
# writes a type 4 VHD over BASE (a dynamic VHD): footer copy at 0, parent
# UUID = BASE's, parent name = BASE's file name (UTF-16BE), one W2ru
# locator LOCATOR (UTF-16LE). Block 0 holds sectors 0-7 and 100 (0x22; the
# others hold 0x33, which must not be read); block 2 all sectors (0x44).
mkdiff() {
    "$PY" - "$@" <<'PYEOF'
import os, struct, sys
base, child, loc = sys.argv[1], sys.argv[2], sys.argv[3]
uuid_ok = sys.argv[4:] != ["bad-uuid"]
b = open(base, "rb").read()
bf = bytearray(b[:512])
entries = struct.unpack_from(">I", b, 512 + 28)[0]
def csum(buf, off):
    struct.pack_into(">I", buf, off, 0)
    struct.pack_into(">I", buf, off, ~sum(buf) & 0xffffffff)
f = bytearray(bf)
struct.pack_into(">I", f, 60, 4)
f[68:84] = os.urandom(16)
csum(f, 64)
bs, bm = 2 << 20, 512
bat_off = 1536
bat_len = (entries * 4 + 511) // 512 * 512
loc_off = bat_off + bat_len
locb = loc.encode("utf-16-le")
loc_space = (len(locb) + 511) // 512 * 512
blk0 = loc_off + loc_space
blk2 = blk0 + bm + bs
h = bytearray(1024)
h[0:8] = b"cxsparse"
struct.pack_into(">QQIIII", h, 8, 0xffffffffffffffff, bat_off, 0x10000, entries, bs, 0)
h[40:56] = bf[68:84] if uuid_ok else os.urandom(16)
name = os.path.basename(base).encode("utf-16-be")
h[64:64 + len(name)] = name
struct.pack_into(">IIIIQ", h, 576, 0x57327275, loc_space // 512, len(locb), 0, loc_off)
csum(h, 36)
bat = bytearray(b"\xff" * bat_len)
struct.pack_into(">I", bat, 0, blk0 // 512)
struct.pack_into(">I", bat, 8, blk2 // 512)
bm0 = bytearray(bm)
bm0[0] = 0xff
bm0[100 // 8] |= 0x80 >> (100 % 8)
d0 = bytearray(b"\x33" * bs)
for sec in list(range(8)) + [100]:
    d0[sec * 512:(sec + 1) * 512] = b"\x22" * 512
out = bytearray(f) + h + bat + locb + bytes(loc_space - len(locb))
out += bm0 + d0 + b"\xff" * bm + b"\x44" * bs + f
open(child, "wb").write(out)
PYEOF
}
qemu-img create -q -f vpc base.vhd 8M
qemu-io -f vpc -c 'write -P 0x11 0 8M' base.vhd >/dev/null
qemu-img convert -f vpc -O raw base.vhd diff.expect
"$PY" - <<'PYEOF'
d = bytearray(open("diff.expect", "rb").read())
for sec in list(range(8)) + [100]:
    d[sec * 512:(sec + 1) * 512] = b"\x22" * 512
d[4 << 20:6 << 20] = b"\x44" * (2 << 20)
open("diff.expect", "wb").write(d)
PYEOF
note "differencing disk read through its parent"
mkdiff base.vhd child.vhd '.\base.vhd'
dk convert -O raw child.vhd child.raw
cmp child.raw diff.expect || fail "differencing disk content"
dk info --output=json child.vhd > child.json
"$PY" - <<'PYEOF' || fail "differencing disk: info json"
import json, sys
d = json.load(open("child.json"))
sys.exit(not (d["backing-filename"] == "base.vhd" and d["backing-filename-format"] == "vpc"
              and d["format"] == "vpc"))
PYEOF
dk map --output=json child.vhd | grep -q '"depth": 1' || fail "differencing disk: map depth"
dk convert -O qcow2 child.vhd child.qcow2
qemu-img compare -q -F raw child.qcow2 diff.expect || fail "differencing disk -> qcow2"
sum=$(sha child.vhd)
expect_clean_failure "$DISKKIT" convert -n -f raw -O vpc fs.raw child.vhd
expect_clean_failure "$DISKKIT" write child.vhd /x < /dev/null
assert_eq "$(sha child.vhd)" "$sum" "differencing disk left unchanged"
mkdiff base.vhd nopar.vhd '.\missing.vhd'
expect_clean_failure "$DISKKIT" convert -O raw nopar.vhd dfail.raw
mkdiff base.vhd baduuid.vhd '.\base.vhd' bad-uuid
expect_clean_failure "$DISKKIT" convert -O raw baduuid.vhd dfail.raw
mkdiff base.vhd escape.vhd '..\..\..\..\..\etc\passwd'
expect_clean_failure "$DISKKIT" convert -O raw escape.vhd dfail.raw
mkdiff base.vhd abs.vhd 'C:\disks\base.vhd'
expect_clean_failure "$DISKKIT" info abs.vhd
[ ! -e dfail.raw ] || fail "differencing failures left dfail.raw behind"

# ------------------------------------------------------------ 5. bad input
# mk FILE: a fresh small dynamic image with two allocated blocks.
mk() {
    qemu-img create -q -f vpc "$1" 8M
    qemu-io -f vpc -c 'write -P 1 0 4k' -c 'write -P 2 4M 4k' "$1" >/dev/null
}
# patch FILE OFF FMT VALUE [fix]: struct-pack VALUE at OFF (big-endian);
# with "fix", recompute the footer checksum of the copy at 0.
patch() {
    "$PY" - "$@" <<'EOF'
import struct, sys
f, off, fmt, val = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4], 0)
d = bytearray(open(f, "rb").read())
struct.pack_into(">" + fmt, d, off, val)
if sys.argv[5:] == ["fix"]:
    struct.pack_into(">I", d, 64, 0)
    struct.pack_into(">I", d, 64, ~sum(d[:512]) & 0xffffffff)
open(f, "wb").write(d)
EOF
}
bad() {   # what file: every command fails cleanly and leaves FILE unchanged
    local what=$1 f=$2 sum
    sum=$(sha "$f")
    note "bad input: $what"
    expect_clean_failure "$DISKKIT" info -f vpc "$f"
    expect_clean_failure "$DISKKIT" convert -f vpc -O raw "$f" out.raw
    expect_clean_failure "$DISKKIT" convert -n -f raw -O vpc fs.raw "$f"
    [ ! -e out.raw ] || fail "$what: output left behind"
    assert_eq "$(sha "$f")" "$sum" "$what: input unchanged"
}
mk b1.vhd; truncate -s $((2048 + 4096)) b1.vhd;         bad "truncated file" b1.vhd
mk b2.vhd; patch b2.vhd 100 B 0x55;                      bad "bad footer checksum" b2.vhd
mk b3.vhd; patch b3.vhd 1536 I 0x100000;                 bad "BAT entry past EOF" b3.vhd
mk b4.vhd; patch b4.vhd $((512 + 28)) I 0xfffffff0;      bad "huge max_table_entries" b4.vhd
mk b5.vhd; patch b5.vhd $((512 + 32)) I 3000000;         bad "block size not a power of two" b5.vhd
mk b6.vhd; patch b6.vhd $((512 + 32)) I 0;               bad "block size 0" b6.vhd
mk b7.vhd; patch b7.vhd $((512 + 16)) Q 0x7000000000;    bad "BAT offset past EOF" b7.vhd
mk b8.vhd; patch b8.vhd 16 Q 0x10000000 fix;             bad "header offset past EOF" b8.vhd
mk b9.vhd; patch b9.vhd 60 I 7 fix;                      bad "unknown disk type" b9.vhd
mk b10.vhd; patch b10.vhd 1540 I 4;                      bad "two entries, one block" b10.vhd
mk b11.vhd; patch b11.vhd 48 Q $((4096 << 30)) fix; patch b11.vhd 28 I 0x77696e20 fix
bad "size over 2040 GiB" b11.vhd
mk b12.vhd; patch b12.vhd 56 H 65000 fix;                bad "BAT too small for the size" b12.vhd
mk b13.vhd; patch b13.vhd 512 B 0x41;                    bad "bad dynamic header magic" b13.vhd
mk b14.vhd; patch b14.vhd 1536 I 3;                      bad "block over the dynamic header" b14.vhd
head -c 100 /dev/urandom > b15.vhd;                      bad "100-byte file" b15.vhd
dk create -q -f vpc -o subformat=fixed b16.vhd 8M; truncate -s 4M b16.vhd
bad "fixed disk without footer" b16.vhd
dk create -q -f vpc -o subformat=fixed b17.vhd 8M
sz=$(stat -c %s b17.vhd); patch b17.vhd $((sz - 512 + 48)) Q $((64 << 20))
bad "fixed footer checksum" b17.vhd

note "random damage: clean exits only"
mk fz.vhd
"$PY" - <<'EOF'
import random
random.seed(20261206)
base = bytearray(open("fz.vhd", "rb").read())
for i in range(100):
    f = bytearray(base)
    for _ in range(random.randint(1, 4)):
        off = random.choice([16, 23, 48, 51, 56, 57, 58, 59, 63, 512 + 16, 512 + 23,
                             512 + 28, 512 + 31, 512 + 32, 512 + 35, 1536, 1537, 1540,
                             1541, 1544]) + random.randint(0, 3)
        f[off] = random.randint(0, 255)
    if i % 2 == 0:      # make the footer checksum right so deeper checks run
        f[64:68] = b"\0\0\0\0"
        f[64:68] = (~sum(f[:512]) & 0xffffffff).to_bytes(4, "big")
    if i % 10 == 0:
        f = f[:random.randint(0, len(f))]
    open("fz%03d.vhd" % i, "wb").write(f)
EOF
fz_bad=0
for f in fz0*.vhd; do
    rc=0
    timeout 60 "$DISKKIT" convert -f vpc -O raw "$f" fz.raw > /dev/null 2> fz.err || rc=$?
    if [ $rc -gt 1 ] || grep -q 'Sanitizer\|runtime error' fz.err; then
        fz_bad=$((fz_bad + 1)); echo "fuzz $f: exit $rc: $(head -c 300 fz.err)"
    fi
    rm -f "$f" fz.raw
done
[ $fz_bad -eq 0 ] || fail "$fz_bad damaged images crashed"

# ------------------------------------------------------- 6. crash safety
# One image through all rounds, so a round reopens what a killed writer
# left (unreferenced blocks after the last referenced one) and allocates
# over it. Odd rounds write src.raw, even rounds src2.raw (its second half
# only), so a reused block often held another guest block before: its
# stale data must not show through the parts a round does not write.
note "SIGKILL during allocating writes"
"$PY" - <<'EOF'
import os
with open("src.raw", "wb") as f, open("src2.raw", "wb") as g:
    for i in range(1024):                     # 64 MiB: 64 KiB pieces
        p = os.urandom(65536) if i % 3 else b"\0" * 65536
        f.write(p)
        g.write(p if i >= 512 else b"\0" * 65536)
EOF
dk create -q -f vpc c.vhd 64M
kills=0
for round in 1 2 3 4 5 6 7 8 9 10; do
    src=src.raw; [ $((round % 2)) = 0 ] && src=src2.raw
    "$DISKKIT" convert -n -f raw -O vpc $src c.vhd & pid=$!
    sleep "0.0$((RANDOM % 9))$((RANDOM % 10))"
    kill -KILL $pid 2>/dev/null && kills=$((kills + 1))
    wait $pid 2>/dev/null || true
    qemu-img info -f vpc c.vhd > /dev/null || fail "round $round: qemu cannot open the image"
    qemu-img convert -f vpc -O raw c.vhd cq.raw
    dk convert -f vpc -O raw c.vhd cd.raw
    cmp cq.raw cd.raw || fail "round $round: diskkit and qemu read differently"
    "$PY" - <<'EOF' || fail "round $round: a 4 KiB piece is neither the data nor zeros"
import sys
a, b = open("cq.raw", "rb").read(), open("src.raw", "rb").read()
z = bytes(4096)
for o in range(0, len(b), 4096):
    p = a[o:o + 4096]
    if p != b[o:o + 4096] and p != z:
        sys.exit("offset %d" % o)
EOF
done
echo "crash: $kills of 10 writers killed mid-way"
dk convert -n -f raw -O vpc src.raw c.vhd
qemu-img compare -q -f raw -F vpc src.raw c.vhd || fail "after the crashes, a full write"
[ "$(stat -c %s c.vhd)" -le $((80 << 20)) ] || fail "image grew to $(stat -c %s c.vhd) bytes"
echo "vpc: all passed"
