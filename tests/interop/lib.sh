# lib.sh - helpers shared by the interop tests. Source it from a test:
#     . "$(dirname "$0")/lib.sh"
# Provides: $DISKKIT, a scratch dir $T removed on exit, need/skip/fail,
# has_format, make_tree, make_ext4_image, write_random, write_zeros,
# assert_eq, assert_rc, expect_clean_failure, same_json_keys, sha.
# Exit codes follow tests/run-tests.sh: 0 pass, 77 skip (reason on the last
# line), anything else fails.
set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DISKKIT=${DISKKIT:-$SRCDIR/build/diskkit}
export LC_ALL=C

skip() { echo "$*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

# need TOOL...: skip the test when a tool is missing.
need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || skip "$t not installed"
    done
}

[ -x "$DISKKIT" ] || fail "diskkit binary not found at $DISKKIT (run make first)"

T=$(mktemp -d "${TMPDIR:-/tmp}/diskkit-test.XXXXXX")
cleanup() { rm -rf "$T"; }
trap cleanup EXIT

# has_format FMT: true when this diskkit build lists FMT under "Formats:".
has_format() {
    "$DISKKIT" --help | sed -n 's/^Formats://p' | tr ' ' '\n' | grep -qx "$1"
}
# need_format FMT: skip unless FMT is built in.
need_format() { has_format "$1" || skip "format $1 not in this build yet"; }

# make_tree DIR [KIB]: a directory of real files (docs, binaries, a little
# random data) of roughly KIB KiB (default 3072), deterministic per host.
make_tree() {
    local dir=$1 kib=${2:-3072}
    mkdir -p "$dir/docs" "$dir/bin" "$dir/data" "$dir/empty"
    cp -r /usr/share/doc/bash /usr/share/doc/coreutils "$dir/docs/" 2>/dev/null || true
    cp /bin/ls /bin/cat "$dir/bin/" 2>/dev/null || true
    printf 'hello from diskkit\n' > "$dir/hello.txt"
    seq 1 5000 > "$dir/data/numbers.txt"
    head -c $((kib * 1024 / 2)) /dev/urandom > "$dir/data/random.bin"
    ln -sf hello.txt "$dir/link"
}

# make_ext4_image OUT SIZE DIR: raw image OUT of SIZE holding ext4 made
# from the contents of DIR (mkfs.ext4 -d).
make_ext4_image() {
    need mkfs.ext4
    local out=$1 size=$2 dir=$3
    rm -f "$out"
    mkfs.ext4 -q -F -t ext4 -b 4096 -L diskkit -d "$dir" "$out" "$size" >/dev/null
}

# write_random IMG OFF LEN: LEN bytes of random data at OFF of the raw file
# IMG (OFF/LEN accept k/M/G suffixes). For other formats, build the content
# in a raw file and convert it with qemu-img.
write_random() {
    local img=$1 off len
    off=$(numfmt --from=iec "${2^^}")
    len=$(numfmt --from=iec "${3^^}")
    head -c "$len" /dev/urandom |
        dd of="$img" bs=64k seek="$off" oflag=seek_bytes conv=notrunc status=none
}

# write_pattern IMG FMT OFF LEN BYTE: a constant pattern via qemu-io.
write_pattern() { qemu-io -f "$2" -c "write -P $5 $3 $4" "$1" >/dev/null; }
# write_zeros IMG FMT OFF LEN: explicit zeros (allocated in raw files).
write_zeros() { qemu-io -f "$2" -c "write -P 0 $3 $4" "$1" >/dev/null; }

