#!/usr/bin/env bash
# vdi-grow.sh - growing VDI images past the room of their block map (the
# map moves into the first data blocks, formats/vdi/vdi-grow.c), with
# qemu-img as the oracle:
#  1. a qemu-made 64M dynamic VDI grown to 1G, then to 257G (second move);
#  2. a diskkit-made VDI, a qemu 1G VDI with a full map sector (the path
#     without hidden entries), a 64M VDI with one block grown to 257G (fewer
#     blocks in use than slots freed), static VDIs, block_extra 512, and
#     the refused case (map and data both full);
#  3. an interrupted grow left after step 2 (built here with python3) reads
#     the same, passes qemu-img check, and a later grow finishes cleanly;
#  4. SIGKILL between the steps (strace stretches each fdatasync) of grows
#     of 200M and 250M of data: the data is the old image's, qemu-img check
#     is clean (or, for the image without spare map entries, reports only
#     the documented count mismatch), and resizing again finishes cleanly.
# Every result: qemu-img check, qemu-img compare with the raw content
# extended by zeros, diskkit check.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3 timeout
need_format vdi
cd "$T"
DK() { timeout -s KILL 120 "$DISKKIT" "$@"; }
MiB=1048576

# hdr IMG: "offset_bmap offset_data disk_size blocks_in_image blocks_allocated"
hdr() {
    python3 - "$1" <<'EOF'
import struct, sys
b = open(sys.argv[1], 'rb').read(512)
bm, bd = struct.unpack_from('<II', b, 340)
size, bs, extra, n, alloc = struct.unpack_from('<QIIII', b, 368)
print(bm, bd, size, n, alloc)
EOF
}
field() { hdr "$1" | cut -d' ' -f"$2"; }

