# guest-fixture.bash - builds guest disk images with real tools for the
# guest-*.sh tests (sourced, not run: the suite runs only *.sh).
# Needs: mkfs.ext2/3/4 with -d, sfdisk, qemu-img. Callers set $T (a temp dir).

guest_requires() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not installed"; exit 77; }
    done
}
guest_requires mkfs.ext4 sfdisk qemu-img debugfs e2fsck sha256sum
export PATH="$PATH:/usr/sbin:/sbin"
DK=${DISKKIT:?DISKKIT not set}

ROOT_UUID=6a3c1a9e-0b7e-4d2a-9a51-3e2f0c1d7b11
BOOT_UUID=1b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5b
DATA_UUID=0f0e0d0c-0b0a-4908-8706-050403020100

# The root tree: os-release, hostname, fstab, an ELF /bin/sh, deep dirs,
# fast and slow symlinks, hostile symlinks, hard links, a sparse file,
# names with spaces and UTF-8, and a random file whose sha256 we keep.
make_root_tree() {
    local d=$1
    mkdir -p "$d/etc/sysconfig" "$d/bin" "$d/usr/bin" "$d/boot" "$d/data" \
             "$d/a/b/c/d/e/f/g/h" "$d/home/user"
    cat > "$d/etc/os-release" <<'OSR'
NAME="Test OS"
ID=testos
VERSION_ID="7.3"
PRETTY_NAME="Test OS 7.3 (Diskkit)"
OSR
    echo guesthost > "$d/etc/hostname"
    cat > "$d/etc/fstab" <<FSTAB
# test fstab
UUID=$ROOT_UUID / ext4 defaults 0 1
LABEL=BOOTFS /boot ext2 defaults 0 2
UUID=$DATA_UUID /srv/data ext3 defaults 0 2
LABEL=DATAFS /mnt/with\\040space ext3 defaults 0 2
/dev/vdz9 /nowhere ext4 defaults 0 0
none /proc proc defaults 0 0
FSTAB
    echo "root:x:0:0:root:/root:/bin/sh" > "$d/etc/passwd"
    cp /bin/sh "$d/bin/sh"
    ln -s ../../bin/sh "$d/usr/bin/ls"
    echo "deep file" > "$d/a/b/c/d/e/f/g/h/deep.txt"
    ln -s os-release "$d/etc/link-fast"
    ln -s "../$(printf 'x%.0s' $(seq 1 90))/../etc/hostname" "$d/etc/link-slow"
    mkdir -p "$d/$(printf 'x%.0s' $(seq 1 90))"
    ln -s /etc/passwd "$d/data/evil-abs"
    ln -s ../../../../../../tmp "$d/data/evil-rel"
    echo "hello hard" > "$d/data/file1"
    ln "$d/data/file1" "$d/data/hard1"
    truncate -s 5M "$d/data/sparse.bin"
    printf 'tail' | dd of="$d/data/sparse.bin" bs=1 seek=$((5*1024*1024 - 4)) conv=notrunc 2>/dev/null
    echo "spaced" > "$d/data/with space.txt"
    echo "unicode" > "$d/data/ünïcödé.txt"
    head -c 300000 /dev/urandom > "$d/data/random.bin"
    chmod 0751 "$d/home/user"
    echo "user file" > "$d/home/user/notes.txt"
    touch -d '2020-02-03 04:05:06 UTC' "$d/home/user/notes.txt"
}

make_boot_tree() {
    mkdir -p "$1/grub"
    echo "menuentry test" > "$1/grub/grub.cfg"
    echo "kernel" > "$1/vmlinuz-test"
}

make_data_tree() {
    mkdir -p "$1/dir"
    echo "data3" > "$1/dir/file3"
}

# make_fs KIND TREE SIZE_MB LABEL UUID OUT
make_fs() {
    rm -f "$6"
    "mkfs.$1" -q -F -d "$2" -L "$4" -U "$5" "$6" "${3}M" >/dev/null 2>&1 ||
        { echo "mkfs.$1 -d failed"; exit 1; }
}

# make_disk mbr|gpt OUT: boot ext2 (8M) as p1, root ext4 (40M) as p2, data
# ext3 (16M) as p5 inside an extended p3 (mbr) or as p3 (gpt).
make_disk() {
    local scheme=$1 out=$2 w=$T/work.$$
    mkdir -p "$w/root" "$w/boot" "$w/data"
    [ -f "$T/root.tree.done" ] || { make_root_tree "$T/roottree"; touch "$T/root.tree.done"; }
    make_boot_tree "$w/boot"; make_data_tree "$w/data"
    make_fs ext2 "$w/boot" 8 BOOTFS "$BOOT_UUID" "$w/boot.img"
    make_fs ext4 "$T/roottree" 40 ROOTFS "$ROOT_UUID" "$w/root.img"
    make_fs ext3 "$w/data" 16 DATAFS "$DATA_UUID" "$w/data.img"
    rm -f "$out"; truncate -s 72M "$out"
    if [ "$scheme" = mbr ]; then
        printf 'label: dos\nlabel-id: 0x12345678\nstart=2048, size=16384, type=83, bootable\nstart=18432, size=81920, type=83\nstart=100352, type=5\nstart=102400, size=32768, type=83\n' |
            sfdisk -q "$out" >/dev/null
        dd if="$w/data.img" of="$out" bs=512 seek=102400 conv=notrunc status=none
    else
        printf 'label: gpt\nstart=2048, size=16384, name=boot\nstart=18432, size=81920, name="root fs"\nstart=100352, size=32768\n' |
            sfdisk -q "$out" >/dev/null
        dd if="$w/data.img" of="$out" bs=512 seek=100352 conv=notrunc status=none
    fi
    dd if="$w/boot.img" of="$out" bs=512 seek=2048 conv=notrunc status=none
    dd if="$w/root.img" of="$out" bs=512 seek=18432 conv=notrunc status=none
    rm -rf "$w"
}

# raw_of IMAGE OUT: the guest disk as raw (for e2fsck/debugfs).
raw_of() { qemu-img convert -O raw "$1" "$2"; }

# fsck_part RAW START_SECTOR SIZE_SECTORS: e2fsck -fn on a partition.
fsck_part() {
    local p=$T/part.$$
    dd if="$1" of="$p" bs=512 skip="$2" count="$3" status=none
    e2fsck -fn "$p" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; rm -f "$p"; return 1; }
    rm -f "$p"
}

# debugfs_part RAW START SIZE CMD
debugfs_part() {
    local p=$T/part.$$
    dd if="$1" of="$p" bs=512 skip="$2" count="$3" status=none
    debugfs -R "$4" "$p" 2>/dev/null
    rm -f "$p"
}

fail() { echo "FAIL: $*"; exit 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected [$2], got [$1]"; }
# expect_err CMD...: must fail with one "diskkit: " line on stderr.
expect_err() {
    local err
    if err=$("$@" 2>&1 >/dev/null); then fail "should have failed: $*"; fi
    [ "$(printf '%s\n' "$err" | grep -c '^diskkit: ')" -ge 1 ] || fail "no diskkit: error line for: $* ($err)"
    printf '%s\n' "$err" | tail -n 1
}
