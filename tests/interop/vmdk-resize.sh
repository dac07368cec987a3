#!/usr/bin/env bash
# vmdk-resize.sh - `diskkit resize` grows VMDK images (qemu-img cannot), and
# the results stay valid for qemu and libvmdk:
#  - monolithicSparse, monolithicFlat, twoGbMaxExtentSparse,
#    twoGbMaxExtentFlat made by qemu-img, and images made by diskkit, with
#    patterned data from qemu-io, grown a little (GD slack, same extent) and
#    a lot (GD relocation, new 2 GiB extent files);
#  - after each grow: qemu-img info shows the new size, qemu-img check and
#    diskkit check are clean, old data is unchanged (qemu-img compare and
#    diskkit compare against a raw copy extended with zeros), qemu-io
#    writes past the old end and reads it back, vmdkinfo reports the size,
#    the redundant GD/GTs mirror the primary ones, info/map JSON equal
#    qemu-img's, libvmdk (vmdkmount) reads the same content;
#  - a crash just before the sparse header write (simulated by restoring
#    the old header and descriptor) leaves the old image intact;
#  - refusals leave every file byte-identical: streamOptimized, shrinking,
#    a descriptor that would outgrow its embedded area, an extent file name
#    already taken.
# Images are 64 MiB .. 5 GiB virtual but sparse (a few MiB on disk).
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io
need_format vmdk
cd "$T"

passes=0 fails=0
ok() { passes=$((passes + 1)); echo "ok: $*"; }
bad() { fails=$((fails + 1)); echo "FAIL: $*" >&2; }
try() {   # MESSAGE CMD...: ok when CMD succeeds
    local m=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$m"; else bad "$m"; fi
}
if command -v vmdkinfo >/dev/null; then HAVE_VMDKINFO=1; else
    HAVE_VMDKINFO=0
    echo "note: vmdkinfo (libvmdk-utils) not installed: libvmdk checks skipped"
fi