# verify IMG RAW WHAT: clean for both tools and equal to RAW (which is
# first extended with zeros to the image's virtual size).
verify() {
    local img=$1 raw=$2 what=$3 size
    qemu-img check -q -f vdi "$img" || fail "$what: qemu-img check"
    size=$(qemu-img info --output json -f vdi "$img" |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
    truncate -s "$size" "$raw"
    qemu-img compare -q -f vdi -F raw "$img" "$raw" || fail "$what: qemu-img compare"
    DK compare "$img" "$raw" >/dev/null || fail "$what: diskkit compare"
    DK check "$img" >/dev/null || fail "$what: diskkit check"
    note "ok: $what ($(hdr "$img")) [${SECONDS}s]"
}

# ------------------------------------------- 1. qemu-made dynamic 64M -> 1G
qemu-img create -q -f vdi q.vdi 64M
write_pattern q.vdi vdi 0 1M 0x11            # block 0: physical 0, moves
write_pattern q.vdi vdi 63M 1M 0x22          # the last block
write_pattern q.vdi vdi 10M 300k 0x33
write_pattern q.vdi vdi 40M 4k 0x44
qemu-img convert -f vdi -O raw q.vdi q.raw
sum0=$(sha q.raw)
DK resize q.vdi 1G >/dev/null || fail "resize 64M -> 1G"
assert_eq "$(field q.vdi 1)" 1024 "map moved to the old data offset"
assert_eq "$(qemu-img info -f vdi q.vdi | sed -n 's/^virtual size: \(.*\) (.*/\1/p')" \
    "1 GiB" "qemu-img info virtual size"
verify q.vdi q.raw "qemu 64M dynamic grown to 1G"
DK map --output json q.vdi > dk.map; qemu-img map --output json -f vdi q.vdi > q.map
cmp -s dk.map q.map || fail "map --output json differs from qemu-img's after the move"
# qemu-io writes past the old end and reads back; diskkit reads the same.
qemu-io -f vdi -c 'write -P 0x55 64M 1M' -c 'write -P 0x66 1023M 512k' q.vdi >/dev/null
qemu-io -f vdi -c 'read -P 0x55 64M 1M' -c 'read -P 0x66 1023M 512k' \
    -c 'read -P 0x11 0 1M' q.vdi | grep -q 'Pattern verification failed' &&
    fail "qemu-io read back after grow"
qemu-io -f raw -c 'write -P 0x55 64M 1M' -c 'write -P 0x66 1023M 512k' q.raw >/dev/null
verify q.vdi q.raw "qemu writes past the old end"
# Second move: 257G needs a 1.004 MiB map, more than the 1 MiB now free.
bm1=$(field q.vdi 2)
DK resize q.vdi 257G >/dev/null || fail "resize 1G -> 257G"
assert_eq "$(field q.vdi 1)" "$bm1" "second move: map at the previous data offset"
verify q.vdi q.raw "grown again to 257G (second move)"
truncate -s 64M q.raw
[ "$(head -c 64M q.raw | sha256sum | cut -d' ' -f1)" = "$sum0" ] || fail "raw reference"

# ------------------------------------------------- 2. other starting points
truncate -s 100M d.raw
write_random d.raw 0 1M; write_random d.raw 50M 3M; write_random d.raw 99M 1M
DK convert -f raw -O vdi d.raw d.vdi
DK resize d.vdi 64G >/dev/null || fail "resize diskkit VDI"
verify d.vdi d.raw "diskkit-made 100M grown to 64G"

# qemu 1G: 1024 entries fill the map's sectors, no spare entry.
qemu-img create -q -f vdi e.vdi 1G
write_pattern e.vdi vdi 0 1M 0x77; write_pattern e.vdi vdi 1023M 1M 0x78
write_pattern e.vdi vdi 500M 2M 0x79
qemu-img convert -f vdi -O raw e.vdi e.raw
DK resize e.vdi 2G >/dev/null || fail "resize full-sector map"
verify e.vdi e.raw "qemu 1G (map without spare entries) grown to 2G"

# One block in use, 2 slots freed for a 257G map.
qemu-img create -q -f vdi h.vdi 64M
write_pattern h.vdi vdi 5M 1M 0x5a
qemu-img convert -f vdi -O raw h.vdi h.raw
DK resize h.vdi 257G >/dev/null || fail "resize to 257G"
assert_eq "$(field h.vdi 4)" 263168 "257G block count"
verify h.vdi h.raw "one block, grown to 257G"

# Static: the new blocks are allocated and the file sized for them.
qemu-img create -q -f vdi -o static=on s.vdi 64M
qemu-io -f vdi -c 'write -P 0x21 0 64M' s.vdi >/dev/null
qemu-img convert -f vdi -O raw s.vdi s.raw
DK resize s.vdi 1G >/dev/null || fail "resize static"
read -r bm bd sz n alloc <<<"$(hdr s.vdi)"
assert_eq "$alloc/$n" "1024/1024" "static: every block allocated"
assert_eq "$(stat -c %s s.vdi)" $((bd + 1024 * MiB)) "static file size"
verify s.vdi s.raw "static 64M grown to 1G"
DK map --output json s.vdi > dk.map; qemu-img map --output json -f vdi s.vdi > q.map
cmp -s dk.map q.map || fail "static: map --output json differs from qemu-img's"
DK create -f vdi -o static=on s2.vdi 32M >/dev/null
qemu-io -f vdi -c 'write -P 0x22 31M 1M' s2.vdi >/dev/null
truncate -s 32M s2.raw; qemu-io -f raw -c 'write -P 0x22 31M 1M' s2.raw >/dev/null
DK resize s2.vdi 100M >/dev/null || fail "static grow in place"
verify s2.vdi s2.raw "diskkit static 32M grown in place to 100M"
DK resize s2.vdi 4G >/dev/null || fail "resize diskkit static"
verify s2.vdi s2.raw "diskkit static grown to 4G"

# block_extra 512 (VirtualBox may reserve bytes before each block; qemu
# ignores the field, so only diskkit reads it): the move copies whole
# strides. Built with python3 from a raw file: blocks 0, 5 and 63.
truncate -s 64M x.raw
write_random x.raw 0 1M; write_random x.raw 5M 1M; write_random x.raw 63M 1M
qemu-img create -q -f vdi x.vdi 64M
python3 - x.vdi x.raw <<'EOF'
import struct, sys
f = open(sys.argv[1], 'r+b'); raw = open(sys.argv[2], 'rb').read()
b = bytearray(f.read(512)); bm, bd = struct.unpack_from('<II', b, 340)
bs, extra = 1 << 20, 512
for idx, blk in enumerate((0, 5, 63)):
    f.seek(bm + blk * 4); f.write(struct.pack('<I', idx))
    f.seek(bd + idx * (bs + extra)); f.write(b'\xee' * extra + raw[blk * bs:(blk + 1) * bs])
struct.pack_into('<I', b, 380, extra); struct.pack_into('<I', b, 388, 3)
f.seek(0); f.write(b); f.close()
EOF
DK compare x.vdi x.raw >/dev/null || fail "block_extra fixture reads back"
DK resize x.vdi 1G >/dev/null || fail "resize with block_extra"
truncate -s 1G x.raw
DK compare x.vdi x.raw >/dev/null || fail "block_extra: data after the move"
DK check x.vdi >/dev/null || fail "block_extra: diskkit check after the move"
qemu-img check -q -f vdi x.vdi || fail "block_extra: qemu-img check after the move"
assert_eq "$(field x.vdi 2)" $((1024 + 1048576 + 512)) "block_extra: data offset moved a stride"
note "ok: block_extra 512 grown to 1G ($(hdr x.vdi))"

# Full map sector and full data: no safe intermediate state -> refused,
# the file untouched.
qemu-img create -q -f vdi -o static=on f.vdi 128M
before=$(sha f.vdi)
expect_clean_failure "$DISKKIT" resize f.vdi 1G
assert_eq "$(sha f.vdi)" "$before" "refused grow leaves the file unchanged"

# --------------------------------- 3. a grow interrupted after step 2 (built)
# Step 1 (block at slot 0 copied to slot ba) and step 2 (dummy entry 64 ->
# the copy, header 65 blocks, ba + 1 allocated) of a 64M image.
qemu-img create -q -f vdi i.vdi 64M
write_pattern i.vdi vdi 7M 1M 0x31; write_pattern i.vdi vdi 2M 1M 0x32
qemu-img convert -f vdi -O raw i.vdi i.raw
python3 - i.vdi <<'EOF'
import struct, sys
f = open(sys.argv[1], 'r+b'); b = bytearray(f.read(512))
bm, bd = struct.unpack_from('<II', b, 340)
n, alloc = struct.unpack_from('<II', b, 384)
bs = 1 << 20
f.seek(bd); blk = f.read(bs); f.seek(bd + alloc * bs); f.write(blk)
f.seek(bm + n * 4); f.write(struct.pack('<I', alloc))
struct.pack_into('<II', b, 384, n + 1, alloc + 1); f.seek(0); f.write(b); f.close()
EOF
qemu-img check -q -f vdi i.vdi || fail "built step-2 state: qemu-img check"
qemu-img compare -q -f vdi -F raw i.vdi i.raw || fail "built step-2 state: compare"
DK resize i.vdi 100M >/dev/null || fail "in-place grow over a hidden entry"
verify i.vdi i.raw "grow over a hidden entry (in place) reads zeros there"
cp i.vdi i2.vdi; cp i.raw i2.raw
DK resize i.vdi 1G >/dev/null || fail "moving grow after the hidden entry"
verify i.vdi i.raw "moving grow after an interrupted one"

# ----------------------------------------------- 4. SIGKILL during the grow
# A 200M image full of data (spare map entries: the hidden-entry path) and
# 250M of data in a 256M image (no spare entry: the path without them),
# grown to 1T: a 4 MiB map, 4 blocks moved. qemu-img compare would
# walk the whole 1T, so the data is read back with qemu-img dd over the old
# size (the rest is checked by diskkit compare, which uses block status).
same_head() {   # IMG RAW MB
    rm -f head.raw
    qemu-img dd -f vdi -O raw if="$1" of=head.raw bs=1M count="$3" 2>/dev/null &&
        cmp -s head.raw "$2"
}
# strace can stretch every fdatasync by 100 ms, so the kills land between
# the steps of vdi-grow.c (each ends with one) instead of at random.
slow=()
if command -v strace >/dev/null &&
   strace -o /dev/null -e trace=fdatasync -e inject=fdatasync:delay_exit=1 true 2>/dev/null; then
    slow=(strace -o /dev/null -e trace=fdatasync -e inject=fdatasync:delay_exit=100000)
    delays="0.16 0.36 0.46 0.56 0.66"
else
    delays="0.002 0.01 0.02 0.03 0.05 0.08 0.12 0.2"
fi
mismatches=0
qcheck() {   # IMG SPARE
    local out
    out=$(qemu-img check -f vdi "$1" 2>&1) && return 0
    [ "$2" = no ] || { echo "$out"; return 1; }
    grep -q '^ERROR: allocated blocks mismatch' <<<"$out" &&
        ! grep '^ERROR' <<<"$out" | grep -qv 'allocated blocks mismatch' &&
        grep -q '^1 errors were found' <<<"$out" || { echo "$out"; return 1; }
    mismatches=$((mismatches + 1))
}
kills=0 runs=0 states=""
for sizes in 200:200 256:250; do
    mb=${sizes%:*}
    spare=yes; [ "$mb" = 256 ] && spare=no
    truncate -s ${mb}M k.raw
    write_random k.raw 0 ${sizes#*:}M
    qemu-img convert -f raw -O vdi k.raw k0.vdi
    for delay in $delays; do
        cp --sparse=always k0.vdi k.vdi
        sync k.vdi
        runs=$((runs + 1))
        "${slow[@]}" "$DISKKIT" resize k.vdi 1T >/dev/null 2>&1 & pid=$!
        sleep "$delay"
        victim=$pid
        [ ${#slow[@]} = 0 ] || victim=$(pgrep -P "$pid" || echo "$pid")
        kill -KILL "$victim" 2>/dev/null && kills=$((kills + 1))
        wait "$pid" 2>/dev/null || true      # gone, with its locks, before we look
        what="kill ${mb}M at ${delay}s"
        # Without spare entries the count is raised before the entries
        # move (vdi-grow.c step 2), which qemu-img check calls a mismatch:
        # accepted there, and only that, as it loses no data.
        qcheck k.vdi "$spare" || fail "$what: qemu-img check"
        same_head k.vdi k.raw "$mb" || fail "$what: data differs from the old image"
        read -r bm bd sz n alloc <<<"$(hdr k.vdi)"
        case $sz in
            $((mb * MiB))) st=old ;; 1099511627776) st=new ;;
            *) fail "$what: disk size $sz" ;;
        esac
        [ "$st" = old ] && [ "$n" -gt "$mb" ] && st=hidden-entries
        # diskkit check: 3 (leaks) for copies not yet referenced or, without
        # hidden entries, front blocks no longer referenced; never corrupt.
        rc=0; DK check k.vdi >/dev/null 2>&1 || rc=$?
        [ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "$what: diskkit check exit $rc"
        [ "$rc" = 3 ] && st="$st+leaks"
        states="$states $st"
        DK resize k.vdi 1T >/dev/null || fail "$what: resuming the grow"
        qemu-img check -q -f vdi k.vdi || fail "$what: qemu-img check after resuming"
        DK check k.vdi >/dev/null || fail "$what: diskkit check after resuming"
        same_head k.vdi k.raw "$mb" && DK compare k.vdi k.raw >/dev/null ||
            fail "$what: data after resuming"
    done
done
note "ok: $kills of $runs grows killed, $mismatches count mismatches; states seen:$(echo $states | tr ' ' '\n' |
    sort | uniq -c | tr -s '\n ' ' ')"
echo "PASS"