assert_eq() {   # ACTUAL EXPECTED MESSAGE
    [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}

assert_rc() {   # EXPECTED_RC CMD...
    local want=$1 rc=0
    shift
    "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "exit $rc (expected $want): $*"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# qemu_create ARGS...: qemu-img create -q ARGS, retried: qemu's LUKS PBKDF2
# calibration fails now and then on a busy machine ("Unable to get
# accurate CPU usage").
qemu_create() {
    local i
    for i in 1 2 3 4 5 6 7; do qemu-img create -q "$@" 2>/dev/null && return 0; done
    qemu-img create -q "$@"
}

# expect_clean_failure CMD...: the command fails with exit 1..127 (no
# signal) and prints exactly one line on stderr, starting "diskkit: ".
# A command that hangs is killed after 120 s (and so fails the test).
expect_clean_failure() {
    local rc=0 err="$T/.stderr"
    timeout -s KILL 120 "$@" >/dev/null 2>"$err" || rc=$?
    [ "$rc" -ne 0 ] || fail "expected failure, got success: $*"
    [ "$rc" -lt 128 ] || fail "killed by a signal (exit $rc): $*"
    [ "$(wc -l < "$err")" -eq 1 ] || { cat "$err" >&2; fail "expected one error line: $*"; }
    grep -q '^diskkit: ' "$err" || { cat "$err" >&2; fail "error line lacks 'diskkit: ': $*"; }
    if grep -qi 'sanitizer\|runtime error' "$err"; then cat "$err" >&2; fail "sanitizer: $*"; fi
    cat "$err"
}

# same_json_keys A.json B.json KEY...: the listed top-level keys have the
# same values (absent on both sides counts as equal). Objects may be lists
# of objects (--backing-chain): then every element is compared.
same_json_keys() {
    python3 - "$@" <<'EOF'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
keys = sys.argv[3:]
if not isinstance(a, list):
    a, b = [a], [b]
if len(a) != len(b):
    sys.exit("length %d != %d" % (len(a), len(b)))
for i, (x, y) in enumerate(zip(a, b)):
    for k in keys:
        if x.get(k) != y.get(k):
            sys.exit("[%d] key %s: %r != %r" % (i, k, x.get(k), y.get(k)))
EOF
}

# The info --output=json keys of the contract (INTERFACE.md).
INFO_KEYS="filename format virtual-size actual-size cluster-size dirty-flag backing-filename
      full-backing-filename backing-filename-format encrypted snapshots format-specific"

# map_same IMG FMT [map args]: diskkit's JSON map is identical to qemu-img's.
map_same() {
    local img=$1 fmt=$2
    shift 2
    "$DISKKIT" map --output=json -f "$fmt" "$@" "$img" > "$T/.dk.map"
    qemu-img map --output=json -f "$fmt" "$@" "$img" > "$T/.q.map"
    diff "$T/.q.map" "$T/.dk.map" || fail "map --output=json differs for $img $*"
}
# info_same IMG FMT [info args]: the contract keys of info JSON agree.
info_same() {
    local img=$1 fmt=$2
    shift 2
    sync   # actual-size is st_blocks: let delayed allocation settle first
    "$DISKKIT" info --output=json -f "$fmt" "$@" "$img" > "$T/.dk.json"
    qemu-img info --output=json -f "$fmt" "$@" "$img" > "$T/.q.json"
    same_json_keys "$T/.dk.json" "$T/.q.json" $INFO_KEYS ||
        fail "info json differs for $img $*"
}

# Run directly (tests/run-tests.sh runs every tests/interop/*.sh), this file
# tests its own helpers, so the other tests can rely on them.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    need mkfs.ext4 e2fsck python3
    make_tree "$T/tree" 256
    [ -s "$T/tree/data/random.bin" ] || fail "make_tree: no random file"
    make_ext4_image "$T/fs.raw" 8M "$T/tree"
    e2fsck -fn "$T/fs.raw" >/dev/null 2>&1 || fail "make_ext4_image: e2fsck failed"
    truncate -s 1M "$T/r.raw"
    write_random "$T/r.raw" 4k 8k
    [ "$(stat -c %s "$T/r.raw")" = 1048576 ] || fail "write_random changed the size"
    cmp -s -n 4096 "$T/r.raw" /dev/zero || fail "write_random wrote before OFF"
    cmp -s -i 4096 -n 8192 "$T/r.raw" /dev/zero && fail "write_random wrote nothing"
    echo '{"a": 1, "b": [1]}' > "$T/x.json"; echo '{"a": 1, "b": [2]}' > "$T/y.json"
    same_json_keys "$T/x.json" "$T/y.json" a c >/dev/null || fail "same_json_keys: false alarm"
    same_json_keys "$T/x.json" "$T/y.json" b 2>/dev/null && fail "same_json_keys missed b"
    ( expect_clean_failure sh -c 'echo "diskkit: x: y" >&2; exit 1' ) >/dev/null ||
        fail "expect_clean_failure rejected a clean failure"
    ( expect_clean_failure sh -c 'printf "diskkit: a\nb\n" >&2; exit 1' ) >/dev/null 2>&1 &&
        fail "expect_clean_failure accepted two lines"
    ( expect_clean_failure sh -c 'kill -SEGV $$' ) >/dev/null 2>&1 &&
        fail "expect_clean_failure accepted a crash"
    ( expect_clean_failure true ) >/dev/null 2>&1 && fail "expect_clean_failure accepted success"
    has_format raw || fail "has_format raw"
    has_format nosuchformat && fail "has_format nosuchformat"
    echo "lib.sh: helpers work"
fi
