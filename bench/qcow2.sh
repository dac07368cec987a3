#!/usr/bin/env bash
# qcow2.sh - diskkit vs qemu-img on the qcow2 goals of issue "qcow2
# complete", side by side in one run:
#   - convert -c (zlib, zstd) of A.raw to qcow2 (one run each: long),
#   - reading A.zlib.qcow2 / A.zstd.qcow2 back to raw (best of RUNS),
#   - check and map on B.qcow2 (16k scattered clusters) and on a 4 KiB
#     cluster image with ~393k data clusters in alternating 4 KiB pieces
#     (S4k, built here from a sparse raw file; ~1.6 GiB, ~30 s), and on a
#     16 GiB 4 KiB-cluster image with all 4,194,304 clusters allocated by
#     preallocation=metadata (M4k, data left as host holes).
#
#   CORPUS=/tmp/diskkit-bench-corpus OUT=/dev/shm RUNS=3 bench/qcow2.sh
#   (CASES=meta: only the check and map rows)
#
# Inputs are pre-read into the page cache; outputs go to OUT (tmpfs by
# default) and are deleted after each row. Wall time, CPU time (user+sys)
# and output sizes are reported; ratio = qemu-img wall / diskkit wall
# (> 1: diskkit is faster). Every convert output is verified with
# qemu-img compare (and qemu-img check for qcow2); map output is compared
# byte for byte with qemu-img map. CPU time is the steadier figure on a
# busy machine: the load (uptime) is printed with the table.
# Needs the corpus built by make-corpus.sh (not rebuilt here).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-build}
DISKKIT=${DISKKIT:-$SRCDIR/$BUILD/diskkit}
CORPUS=${CORPUS:-/tmp/diskkit-bench-corpus}
OUT=$(mktemp -d "${OUT:-/dev/shm}/diskkit-bench-qcow2.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
RUNS=${RUNS:-3}
export LC_ALL=C

die() { echo "qcow2.sh: $*" >&2; exit 1; }
[ -x "$DISKKIT" ] || die "no diskkit binary at $DISKKIT (run make)"
command -v qemu-img >/dev/null || die "qemu-img is needed"
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is needed: apt-get install time"
for f in A.raw A.zlib.qcow2 A.zstd.qcow2 B.qcow2; do
    [ -f "$CORPUS/$f" ] || die "$CORPUS/$f missing: build the corpus with make-corpus.sh"
done

# timed CMD...: runs CMD (stdout to $OUT/.stdout), prints "wall cpu";
# wall time from the clock in ms (GNU time's %e has only 10 ms steps)
timed() {
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f '%U %S' -o "$OUT/.time" "$@" >"$OUT/.stdout" || true
    t1=$(date +%s%N)
    tail -n 1 "$OUT/.time" |
        awk -v ns=$((t1 - t0)) '{ printf "%.3f %.2f\n", ns / 1e9, $1 + $2 }'
}

# best N OUTFILE CMD...: best wall time of N runs (OUTFILE removed first)
best() {
    local n=$1 out=$2 b="" bcpu="" t cpu
    shift 2
    for ((i = 0; i < n; i++)); do
        rm -f "$out"
        read -r t cpu < <(timed "$@")
        if [ -z "$b" ] || awk -v a="$t" -v b="$b" 'BEGIN { exit !(a < b) }'; then
            b=$t bcpu=$cpu
        fi
    done
    echo "$b $bcpu"
}

size() { [ -f "$1" ] && du -m --apparent-size "$1" | cut -f1 || echo -; }
ratio() { awk -v d="$1" -v q="$2" 'BEGIN { if (d > 0) printf "%.2f", q / d; else printf "n/a" }'; }

# row NAME DT DCPU QT QCPU DSIZE QSIZE VERDICT
row() {
    printf '| %s | %.3f (%.2f) | %.3f (%.2f) | %s | %s / %s | %s |\n' \
        "$1" "$2" "$3" "$4" "$5" "$(ratio "$2" "$4")" "$6" "$7" "$8"
}

# convert_row NAME RUNS IN OUT_FMT -- EXTRA ARGS (same for both tools)
convert_row() {
    local name=$1 n=$2 in=$3 ofmt=$4
    shift 5
    cat "$in" >/dev/null
    local dko="$OUT/dk.$ofmt" qo="$OUT/q.$ofmt" ok=identical
    read -r dt dcpu < <(best "$n" "$dko" "$DISKKIT" convert "$@" -O "$ofmt" "$in" "$dko")
    read -r qt qcpu < <(best "$n" "$qo" qemu-img convert "$@" -O "$ofmt" "$in" "$qo")
    qemu-img compare -q "$in" "$dko" || ok=DIFFERENT
    if [ "$ofmt" = qcow2 ]; then
        qemu-img check -q "$dko" || ok="$ok, check FAILED"
    fi
    row "$name" "$dt" "$dcpu" "$qt" "$qcpu" "$(size "$dko")" "$(size "$qo")" "$ok"
    rm -f "$dko" "$qo"
}

# meta_row NAME IMAGE CMD...: check/map, output compared for map
meta_row() {
    local name=$1 img=$2 cmd=$3 ok=ok
    shift 3
    cat "$img" >/dev/null
    read -r dt dcpu < <(best "$RUNS" /nonexistent "$DISKKIT" "$cmd" "$@" "$img")
    cp "$OUT/.stdout" "$OUT/dk.out"
    read -r qt qcpu < <(best "$RUNS" /nonexistent qemu-img "$cmd" "$@" "$img")
    if [ "$cmd" = map ]; then
        cmp -s "$OUT/dk.out" "$OUT/.stdout" || ok="output DIFFERS"
    else
        grep -q "No errors" "$OUT/dk.out" || ok="check FAILED"
    fi
    row "$name" "$dt" "$dcpu" "$qt" "$qcpu" - - "$ok"
}

make_s4k() {
    local raw="$OUT/S.raw"
    S4K="$OUT/S4k.qcow2"
    python3 - "$raw" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
os.ftruncate(fd, 4 << 30)
b = b'\x5a' * 4096
for off in range(0, 3 << 30, 8192):      # every other 4 KiB block of 3 GiB
    os.pwrite(fd, b, off)
os.close(fd)
EOF
    qemu-img convert -W -m 8 -O qcow2 -o cluster_size=4k "$raw" "$S4K"
    rm -f "$raw"
}

# M4k: 16 GiB, 4 KiB clusters, every cluster allocated by
# preallocation=metadata (4,194,304 clusters; the data stays a host hole)
make_m4k() {
    M4K="$OUT/M4k.qcow2"
    qemu-img create -q -f qcow2 -o cluster_size=4k,preallocation=metadata "$M4K" 16G
}

echo "diskkit $("$DISKKIT" --version 2>/dev/null | head -1) vs $(qemu-img --version | head -1)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; load before: $(uptime | sed 's/.*load/load/')"
echo
echo "| case | diskkit s (cpu) | qemu-img s (cpu) | ratio | sizes MiB dk / qemu | verdict |"
echo "|---|---|---|---|---|---|"
if [ "${CASES:-all}" != meta ]; then
convert_row "convert -c zlib A.raw" 1 "$CORPUS/A.raw" qcow2 -- -c -o compression_type=zlib
convert_row "convert -c zstd A.raw" 1 "$CORPUS/A.raw" qcow2 -- -c -o compression_type=zstd
convert_row "A.zlib.qcow2 -> raw" "$RUNS" "$CORPUS/A.zlib.qcow2" raw --
convert_row "A.zstd.qcow2 -> raw" "$RUNS" "$CORPUS/A.zstd.qcow2" raw --
fi
meta_row "check B.qcow2" "$CORPUS/B.qcow2" check
meta_row "map B.qcow2" "$CORPUS/B.qcow2" map
meta_row "map --output=json B.qcow2" "$CORPUS/B.qcow2" map --output=json
make_s4k
meta_row "check S4k.qcow2 (4k clusters)" "$S4K" check
meta_row "map S4k.qcow2" "$S4K" map
meta_row "map --output=json S4k.qcow2" "$S4K" map --output=json
rm -f "$S4K"
make_m4k
meta_row "check M4k.qcow2 (4M 4k clusters)" "$M4K" check
meta_row "map M4k.qcow2" "$M4K" map
meta_row "map --output=json M4k.qcow2" "$M4K" map --output=json
echo
echo "load after: $(uptime | sed 's/.*load/load/')"
