#!/usr/bin/env bash
# guest-features.sh - ext4 feature coverage through libext2fs: 64bit,
# metadata_csum, flex_bg, inline_data, htree directories (thousands of
# entries), huge files, 1 KiB and 4 KiB blocks, ext2 without extents;
# read back by diskkit, written by diskkit, then e2fsck -fn and debugfs.
set -u
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$SRCDIR/tests/interop/guest-fixture.bash"

mkdir -p "$T/tree/big" "$T/tree/small"
for i in $(seq 1 3000); do : > "$T/tree/big/file-$i"; done
echo tiny > "$T/tree/small/inline.txt"
head -c 70000 /dev/urandom > "$T/tree/small/blocks.bin"
ln -s "$(printf 'y%.0s' $(seq 1 200))" "$T/tree/small/longlink"
SHA=$(sha256sum < "$T/tree/small/blocks.bin" | cut -d' ' -f1)

run_case() {   # NAME MKFS-ARGS...
    local name=$1; shift
    local img=$T/$name.img
    rm -f "$img"
    mkfs.ext4 -q -F "$@" -d "$T/tree" "$img" 64M >/dev/null 2>&1 || { echo "note: $name: mkfs refused $*"; return 0; }
    expect_eq "$("$DK" ls "$img" /big | wc -l)" 3000 "$name: htree listing"
    expect_eq "$("$DK" cat "$img" /small/inline.txt | od -c)" "$(printf "tiny\n" | od -c)" "$name: small file (exact bytes)"
    expect_eq "$("$DK" cat "$img" /small/blocks.bin | sha256sum | cut -d' ' -f1)" "$SHA" "$name: data"
    expect_eq "$("$DK" ls -l "$img" /small/longlink | sed 's/.* -> //' | wc -c)" 201 "$name: slow symlink"
    # writes: into the htree directory, an inline-size file, a big file, removal
    echo "new" | "$DK" write -f raw "$img" /big/file-new || fail "$name: write"
    "$DK" rm -f raw "$img" /big/file-17 /big/file-2999 || fail "$name: rm"
    "$DK" mkdir -f raw -p "$img" /small/d1/d2 || fail "$name: mkdir"
    "$DK" write -f raw "$img" /small/d1/d2/big.bin < "$T/tree/small/blocks.bin" || fail "$name: write big"
    "$DK" shell -f raw -c "ln-s /small/inline.txt /small/fastlink; mv /small/blocks.bin /big/moved.bin; truncate /big/moved.bin 100" "$img" || fail "$name: shell"
    expect_eq "$("$DK" cat "$img" /small/fastlink)" tiny "$name: fast symlink"
    expect_eq "$("$DK" cat "$img" /small/d1/d2/big.bin | sha256sum | cut -d' ' -f1)" "$SHA" "$name: big write"
    expect_eq "$("$DK" ls "$img" /big | wc -l)" 3000 "$name: htree after changes (+2 -2)"
    e2fsck -fn "$img" > "$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "$name: e2fsck"; }
    debugfs -R 'ls -l /big' "$img" 2>/dev/null | grep -q ' file-new *$' || fail "$name: debugfs"
    echo "ok: $name"
}

run_case default
run_case csum64 -O 64bit,metadata_csum,flex_bg -b 4096
run_case inline -O inline_data,metadata_csum -I 256
run_case small-blocks -b 1024 -O ^metadata_csum
run_case no-extents -t ext3 -O ^extent,^flex_bg
run_case ext2 -t ext2
echo ok
