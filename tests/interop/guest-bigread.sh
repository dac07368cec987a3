#!/usr/bin/env bash
# guest-bigread.sh - large guest file reads (the extent-run fast path in
# lib/guestfile.c): files with holes, zero runs and odd tails read through
# raw and qcow2 must match the host copies byte for byte.
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 qemu-img sha256sum
cd "$T"
mkdir tree
head -c 20M /dev/urandom > tree/big
{ head -c 3M /dev/urandom; head -c 5M /dev/zero; head -c 1000001 /dev/urandom; } > tree/mixed
truncate -s 50M tree/sparse
dd if=/dev/urandom of=tree/sparse bs=1M seek=20 count=2 conv=notrunc status=none
printf tail >> tree/sparse
mkfs.ext4 -q -d tree fs.raw 200M
qemu-img convert -O qcow2 fs.raw fs.qcow2
fails=0
for img in fs.raw fs.qcow2; do
    for f in big mixed sparse; do
        a=$("$DISKKIT" cat -f "${img##*.}" "$img" "/$f" | sha256sum)
        b=$(sha256sum < "tree/$f")
        if [ "$a" = "$b" ]; then echo "ok: $img /$f"; else echo "MISMATCH: $img /$f"; fails=$((fails + 1)); fi
    done
done
[ $fails -eq 0 ]
