#!/usr/bin/env bash
# vdi.sh - diskkit vs qemu-img on VDI, side by side in one run, on image A
# of the benchmark corpus (4 GiB ext4 disk, ~1.8 GiB of data).
#
#   CORPUS=/tmp/diskkit-bench-corpus OUT=/dev/shm RUNS=3 bench/vdi.sh
#
# Cases: raw->vdi (the goal: no slower than qemu-img), raw->vdi static,
# vdi->raw (reading qemu's A.vdi); then the same for VHD: raw->vpc (dynamic
# and fixed) and vpc->raw (reading A.vpc, made from A.raw with qemu-img
# convert -O vpc when missing from the corpus). The input is pre-read into the page
# cache, outputs go to OUT (tmpfs by default) and are removed before each
# run; the best wall time of RUNS runs is reported with its peak RSS (GNU
# time), and every output is verified with qemu-img compare (plus
# qemu-img check for VDI outputs). Prints a markdown table.
# The corpus is built with make-corpus.sh when missing (1-2 min, ~14 GiB).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
DISKKIT=${DISKKIT:-$SRCDIR/${BUILD:-build}/diskkit}
CORPUS=${CORPUS:-/tmp/diskkit-bench-corpus}
OUT=${OUT:-/dev/shm}
RUNS=${RUNS:-3}
export LC_ALL=C

die() { echo "vdi.sh: $*" >&2; exit 1; }
[ -x "$DISKKIT" ] || die "no diskkit binary at $DISKKIT (run make)"
command -v qemu-img >/dev/null || die "qemu-img is needed"
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is needed"

if [ ! -f "$CORPUS/A.raw" ] || [ ! -f "$CORPUS/A.vdi" ]; then
    mk=""
    for c in "${MAKE_CORPUS:-}" "$SRCDIR/../shared/bench/make-corpus.sh" \
             /work/shared/bench/make-corpus.sh; do
        [ -n "$c" ] && [ -f "$c" ] && { mk=$c; break; }
    done
    [ -n "$mk" ] || die "corpus missing and make-corpus.sh not found (set MAKE_CORPUS)"
    echo "building the corpus in $CORPUS with $mk ..." >&2
    CORPUS="$CORPUS" bash "$mk" >&2
fi

# timed OUTFILE CMD...: runs CMD once, prints "seconds peak_kib"
timed() {
    local out=$1
    shift
    rm -f "$out"
    sync
    /usr/bin/time -f '%e %M' -o "$OUT/.bench-time" "$@" >/dev/null
    cat "$OUT/.bench-time"
}

# best OUTFILE CMD...: best wall time of RUNS and the RSS of that run
best() {
    local out=$1 b="" brss="" t rss
    shift
    for ((i = 0; i < RUNS; i++)); do
        read -r t rss < <(timed "$out" "$@")
        if [ -z "$b" ] || awk -v a="$t" -v b="$b" 'BEGIN { exit !(a < b) }'; then
            b=$t brss=$rss
        fi
    done
    echo "$b $brss"
}

row() {   # NAME IN IN_FMT OUT_FMT [-o OPTS]
    local name=$1 in=$2 ifmt=$3 ofmt=$4
    shift 4
    cat "$in" > /dev/null                       # page cache
    local dko="$OUT/bench-dk.$ofmt" qo="$OUT/bench-q.$ofmt"
    read -r dt drss < <(best "$dko" "$DISKKIT" convert -f "$ifmt" -O "$ofmt" "$@" "$in" "$dko")
    read -r qt qrss < <(best "$qo" qemu-img convert -f "$ifmt" -O "$ofmt" "$@" "$in" "$qo")
    local ok=identical
    qemu-img compare -q -f "$ifmt" -F "$ofmt" "$in" "$dko" || ok=DIFFERENT
    [ "$ofmt" = vdi ] && { qemu-img check -q "$dko" || ok="$ok, check FAILED"; }
    local dsize qsize
    dsize=$(du -m "$dko" | cut -f1); qsize=$(du -m "$qo" | cut -f1)
    rm -f "$dko" "$qo"
    printf '| %s | %.2f | %.2f | %.2f | %.1f | %.1f | %s / %s | %s |\n' "$name" "$dt" "$qt" \
        "$(awk -v a="$dt" -v b="$qt" 'BEGIN { print a / b }')" \
        "$(awk -v k="$drss" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$qrss" 'BEGIN { print k / 1024 }')" "$dsize" "$qsize" "$ok"
}

echo "diskkit $("$DISKKIT" --version | head -1) vs $(qemu-img --version | head -1)," \
     "$(nproc) CPUs, best of $RUNS, output on $OUT"
echo
echo "| case | diskkit s | qemu-img s | ratio | diskkit MiB RSS | qemu-img MiB RSS | MiB on disk (dk / qemu) | output |"
echo "|---|---|---|---|---|---|---|---|"
row "raw -> vdi" "$CORPUS/A.raw" raw vdi
row "raw -> vdi static" "$CORPUS/A.raw" raw vdi -o static=on
row "vdi -> raw" "$CORPUS/A.vdi" vdi raw
if "$DISKKIT" --help | sed -n 's/^Formats://p' | grep -qw vpc; then
    [ -f "$CORPUS/A.vpc" ] || qemu-img convert -f raw -O vpc "$CORPUS/A.raw" "$CORPUS/A.vpc"
    row "raw -> vpc" "$CORPUS/A.raw" raw vpc
    row "raw -> vpc fixed" "$CORPUS/A.raw" raw vpc -o subformat=fixed
    row "vpc -> raw" "$CORPUS/A.vpc" vpc raw
fi
rm -f "$OUT/.bench-time"
