#!/usr/bin/env bash
# bad-input.sh - the image commands on bad input: nonexistent files,
# directories, empty and non-image files, truncated images, missing backing
# files, backing loops, bad -o keys, bad sizes, bad options. Each must fail
# with one line "diskkit: CMD: ...", exit 1..127 (never a signal), leave
# its input byte-for-byte unchanged and leave no output file behind.
# The qcow2 cases run once the qcow2 driver is in the build.
. "$(dirname "$0")/lib.sh"
need qemu-img python3

# fails_cleanly INPUT CMD...: expect_clean_failure + INPUT unchanged +
# no $T/out* left behind.
fails_cleanly() {
    local input=$1 before=""
    shift
    [ -f "$input" ] && before=$(sha "$input")
    expect_clean_failure "$@"
    if [ -n "$before" ]; then
        assert_eq "$(sha "$input")" "$before" "input changed by: $*"
    fi
    if compgen -G "$T/out*" >/dev/null || compgen -G "$T/.out*" >/dev/null; then
        fail "output left behind by: $*"
    fi
}

# every read command on INPUT (with extra args before the file) fails cleanly
all_commands_fail() {
    local input=$1
    shift
    fails_cleanly "$input" "$DISKKIT" map "$@" "$input"
    fails_cleanly "$input" "$DISKKIT" convert "$@" -O raw "$input" "$T/out.raw"
    local rc=0
    "$DISKKIT" compare "$@" "$input" "$input" >/dev/null 2>&1 || rc=$?
    assert_eq "$rc" 2 "compare exit code on $input"
}

note "nonexistent file and directory"
for cmd in info map; do
    fails_cleanly /nonexistent "$DISKKIT" $cmd "$T/nonexistent"
    fails_cleanly "$T" "$DISKKIT" $cmd "$T"
done
all_commands_fail "$T/nonexistent"
mkdir "$T/dir"
all_commands_fail "$T/dir"
fails_cleanly /dev/null "$DISKKIT" convert -O raw "$T/nonexistent" "$T/out.raw"
fails_cleanly /dev/null "$DISKKIT" convert -O raw "$T/dir" "$T/out.raw"

note "output in a missing directory, unknown formats, bad options"
qemu-img create -q -f raw "$T/ok.raw" 1M
fails_cleanly "$T/ok.raw" "$DISKKIT" convert -O raw "$T/ok.raw" "$T/nodir/out.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" convert -O nosuch "$T/ok.raw" "$T/out.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" info -f nosuch "$T/ok.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" map --output=xml "$T/ok.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" info --bogus "$T/ok.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" convert -Z "$T/ok.raw" "$T/out.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" convert -O raw -o nosuchkey=1 "$T/ok.raw" "$T/out.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" convert -O raw -o preallocation=sometimes \
    "$T/ok.raw" "$T/out.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" convert -S 4x -O raw "$T/ok.raw" "$T/out.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" map --start-offset -5 "$T/ok.raw"
fails_cleanly "$T/ok.raw" "$DISKKIT" info

note "convert refuses to write over one of its inputs"
cp "$T/ok.raw" "$T/self.raw"; write_random "$T/self.raw" 0 64k
sha_self=$(sha "$T/self.raw")
expect_clean_failure "$DISKKIT" convert -f raw -O raw "$T/self.raw" "$T/self.raw"
expect_clean_failure "$DISKKIT" convert -n -f raw -O raw "$T/ok.raw" "$T/self.raw" "$T/self.raw"
ln -s self.raw "$T/alias.raw"
expect_clean_failure "$DISKKIT" convert -f raw -O raw "$T/self.raw" "$T/alias.raw"
assert_eq "$(sha "$T/self.raw")" "$sha_self" "input overwritten by convert"

note "create: bad sizes and bad -o keys leave nothing"
for size in 1Q -1 abc 1.5 8E 99999999999999999999 ''; do
    fails_cleanly /dev/null "$DISKKIT" create -f raw "$T/out.raw" $size
done
fails_cleanly /dev/null "$DISKKIT" create -f raw -o foo=bar "$T/out.raw" 1M
fails_cleanly /dev/null "$DISKKIT" create -f raw -o size "$T/out.raw"
fails_cleanly /dev/null "$DISKKIT" create -f nosuch "$T/out.raw" 1M
fails_cleanly /dev/null "$DISKKIT" create -f raw -b "$T/ok.raw" -F raw "$T/out.raw"

