#!/usr/bin/env bash
# bench/guest.sh - guest file access through an image format vs debugfs on
# the raw filesystem (and virt-cat/virt-ls when libguestfs-tools happens to
# be installed; it is never installed for this).
#   1. cat a small file          diskkit cat (qcow2, raw)  vs debugfs -R cat
#   2. long listing, 10k entries diskkit ls -l /big        vs debugfs -R 'ls -l /big'
#   3. recursive walk, 10k files diskkit ls -R /           vs debugfs -R 'rdump / DIR'
#      (debugfs has no recursive ls; rdump also writes the files out, so
#      row 3 bounds rather than matches the work)
# Uses hyperfine when installed, else a loop of N runs with `date +%s%N`.
# Usage: BUILD=build bench/guest.sh [RUNS]   -> markdown table on stdout
set -eu
cd "$(dirname "$0")/.."
DK=${DISKKIT:-$PWD/${BUILD:-build}/diskkit}
RUNS=${1:-20}
export PATH="$PATH:/usr/sbin:/sbin"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

mkdir -p "$T/tree/etc" "$T/tree/big"
echo benchhost > "$T/tree/etc/hostname"
for i in $(seq 1 5000); do : > "$T/tree/big/f$i"; done
for d in $(seq 1 50); do
    mkdir -p "$T/tree/deep/d$d/sub"
    for i in $(seq 1 50); do echo "$d $i" > "$T/tree/deep/d$d/sub/g$i"; done
    for i in $(seq 1 50); do : > "$T/tree/deep/d$d/h$i"; done
done
mkfs.ext4 -q -F -d "$T/tree" "$T/fs.raw" 256M >/dev/null 2>&1
qemu-img convert -O qcow2 "$T/fs.raw" "$T/fs.qcow2"
nfiles=$(cd "$T/tree" && find . | wc -l)

have_qcow2=0
case " $("$DK" --help | sed -n 's/^Formats://p') " in *" qcow2 "*) have_qcow2=1 ;; esac

mean_ms() {   # CMD [N]: mean wall time in ms over N (default RUNS) runs
    local n=${2:-$RUNS}
    if command -v hyperfine >/dev/null 2>&1; then
        hyperfine -N -w "$(( n < 2 ? n : 2 ))" -r "$n" --export-json "$T/h.json" "$1" >/dev/null 2>&1
        python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["mean"]*1000))' "$T/h.json"
    else
        local t0 t1
        t0=$(date +%s%N)
        for _ in $(seq 1 "$n"); do sh -c "$1" >/dev/null 2>&1; done
        t1=$(date +%s%N)
        echo "$(( (t1 - t0) / n / 1000000 ))"
    fi
}

row() {   # LABEL CMD [N]
    printf '| %s | %s |\n' "$1" "$(mean_ms "$2" "${3:-}")"
}

echo "Files in tree: $nfiles; runs per row: $RUNS; $(command -v hyperfine >/dev/null && echo hyperfine || echo shell loop)"
echo
echo "| command | mean ms |"
echo "|---|---|"
row "debugfs -R 'cat /etc/hostname' (raw)" "debugfs -R 'cat /etc/hostname' $T/fs.raw"
row "diskkit cat (raw)" "$DK cat -f raw $T/fs.raw /etc/hostname"
[ $have_qcow2 = 1 ] && row "diskkit cat (qcow2)" "$DK cat $T/fs.qcow2 /etc/hostname"
row "debugfs -R 'ls -l /' (raw, root directory)" "debugfs -R 'ls -l /' $T/fs.raw"
row "debugfs -R 'ls -l /big' (raw, 5000 entries)" "debugfs -R 'ls -l /big' $T/fs.raw"
row "diskkit ls -l /big (raw)" "$DK ls -l -f raw $T/fs.raw /big"
[ $have_qcow2 = 1 ] && row "diskkit ls -l /big (qcow2)" "$DK ls -l $T/fs.qcow2 /big"
mkdir -p "$T/rd"
row "debugfs -R 'rdump / DIR' (raw, whole tree)" "sh -c 'rm -rf $T/rd/*; debugfs -R \"rdump / $T/rd\" $T/fs.raw'"
row "diskkit ls -R / (raw)" "$DK ls -R -f raw $T/fs.raw /"
[ $have_qcow2 = 1 ] && row "diskkit ls -R / (qcow2)" "$DK ls -R $T/fs.qcow2 /"
[ $have_qcow2 = 1 ] && row "diskkit ls -lR / (qcow2)" "$DK ls -lR $T/fs.qcow2 /"
# libguestfs boots an appliance VM per call (TCG when there is no KVM):
# VIRT_RUNS runs (default 3). The filesystem fills the disk: -m /dev/sda.
if command -v virt-cat >/dev/null 2>&1 &&
   [ "$(LIBGUESTFS_BACKEND=direct virt-cat -a "$T/fs.qcow2" -m /dev/sda /etc/hostname 2>/dev/null)" = benchhost ]; then
    export LIBGUESTFS_BACKEND=direct
    row "virt-cat (qcow2, LIBGUESTFS_BACKEND=direct)" "virt-cat -a $T/fs.qcow2 -m /dev/sda /etc/hostname" "${VIRT_RUNS:-3}"
    row "virt-ls -R (qcow2, LIBGUESTFS_BACKEND=direct)" "virt-ls -R -a $T/fs.qcow2 -m /dev/sda /" "${VIRT_RUNS:-3}"
else
    echo "(virt-cat/virt-ls: libguestfs-tools not installed or not working here; rows skipped)" >&2
fi

# One-shot writes of a 64 MiB file (fresh image copies; timed once each).
once_ms() { local t0 t1; t0=$(date +%s%N); sh -c "$1" >/dev/null 2>&1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
head -c 64M /dev/urandom > "$T/data64"
cp "$T/fs.raw" "$T/w.raw"
printf '| %s | %s |\n' "debugfs -w -R 'write' 64 MiB (raw, once)" "$(once_ms "debugfs -w -R 'write $T/data64 /w64' $T/w.raw")"
cp "$T/fs.raw" "$T/w.raw"
printf '| %s | %s |\n' "diskkit write 64 MiB (raw, once)" "$(once_ms "$DK write -f raw $T/w.raw /w64 < $T/data64")"
if [ $have_qcow2 = 1 ]; then
    cp "$T/fs.qcow2" "$T/w.qcow2"
    printf '| %s | %s |\n' "diskkit write 64 MiB (qcow2, once)" "$(once_ms "$DK write $T/w.qcow2 /w64 < $T/data64")"
    printf '| %s | %s |\n' "diskkit cat 64 MiB (qcow2, once)" "$(once_ms "$DK cat $T/w.qcow2 /w64")"
fi
printf '| %s | %s |\n' "debugfs -R 'dump' 64 MiB (raw, once)" "$(once_ms "debugfs -R 'dump /w64 $T/out64' $T/w.raw")"
