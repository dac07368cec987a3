# fuse/lib.sh - shell helpers for the diskkit-mount tests (tests/interop/fuse-*.sh).
# Sourced, not run: it lives in a subdirectory so run-tests.sh does not pick it up.
#
#   fuse_init            temp dir $T, cleanup trap, skip (77) when FUSE is unusable
#   fuse_mount MNT ARGS  diskkit-mount --foreground ARGS... IMAGE MNT in the background
#                        (under a timeout); waits until MNT is mounted; sets $FUSE_PID
#   fuse_umount MNT      fusermount3 -u, then waits for that mounter to exit (so the
#                        image lock is free and everything is closed); fails if it
#                        exited non-zero
#   require TOOL...      skip unless every tool exists
#   die MSG              fail the test
set -u
MOUNTER=$(readlink -f "${DISKKIT_MOUNT:-${SRCDIR:-.}/${BUILD:-build}/diskkit-mount}")
# A hung mounter must not hang CI: every mount ends after this many seconds.
FUSE_TIMEOUT=${FUSE_TIMEOUT:-150}
declare -A FUSE_PIDS=()

die() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "$*"; exit 77; }
require() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || skip "$t is not installed"
    done
}

is_mounted() { grep -q " $(readlink -f "$1") fuse" /proc/mounts; }

fuse_cleanup() {
    local m
    for m in "${!FUSE_PIDS[@]}"; do
        is_mounted "$m" && fusermount3 -uz "$m" 2>/dev/null
        kill "${FUSE_PIDS[$m]}" 2>/dev/null
        wait "${FUSE_PIDS[$m]}" 2>/dev/null
    done
    # Daemon-mode mounts the test made and did not get to unmount.
    if [ -n "${T:-}" ]; then
        awk -v t="$T/" '$3 ~ /^fuse/ && index($2, t) == 1 { print $2 }' /proc/mounts |
            while read -r m; do fusermount3 -uz "$m" 2>/dev/null; done
        rm -rf "$T"
    fi
}

# Is IMAGE (FMT) free of diskkit-mount? A read-write qemu-io conflicts with
# a writer that refuses to share writes, as diskkit-mount does. (`qemu-img
# info` takes no lock; qemu-io itself shares writes.)
image_unlocked() { qemu-io -f "$2" -c quit "$1" >/dev/null 2>&1; }
# Waits up to 20 s for IMAGE (FMT) to be free, e.g. for a daemon-mode
# mounter to exit after its unmount.
wait_unlocked() {
    local end=$((SECONDS + 20))
    while ! image_unlocked "$1" "$2"; do
        [ $SECONDS -lt $end ] || die "$1 still locked 20 s after unmount"
        sleep 0.1
    done
}

fuse_init() {
    [ -x "$MOUNTER" ] || skip "diskkit-mount was not built ($MOUNTER)"
    [ -c /dev/fuse ] || skip "/dev/fuse is missing"
    require fusermount3 qemu-img qemu-io timeout
    T=$(mktemp -d /tmp/diskkit-fuse.XXXXXX)
    trap fuse_cleanup EXIT
    # Can we mount at all (container without CAP_SYS_ADMIN, no fuse module)?
    mkdir "$T/probe"
    qemu-img create -q -f raw "$T/probe.img" 1M
    if ! "$MOUNTER" -f raw --raw --ro "$T/probe.img" "$T/probe" 2>"$T/probe.err"; then
        skip "FUSE mounts do not work here: $(tail -n 1 "$T/probe.err")"
    fi
    fusermount3 -u "$T/probe"
}

# fuse_mount MNT [diskkit-mount args... IMAGE]
fuse_mount() {
    local mnt=$1 i
    shift
    mkdir -p "$mnt"
    timeout "$FUSE_TIMEOUT" "$MOUNTER" --foreground "$@" "$mnt" 2>"$mnt.err" &
    FUSE_PID=$!
    FUSE_PIDS[$mnt]=$FUSE_PID
    for i in $(seq 200); do
        is_mounted "$mnt" && return 0
        kill -0 "$FUSE_PID" 2>/dev/null || break
        sleep 0.05
    done
    wait "$FUSE_PID" 2>/dev/null
    unset "FUSE_PIDS[$mnt]"
    echo "mount failed: $(cat "$mnt.err")" >&2
    return 1
}

fuse_umount() {
    local mnt=$1 pid=${FUSE_PIDS[$1]:-} rc
    fusermount3 -u "$mnt" || return 1
    [ -n "$pid" ] || return 0
    wait "$pid"
    rc=$?
    unset "FUSE_PIDS[$mnt]"
    [ "$rc" = 0 ] || { echo "mounter exited $rc: $(cat "$mnt.err")" >&2; return 1; }
}

# Does this build know FORMAT? (--version lists the formats.)
have_format() {
    "$MOUNTER" --version | grep -q "^formats:.* $1\( \|$\)"
}