# sparse_dirs FILE: every GD entry of the hosted sparse extent FILE points
# at a GT inside the file, and with a redundant GD, the redundant GT is a
# different, identical copy (qemu-img check does not look at the copies).
sparse_dirs() {
    python3 - "$1" <<'EOF'
import struct, sys
f = open(sys.argv[1], 'rb'); h = f.read(512)
flags, cap, grain = struct.unpack_from('<IQQ', h, 8)
ngte, = struct.unpack_from('<I', h, 44)
rgd, gd = struct.unpack_from('<QQ', h, 48)
n = -(-cap // (ngte * grain)); size = f.seek(0, 2)
def rd(sec, cnt):
    f.seek(sec * 512); return struct.unpack('<%dI' % cnt, f.read(4 * cnt))
g = rd(gd, n); r = rd(rgd, n) if flags & 2 else None
for i in range(n):
    if not g[i] or g[i] * 512 + 4 * ngte > size: sys.exit('GT %d missing or past EOF' % i)
    if r and (not r[i] or r[i] == g[i] or rd(g[i], ngte) != rd(r[i], ngte)):
        sys.exit('redundant GT %d differs' % i)
EOF
}

vsize() { qemu-img info "$1" | sed -n 's/^virtual size: .*(\([0-9]*\) bytes)$/\1/p'; }
bytes() { numfmt --from=iec "${1^^}"; }

# fill IMG OLDSIZE: patterned data at the start, across the middle and up
# to the very end of the disk (the grain or extent next to the new area).
fill() {
    local img=$1 end
    end=$(bytes "$2")
    qemu-io -f vmdk -c "write -P 0x11 0 1M" -c "write -P 0x22 $((end / 2 - 4096)) 72k" \
        -c "write -P 0x33 $((end - 65536)) 64k" "$img" >/dev/null
}

# verify NAME IMG RAW SIZE: the checks after a grow to SIZE. RAW is the
# reference content, extended with zeros here.
verify() {
    local n=$1 img=$2 raw=$3 size end out
    size=$(bytes "$4")
    truncate -s "$size" "$raw"
    [ "$(vsize "$img")" = "$size" ] && ok "$n: qemu-img info size $size" \
        || bad "$n: qemu-img info says $(vsize "$img"), expected $size"
    try "$n: qemu-img check" qemu-img check -q "$img"
    sync   # actual-size (st_blocks) settles once delayed allocation is done
    try "$n: diskkit info JSON equals qemu-img's" \
        diff <("$DISKKIT" info --output json "$img") <(qemu-img info --output json "$img")
    try "$n: diskkit map JSON equals qemu-img's" \
        diff <("$DISKKIT" map --output json "$img") <(qemu-img map --output json "$img")
    try "$n: diskkit check" "$DISKKIT" check -q "$img"
    try "$n: qemu-img compare with the extended raw copy" \
        qemu-img compare -q -f vmdk -F raw "$img" "$raw"
    try "$n: diskkit compare with the extended raw copy" \
        "$DISKKIT" compare -q -f vmdk -F raw "$img" "$raw"
    # Write past the old end (near the new end), read it back with both.
    end=$((size - 2 * 1048576))
    # (Outputs are captured before grep -q: with pipefail, an early grep
    # exit would fail the writer with SIGPIPE.)
    out=$(qemu-io -f vmdk -c "write -P 0x5a $end 1M" -c "read -P 0x5a $end 1M" "$img" 2>&1) || true
    if grep -q 'read 1048576/1048576' <<<"$out"; then ok "$n: qemu-io writes and reads the new area"
    else bad "$n: qemu-io write/read in the new area: $out"; fi
    qemu-io -f raw -c "write -P 0x5a $end 1M" "$raw" >/dev/null
    try "$n: diskkit reads qemu's write in the new area" \
        "$DISKKIT" compare -q -f vmdk -F raw "$img" "$raw"
    try "$n: qemu-img check after the write" qemu-img check -q "$img"
    local f
    for f in "$img" "${img%.vmdk}"-s*.vmdk; do
        [ -f "$f" ] && [ "$(head -c 4 "$f")" = KDMV ] || continue
        try "$n: GD/RGD and GTs of $(basename "$f")" sparse_dirs "$f"
    done
    if [ $HAVE_VMDKINFO = 1 ]; then
        out=$(vmdkinfo "$img" 2>&1) || true
        grep -q "Media size:.*($size bytes)" <<<"$out" && ok "$n: vmdkinfo media size" || bad "$n: vmdkinfo does not show $size bytes"
    fi
}

# grow NAME MAKER SUB SIZE GROWTHS...: makes an image with MAKER (qemu-img
# or diskkit), fills it, then grows it by each of GROWTHS ("+SIZE" or SIZE)
# in turn and verifies after each.
grow() {
    local n=$1 maker=$2 sub=$3 size=$4 g cur
    shift 4
    rm -rf "$n" && mkdir "$n"
    local img=$n/d.vmdk raw=$n/ref.raw
    if [ "$maker" = qemu-img ]; then
        qemu-img create -q -f vmdk -o subformat="$sub" "$img" "$size"
    else
        "$DISKKIT" create -q -f vmdk -o subformat="$sub" "$img" "$size" >/dev/null
    fi
    fill "$img" "$size"
    qemu-img convert -f vmdk -O raw "$img" "$raw"
    cur=$(bytes "$size")
    for g in "$@"; do
        case $g in +*) cur=$((cur + $(bytes "${g#+}")));; *) cur=$(bytes "$g");; esac
        if "$DISKKIT" resize "$img" "$g" >/dev/null; then ok "$n: resize $g"
        else bad "$n: resize $g"; continue; fi
        verify "$n $g" "$img" "$raw" "$cur"
    done
}