note "empty and non-image files are raw (as for qemu-img), never written"
: > "$T/empty"
head -c 2M /dev/urandom > "$T/junk"
sha_junk=$(sha "$T/junk")
"$DISKKIT" info "$T/empty" | grep -q '^virtual size: 0 B (0 bytes)$' || fail "empty info"
"$DISKKIT" info "$T/junk" | grep -q '^file format: raw$' || fail "junk info"
fails_cleanly "$T/junk" "$DISKKIT" convert -n "$T/ok.raw" "$T/junk"
grep -q 'probed as raw' "$T/.stderr" || fail "convert -n into a probed raw: wrong message"
assert_eq "$(sha "$T/junk")" "$sha_junk" "probed raw target unchanged"

if ! has_format qcow2; then
    echo "bad-input: generic cases passed (qcow2 cases wait for the qcow2 driver)"
    exit 0
fi

note "qcow2: empty, non-image, truncated"
all_commands_fail "$T/empty" -f qcow2
all_commands_fail "$T/junk" -f qcow2
fails_cleanly "$T/junk" "$DISKKIT" info -f qcow2 "$T/junk"
qemu-img create -q -f raw "$T/src.raw" 4M
qemu-io -f raw -c 'write -P 0x61 0 3M' "$T/src.raw" >/dev/null
qemu-img convert -q -f raw -O qcow2 "$T/src.raw" "$T/good.qcow2"
head -c 100 "$T/good.qcow2" > "$T/hdr.qcow2"
all_commands_fail "$T/hdr.qcow2"
fails_cleanly "$T/hdr.qcow2" "$DISKKIT" info "$T/hdr.qcow2"
head -c 300000 "$T/good.qcow2" > "$T/half.qcow2"
sha_half=$(sha "$T/half.qcow2")
for cmd in "map" "info" "convert -O raw"; do
    rc=0
    # shellcheck disable=SC2086
    "$DISKKIT" $cmd "$T/half.qcow2" ${cmd#convert*} $( [ "${cmd%% *}" = convert ] &&
        echo "$T/out.raw") >/dev/null 2>"$T/err" || rc=$?
    [ "$rc" -lt 128 ] || fail "$cmd on a truncated qcow2 crashed (exit $rc)"
    [ "$rc" -eq 0 ] || [ "$(wc -l < "$T/err")" -eq 1 ] || fail "$cmd: not one error line"
    rm -f "$T/out.raw"
done
assert_eq "$(sha "$T/half.qcow2")" "$sha_half" "truncated qcow2 unchanged"

note "qcow2: missing backing file, backing without format, backing loop"
qemu-img create -q -f qcow2 -u -b missing.qcow2 -F qcow2 "$T/orphan.qcow2" 1M
"$DISKKIT" info "$T/orphan.qcow2" | grep -q '^backing file: missing.qcow2' ||
    fail "info must show the (missing) backing file"
all_commands_fail "$T/orphan.qcow2"
fails_cleanly "$T/orphan.qcow2" "$DISKKIT" info --backing-chain "$T/orphan.qcow2"
qemu-img create -q -f qcow2 -u -b good.qcow2 "$T/nofmt.qcow2" 4M 2>/dev/null ||
    qemu-img create -q -f qcow2 -u -b good.qcow2 -F qcow2 "$T/nofmt.qcow2" 4M
if ! qemu-img info --output=json "$T/nofmt.qcow2" | grep -q backing-filename-format; then
    all_commands_fail "$T/nofmt.qcow2"
    grep -q 'rebase -u -F' "$T/.stderr" || fail "no-format error must say how to fix it"
fi
qemu-img create -q -f qcow2 -u -b loop2.qcow2 -F qcow2 "$T/loop1.qcow2" 1M
qemu-img create -q -f qcow2 -u -b loop1.qcow2 -F qcow2 "$T/loop2.qcow2" 1M
all_commands_fail "$T/loop1.qcow2"
fails_cleanly "$T/loop1.qcow2" "$DISKKIT" info --backing-chain "$T/loop1.qcow2"
qemu-img create -q -f qcow2 -u -b self.qcow2 -F qcow2 "$T/self.qcow2" 1M
all_commands_fail "$T/self.qcow2"

note "qcow2: bad create options"
fails_cleanly /dev/null "$DISKKIT" create -f qcow2 -o cluster_size=1000 "$T/out.qcow2" 1M
fails_cleanly /dev/null "$DISKKIT" create -f qcow2 -o compat=9 "$T/out.qcow2" 1M
fails_cleanly /dev/null "$DISKKIT" create -f qcow2 -o nosuch=1 "$T/out.qcow2" 1M
fails_cleanly "$T/good.qcow2" "$DISKKIT" convert -O qcow2 -o cluster_size=3k \
    "$T/good.qcow2" "$T/out.qcow2"
echo "bad-input: all passed"
