#!/usr/bin/env bash
# bench/fuse.sh - sequential read throughput through diskkit-mount versus
# the usual FUSE peers, on image A of ../shared/bench/make-corpus.sh:
#   file : /data/big.bin (512 MiB) read through the mounted guest filesystem
#          diskkit-mount (A.raw, A.qcow2)  vs  fuse2fs on A.raw
#   disk : the whole 4 GiB virtual disk read through a raw/--raw export
#          diskkit-mount --raw (A.raw, A.qcow2)  vs  qemu-storage-daemon
#          --export type=fuse (A.raw, A.qcow2)
# Each run uses a fresh mount (so a fresh FUSE page cache); the image files
# are read once first so every tool starts from the same warm host cache.
# A peer that is not installed is skipped. Prints GiB/s (best of RUNS) and
# the ratios the goals are stated in.
#   CORPUS=/tmp/diskkit-bench-corpus RUNS=2 BUILD=build bench/fuse.sh
set -u
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-/tmp/diskkit-bench-corpus}
RUNS=${RUNS:-2}
MOUNTER=$(readlink -f "${DISKKIT_MOUNT:-${BUILD:-build}/diskkit-mount}")
BS=1M
[ -x "$MOUNTER" ] || { echo "bench: build diskkit-mount first" >&2; exit 1; }
for f in A.raw A.qcow2; do
    [ -f "$CORPUS/$f" ] || { echo "bench: $CORPUS/$f missing: run ../shared/bench/make-corpus.sh" >&2; exit 1; }
done
W=$(mktemp -d /tmp/diskkit-bench-fuse.XXXXXX)
QSD_PID=
cleanup() {
    for m in "$W"/m "$W"/export; do
        grep -q " $m fuse" /proc/mounts && fusermount3 -uz "$m"
    done
    if [ -n "$QSD_PID" ]; then kill "$QSD_PID" 2>/dev/null; fi
    rm -rf "$W"
}
trap cleanup EXIT
mkdir "$W/m"; : > "$W/export"

mounted() { grep -q " $1 fuse" /proc/mounts; }
wait_mounted() { local i; for i in $(seq 300); do mounted "$1" && return 0; sleep 0.05; done; return 1; }
wait_gone() { local i; for i in $(seq 300); do mounted "$1" || return 0; sleep 0.05; done; return 1; }
# Waits until the mounter has exited: a read-write qemu-io conflicts with
# its lock (qemu-img info takes none).
wait_unlocked() {
    local i
    for i in $(seq 300); do
        qemu-io -f "$2" -c quit "$1" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
}

# Reads FILE sequentially; prints GiB/s.
read_rate() {
    local t0 t1 bytes
    bytes=$(stat -c %s "$1")
    t0=$(date +%s.%N)
    dd if="$1" of=/dev/null bs=$BS status=none || return 1
    t1=$(date +%s.%N)
    echo "$bytes $t0 $t1" | awk '{ printf "%.3f", $1 / ($3 - $2) / 1073741824 }'
}

mount_diskkit() { "$MOUNTER" --ro "$@" "$W/m"; }
umount_diskkit() { fusermount3 -u "$W/m"; wait_gone "$W/m"; wait_unlocked "$1" "$2"; }
mount_fuse2fs() { fuse2fs -o ro,fakeroot "$1" "$W/m" >/dev/null 2>&1 && wait_mounted "$W/m"; }
mount_qsd() {   # IMAGE DRIVER
    qemu-storage-daemon \
        --blockdev "driver=file,node-name=file,filename=$1,read-only=on,cache.direct=off" \
        --blockdev "driver=$2,node-name=fmt,file=file,read-only=on" \
        --export "type=fuse,id=exp,node-name=fmt,mountpoint=$W/export,writable=off" \
        >/dev/null 2>&1 &
    QSD_PID=$!
    wait_mounted "$W/export"
}
umount_qsd() { kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null; QSD_PID=; wait_gone "$W/export"; }

declare -A BEST
# bench NAME MOUNTCMD UMOUNTCMD FILE
bench() {
    local name=$1 mnt=$2 umnt=$3 file=$4 r rate best=0
    for r in $(seq "$RUNS"); do
        eval "$mnt" || { echo "  $name: mount failed, skipped"; return; }
        rate=$(read_rate "$file") || rate=0
        eval "$umnt"
        best=$(echo "$best $rate" | awk '{ print ($2 > $1) ? $2 : $1 }')
    done
    BEST[$name]=$best
    printf '  %-34s %6s GiB/s\n' "$name" "$best"
}

echo "warming the host page cache with the image files"
cat "$CORPUS/A.raw" "$CORPUS/A.qcow2" > /dev/null
echo "file read: /data/big.bin (512 MiB), best of $RUNS"
bench "diskkit-mount A.raw" "mount_diskkit -f raw $CORPUS/A.raw" \
      "umount_diskkit $CORPUS/A.raw raw" "$W/m/data/big.bin"
bench "diskkit-mount A.qcow2" "mount_diskkit -f qcow2 $CORPUS/A.qcow2" \
      "umount_diskkit $CORPUS/A.qcow2 qcow2" "$W/m/data/big.bin"
if command -v fuse2fs >/dev/null; then
    bench "fuse2fs A.raw" "mount_fuse2fs $CORPUS/A.raw" \
          "fusermount3 -u $W/m; wait_gone $W/m" "$W/m/data/big.bin"
else echo "  fuse2fs: not installed, skipped"; fi
echo "whole-disk read: 4 GiB virtual disk, best of $RUNS"
bench "diskkit-mount --raw A.raw" "mount_diskkit --raw -f raw $CORPUS/A.raw" \
      "umount_diskkit $CORPUS/A.raw raw" "$W/m/disk"
bench "diskkit-mount --raw A.qcow2" "mount_diskkit --raw -f qcow2 $CORPUS/A.qcow2" \
      "umount_diskkit $CORPUS/A.qcow2 qcow2" "$W/m/disk"
if command -v qemu-storage-daemon >/dev/null; then
    bench "qemu-storage-daemon A.raw" "mount_qsd $CORPUS/A.raw raw" "umount_qsd" "$W/export"
    bench "qemu-storage-daemon A.qcow2" "mount_qsd $CORPUS/A.qcow2 qcow2" "umount_qsd" "$W/export"
else echo "  qemu-storage-daemon: not installed, skipped"; fi

ratio() {   # A B: prints A/B or n/a
    local a=${BEST[$1]:-} b=${BEST[$2]:-}
    if [ -n "$a" ] && [ -n "$b" ] && [ "$b" != 0 ]; then
        echo "$a $b" | awk '{ printf "%.2fx", $1 / $2 }'
    else echo n/a; fi
}
echo "ratios (goal: file >= 1.0x fuse2fs, disk >= 1.5x qemu-storage-daemon)"
echo "  file  raw   diskkit/fuse2fs:            $(ratio 'diskkit-mount A.raw' 'fuse2fs A.raw')"
echo "  file  qcow2 diskkit/fuse2fs(raw):       $(ratio 'diskkit-mount A.qcow2' 'fuse2fs A.raw')"
echo "  disk  raw   diskkit/storage-daemon:     $(ratio 'diskkit-mount --raw A.raw' 'qemu-storage-daemon A.raw')"
echo "  disk  qcow2 diskkit/storage-daemon:     $(ratio 'diskkit-mount --raw A.qcow2' 'qemu-storage-daemon A.qcow2')"
exit 0
