#!/usr/bin/env bash
# imgcmds-raw.sh - check, resize, measure, dd and snapshot on raw images,
# compared with qemu-img doing the same thing on the same input.
set -u
: "${DISKKIT:?}"
command -v qemu-img >/dev/null || { echo "qemu-img not installed"; exit 77; }
command -v qemu-io >/dev/null || { echo "qemu-io not installed"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_rc() {   # expected-rc description command...
    local want=$1 what=$2; shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    [ "$rc" = "$want" ] || { fail "$what: exit $rc, want $want"; cat out.txt err.txt; }
}

# A sparse raw input with a few data runs, including an unaligned tail.
qemu-img create -q -f raw in.raw 5000000
qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 300k' \
        -c 'write -P 0x33 4999000 1000' in.raw >/dev/null

# --- check: raw has no check (exit 63, qemu-img's message) -----------------
expect_rc 63 "check raw" "$DISKKIT" check -f raw in.raw
grep -q "^diskkit: check: This image format does not support checks$" err.txt ||
    fail "check raw message: $(cat err.txt)"
expect_rc 63 "check raw json" "$DISKKIT" check -f raw --output json in.raw
expect_rc 1 "check missing file" "$DISKKIT" check nosuch.img
expect_rc 1 "check bad -r" "$DISKKIT" check -r everything -f raw in.raw

# --- resize: absolute, relative, shrink needs --shrink ---------------------
for op in "+1M" "6M" "+513"; do
    cp in.raw a.raw; cp in.raw b.raw
    expect_rc 0 "resize $op" "$DISKKIT" resize -f raw a.raw "$op"
    grep -qx "Image resized." out.txt || fail "resize $op output: $(cat out.txt)"
    [ "$(cat out.txt)" = "Image resized." ] || fail "resize output"
    qemu-img resize -q -f raw --shrink b.raw "$op"
    cmp -s a.raw b.raw || fail "resize $op differs from qemu-img"
done
cp in.raw a.raw
expect_rc 1 "shrink without --shrink" "$DISKKIT" resize -f raw a.raw -- -1M
grep -q "Use the --shrink option" err.txt || fail "shrink message: $(cat err.txt)"
cmp -s a.raw in.raw || fail "refused shrink modified the image"
cp in.raw b.raw
expect_rc 0 "shrink -1M" "$DISKKIT" resize -f raw --shrink a.raw -1M
qemu-img resize -q -f raw --shrink b.raw -- -1M
cmp -s a.raw b.raw || fail "shrink differs from qemu-img"
expect_rc 1 "resize to negative" "$DISKKIT" resize -f raw --shrink a.raw -- -100M
expect_rc 1 "resize probed raw" "$DISKKIT" resize a.raw 10M
expect_rc 0 "resize -q" "$DISKKIT" resize -q -f raw a.raw 6M
[ -s out.txt ] && fail "resize -q printed: $(cat out.txt)"
cp in.raw a.raw
expect_rc 0 "resize falloc" "$DISKKIT" resize -f raw --preallocation falloc a.raw 8M
[ "$(stat -c %s a.raw)" = 8388608 ] || fail "resize falloc size"

# --- measure: raw target, from --size and from an image --------------------
for args in "--size 1000" "--size 1G" "-f raw in.raw" "--size 0"; do
    for out in human json; do
        # shellcheck disable=SC2086
        "$DISKKIT" measure -O raw $args --output $out >a.txt 2>&1
        # shellcheck disable=SC2086
        qemu-img measure -O raw $args --output $out >b.txt 2>&1
        cmp -s a.txt b.txt || { fail "measure $args $out"; diff a.txt b.txt; }
    done
done
"$DISKKIT" measure --size 1M >a.txt; qemu-img measure --size 1M >b.txt
cmp -s a.txt b.txt || fail "measure default -O raw"
expect_rc 1 "measure size and file" "$DISKKIT" measure --size 1M -f raw in.raw
expect_rc 1 "measure nothing" "$DISKKIT" measure -O raw
expect_rc 1 "measure unknown fmt" "$DISKKIT" measure -O nosuchfmt --size 1M

# --- dd: several bs/count/skip, same bytes and size as qemu-img dd ----------
for ops in "bs=512" "bs=64k" "bs=1000" "bs=64k count=3" "bs=64k count=3 skip=1" \
           "bs=4k skip=100" "bs=1M count=2 skip=1" "bs=1k count=1k" "bs=3 count=7 skip=2" \
           "bs=1M skip=4" "bs=1M skip=5" "count=100 skip=50" "bs=1M skip=30"; do
    rm -f a.out b.out
    # shellcheck disable=SC2086
    "$DISKKIT" dd -f raw if=in.raw of=a.out $ops 2>a.err; ra=$?
    # shellcheck disable=SC2086
    qemu-img dd -f raw if=in.raw of=b.out $ops 2>b.err; rb=$?
    [ "$ra" = "$rb" ] || fail "dd $ops: exit $ra vs qemu $rb"
    cmp -s a.out b.out || fail "dd $ops: output differs"
    [ "$(stat -c %s a.out)" = "$(stat -c %s b.out)" ] || fail "dd $ops: size"
done
# sparse output: the holes of the input stay holes
"$DISKKIT" dd -f raw if=in.raw of=a.out bs=1M
[ "$(stat -c %b a.out)" -lt 2048 ] || fail "dd output not sparse: $(stat -c %b a.out) blocks"
expect_rc 1 "dd seek" "$DISKKIT" dd -f raw if=in.raw of=x.out seek=1
grep -q "unrecognized operand seek" err.txt || fail "dd seek message"
[ -e x.out ] && fail "dd left an output after an error"
expect_rc 1 "dd bs=0" "$DISKKIT" dd -f raw if=in.raw of=x.out bs=0
expect_rc 1 "dd no of" "$DISKKIT" dd -f raw if=in.raw
expect_rc 1 "dd bad count" "$DISKKIT" dd -f raw if=in.raw of=x.out count=-1
expect_rc 1 "dd missing input" "$DISKKIT" dd if=nosuch of=x.out
[ -e x.out ] && fail "dd left an output after an error"

# --- snapshot on raw: empty list, create refused --------------------------
expect_rc 0 "snapshot -l raw" "$DISKKIT" snapshot -l in.raw
[ -s out.txt ] && fail "snapshot -l raw printed: $(cat out.txt)"
expect_rc 1 "snapshot -c raw" "$DISKKIT" snapshot -f raw -c s1 in.raw
grep -q "^diskkit: snapshot: Could not create snapshot 's1'" err.txt || fail "snapshot msg"
expect_rc 1 "snapshot no action" "$DISKKIT" snapshot in.raw
expect_rc 1 "amend raw" "$DISKKIT" amend -f raw -o size=1M in.raw
expect_rc 1 "commit raw" "$DISKKIT" commit -f raw in.raw
grep -q "does not have a backing file" err.txt || fail "commit raw message"
for c in check resize snapshot amend rebase commit measure dd; do
    expect_rc 0 "$c --help" "$DISKKIT" "$c" --help
    grep -q "^Usage: diskkit $c" out.txt || fail "$c --help text"
done
[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all imgcmds raw checks passed"
