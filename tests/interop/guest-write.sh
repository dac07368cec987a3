#!/usr/bin/env bash
# guest-write.sh - write, mkdir, rm, copy-in and the shell on MBR/GPT
# disks with ext2/ext3/ext4; afterwards every filesystem must pass
# e2fsck -fn and debugfs must see the changes. Also: a journal that needs
# recovery is refused for writing (readable as is), --ro shells refuse
# writes, failed commands leave the image untouched. Through qcow2 when the
# driver is in this build (writes go to the top of a backing chain).
set -u
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$SRCDIR/tests/interop/guest-fixture.bash"

make_disk mbr "$T/mbr.img"
make_disk gpt "$T/gpt.img"
head -c 1500000 /dev/urandom > "$T/big.bin"
BIG_SHA=$(sha256sum < "$T/big.bin" | cut -d' ' -f1)
mkdir -p "$T/in/sub/deeper"
echo "sub file" > "$T/in/sub/f.txt"; chmod 0640 "$T/in/sub/f.txt"
ln -s f.txt "$T/in/sub/link"; ln -s /etc/hostname "$T/in/abs-link"
cp "$T/big.bin" "$T/in/big.bin"
truncate -s 3M "$T/in/hole.bin"; echo end >> "$T/in/hole.bin"
HOLE_SHA=$(sha256sum < "$T/in/hole.bin" | cut -d' ' -f1)
touch -d '2019-05-06 07:08:09 UTC' "$T/in/sub/f.txt"

modify() {   # IMAGE FMT: the write commands
    local img=$1 f=$2
    echo "motd text" | "$DK" write -f "$f" "$img" /etc/motd || fail "write"
    expect_eq "$("$DK" cat "$img" /etc/motd)" "motd text" "write read back"
    "$DK" write -f "$f" "$img" /data/big.bin < "$T/big.bin" || fail "write big"
    expect_eq "$("$DK" cat "$img" /data/big.bin | sha256sum | cut -d' ' -f1)" "$BIG_SHA" "big sha"
    echo "short" | "$DK" write -f "$f" "$img" /data/big.bin || fail "rewrite shorter"
    expect_eq "$("$DK" cat "$img" /data/big.bin)" short "rewrite truncates"
    "$DK" mkdir -f "$f" -p "$img" /srv/data/new/deep/er || fail "mkdir -p on ext3 via fstab"
    "$DK" mkdir -f "$f" "$img" /boot/newdir || fail "mkdir on ext2 via fstab"
    "$DK" mkdir -f "$f" -p "$img" /boot/newdir || fail "mkdir -p existing"
    expect_err "$DK" mkdir -f "$f" "$img" /boot/newdir | grep -q 'File exists' || fail "mkdir exists"
    expect_err "$DK" mkdir -f "$f" "$img" /nope/x | grep -q 'No such file' || fail "mkdir no parent"
    "$DK" copy-in -f "$f" "$img" "$T/in" /home/user || fail "copy-in"
    expect_eq "$("$DK" cat "$img" /home/user/in/big.bin | sha256sum | cut -d' ' -f1)" "$BIG_SHA" "copy-in big"
    expect_eq "$("$DK" cat "$img" /home/user/in/hole.bin | sha256sum | cut -d' ' -f1)" "$HOLE_SHA" "copy-in sparse"
    expect_eq "$("$DK" cat "$img" /home/user/in/sub/link)" "sub file" "copy-in symlink"
    expect_eq "$("$DK" ls -l "$img" /home/user/in/sub/f.txt)" \
              "-rw-r----- 1 $(id -u) $(id -g) 9 2019-05-06 07:08 /home/user/in/sub/f.txt" "copy-in attrs"
    expect_eq "$("$DK" ls -l "$img" /home/user/in/abs-link | sed 's/.* -> //')" /etc/hostname "copy-in abs link"
    "$DK" copy-in -f "$f" "$img" "$T/in/sub/f.txt" /srv/data || fail "copy-in to ext3 mount"
    "$DK" rm -f "$f" "$img" /data/file1 || fail "rm hard link"
    "$DK" ls -l "$img" /data/hard1 | grep -q '^-rw-r--r-- 1 ' || fail "link count after rm"
    expect_err "$DK" rm -f "$f" "$img" /a | grep -q 'Is a directory' || fail "rm dir without -r"
    "$DK" rm -f "$f" -r "$img" /a || fail "rm -r"
    expect_err "$DK" ls "$img" /a | grep -q 'No such file' || fail "rm -r left /a"
    "$DK" rm -f "$f" "$img" /data/evil-abs /data/sparse.bin || fail "rm symlink + sparse"
    "$DK" shell -f "$f" -c "mkdir /s; write /s/f 'hello world'; mv /s/f /s/g; ln /s/g /s/h; \
        ln-s ../etc/hostname /s/sym; chmod 600 /s/g; truncate /s/h 5; mv /home/user/in/sub /s/sub; \
        touch /s/t; rmdir /srv/data/new/deep/er; chown 1000 100 /s/h" "$img" || fail "shell"
    expect_eq "$("$DK" cat "$img" /s/g)" hello "shell truncate via hard link"
    expect_eq "$("$DK" cat "$img" /s/sym)" guesthost "shell ln-s"
    expect_eq "$("$DK" ls -l "$img" /s/h | cut -d' ' -f1-4)" "-rw------- 2 1000 100" "shell chmod/chown"
    expect_eq "$("$DK" cat "$img" /s/sub/f.txt)" "sub file" "shell mv dir"
    expect_err "$DK" shell -f "$f" -c "rmdir /s" "$img" | grep -q 'not empty' || fail "rmdir non-empty"
    expect_err "$DK" shell -f "$f" -c "mv /s /s/sub/x" "$img" | grep -q 'into itself' || fail "mv into itself"
    # a script stops at its first error
    printf 'mkdir /s/one\nbogus\nmkdir /s/two\n' | "$DK" shell -f "$f" "$img" 2>/dev/null && fail "script error exit"
    "$DK" ls "$img" /s | grep -qx one || fail "script first command"
    "$DK" ls "$img" /s | grep -qx two && fail "script went on after an error"
    # --ro refuses writes and leaves the image alone
    cp "$img" "$T/before"
    expect_err "$DK" shell --ro -f "$f" -c "mkdir /x" "$img" | grep -q 'read-only' || fail "--ro"
    expect_eq "$("$DK" shell --ro -c "cat /etc/motd" "$img")" "motd text" "--ro read"
    cmp -s "$img" "$T/before" || fail "read-only shell changed the image"
}

