#!/usr/bin/env bash
# fuse-lock.sh - diskkit-mount's lifecycle and image locking:
#  - daemon mode returns only once the mount is in place, and reports a
#    child's failure with one "diskkit-mount: ..." line and a non-zero exit;
#  - a second read-write mount of the same image, and qemu-io writing it,
#    are refused while it is mounted; -U --ro works; -U without --ro is an error;
#  - while qemu-io holds the image, diskkit-mount is refused (also --ro),
#    and -U --ro works;
#  - SIGTERM to the mounter (foreground or daemon) unmounts cleanly with
#    the writes in the image.
source "$(dirname "$0")/fuse/lib.sh"
fuse_init
cd "$T"
qemu-img create -q -f raw d.raw 16M
qemu-io -f raw -c 'write -P 0x5a 0 1M' d.raw >/dev/null
mkdir a b c

one_line_error() {   # the captured stderr is exactly one "diskkit-mount: " line
    [ "$(wc -l < "$1")" = 1 ] && grep -q "^diskkit-mount: " "$1"
}

# Daemon mode: mounted when the command returns.
timeout 20 "$MOUNTER" -f raw --raw d.raw a || die "daemon mount"
is_mounted a || die "daemon mode returned before the mount was ready"
cmp -n 1048576 a/disk <(head -c 1048576 /dev/zero | tr '\0' 'Z') || die "content"

# Second writer refused, with a clear message.
! timeout 20 "$MOUNTER" -f raw --raw d.raw b 2>err || die "second rw mount allowed"
one_line_error err || die "bad error output: $(cat err)"
grep -q 'lock' err || die "message does not mention the lock: $(cat err)"
is_mounted b && die "refused mount left a mount behind"
! timeout 20 qemu-io -f raw -c 'write 0 512' d.raw >/dev/null 2>&1 || die "qemu-io could write"
# -U needs --ro; -U --ro reads along.
! timeout 20 "$MOUNTER" -U -f raw --raw d.raw b 2>err || die "-U without --ro allowed"
one_line_error err || die "bad error output: $(cat err)"
fuse_mount b -U --ro -f raw --raw d.raw || die "-U --ro mount"
cmp a/disk b/disk || die "-U view differs"
fuse_umount b || die "unmount -U"
fusermount3 -u a || die "unmount daemon"
wait_unlocked d.raw raw
echo "ok: mounter vs mounter"

# qemu-io holds the image for writing: every locking mount is refused.
timeout 100 qemu-io -f raw -c 'sleep 90000' d.raw >/dev/null 2>&1 &
QPID=$!
# qemu-io shares write access with other qemu-io's, so only its lock in
# /proc/locks tells that it has the image open.
ino=$(stat -c %i d.raw)
end=$((SECONDS + 30))
until grep -qE ":$ino [0-9]+ [0-9]+\$" /proc/locks; do
    [ $SECONDS -lt $end ] || die "qemu-io did not lock the image"
    sleep 0.1
done
! timeout 20 "$MOUNTER" -f raw --raw d.raw c 2>err || die "rw mount while qemu-io writes"
one_line_error err && grep -q lock err || die "bad error output: $(cat err)"
! timeout 20 "$MOUNTER" -f raw --raw --ro d.raw c 2>err || die "ro mount while qemu-io writes"
grep -q 'force-share' err || die "no -U hint: $(cat err)"
fuse_mount c -U --ro -f raw --raw d.raw || die "-U --ro while qemu-io writes"
fuse_umount c || die "unmount c"
kill "$QPID"; wait "$QPID" 2>/dev/null
wait_unlocked d.raw raw
echo "ok: qemu-io vs mounter"

# Daemon start-up failures: one line, non-zero, nothing mounted.
! timeout 20 "$MOUNTER" --raw nonexistent.img a 2>err || die "missing image accepted"
one_line_error err || die "bad error output: $(cat err)"
! timeout 20 "$MOUNTER" -f raw --raw d.raw no-such-dir 2>err || die "missing mountpoint"
one_line_error err || die "bad error output: $(cat err)"
! timeout 20 "$MOUNTER" --raw d.raw a 2>err || die "probed raw mounted writable"
grep -q -- '-f raw' err || die "no -f raw hint: $(cat err)"
! timeout 20 "$MOUNTER" -o no_such_fuse_option -f raw --raw d.raw a 2>err ||
    die "bad -o accepted"
is_mounted a && die "a failed start left a mount"
! "$MOUNTER" --bogus 2>err && one_line_error err || die "unknown option"
"$MOUNTER" --help | grep -q Usage || die "--help"
echo "ok: start-up errors"

# SIGTERM: unmounts, flushes, exits 0.
fuse_mount a -f raw --raw d.raw || die "mount for SIGTERM"
pid=$FUSE_PID
head -c 65536 /dev/zero | tr '\0' '\7' | dd of=a/disk bs=64k seek=3 conv=notrunc status=none
kill -TERM "$pid"
wait "$pid"; rc=$?
unset "FUSE_PIDS[a]"
[ $rc = 0 ] || die "mounter exited $rc on SIGTERM: $(cat a.err)"
is_mounted a && die "still mounted after SIGTERM"
qemu-io -f raw -c 'read -P 7 192k 64k' d.raw | grep -q Pattern && die "data lost on SIGTERM"
echo "ok: SIGTERM"

# SIGTERM to a daemon-mode mounter on a relative mount point: it left for
# "/" when it detached, and must still unmount.
dm=daemon-$$
mkdir "$dm"
timeout 20 "$MOUNTER" -f raw --raw d.raw "$dm" || die "daemon mount for SIGTERM"
pid=$(pgrep -n -f -- "--raw d.raw $dm\$") || die "daemon pid not found"
kill -TERM "$pid"
for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && die "daemon still running 10 s after SIGTERM"
is_mounted "$dm" && die "daemon left its mount behind after SIGTERM"
echo "ok: SIGTERM in daemon mode"
