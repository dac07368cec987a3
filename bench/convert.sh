#!/usr/bin/env bash
# convert.sh - diskkit convert vs qemu-img convert on the benchmark corpus
# (image A: 4 GiB ext4 disk, ~1.8 GiB of data), side by side in one run.
#
#   CORPUS=/tmp/diskkit-bench-corpus OUT=/dev/shm RUNS=3 bench/convert.sh
#
# Cases: raw->qcow2, qcow2->raw (the targets of the performance goal),
# raw->raw, and qcow2->raw and raw->raw with -C (copy offloading) for both. Inputs are pre-read into the page cache, outputs go to tmpfs
# (OUT, default /dev/shm) and are deleted before each run; each tool's best
# wall time of RUNS runs is reported with its CPU time (user+sys) and peak
# RSS (GNU time); CPU time is the steadier figure on a busy machine. Every
# output is checked with qemu-img compare. Prints a markdown table.
# The corpus is built with make-corpus.sh when missing (1-2 min, ~14 GiB).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-build}
DISKKIT=${DISKKIT:-$SRCDIR/$BUILD/diskkit}
CORPUS=${CORPUS:-/tmp/diskkit-bench-corpus}
OUT=$(mktemp -d "${OUT:-/dev/shm}/diskkit-bench.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
RUNS=${RUNS:-3}
export LC_ALL=C

die() { echo "convert.sh: $*" >&2; exit 1; }
[ -x "$DISKKIT" ] || die "no diskkit binary at $DISKKIT (run make)"
command -v qemu-img >/dev/null || die "qemu-img is needed"
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is needed: apt-get install time"

if [ ! -f "$CORPUS/A.raw" ] || [ ! -f "$CORPUS/A.qcow2" ]; then
    mk=""
    for c in "${MAKE_CORPUS:-}" "$SRCDIR/../shared/bench/make-corpus.sh" \
             /work/shared/bench/make-corpus.sh; do
        [ -n "$c" ] && [ -f "$c" ] && { mk=$c; break; }
    done
    [ -n "$mk" ] || die "corpus missing and make-corpus.sh not found (set MAKE_CORPUS)"
    echo "building the corpus in $CORPUS with $mk ..." >&2
    CORPUS="$CORPUS" bash "$mk" >&2
fi

has_qcow2() { "$DISKKIT" --help | sed -n 's/^Formats://p' | grep -qw qcow2; }

# timed OUTFILE CMD...: runs CMD, prints "seconds peak_kib cpu_seconds"
timed() {
    local out=$1
    shift
    rm -f "$out"
    sync
    /usr/bin/time -f '%e %M %U %S' -o "$OUT/.bench-time" "$@" >/dev/null
    awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$OUT/.bench-time"
}

# best OUTFILE CMD...: best wall time, and the RSS and CPU time of that run
best() {
    local out=$1 b="" brss="" bcpu="" t rss cpu
    shift
    for ((i = 0; i < RUNS; i++)); do
        read -r t rss cpu < <(timed "$out" "$@")
        if [ -z "$b" ] || awk -v a="$t" -v b="$b" 'BEGIN { exit !(a < b) }'; then
            b=$t brss=$rss bcpu=$cpu
        fi
    done
    echo "$b $brss $bcpu"
}

row() {   # NAME IN IN_FMT OUT_FMT [FLAG...]: FLAGs go to both tools
    local name=$1 in=$2 ifmt=$3 ofmt=$4
    shift 4
    local -a fl=("$@")
    cat "$in" > /dev/null                       # page cache
    local dko="$OUT/bench-dk.$ofmt" qo="$OUT/bench-q.$ofmt"
    read -r dt drss dcpu < <(best "$dko" "$DISKKIT" convert "${fl[@]}" -f "$ifmt" -O "$ofmt" "$in" "$dko")
    read -r qt qrss qcpu < <(best "$qo" qemu-img convert "${fl[@]}" -f "$ifmt" -O "$ofmt" "$in" "$qo")
    local ok=identical
    qemu-img compare -q -f "$ifmt" -F "$ofmt" "$in" "$dko" || ok=DIFFERENT
    [ "$ofmt" = qcow2 ] && { qemu-img check -q "$dko" || ok="$ok, check FAILED"; }
    local dsize qsize
    dsize=$(du -m "$dko" | cut -f1); qsize=$(du -m "$qo" | cut -f1)
    rm -f "$dko" "$qo"
    printf '| %s | %.2f | %.2f | %.2f | %.2f / %.2f | %.1f | %.1f | %s / %s | %s |\n' \
        "$name" "$dt" "$qt" "$(awk -v a="$dt" -v b="$qt" 'BEGIN { print a / b }')" "$dcpu" "$qcpu" \
        "$(awk -v k="$drss" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$qrss" 'BEGIN { print k / 1024 }')" "$dsize" "$qsize" "$ok"
}

echo "diskkit convert vs qemu-img convert ($(qemu-img --version | head -1)); corpus $CORPUS;"
echo "output on $OUT; best of $RUNS; $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| case | diskkit s | qemu-img s | ratio | CPU s (dk / qemu) | diskkit RSS MiB | qemu-img RSS MiB | output MiB (dk / qemu) | output check |"
echo "|---|---|---|---|---|---|---|---|---|"
if has_qcow2; then
    row "raw -> qcow2" "$CORPUS/A.raw" raw qcow2
    row "qcow2 -> raw" "$CORPUS/A.qcow2" qcow2 raw
else
    echo "| raw -> qcow2 | n/a | | | | | | | qcow2 driver not in this build |"
    echo "| qcow2 -> raw | n/a | | | | | | | qcow2 driver not in this build |"
fi
row "raw -> raw" "$CORPUS/A.raw" raw raw
# -C: copy offloading (copy_file_range) into a raw output, both tools.
if has_qcow2; then
    row "qcow2 -> raw, -C" "$CORPUS/A.qcow2" qcow2 raw -C
fi
row "raw -> raw, -C" "$CORPUS/A.raw" raw raw -C
