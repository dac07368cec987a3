#!/usr/bin/env bash
# fuse-kill.sh - SIGKILL of diskkit-mount in the middle of writes (dd into a
# qcow2 through --raw) leaves an image that `qemu-img check` reports with at
# most leaked clusters (exit 0 or 3, never 2 = corruption), and that still
# mounts afterwards.
source "$(dirname "$0")/fuse/lib.sh"
fuse_init
have_format qcow2 || skip "qcow2 is not in this build yet"
cd "$T"

for round in 1 2 3; do
    rm -f k.qcow2
    qemu-img create -q -f qcow2 k.qcow2 256M
    fuse_mount m -f qcow2 --raw k.qcow2 || die "mount"
    pid=$FUSE_PID
    # Scattered writes, each closed (flushed), allocate clusters and L2
    # tables all over the image; one long dd keeps metadata dirty between
    # flushes.
    ( for i in $(seq 0 199); do
          dd if=/dev/urandom of=m/disk bs=64k count=3 seek=$(( (i * 97) % 4000 )) \
             conv=notrunc status=none 2>/dev/null || exit 0
      done ) &
    writer=$!
    dd if=/dev/urandom of=m/disk bs=256k count=600 seek=$((round * 97)) conv=notrunc \
       status=none 2>/dev/null &
    writer2=$!
    sleep "0.$((round * 2))"
    kill -0 "$writer" 2>/dev/null || kill -0 "$writer2" 2>/dev/null ||
        echo "note: round $round: the writers had finished before the kill"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    unset "FUSE_PIDS[m]"
    wait "$writer" "$writer2" 2>/dev/null
    fusermount3 -uz m 2>/dev/null
    qemu-img check k.qcow2 >check.out 2>&1
    rc=$?
    case $rc in
    0|3) echo "ok: round $round: qemu-img check exit $rc" ;;
    *) cat check.out; die "round $round: qemu-img check exit $rc after SIGKILL" ;;
    esac
    fuse_mount m -f qcow2 --raw --ro k.qcow2 || die "remount after kill"
    cat m/disk >/dev/null || die "reading the killed image through the mount"
    fuse_umount m || die "unmount after remount"
done
