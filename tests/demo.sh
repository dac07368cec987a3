#!/usr/bin/env bash
# demo.sh - a short tour of diskkit (`make demo`): builds a small ext4 disk
# from a few files, converts it between the formats this build has, and
# shows info, map and compare; lists and reads files when the guest
# commands (ls, cat) are built in. Uses a scratch directory, removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DK=${DISKKIT:-$PWD/$BUILD/diskkit}
[ -x "$DK" ] || { echo "demo: build diskkit first (make)" >&2; exit 1; }
command -v mkfs.ext4 >/dev/null || { echo "demo: mkfs.ext4 is needed (e2fsprogs)" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/diskkit-demo.XXXXXX")
trap 'rm -rf "$W"' EXIT

formats=" $("$DK" --help | sed -n 's/^Formats://p') "
commands=$("$DK" --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
has_fmt() { [[ $formats == *" $1 "* ]]; }
has_cmd() { grep -qx "$1" <<<"$commands"; }
run() { printf '\n$ diskkit %s\n' "$*"; "$DK" "$@"; }

echo "== diskkit demo (formats:$(echo $formats | sed "s/^/ /"))"
mkdir -p "$W/files/etc" "$W/files/docs"
printf 'demo-host\n' > "$W/files/etc/hostname"
printf 'Hello from inside the disk image.\n' > "$W/files/hello.txt"
cp /usr/share/common-licenses/GPL-3 "$W/files/docs/" 2>/dev/null || seq 1 20000 > "$W/files/docs/numbers"
mkfs.ext4 -q -F -L demo -d "$W/files" "$W/disk.raw" 32M >/dev/null
cd "$W"

run info disk.raw
run map disk.raw
chain=(disk.raw)
if has_fmt qcow2; then
    run convert -p -f raw -O qcow2 disk.raw disk.qcow2
    run info disk.qcow2
    run convert -f qcow2 -O raw disk.qcow2 back.raw
    run compare disk.raw back.raw
    run create -f qcow2 -b disk.qcow2 -F qcow2 overlay.qcow2
    run map --output json overlay.qcow2
    chain+=(disk.qcow2)
else
    run convert -p -f raw -O raw disk.raw back.raw
    run compare disk.raw back.raw
fi
for f in vmdk vdi vpc; do
    if has_fmt "$f"; then
        # force_size keeps a VHD at the exact size (else CHS rounding grows it)
        if [ "$f" = vpc ]; then run convert -O vpc -o force_size=on disk.raw disk.vpc
        else run convert -O "$f" disk.raw "disk.$f"; fi
        run compare disk.raw "disk.$f"
        chain+=("disk.$f")
    fi
done
if has_cmd ls && has_cmd cat; then
    for img in "${chain[@]}"; do
        run ls "$img" /
        run cat "$img" /hello.txt
    done
else
    echo
    echo "(guest commands ls/cat are not in this build yet)"
fi
echo
echo "== demo done"
