#!/usr/bin/env bash
# bench/vmdk.sh - VMDK conversions, diskkit vs qemu-img side by side, on
# image A of shared/bench/make-corpus.sh (4 GiB ext4, ~1.8 GiB of data):
#   1. A.raw -> streamOptimized VMDK   (compressed grains; diskkit compresses
#      on the copy engine's worker threads)
#   2. A.sparse.vmdk -> qcow2          (reading a monolithicSparse VMDK)
# Inputs are pre-read into the page cache, outputs go to OUT (tmpfs by
# default); case 1 runs once (long), case 2 reports the best of RUNS.
# Each output is verified with qemu-img compare against A.raw.
#   CORPUS=/dir DISKKIT=build/diskkit OUT=/dev/shm RUNS=3 bench/vmdk.sh
# The corpus is generated when missing (needs the shared make-corpus.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DISKKIT=${DISKKIT:-$HERE/../build/diskkit}
CORPUS=${CORPUS:-/tmp/diskkit-bench-corpus}
MAKE_CORPUS=${MAKE_CORPUS:-$HERE/../../shared/bench/make-corpus.sh}
[ -f "$MAKE_CORPUS" ] || MAKE_CORPUS=/work/shared/bench/make-corpus.sh
if [ ! -f "$CORPUS/A.raw" ] || [ ! -f "$CORPUS/A.sparse.vmdk" ]; then
    CORPUS=$CORPUS bash "$MAKE_CORPUS"
fi
OUT=$(mktemp -d "${OUT:-/dev/shm}/diskkit-bench-vmdk.XXXXXX")
RUNS=${RUNS:-3}
trap 'rm -rf "$OUT"' EXIT

secs() {   # command... -> prints wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }'
}

best() {   # n command... -> best wall seconds of n runs (output removed first)
    local n=$1 b="" t; shift
    for ((i = 0; i < n; i++)); do
        rm -f "${@: -1}"
        t=$(secs "$@")
        if [ -z "$b" ] || awk -v a="$t" -v b="$b" 'BEGIN { exit !(a < b) }'; then b=$t; fi
    done
    echo "$b"
}

run_case() {   # name runs ref diskkit-args -- qemu-args
    local name=$1 n=$2 ref=$3; shift 3
    local dk=() q=()
    while [ "$1" != -- ]; do dk+=("$1"); shift; done; shift
    q=("$@")
    cat "${dk[-2]}" >/dev/null
    local td tq
    td=$(best "$n" "$DISKKIT" "${dk[@]}")
    tq=$(best "$n" qemu-img "${q[@]}")
    local a=${dk[-1]} b=${q[-1]}
    qemu-img compare -q "$ref" "$a" || { echo "$name: diskkit output differs"; exit 1; }
    qemu-img compare -q "$ref" "$b" || { echo "$name: qemu-img output differs"; exit 1; }
    printf '%-28s diskkit %7.3fs  qemu-img %7.3fs  speedup %5.2fx  sizes %s / %s MiB\n' \
        "$name" "$td" "$tq" "$(echo "$tq $td" | awk '{ printf "%.2f", $1 / $2 }')" \
        "$(( $(stat -c %s "$a") >> 20 ))" "$(( $(stat -c %s "$b") >> 20 ))"
    rm -f "$a" "$b"
}

echo "# $(nproc) CPUs, $(date -u +%FT%TZ), corpus $CORPUS"
run_case "raw -> vmdk streamOptimized" 1 "$CORPUS/A.raw" \
    convert -O vmdk -o subformat=streamOptimized "$CORPUS/A.raw" "$OUT/d.vmdk" -- \
    convert -O vmdk -o subformat=streamOptimized "$CORPUS/A.raw" "$OUT/q.vmdk"
run_case "vmdk (sparse) -> qcow2" "$RUNS" "$CORPUS/A.raw" \
    convert -O qcow2 "$CORPUS/A.sparse.vmdk" "$OUT/d.qcow2" -- \
    convert -O qcow2 "$CORPUS/A.sparse.vmdk" "$OUT/q.qcow2"