# 100 MiB uses 4 of the 128 GD entries of its GD sector: +28M stays in the
# last GT, +100M takes 3 entries of the slack, 5 GiB needs 160 entries, so
# GD and redundant GD move to the end of the file.
grow msparse qemu-img monolithicSparse 100M +28M +100M 5G
gd=$(od -An -tu8 -j56 -N8 msparse/d.vmdk | tr -d ' ')
[ "$gd" -gt 38 ] && ok "msparse: GD relocated to sector $gd" || bad "msparse: GD still at $gd"
grow mflat qemu-img monolithicFlat 64M +64M 3G
# 1.5 GiB: the last extent grows to 2 GiB, then new extent files follow.
grow 2gsparse qemu-img twoGbMaxExtentSparse 1536M +64M 3G
grow 2gflat qemu-img twoGbMaxExtentFlat 1536M +64M 3G 5G
grow dk-msparse diskkit monolithicSparse 100M +64M 5G
grow dk-2gsparse diskkit twoGbMaxExtentSparse 1536M 3G

# libvmdk reads the grown disk like qemu (vmdkmount, FUSE): the first
# 256 MiB (old data, first grows) and 64 MiB windows ending at each END
# (qemu-io's writes past the old ends), so that reads go through the
# relocated GD and the new extent files. Whole-disk cmp through FUSE is
# too slow on a loaded machine.
libvmdk_same() {
    local n=$1 rc=0 e w
    shift
    mkdir -p "$T/mnt"
    if ! timeout 30 vmdkmount "$n/d.vmdk" "$T/mnt" >/dev/null 2>&1; then
        echo "note: vmdkmount cannot mount here (no FUSE?): libvmdk content check skipped"
        return 0
    fi
    timeout 60 cmp -s -n 256M "$T/mnt/vmdk1" "$n/ref.raw" || rc=1
    for e in "$@"; do
        w=$(($(bytes "$e") - 67108864))
        timeout 60 cmp -s -i "$w:$w" -n 64M "$T/mnt/vmdk1" "$n/ref.raw" || rc=1
    done
    fusermount -u "$T/mnt" 2>/dev/null || umount "$T/mnt"
    [ $rc = 0 ] && ok "$n: libvmdk (vmdkmount) reads the same data" \
        || bad "$n: libvmdk reads different data"
}
if command -v vmdkmount >/dev/null && command -v fusermount >/dev/null; then
    libvmdk_same msparse 5G
    libvmdk_same 2gsparse 1600M 3G
else
    echo "note: vmdkmount/fusermount not installed: libvmdk content check skipped"
fi

# A crash just before the header write: everything else of the grow is on
# disk (new GTs, GD entries in the slack or a relocated GD), the header and
# embedded descriptor are still the old ones. Simulated by putting sectors
# 0..20 back: the old image must be intact, and growing again must work.
crash() {
    local n=$1 size=$2 to=$3
    rm -rf "$n" && mkdir "$n"
    qemu-img create -q -f vmdk "$n/d.vmdk" "$size"
    fill "$n/d.vmdk" "$size"
    qemu-img convert -f vmdk -O raw "$n/d.vmdk" "$n/ref.raw"
    dd if="$n/d.vmdk" of="$n/head" bs=512 count=21 status=none
    "$DISKKIT" resize "$n/d.vmdk" "$to" >/dev/null
    dd if="$n/head" of="$n/d.vmdk" bs=512 conv=notrunc status=none
    [ "$(vsize "$n/d.vmdk")" = "$(bytes "$size")" ] && ok "$n: old size after the crash" \
        || bad "$n: size $(vsize "$n/d.vmdk") after the crash"
    try "$n: qemu-img check after the crash" qemu-img check -q "$n/d.vmdk"
    try "$n: old data intact after the crash" \
        qemu-img compare -q -f vmdk -F raw "$n/d.vmdk" "$n/ref.raw"
    if "$DISKKIT" resize "$n/d.vmdk" "$to" >/dev/null; then ok "$n: grow again"
    else bad "$n: grow again after the crash"; fi
    verify "$n" "$n/d.vmdk" "$n/ref.raw" "$to"
}
crash crash-slack 100M 200M
crash crash-reloc 100M 5G

