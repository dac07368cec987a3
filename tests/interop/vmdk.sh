#!/usr/bin/env bash
# vmdk.sh - VMDK interop through the CLI, qemu-img as the oracle:
#  - qemu-img-made VMDKs of every subformat (ext4 content from mkfs.ext4 -d)
#    read exactly (convert -O raw == qemu-img convert -O raw), and info/map
#    JSON equal qemu-img's;
#  - diskkit-made VMDKs pass qemu-img check and compare identical, and
#    libvmdk (vmdkinfo, pyvmdk) reads the same content;
#  - layouts qemu does not write: python3-vmdkstream output, a hand-built
#    VMware-layout stream (python struct/zlib), a separate descriptor with
#    FLAT + ZERO + SPARSE extents;
#  - bad input: one-line error, exit 1, no signal, input unchanged.
set -u
DISKKIT=${DISKKIT:-build/diskkit}
command -v qemu-img >/dev/null || { echo "qemu-img not installed"; exit 77; }
[ -x "$DISKKIT" ] || { echo "diskkit binary missing: $DISKKIT"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
PY=/usr/bin/python3
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# Guest content: ext4 with files, plus a tail that is not grain aligned.
mkdir src && head -c 2000000 /dev/urandom > src/rand && seq 1 150000 > src/seq
truncate -s 24M base.raw
mkfs.ext4 -q -F -d src base.raw >/dev/null 2>&1 || head -c 3000000 /dev/urandom | dd of=base.raw conv=notrunc status=none
head -c 50000 /dev/urandom | dd of=base.raw bs=1 seek=25000000 conv=notrunc status=none

subs="monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized"
for s in $subs; do
    qemu-img convert -O vmdk -o subformat=$s base.raw q-$s.vmdk
    qemu-img convert -O raw q-$s.vmdk ref.raw
    "$DISKKIT" convert -O raw q-$s.vmdk out.raw && cmp -s ref.raw out.raw \
        && ok "read qemu $s" || fail "read qemu $s"
    sync   # actual-size (st_blocks) settles once delayed allocation is done
    diff <("$DISKKIT" info --output json q-$s.vmdk) <(qemu-img info --output json q-$s.vmdk) \
        >/dev/null && ok "info json $s" || fail "info json $s"
    diff <("$DISKKIT" map --output json q-$s.vmdk) <(qemu-img map --output json q-$s.vmdk) \
        >/dev/null && ok "map json $s" || fail "map json $s"
done

libvmdk_reads() {   # image raw
    command -v vmdkinfo >/dev/null && { vmdkinfo "$1" >/dev/null || return 1; }
    $PY -c 'import pyvmdk' 2>/dev/null || return 0
    $PY - "$1" "$2" <<'EOF'
import pyvmdk, sys
h = pyvmdk.handle(); h.open(sys.argv[1]); h.open_extent_data_files()
d = h.read_buffer(h.get_media_size())
r = open(sys.argv[2], 'rb').read(); r += bytes(len(d) - len(r))
sys.exit(d != r)
EOF
}

for s in $subs; do
    for c in "" -c; do
        [ -n "$c" ] && [ $s != streamOptimized ] && continue
        rm -f d-$s*
        "$DISKKIT" convert $c -O vmdk -o subformat=$s base.raw d-$s.vmdk || { fail "convert $s"; continue; }
        qemu-img check -q d-$s.vmdk && ok "qemu-img check $s $c" || fail "qemu-img check $s $c"
        qemu-img compare -q base.raw d-$s.vmdk && ok "compare $s $c" || fail "compare $s $c"
        libvmdk_reads d-$s.vmdk base.raw && ok "libvmdk $s $c" || fail "libvmdk $s $c"
    done
done

# python3-vmdkstream's converter (VMware layout, flags 0x30001).
if $PY -c 'import VMDKstream' 2>/dev/null; then
    head -c 3000000 /dev/urandom > v.raw && truncate -s 6M v.raw
    $PY -c 'import VMDKstream, sys; VMDKstream.convert_to_stream(sys.argv[1], sys.argv[2])' \
        v.raw v.vmdk >/dev/null
    "$DISKKIT" convert -O raw v.vmdk vout.raw && cmp -s v.raw vout.raw \
        && ok "VMDKstream image" || fail "VMDKstream image"
else
    echo "note: python3-vmdkstream not installed, its case skipped"
fi

# Hand-built VMware-layout stream from the spec: header with gdOffset at end,
# descriptor, 2 grains, GT marker + GT, GD marker + GD, footer, EOS.
$PY - <<'EOF'
import struct, zlib, os
G = 128; SECT = 512; cap = 2048                      # 1 MiB, 64 KiB grains
def header(gd):
    h = struct.pack('<4sIIQQQQIQQQB4sH', b'KDMV', 3, 0x30001, cap, G, 1, 1, 512, 0, gd,
                    2, 0, b'\n \r\n', 1)
    return h + bytes(SECT - len(h))
def marker(n, t): return struct.pack('<QII', n, 0, t) + bytes(SECT - 16)
def pad(b): return b + bytes(-len(b) % SECT)
desc = pad(b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
           b'createType="streamOptimized"\nRW 2048 SPARSE "hand.vmdk"\n')
g0 = os.urandom(20000) + bytes(65536 - 20000); g12 = b'\x42' * 65536
out = bytearray(header(0xffffffffffffffff) + desc)
gt = [0] * 512
for lba, data in ((0, g0), (12 * G, g12)):
    gt[lba // G] = len(out) // SECT
    z = zlib.compress(data)
    out += pad(struct.pack('<QI', lba, len(z)) + z)
gtsec = len(out) // SECT + 1
out += marker(4, 1) + struct.pack('<512I', *gt)
gdsec = len(out) // SECT + 1
out += marker(1, 2) + pad(struct.pack('<I', gtsec))
out += marker(1, 3) + header(gdsec) + marker(0, 0)
open('hand.vmdk', 'wb').write(out)
raw = bytearray(cap * SECT); raw[0:65536] = g0; raw[12 * 65536:13 * 65536] = g12
open('hand.raw', 'wb').write(raw)
EOF
"$DISKKIT" convert -O raw hand.vmdk hout.raw && cmp -s hand.raw hout.raw \
    && ok "hand-built stream" || fail "hand-built stream"
qemu-img compare -q hand.raw hand.vmdk || fail "qemu disagrees on the hand-built stream"

# Separate descriptor: FLAT at an offset, ZERO, SPARSE.
head -c 1049088 /dev/urandom > f.raw
qemu-img create -q -f vmdk s.vmdk 1M && qemu-io -c 'write -P 0x5a 4096 70000' s.vmdk >/dev/null
printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="custom"\n\nRW 2048 FLAT "f.raw" 1\nRW 2048 ZERO\nRW 2048 SPARSE "s.vmdk"\n' > multi.vmdk
qemu-img convert -O raw s.vmdk s.raw
{ dd if=f.raw bs=512 skip=1 count=2048 status=none; head -c 1048576 /dev/zero; cat s.raw; } > mexp.raw
"$DISKKIT" convert -O raw multi.vmdk mout.raw && cmp -s mexp.raw mout.raw \
    && ok "multi-extent descriptor" || fail "multi-extent descriptor"

# Bad input: one line, exit 1, no signal, file unchanged.
expect_error() {   # file [command [exit code]]
    local f=$1 cmd=${2:-convert} want=${3:-1} sum rc; sum=$(md5sum < "$f")
    if [ "$cmd" = convert ]; then
        timeout 60 "$DISKKIT" convert -O raw "$f" bad-out.raw 2>err.txt
    else
        timeout 60 "$DISKKIT" "$cmd" "$f" good.vmdk >/dev/null 2>err.txt
    fi
    rc=$?
    if [ $rc -ne "$want" ] || [ "$(wc -l < err.txt)" -ne 1 ] || [ "$(md5sum < "$f")" != "$sum" ] \
       || [ -e bad-out.raw ]; then
        fail "bad input $f (rc=$rc): $(cat err.txt)"
    else
        ok "bad input $f: $(cat err.txt)"
    fi
}
qemu-img create -q -f vmdk good.vmdk 64M
patch_le() {   # out offset size value
    cp good.vmdk "$1"
    $PY -c "import struct,sys; f=open('$1','r+b'); f.seek($2); f.write(struct.pack('<' + {4:'I',8:'Q'}[$3], $4))"
}
patch_le bad-grain.vmdk 20 8 96
patch_le bad-gd.vmdk 56 8 $((1 << 40))
patch_le bad-gtes.vmdk 44 4 1000
patch_le bad-cap.vmdk 12 8 $((1 << 60))
patch_le bad-desc.vmdk 28 8 $((1 << 30))
gd=$($PY -c "import struct; print(struct.unpack_from('<Q', open('good.vmdk','rb').read(), 56)[0])")
patch_le bad-gt.vmdk $((gd * 512)) 4 $((0x0fffffff))
head -c 1000 good.vmdk > bad-short.vmdk
mkdir -p in && truncate -s 1M outside.raw
printf 'version=1\nRW 2048 FLAT "../outside.raw" 0\n' > in/bad-escape.vmdk
printf 'version=1\nRW 8 FLAT "/etc/hostname" 0\n' > bad-abs.vmdk
printf 'version=1\nRW 99999999999999999 FLAT "outside.raw" 0\n' > bad-huge.vmdk
for f in bad-grain.vmdk bad-gd.vmdk bad-gtes.vmdk bad-cap.vmdk bad-desc.vmdk \
         bad-short.vmdk in/bad-escape.vmdk bad-abs.vmdk bad-huge.vmdk; do
    expect_error "$f"
done
# A GT past EOF is found while reading (compare: exit 2 on error, as qemu-img).
expect_error bad-gt.vmdk
expect_error bad-gt.vmdk compare 2
# qemu-img 7.2 reports this image consistent (exit 0) although no reader can
# use it; diskkit reports the corruption (exit 2), as a GT past EOF is one.
if "$DISKKIT" check --help >/dev/null 2>&1; then
    "$DISKKIT" check bad-gt.vmdk >/dev/null 2>&1; d=$?
    [ $d -eq 2 ] && ok "check reports the GT past EOF as corruption" \
        || fail "check exit $d on a GT past EOF, expected 2"
    "$DISKKIT" check q-monolithicSparse.vmdk >/dev/null 2>&1; d=$?
    qemu-img check q-monolithicSparse.vmdk >/dev/null 2>&1; q=$?
    [ $q -eq $d ] && ok "check exit code $d like qemu-img on a clean image" \
        || fail "check exit $d, qemu-img $q on a clean image"
fi

# -c into a non-stream subformat stores grains plain, as qemu-img does
if "$DISKKIT" convert -c -O vmdk base.raw c-sparse.vmdk 2>c.err; then
    qemu-img compare -q base.raw c-sparse.vmdk && ok "convert -c monolithicSparse" || fail "convert -c -O vmdk (monolithicSparse) differs"
else
    fail "convert -c -O vmdk (monolithicSparse) failed: $(cat c.err)"
fi

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all VMDK interop checks passed"
