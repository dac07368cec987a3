#!/usr/bin/env bash
# run-all.sh - runs every bench/*.sh except itself (make bench).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
rc=0
for b in "$HERE"/*.sh; do
    [ "$(basename "$b")" = run-all.sh ] && continue
    echo "== $(basename "$b")"
    bash "$b" || { echo "== $(basename "$b") failed" >&2; rc=1; }
    echo
done
exit $rc
