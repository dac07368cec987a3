#!/usr/bin/env bash
# run-tests.sh - runs the unit tests (Check binaries in $BUILD/tests) and the
# interop tests (tests/interop/*.sh, qemu-img as the oracle), then prints
# one closing line "N passed, N failed, N skipped". Exit 77 from a test
# means skipped (a tool or /dev/fuse is missing); the reason is printed.
#   BUILD=build ONLY=unit|interop T=pattern tests/run-tests.sh
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export DISKKIT="$PWD/$BUILD/diskkit" DISKKIT_MOUNT="$PWD/$BUILD/diskkit-mount"
export SRCDIR="$PWD" BUILD
pass=0 fail=0 skip=0 failed=()
run() {   # name, command...
    local name=$1; shift
    local log="$PWD/$BUILD/test-logs/$name.log"
    mkdir -p "$(dirname "$log")"
    local t0=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    case $rc in
    0)  pass=$((pass + 1)); printf 'PASS  %-40s %3ds\n' "$name" $((SECONDS - t0)) ;;
    77) skip=$((skip + 1)); printf 'SKIP  %-40s (%s)\n' "$name" "$(tail -n 1 "$log")" ;;
    *)  fail=$((fail + 1)); failed+=("$name")
        printf 'FAIL  %-40s (exit %d) log: %s\n' "$name" $rc "$log"
        tail -n 30 "$log" | sed 's/^/    | /' ;;
    esac
}
if [ "${ONLY:-unit}" = unit ] || [ -z "${ONLY:-}" ]; then
    for t in "$BUILD"/tests/check_*; do
        [ -x "$t" ] || continue
        case "$(basename "$t")" in ${T:-*}) ;; *) continue ;; esac
        CK_FORK=yes run "unit/$(basename "$t")" "$t"
    done
fi
if [ "${ONLY:-interop}" = interop ] || [ -z "${ONLY:-}" ]; then
    for t in tests/interop/*.sh; do
        [ -f "$t" ] || continue
        case "$(basename "$t" .sh)" in ${T:-*}) ;; *) continue ;; esac
        run "interop/$(basename "$t" .sh)" bash "$t"
    done
fi
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
