#!/usr/bin/env bash
# guest-read.sh - guest read commands on MBR (extended + logical) and GPT
# disks holding ext2/ext3/ext4 built by mkfs -d, through raw and (when the
# drivers are on this branch) qcow2, a qcow2 backing chain, vmdk, vdi and vpc.
# Checks every command against the known tree; a damaged GPT primary is
# read through the backup; copy-out never follows guest symlinks.
set -u
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$SRCDIR/tests/interop/guest-fixture.bash"

make_disk mbr "$T/mbr.img"
make_disk gpt "$T/gpt.img"
RAND_SHA=$(sha256sum < "$T/roottree/data/random.bin" | cut -d' ' -f1)
SPARSE_SHA=$(sha256sum < "$T/roottree/data/sparse.bin" | cut -d' ' -f1)

check_image() {   # IMAGE SCHEME: every read command against the known tree
    local img=$1 scheme=$2 data=/dev/sda5 out
    [ "$scheme" = gpt ] && data=/dev/sda3
    out=$("$DK" list-partitions "$img") || fail "list-partitions $img"
    if [ "$scheme" = mbr ]; then
        expect_eq "$out" $'/dev/sda1\n/dev/sda2\n/dev/sda3\n/dev/sda5' "mbr partitions"
    else
        expect_eq "$out" $'/dev/sda1\n/dev/sda2\n/dev/sda3' "gpt partitions"
    fi
    out=$("$DK" list-filesystems "$img") || fail "list-filesystems"
    expect_eq "$out" $'/dev/sda1: ext2\n/dev/sda2: ext4\n'"$data: ext3" "list-filesystems"
    out=$("$DK" inspect "$img") || fail "inspect"
    printf '%s\n' "$out" | grep -qx 'root: /dev/sda2' || fail "inspect root: $out"
    printf '%s\n' "$out" | grep -qx 'distro: testos' || fail "inspect distro"
    printf '%s\n' "$out" | grep -qx 'hostname: guesthost' || fail "inspect hostname"
    printf '%s\n' "$out" | grep -qx 'version: 7.3' || fail "inspect version"
    printf '%s\n' "$out" | grep -qx "arch: $(uname -m)" || fail "inspect arch"
    printf '%s\n' "$out" | grep -qx '    /boot: /dev/sda1' || fail "inspect /boot (LABEL=)"
    printf '%s\n' "$out" | grep -qx "    /srv/data: $data" || fail "inspect /srv/data (UUID=)"
    printf '%s\n' "$out" | grep -q nowhere && fail "unresolvable fstab entry listed"
    out=$("$DK" inspect --output json "$img") || fail "inspect json"
    python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["product-name"]=="Test OS 7.3 (Diskkit)" and d["major-version"]==7 and d["minor-version"]==3, d' <<< "$out" || fail "inspect json content"
    # cat through the fstab mounts, symlinks fast/slow/absolute inside the guest
    expect_eq "$("$DK" cat "$img" /etc/hostname)" guesthost "cat hostname"
    expect_eq "$("$DK" cat "$img" /boot/grub/grub.cfg)" "menuentry test" "cat /boot via fstab"
    expect_eq "$("$DK" cat "$img" /srv/data/dir/file3)" data3 "cat /srv/data via fstab"
    expect_eq "$("$DK" cat -m /dev/sda1 "$img" /vmlinuz-test)" kernel "cat -m"
    expect_eq "$("$DK" cat "$img" "/mnt/with space/dir/file3")" data3 "fstab \\040 escape"
    expect_eq "$("$DK" cat "$img" /etc/link-slow)" guesthost "slow symlink"
    expect_eq "$("$DK" cat "$img" /etc/link-fast | head -1)" 'NAME="Test OS"' "fast symlink"
    expect_eq "$("$DK" cat "$img" /data/evil-abs)" "root:x:0:0:root:/root:/bin/sh" "absolute symlink stays in guest"
    expect_eq "$("$DK" cat "$img" /a/b/c/d/e/f/g/h/deep.txt)" "deep file" "deep path"
    expect_eq "$("$DK" cat "$img" '/data/with space.txt')" spaced "name with space"
    expect_eq "$("$DK" cat "$img" '/data/ünïcödé.txt')" unicode "utf-8 name"
    expect_eq "$("$DK" cat "$img" /data/random.bin | sha256sum | cut -d' ' -f1)" "$RAND_SHA" "random sha256"
    expect_eq "$("$DK" cat "$img" /data/sparse.bin | sha256sum | cut -d' ' -f1)" "$SPARSE_SHA" "sparse sha256"
    # ls
    out=$("$DK" ls "$img" /data)
    expect_eq "$out" $'evil-abs\nevil-rel\nfile1\nhard1\nrandom.bin\nsparse.bin\nwith space.txt\nünïcödé.txt' "ls /data"
    out=$("$DK" ls -l "$img" /data | grep ' file1$')
    [[ "$out" == "-rw-r--r-- 2 0 0 11 "*" file1" ]] || fail "ls -l hard link: $out"
    out=$("$DK" ls -l "$img" /data | grep evil-abs)
    [[ "$out" == "lrwxrwxrwx 1 0 0 11 "*" evil-abs -> /etc/passwd" ]] || fail "ls -l symlink: $out"
    out=$("$DK" ls -l "$img" /home/user/notes.txt)
    expect_eq "$out" "-rw-r--r-- 1 0 0 10 2020-02-03 04:05 /home/user/notes.txt" "ls -l file"
    out=$("$DK" ls -l "$img" /home | grep user)
    [[ "$out" == "drwxr-x--x "* ]] || fail "ls -l mode: $out"
    expect_eq "$("$DK" ls -R "$img" /a | tail -1)" /a/b/c/d/e/f/g/h/deep.txt "ls -R"
    expect_eq "$("$DK" ls -R "$img" / | wc -l)" \
              "$(cd "$T/roottree" && find . -mindepth 1 | wc -l | awk '{print $1 + 1 + 4}')" \
              "ls -R count (+lost+found, +4 entries of the /boot filesystem)"
    "$DK" ls -R "$img" / | grep -qx /boot/grub/grub.cfg || fail "ls -R enters /boot mount"
    "$DK" ls -R -m /dev/sda2 "$img" / | grep -q '^/boot/' && fail "ls -R -m stays on one fs"
    # df
    out=$("$DK" df "$img") || fail df
    expect_eq "$(printf '%s\n' "$out" | wc -l)" 4 "df lines"
    printf '%s\n' "$out" | grep -q "^$img:/dev/sda2 *40960 " || fail "df root size: $out"
    "$DK" df -h "$img" | grep -q ' 40M ' || fail "df -h"
}

