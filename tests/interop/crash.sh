#!/usr/bin/env bash
# crash.sh - crash safety of qcow2 metadata updates: a diskkit writer is
# killed with SIGKILL after a random delay during allocating writes
# (convert -n into a qcow2), compressed writes (convert -n -c), snapshot
# create, apply and delete. Whatever the moment, qemu-img check must find
# at most leaked clusters (exit 0 or 3, never 2 or 1), and diskkit check
# must give the same verdict.
#   CRASH_ROUNDS=N (default 12) kills per scenario.
set -u
: "${DISKKIT:?}"
for t in qemu-img qemu-io python3; do
    command -v $t >/dev/null || { echo "$t not installed"; exit 77; }
done
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
qemu-img create -q -f qcow2 probe.qcow2 1M
"$DISKKIT" snapshot -c x probe.qcow2 >/dev/null 2>&1 && "$DISKKIT" check probe.qcow2 >/dev/null ||
    { echo "qcow2 snapshots/check not available in this build"; exit 77; }
ROUNDS=${CRASH_ROUNDS:-12}
fails=0 kills=0 leaky=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 24 MiB input: compressible text, random bytes and zero runs mixed.
python3 - <<'EOF'
import os
with open('in.raw', 'wb') as f:
    for i in range(384):                      # 64 KiB pieces
        k = i % 4
        if k == 0: f.write(os.urandom(65536))
        elif k == 1: f.write(((b'diskkit crash test %06d\n' % i) * 2521)[:65536])
        elif k == 2: f.write(b'\0' * 65536)
        else: f.write(os.urandom(4096) + b'\0' * 61440)
EOF

verdict() {   # image what: qemu-img check must exit 0 or 3, diskkit the same
    local rq rd
    qemu-img check "$1" >q.out 2>&1; rq=$?
    "$DISKKIT" check "$1" >d.out 2>&1; rd=$?
    case $rq in
    0) ;;
    3) leaky=$((leaky + 1)) ;;
    *) fail "$2: qemu-img check exit $rq"; sed 's/^/    /' q.out | head -20 ;;
    esac
    [ "$rq" = "$rd" ] || fail "$2: diskkit check exit $rd, qemu-img $rq"
}

run_killed() {   # max-delay-ms what command...: runs it, kills it with SIGKILL
    local max=$1 what=$2; shift 2
    local ms=$(( RANDOM % max ))
    "$@" >/dev/null 2>&1 &
    local pid=$!
    sleep "$(printf '0.%03d' "$ms")"
    kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
    wait "$pid" 2>/dev/null
}

elapsed_ms() {   # command...: wall time in ms of one complete run
    local t0 t1
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 + 1 ))
}

# --- allocating and compressed writes ------------------------------------
for mode in plain compressed; do
    flags=(-n -O qcow2); [ $mode = compressed ] && flags+=(-c)
    qemu-img create -q -f qcow2 out.qcow2 24M
    full=$(elapsed_ms "$DISKKIT" convert "${flags[@]}" -f raw in.raw out.qcow2)
    qemu-img compare -q -f raw in.raw out.qcow2 || fail "$mode convert -n result differs"
    verdict out.qcow2 "$mode complete"
    for ((i = 0; i < ROUNDS; i++)); do
        qemu-img create -q -f qcow2 out.qcow2 24M
        run_killed "$full" "$mode" "$DISKKIT" convert "${flags[@]}" -f raw in.raw out.qcow2
        verdict out.qcow2 "$mode round $i"
    done
done

# --- snapshot create / apply / delete -------------------------------------
mkimg() {
    qemu-img create -q -f qcow2 s.qcow2 24M
    qemu-io -c 'write -P 1 0 6M' -c 'write -P 2 8M 3M' s.qcow2 >/dev/null
    qemu-img snapshot -c base s.qcow2
    qemu-io -c 'write -P 3 1M 2M' -c 'write -P 4 16M 4M' s.qcow2 >/dev/null
    qemu-img snapshot -c mid s.qcow2
    qemu-io -c 'write -P 5 0 1M' s.qcow2 >/dev/null
}
for op in "-c new" "-a base" "-d mid" "-d base"; do
    mkimg
    # shellcheck disable=SC2086
    full=$(elapsed_ms "$DISKKIT" snapshot $op s.qcow2)
    verdict s.qcow2 "snapshot $op complete"
    for ((i = 0; i < ROUNDS; i++)); do
        mkimg
        # shellcheck disable=SC2086
        run_killed "$((full + 2))" "snapshot $op" "$DISKKIT" snapshot $op s.qcow2
        verdict s.qcow2 "snapshot $op round $i"
    done
done
echo "$kills processes killed, $leaky images with leaks only"
[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all crash checks passed"