verify() {   # RAW SCHEME
    local raw=$1 data=102400
    [ "$2" = gpt ] && data=100352
    fsck_part "$raw" 2048 16384 || fail "e2fsck boot ($2)"
    fsck_part "$raw" 18432 81920 || fail "e2fsck root ($2)"
    fsck_part "$raw" "$data" 32768 || fail "e2fsck data ($2)"
    debugfs_part "$raw" 18432 81920 'ls -l /s' | grep -q ' sym' || fail "debugfs sees /s/sym"
    debugfs_part "$raw" 18432 81920 'ls -l /home/user/in' | grep -q 'big.bin' || fail "debugfs sees copy-in"
    debugfs_part "$raw" "$data" 32768 'ls -l /new/deep' | grep -q ' \.\.' || fail "debugfs sees mkdir -p"
    debugfs_part "$raw" 2048 16384 'ls -l /' | grep -q newdir || fail "debugfs sees /boot/newdir"
    debugfs_part "$raw" 18432 81920 'ls -l /' | grep -qw a && fail "debugfs still sees /a"
    true
}

modify "$T/mbr.img" raw
verify "$T/mbr.img" mbr
modify "$T/gpt.img" raw
verify "$T/gpt.img" gpt

# Several images: /dev/sda..., /dev/sdb...; -m inside the shell.
out=$("$DK" shell --ro -c "list-filesystems; cat -m /dev/sdb2 /etc/motd; ls -m /dev/sdb1 /newdir" \
      "$T/mbr.img" "$T/gpt.img") || fail "two-image shell"
printf '%s\n' "$out" | grep -qx '/dev/sdb3: ext3' || fail "second disk is /dev/sdb: $out"
printf '%s\n' "$out" | grep -qx 'motd text' || fail "shell cat -m /dev/sdb2"

# A journal that needs recovery: read as is, writes refused unless --force.
make_disk mbr "$T/j.img"
dd if="$T/j.img" of="$T/root.part" bs=512 skip=18432 count=81920 status=none
debugfs -w -R 'feature needs_recovery' "$T/root.part" >/dev/null 2>&1
dd if="$T/root.part" of="$T/j.img" bs=512 seek=18432 conv=notrunc status=none
expect_eq "$("$DK" cat "$T/j.img" /etc/hostname)" guesthost "read with dirty journal"
cp "$T/j.img" "$T/j.before"
expect_err "$DK" mkdir -f raw "$T/j.img" /x | grep -q 'journal needs recovery' || fail "dirty journal refused"
cmp -s "$T/j.img" "$T/j.before" || fail "refused write changed the image"
"$DK" mkdir --force -f raw "$T/j.img" /x || fail "--force"

# Through qcow2 (writes go to the top image of a chain, the base is intact).
case " $("$DK" --help | sed -n 's/^Formats://p') " in
*" qcow2 "*)
    make_disk mbr "$T/m2.img"
    qemu-img convert -O qcow2 "$T/m2.img" "$T/base.qcow2"
    qemu-img create -q -f qcow2 -b "$T/base.qcow2" -F qcow2 "$T/top.qcow2"
    cp "$T/base.qcow2" "$T/base.before"
    modify "$T/top.qcow2" qcow2
    cmp -s "$T/base.qcow2" "$T/base.before" || fail "backing file modified"
    qemu-img check -q "$T/top.qcow2" || fail "qemu-img check top"
    raw_of "$T/top.qcow2" "$T/top.raw"
    verify "$T/top.raw" mbr ;;
*) echo "note: qcow2 driver not in this build; qcow2 write case not run" ;;
esac
echo ok
