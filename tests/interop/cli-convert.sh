#!/usr/bin/env bash
# cli-convert.sh - diskkit convert between raw images with real content
# (ext4 from mkfs.ext4 -d, random and zero regions), checked with qemu-img:
# raw->raw, several inputs concatenated, -S sparse output (st_blocks), -n,
# --target-is-zero, -p, -m/-W, and that failures leave nothing behind.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io mkfs.ext4 python3

make_tree "$T/tree" 2048
make_ext4_image "$T/disk.raw" 24M "$T/tree"
truncate -s 40M "$T/disk.raw"
write_random "$T/disk.raw" 26M 1M               # random data past the fs
write_zeros "$T/disk.raw" raw 30M 2M              # explicit (allocated) zeros
write_random "$T/disk.raw" 39M 4k
sha_in=$(sha "$T/disk.raw")

note "raw -> raw"
"$DISKKIT" convert -f raw -O raw "$T/disk.raw" "$T/out.raw"
qemu-img compare -q -f raw -F raw "$T/disk.raw" "$T/out.raw" || fail "raw->raw differs"
assert_eq "$(stat -c %s "$T/out.raw")" "$(stat -c %s "$T/disk.raw")" "output size"
assert_eq "$(sha "$T/disk.raw")" "$sha_in" "input unchanged"
# the explicit zeros became a hole: less allocated than the input
in_blocks=$(stat -c %b "$T/disk.raw"); out_blocks=$(stat -c %b "$T/out.raw")
[ "$out_blocks" -le $((in_blocks - 4096)) ] ||
    fail "-S default: zeros not sparse ($out_blocks vs $in_blocks blocks)"
# same map as qemu-img convert's output
qemu-img convert -f raw -O raw "$T/disk.raw" "$T/q.raw"
diff <(qemu-img map --output=json -f raw "$T/out.raw") \
     <(qemu-img map --output=json -f raw "$T/q.raw") >/dev/null ||
    note "allocation differs from qemu-img's output (content is identical)"

note "-S 0 writes everything"
"$DISKKIT" convert -S 0 -f raw -O raw "$T/disk.raw" "$T/full.raw"
qemu-img compare -q -f raw -F raw "$T/disk.raw" "$T/full.raw" || fail "-S 0 content"
[ $(($(stat -c %b "$T/full.raw") * 512)) -ge $((40 << 20)) ] || fail "-S 0: not fully allocated"

note "-S 1M keeps small zero runs as data"
"$DISKKIT" convert -S 1M -f raw -O raw "$T/disk.raw" "$T/s1m.raw"
qemu-img compare -q -f raw -F raw "$T/disk.raw" "$T/s1m.raw" || fail "-S 1M content"
[ "$(stat -c %b "$T/s1m.raw")" -ge "$out_blocks" ] || fail "-S 1M more sparse than -S 4k"
expect_clean_failure "$DISKKIT" convert -S 1000 -f raw -O raw "$T/disk.raw" "$T/bad.raw"

note "several inputs are concatenated"
# 1.5 KiB: not a multiple of the 4 KiB sparse granule
truncate -s 1536 "$T/odd.raw"; printf 'odd' | dd of="$T/odd.raw" conv=notrunc status=none
"$DISKKIT" convert -f raw -O raw "$T/odd.raw" "$T/disk.raw" "$T/odd.raw" "$T/cat.raw"
qemu-img convert -f raw -O raw "$T/odd.raw" "$T/disk.raw" "$T/odd.raw" "$T/qcat.raw"
cmp "$T/cat.raw" "$T/qcat.raw" || fail "concatenation differs from qemu-img's"
# byte-odd sizes (qemu-img pads each input to 512): exact concatenation,
# the raw output rounded up to whole sectors as qemu-img creates it
truncate -s 1001 "$T/b1.raw"; printf 'x' | dd of="$T/b1.raw" bs=1 seek=1000 conv=notrunc status=none
"$DISKKIT" convert -f raw -O raw "$T/b1.raw" "$T/b1.raw" "$T/b2.raw"
cat "$T/b1.raw" "$T/b1.raw" > "$T/b2.want"; truncate -s 2048 "$T/b2.want"
cmp "$T/b2.want" "$T/b2.raw" || fail "odd-size concatenation"

note "-m 4 -W (out of order) gives the same content"
"$DISKKIT" convert -m 4 -W -f raw -O raw "$T/disk.raw" "$T/w.raw"
cmp "$T/w.raw" "$T/out.raw" || fail "-W output differs"
expect_clean_failure "$DISKKIT" convert -m 17 -f raw -O raw "$T/disk.raw" "$T/bad.raw"