check_image "$T/mbr.img" mbr
check_image "$T/gpt.img" gpt

# copy-out: tree with modes and times, symlinks kept as links, nothing
# written outside DESTDIR whatever the links say.
mkdir "$T/out" "$T/out2"
"$DK" copy-out "$T/mbr.img" /data /home /etc/hostname "$T/out" || fail "copy-out"
expect_eq "$(sha256sum < "$T/out/data/random.bin" | cut -d' ' -f1)" "$RAND_SHA" "copy-out content"
expect_eq "$(readlink "$T/out/data/evil-abs")" /etc/passwd "copy-out keeps abs symlink"
expect_eq "$(readlink "$T/out/data/evil-rel")" ../../../../../../tmp "copy-out keeps rel symlink"
expect_eq "$(stat -c %a "$T/out/home/user")" 751 "copy-out mode"
expect_eq "$(stat -c %Y "$T/out/home/user/notes.txt")" "$(date -d '2020-02-03 04:05:06 UTC' +%s)" "copy-out mtime"
expect_eq "$(cat "$T/out/hostname")" guesthost "copy-out single file"
[ "$(stat -c %b "$T/out/data/sparse.bin")" -lt 1000 ] || fail "copy-out sparse file not sparse"
# a second copy over the first must replace the links, not write through them
ln -sf "$T/victim" "$T/out/data/file1"
"$DK" copy-out "$T/mbr.img" /data "$T/out" || fail "copy-out again"
[ -e "$T/victim" ] && fail "copy-out wrote through a symlink in DESTDIR"
expect_eq "$(cat "$T/out/data/file1")" "hello hard" "copy-out replaced symlink"
"$DK" copy-out "$T/mbr.img" /data/evil-abs "$T/out2" || fail "copy-out of a symlink"
[ -L "$T/out2/evil-abs" ] || fail "copy-out of a symlink made no symlink"
"$DK" copy-out "$T/mbr.img" /boot "$T/out2" || fail "copy-out of a mountpoint"
expect_eq "$(cat "$T/out2/boot/grub/grub.cfg")" "menuentry test" "copy-out /boot"

