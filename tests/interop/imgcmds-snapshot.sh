#!/usr/bin/env bash
# imgcmds-snapshot.sh - qcow2 internal snapshots made by diskkit: content of
# every snapshot (read back by qemu-img convert -l), copy-on-write of shared
# clusters (compressed ones too), apply across a resize, delete in any
# order, qemu-made snapshots mixed in; qemu-img check must stay clean after
# every step, for v3 and v2 (compat=0.10) images.
set -u
: "${DISKKIT:?}"
for t in qemu-img qemu-io; do
    command -v $t >/dev/null || { echo "$t not installed"; exit 77; }
done
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
qemu-img create -q -f qcow2 probe.qcow2 1M
"$DISKKIT" snapshot -c x probe.qcow2 >/dev/null 2>&1 ||
    { echo "qcow2 snapshots not available in this build"; exit 77; }
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
clean() { qemu-img check -q "$1" || fail "qemu-img check not clean after: $2"; }
snap_is() {  # image snapshot raw-file: the snapshot's first bytes equal the raw file
    qemu-img convert -l "$2" -O raw "$1" snap.raw || { fail "convert -l $2"; return; }
    cmp -s -n "$(stat -c %s "$3")" snap.raw "$3" || fail "snapshot $2 content"
}

for compat in 1.1 0.10; do
    rm -f s.qcow2 x.qcow2 v*.raw
    qemu-img create -q -f qcow2 -o compat=$compat x.qcow2 8M
    qemu-io -c 'write -P 1 0 3M' -c 'write -P 2 5M 1M' x.qcow2 >/dev/null
    # compressed clusters first, then a plain overwrite
    qemu-img convert -c -O qcow2 -o compat=$compat x.qcow2 s.qcow2
    qemu-io -c 'write -P 3 1M 64k' s.qcow2 >/dev/null
    qemu-img convert -O raw s.qcow2 v0.raw
    "$DISKKIT" snapshot -c one s.qcow2 || fail "create one"
    clean s.qcow2 "create one ($compat)"
    qemu-io -c 'write -P 4 0 2M' -c 'write -P 5 6M 512k' -c 'write -P 6 1M 100k' \
        s.qcow2 >/dev/null
    clean s.qcow2 "cow writes ($compat)"
    snap_is s.qcow2 one v0.raw
    qemu-img convert -O raw s.qcow2 v1.raw
    "$DISKKIT" snapshot -c two s.qcow2 || fail "create two"
    qemu-img snapshot -c byqemu s.qcow2
    "$DISKKIT" snapshot -l s.qcow2 >d.txt; qemu-img snapshot -l s.qcow2 >q.txt
    cmp -s d.txt q.txt || { fail "snapshot -l ($compat)"; diff d.txt q.txt; }
    if [ $compat = 1.1 ]; then
        # qemu refuses to resize v2 images with snapshots
        "$DISKKIT" resize s.qcow2 12M >/dev/null || fail "resize with snapshots"
        qemu-io -c 'write -P 7 10M 1M' s.qcow2 >/dev/null
    fi
    qemu-img convert -O raw s.qcow2 v2.raw
    "$DISKKIT" snapshot -c three s.qcow2 || fail "create three"
    clean s.qcow2 "create three ($compat)"
    snap_is s.qcow2 two v1.raw
    "$DISKKIT" snapshot -a one s.qcow2 || fail "apply one"
    clean s.qcow2 "apply one ($compat)"
    qemu-img compare -q s.qcow2 v0.raw || fail "apply one content ($compat)"
    qemu-io -c 'write -P 8 0 8M' s.qcow2 >/dev/null
    clean s.qcow2 "overwrite after apply ($compat)"
    "$DISKKIT" snapshot -d two s.qcow2 || fail "delete two"
    clean s.qcow2 "delete two ($compat)"
    "$DISKKIT" snapshot -a 4 s.qcow2 || fail "apply by id (three)"
    qemu-img compare -q s.qcow2 v2.raw || fail "apply three content ($compat)"
    "$DISKKIT" snapshot -d byqemu s.qcow2 || fail "delete qemu's snapshot"
    "$DISKKIT" snapshot -d one s.qcow2 || fail "delete one"
    clean s.qcow2 "delete one ($compat)"
    snap_is s.qcow2 three v2.raw
    "$DISKKIT" convert -l three -O raw s.qcow2 dk.raw || fail "diskkit convert -l"
    cmp -s -n "$(stat -c %s v2.raw)" dk.raw v2.raw || fail "diskkit convert -l content"
    "$DISKKIT" snapshot -d three s.qcow2 || fail "delete three"
    clean s.qcow2 "delete all ($compat)"
    qemu-img compare -q s.qcow2 v2.raw || fail "content after deleting all ($compat)"
    [ -z "$("$DISKKIT" snapshot -l s.qcow2)" ] || fail "snapshots left"
    # after deleting everything, only leaked nothing: the file holds no garbage
    qemu-img check s.qcow2 | grep -q "leaked" && fail "leaks after delete ($compat)"
done
qemu-img snapshot -c a s.qcow2
"$DISKKIT" snapshot -c a s.qcow2 || fail "duplicate names are allowed (qemu)"
"$DISKKIT" snapshot -d a s.qcow2 || fail "delete first of two"
[ "$("$DISKKIT" snapshot -l s.qcow2 | tail -n 1 | cut -c1-10 | tr -d ' ')" = 2 ] ||
    fail "delete by name removes the first match"
"$DISKKIT" snapshot -a nosuch s.qcow2 2>err.txt && fail "apply of a missing snapshot"
grep -q "^diskkit: snapshot: Could not apply snapshot 'nosuch'" err.txt || fail "apply msg"
[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all snapshot checks passed"