note "-n writes into an existing target (zeros written unless --target-is-zero)"
qemu-img create -q -f raw "$T/pre.raw" 40M
write_pattern "$T/pre.raw" raw 0 40M 0xee
"$DISKKIT" convert -n -f raw -O raw "$T/disk.raw" "$T/pre.raw"
qemu-img compare -q -f raw -F raw "$T/disk.raw" "$T/pre.raw" || fail "-n content"
qemu-img create -q -f raw "$T/big.raw" 64M
write_pattern "$T/big.raw" raw 50M 1M 0x77
"$DISKKIT" convert -n --target-is-zero -f raw -O raw "$T/disk.raw" "$T/big.raw"
assert_eq "$(stat -c %s "$T/big.raw")" $((64 << 20)) "-n keeps the target size"
qemu-img compare -q -f raw -F raw "$T/disk.raw" "$T/big.raw" &&
    fail "big.raw should still hold its own data past 40M"
cmp -n $((40 << 20)) "$T/disk.raw" "$T/big.raw" || fail "-n --target-is-zero content"
expect_clean_failure "$DISKKIT" convert --target-is-zero -f raw -O raw "$T/disk.raw" "$T/x.raw"
qemu-img create -q -f raw "$T/small.raw" 1M
sha_small=$(sha "$T/small.raw")
expect_clean_failure "$DISKKIT" convert -n -f raw -O raw "$T/disk.raw" "$T/small.raw"
assert_eq "$(sha "$T/small.raw")" "$sha_small" "too-small -n target untouched"

note "-p prints progress on stderr, -q prints nothing"
"$DISKKIT" convert -p -f raw -O raw "$T/disk.raw" "$T/p.raw" 2>"$T/p.err" >/dev/null
grep -q '(100.00/100%)' "$T/p.err" || fail "-p: no final progress line"
[ -z "$("$DISKKIT" convert -q -f raw -O raw "$T/disk.raw" "$T/q2.raw" 2>&1)" ] || fail "-q not quiet"

note "an existing output is replaced atomically; failures leave nothing"
echo old > "$T/exists.raw"
"$DISKKIT" convert -f raw -O raw "$T/odd.raw" "$T/exists.raw"
cmp "$T/exists.raw" "$T/odd.raw" || fail "existing output not replaced"
expect_clean_failure "$DISKKIT" convert -f raw -O raw "$T/nonexistent" "$T/none.raw"
[ ! -e "$T/none.raw" ] || fail "output left after a failed open"
expect_clean_failure "$DISKKIT" convert -c -f raw -O raw "$T/disk.raw" "$T/c.raw"
[ ! -e "$T/c.raw" ] || fail "output left after a failed copy"
expect_clean_failure "$DISKKIT" convert -f raw -O nosuchfmt "$T/disk.raw" "$T/n.raw"
expect_clean_failure "$DISKKIT" convert -B "$T/disk.raw" -f raw -O raw "$T/disk.raw" "$T/b.raw"
ls -a "$T" | grep -q '\.diskkit-' && fail "temporary file left behind"

note "SIGTERM during convert removes the temporary output"
truncate -s 2G "$T/huge.raw"
write_random "$T/huge.raw" 0 1M
( "$DISKKIT" convert -S 0 -f raw -O raw "$T/huge.raw" "$T/huge.out" & echo $! > "$T/pid"; wait ) \
    2>/dev/null || true &
sleep 0.3
kill -TERM "$(cat "$T/pid")" 2>/dev/null || true
wait
[ ! -e "$T/huge.out" ] || fail "output exists after SIGTERM"
ls -a "$T" | grep -q '\.diskkit-' && fail "temporary file left after SIGTERM"
rm -f "$T/huge.raw"

note "raw outputs are whole sectors, as qemu-img makes them"
head -c 1000 /dev/urandom > "$T/odd.bin"
"$DISKKIT" convert -f raw -O raw "$T/odd.bin" "$T/odd.dk.raw" || fail "convert of a 1000-byte input"
qemu-img convert -f raw -O raw "$T/odd.bin" "$T/odd.q.raw"
[ "$(stat -c %s "$T/odd.dk.raw")" = "$(stat -c %s "$T/odd.q.raw")" ] || fail "raw output size differs from qemu-img's"
"$DISKKIT" create -q -f raw "$T/c1000.raw" 1000
[ "$(stat -c %s "$T/c1000.raw")" = 1024 ] || fail "create -f raw 1000 is not 1024 bytes like qemu-img's"

note "-o help and --help"
"$DISKKIT" convert -O raw -o help | grep -q '^Supported raw options:' || fail "-o help"
"$DISKKIT" convert --help | grep -q '^Usage: diskkit convert' || fail "--help"
echo "cli-convert: all passed"