# A directory of DESTDIR that is a symlink to elsewhere is never entered.
mkdir "$T/out3" "$T/elsewhere"
ln -s "$T/elsewhere" "$T/out3/data"
"$DK" copy-out "$T/mbr.img" /data "$T/out3" 2>/dev/null && fail "copy-out into a symlinked dir succeeded"
[ -z "$(ls -A "$T/elsewhere")" ] || fail "copy-out wrote through a symlinked directory"

# Older release files, sysconfig hostname, /dev/vdX and PARTUUID= in fstab.
mkdir -p "$T/rh/etc/sysconfig" "$T/rh/bin" "$T/rhboot/grub"
echo "Fedora release 38 (Thirty Eight)" > "$T/rh/etc/redhat-release"
printf 'NETWORKING=yes\nHOSTNAME=rhhost\n' > "$T/rh/etc/sysconfig/network"
printf '/dev/vda2 / ext4 defaults 0 1\nPARTUUID=0000abcd-01 /boot ext2 defaults 0 2\n' > "$T/rh/etc/fstab"
echo "rh grub" > "$T/rhboot/grub/grub.cfg"
make_fs ext2 "$T/rhboot" 4 "" "$BOOT_UUID" "$T/rhb.img"
make_fs ext4 "$T/rh" 8 "" "$ROOT_UUID" "$T/rhr.img"
truncate -s 16M "$T/rh.img"
printf 'label: dos\nlabel-id: 0x0000abcd\nstart=2048, size=8192, type=83\nstart=10240, size=16384, type=83\n' |
    sfdisk -q "$T/rh.img" >/dev/null
dd if="$T/rhb.img" of="$T/rh.img" bs=512 seek=2048 conv=notrunc status=none
dd if="$T/rhr.img" of="$T/rh.img" bs=512 seek=10240 conv=notrunc status=none
out=$("$DK" inspect "$T/rh.img") || fail "inspect redhat"
printf '%s\n' "$out" | grep -qx 'distro: fedora' || fail "redhat-release distro: $out"
printf '%s\n' "$out" | grep -qx 'major version: 38' || fail "redhat-release version"
printf '%s\n' "$out" | grep -qx 'hostname: rhhost' || fail "sysconfig hostname"
printf '%s\n' "$out" | grep -qx 'root: /dev/sda2' || fail "root"
printf '%s\n' "$out" | grep -qx '    /boot: /dev/sda1' || fail "PARTUUID= in fstab"
expect_eq "$("$DK" cat "$T/rh.img" /boot/grub/grub.cfg)" "rh grub" "cat via PARTUUID mount"
rm "$T/rh/etc/redhat-release"; echo "12.4" > "$T/rh/etc/debian_version"
make_fs ext4 "$T/rh" 8 "" "$ROOT_UUID" "$T/rhr.img"
dd if="$T/rhr.img" of="$T/rh.img" bs=512 seek=10240 conv=notrunc status=none
"$DK" inspect "$T/rh.img" | grep -qx 'product name: Debian 12.4' || fail "debian_version"

# Bad input: clear one-line errors, non-zero exit.
expect_err "$DK" cat "$T/mbr.img" /etc/nothere | grep -q 'No such file' || fail "missing file message"
expect_err "$DK" ls "$T/mbr.img" /etc/hostname/x | grep -q 'Not a directory' || fail "file as dir message"
expect_err "$DK" cat "$T/mbr.img" /etc | grep -q 'Is a directory' || fail "cat dir message"
expect_err "$DK" cat -m /dev/sdb1 "$T/mbr.img" /x | grep -q 'no such device' || fail "bad -m"
expect_err "$DK" ls "$T/mbr.img" relative >/dev/null
expect_err "$DK" copy-out "$T/mbr.img" /etc "$T/nodir" >/dev/null
expect_err "$DK" cat "$T/nonexistent.img" /x >/dev/null
# write commands refuse a probed raw image (contract: needs -f raw)
cp "$T/mbr.img" "$T/ro.img"
expect_err "$DK" mkdir "$T/ro.img" /newdir | grep -q 'explicit -f raw' || fail "probed raw write"
cmp -s "$T/mbr.img" "$T/ro.img" || fail "failed write changed the image"

# A filesystem diskkit cannot read, on a whole disk (no partition table).
if command -v mkfs.vfat >/dev/null 2>&1; then
    truncate -s 8M "$T/other.img"; mkfs.vfat -n VFATLBL "$T/other.img" >/dev/null; kind=vfat
