#!/usr/bin/env bash
# run.sh - mutation fuzzing of the parsers under ASan+UBSan (make fuzz).
#
#   BUILD=build-asan N=300 SEED=1 tests/fuzz/run.sh
#
# Builds seed images with qemu-img, qemu-io, mkfs.ext4 -d and sfdisk (qcow2
# v2/v3 with a snapshot, zlib and zstd compressed qcow2, sparse and stream
# VMDK, VDI, dynamic VHD, VHDX; GPT, MBR and whole-disk ext4), then runs images.py (image
# metadata: info, check, map, convert, convert --salvage, check -r all,
# snapshot -l) and guest.py (partition tables and ext4 metadata:
# list-filesystems, inspect, ls -lR, cat, df, shell writes) on N mutated
# copies each. A finding is a sanitizer report, a signal, an unexpected
# exit code or a 60 s hang; the input and the output are kept under
# $WORK/*/crash/. Exit status 1 when anything was found.
# SPDX-License-Identifier: MIT
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
DK=$(readlink -f "${DISKKIT:-$SRC/${BUILD:-build-asan}/diskkit}")
N=${N:-300}
SEED=${SEED:-1}
WORK=${WORK:-$(mktemp -d /tmp/diskkit-fuzz.XXXXXX)}
[ -x "$DK" ] || { echo "no diskkit at $DK (make asan builds build-asan/diskkit)"; exit 2; }
mkdir -p "$WORK/img/seeds" "$WORK/guest/seeds"

cd "$WORK/img"
qemu-img create -q -f raw base.raw 8M
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 64k' -c 'write -P 0x33 7M 4k' \
    base.raw >/dev/null
qemu-img convert -O qcow2 -o cluster_size=4k base.raw seeds/a.qcow2
qemu-img snapshot -c s1 seeds/a.qcow2
qemu-img convert -O qcow2 -o compat=0.10,cluster_size=4k base.raw seeds/v2.qcow2
qemu-img convert -c -O qcow2 -o cluster_size=4k base.raw seeds/c.qcow2
qemu-img convert -c -O qcow2 -o compression_type=zstd,cluster_size=4k base.raw seeds/z.qcow2
qemu-img convert -O vmdk base.raw seeds/s.vmdk
qemu-img convert -O vmdk -o subformat=streamOptimized base.raw seeds/st.vmdk
qemu-img convert -O vdi base.raw seeds/d.vdi
qemu-img convert -O vpc base.raw seeds/v.vpc
qemu-img convert -O vhdx base.raw seeds/x.vhdx

cd "$WORK/guest"
mkdir -p tree/etc tree/usr/bin
printf 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n' > tree/etc/os-release
echo host1 > tree/etc/hostname
echo 'LABEL=root / ext4 defaults 0 1' > tree/etc/fstab
cp /bin/true tree/usr/bin/
for i in $(seq 1 50); do echo "$i" > "tree/etc/f$i"; done
mkfs.ext4 -q -L root -d tree fs.img 6M
cp fs.img seeds/whole.raw
for label in gpt dos; do
    qemu-img create -q -f raw seeds/$label.raw 10M
    printf 'label: %s\nstart=2048, size=12288, type=L\n' $label | sfdisk -q seeds/$label.raw
    dd if=fs.img of=seeds/$label.raw bs=512 seek=2048 conv=notrunc status=none
done

rc=0
(cd "$WORK/img" && python3 "$HERE/images.py" "$DK" "$N" "$SEED") || rc=1
(cd "$WORK/guest" && python3 "$HERE/guest.py" "$DK" "$N" "$SEED") || rc=1
echo "work directory: $WORK"
exit $rc