# New extents are named like the existing ones and listed in order.
if grep -q '^RW 2097152 FLAT "d-f003.vmdk" 0$' 2gflat/d.vmdk && [ -f 2gflat/d-f003.vmdk ] &&
   [ "$(stat -c %s 2gflat/d-f003.vmdk)" = 1073741824 ]; then ok "2gflat: d-f003.vmdk added"
else bad "2gflat: third extent line or file missing"; fi
grep -q '^RW 2097152 SPARSE "d-s002.vmdk"$' 2gsparse/d.vmdk \
    && ok "2gsparse: d-s002.vmdk added" || bad "2gsparse: second extent line missing"
# The geometry follows qemu-img create for the new size.
qemu-img create -q -f vmdk -o subformat=monolithicFlat ref3g.vmdk 3G
[ "$(grep -a cylinders ref3g.vmdk)" = "$(grep -a cylinders mflat/d.vmdk)" ] \
    && ok "mflat: cylinders as qemu-img create computes them" || bad "mflat: cylinders"

# ------------------------------------------------------------- refusals

# refuse NAME IMG FILES... -- ARGS...: resize fails with one error line and
# every file of the image stays byte-identical.
refuse() {
    local n=$1 f rc=0
    shift
    local files=()
    while [ "$1" != -- ]; do files+=("$1"); shift; done
    shift
    for f in "${files[@]}"; do cp --sparse=always "$f" "$f.orig"; done
    "$DISKKIT" resize "$@" >/dev/null 2>"$T/err" || rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l < "$T/err")" = 1 ]; then
        ok "$n: refused ($(cat "$T/err"))"
    else bad "$n: exit $rc, stderr: $(cat "$T/err")"; fi
    for f in "${files[@]}"; do
        cmp -s "$f" "$f.orig" && ok "$n: $f unchanged" || bad "$n: $f changed"
        rm -f "$f.orig"
    done
}

qemu-img convert -f raw -O vmdk -o subformat=streamOptimized msparse/ref.raw so.vmdk
refuse "streamOptimized" so.vmdk -- so.vmdk +64M
refuse "shrink (--shrink)" msparse/d.vmdk -- --shrink msparse/d.vmdk 64M
refuse "shrink (no --shrink)" msparse/d.vmdk -- msparse/d.vmdk -1M
refuse "read-only (-U)" msparse/d.vmdk -- -U msparse/d.vmdk +1M
mkdir ro && qemu-img create -q -f vmdk -o subformat=monolithicFlat ro/d.vmdk 64M
sed -i 's/^RW /RDONLY /' ro/d.vmdk
refuse "RDONLY extent (read-only image)" ro/d.vmdk ro/d-flat.vmdk -- ro/d.vmdk +1M
# A descriptor that fills its embedded area (20 sectors) cannot take the
# longer numbers of the grown one (+10 digits: more than a shorter CID saves).
qemu-img create -q -f vmdk full.vmdk 64M
desc=$(head -c 10240 full.vmdk | tail -c +513 | tr -d '\0')
pad=$((10240 - ${#desc} - 2))
{ printf '%s\n' "$desc"; printf '#%*s\n' "$((pad - 1))" '' | tr ' ' x; } |
    dd of=full.vmdk bs=512 seek=1 conv=notrunc status=none
try "full descriptor: still readable" qemu-img check -q full.vmdk
refuse "descriptor outgrows its embedded area" full.vmdk -- full.vmdk 10T
# (Small files from here on: cmp reads the holes of sparse files too.)
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentFlat st.vmdk 64M
qemu-io -f vmdk -c "write -P 0x44 0 64M" st.vmdk >/dev/null
refuse "shrink twoGbMaxExtentFlat" st.vmdk st-f001.vmdk -- --shrink st.vmdk 32M
# A stray file where the next extent goes: refused, not overwritten.
echo stray > st-f002.vmdk
refuse "extent name taken" st.vmdk st-f001.vmdk st-f002.vmdk -- st.vmdk +3G

echo "passed $passes, failed $fails"
[ $fails = 0 ] || exit 1