else
    truncate -s 8M "$T/other.img"; mkswap -L SWAPLBL "$T/other.img" >/dev/null; kind=swap
fi
expect_eq "$("$DK" list-filesystems "$T/other.img")" "/dev/sda: $kind" "whole-disk $kind"
expect_eq "$("$DK" list-partitions "$T/other.img")" "" "no partitions on a bare disk"
expect_err "$DK" ls "$T/other.img" / | grep -q "cannot read $kind" || fail "unreadable fs message"
expect_err "$DK" ls -m /dev/sda "$T/other.img" / | grep -q "cannot read $kind" || fail "unreadable fs -m"
expect_err "$DK" inspect "$T/other.img" | grep -q 'no operating system' || fail "inspect nothing"
# A whole-disk ext4 (no table) is /dev/sda.
cp "$T/roottree/etc/hostname" "$T/h"
mkfs.ext4 -q -F -d "$T/roottree/home" "$T/bare.img" 4M >/dev/null 2>&1
expect_eq "$("$DK" list-filesystems "$T/bare.img")" "/dev/sda: ext4" "bare ext4"
expect_eq "$("$DK" cat "$T/bare.img" /user/notes.txt)" "user file" "bare ext4 cat (only fs)"

# Damaged GPT primary header: read through the backup, with a warning.
cp "$T/gpt.img" "$T/gptbad.img"
printf 'XXXX' | dd of="$T/gptbad.img" bs=1 seek=$((512 + 24)) conv=notrunc status=none
out=$("$DK" list-partitions "$T/gptbad.img" 2>"$T/warn") || fail "backup GPT"
expect_eq "$out" $'/dev/sda1\n/dev/sda2\n/dev/sda3' "partitions from backup GPT"
grep -q 'primary header is damaged' "$T/warn" || fail "no backup warning: $(cat "$T/warn")"
expect_eq "$("$DK" cat "$T/gptbad.img" /etc/hostname 2>/dev/null)" guesthost "cat via backup GPT"
# Both headers damaged: no partitions, a warning, still no crash.
printf 'XXXX' | dd of="$T/gptbad.img" bs=1 seek=$((72 * 1024 * 1024 - 512 + 24)) conv=notrunc status=none
"$DK" list-filesystems "$T/gptbad.img" 2>"$T/warn" >/dev/null
grep -q 'no usable GPT' "$T/warn" || fail "both GPT headers bad: $(cat "$T/warn")"

# Through image formats, when this build has them.
formats=$("$DK" --help | sed -n 's/^Formats://p')
ran=0
for fmt in qcow2 vmdk vdi vpc; do
    case " $formats " in *" $fmt "*) ;; *) echo "note: $fmt driver not in this build"; continue ;; esac
    qemu-img convert -O "$fmt" "$T/gpt.img" "$T/gpt.$fmt" || fail "qemu-img convert $fmt"
    check_image "$T/gpt.$fmt" gpt
    ran=$((ran + 1))
done
case " $formats " in *" qcow2 "*)
    qemu-img convert -O qcow2 "$T/mbr.img" "$T/base.qcow2"
    qemu-img create -q -f qcow2 -b "$T/base.qcow2" -F qcow2 "$T/top.qcow2"
    check_image "$T/top.qcow2" mbr
    # an encrypted (LUKS) qcow2: the secret comes from --object
    if qemu-img convert -O qcow2 --object secret,id=sec0,data=guestpass \
         -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 \
         "$T/mbr.img" "$T/enc.qcow2" 2>/dev/null; then
        expect_eq "$("$DK" cat --object secret,id=sec0,data=guestpass "$T/enc.qcow2" /boot/grub/grub.cfg)" \
                  "menuentry test" "cat through LUKS qcow2"
        expect_err "$DK" cat "$T/enc.qcow2" /etc/hostname | grep -q 'encrypted' || fail "no secret"
    fi ;;
esac
# INTERFACE.md's example: an ext4 inside a qcow2 overlay over a vmdk base.
case " $formats " in *" qcow2 "*" vmdk "*|*" vmdk "*" qcow2 "*)
    qemu-img convert -O vmdk "$T/mbr.img" "$T/base.vmdk"
    qemu-img create -q -f qcow2 -b "$T/base.vmdk" -F vmdk "$T/over.qcow2"
    check_image "$T/over.qcow2" mbr ;;
esac
echo "ok ($ran extra formats)"
