#!/usr/bin/env bash
# qcow2-luks-keys.sh - LUKS key slot management with `diskkit amend -o
# encrypt.*`, qemu-img/qemu-io 7.2 as the oracle, both ways:
#  - diskkit adds a key (first free slot, keyslot=N, through --image-opts,
#    a lone key given by --passphrase-file): qemu opens with the new and
#    the old key; qemu-img amend adds a key: diskkit reads with it;
#  - diskkit erases a slot (keyslot=N, old-secret=ID): qemu no longer
#    opens with that key but does with the others;
#  - refusals (active slot, last slot, wrong or unknown secrets, plain and
#    legacy AES images) print qemu's message on one line, exit non-zero and
#    leave the file byte-identical; --force overrides where qemu's does;
#  - after every amend: qemu-img check clean, content unchanged
#    (qemu-img compare with a raw copy), info slots identical to qemu-img's;
#  - passphrases never appear in diskkit's output.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3
DK=$DISKKIT
cd "$T"

P0='pw0-Zq81' P1='pw1-Yx72' P2='pw2-Wv63'
SEC="--object secret,id=s0,data=$P0 --object secret,id=s1,data=$P1 --object secret,id=s2,data=$P2"
BAD="--object secret,id=bad,data=wrong"
io() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=$2"; }
step() { echo "== $*"; }
# Every diskkit run: output kept in out.txt and checked for the secrets.
dk() {
    "$DK" "$@" >out.txt 2>&1
    local rc=$?
    grep -q -e "$P0" -e "$P1" -e "$P2" out.txt && fail "passphrase printed by: diskkit $*"
    return $rc
}
# qemu-img's PBKDF2 calibration sometimes fails on a busy machine ("Unable
# to get accurate CPU usage"): retry qemu-img create / amend.
qretry() {
    local i
    for i in 1 2 3 4 5 6 7 8; do qemu-img "$@" 2>/dev/null && return 0; done
    qemu-img "$@"
}
# opens IMG KEYID: qemu-io can read the pattern with that key.
opens() {
    qemu-io $SEC $BAD --image-opts "$(io "$1" "$2")" -c 'read -P 0x5a 0 64k' \
        >/dev/null 2>&1
}
# after IMG: qemu-img check clean, same content as ref.raw, same slots in
# diskkit's and qemu-img's info.
after() {
    local img=$1 key=$2
    qemu-img check $SEC --image-opts "$(io "$img" "$key")" >/dev/null ||
        fail "qemu-img check $img"
    qemu-img compare $SEC --image-opts "$(io "$img" "$key")" \
        driver=raw,file.filename=ref.raw >/dev/null ||
        fail "content of $img changed"
    dk info --output json "$img" || fail "info: $(cat out.txt)"
    grep -v actual-size out.txt > dk.json
    qemu-img info --output json "$img" | grep -v actual-size > q.json
    diff q.json dk.json || fail "info of $img differs from qemu-img's"
}
# active IMG: the list of active flags of the 8 slots, e.g. "10000100".
active() {
    qemu-img info --output json "$1" |
        python3 -c 'import json,sys; print("".join("1" if s["active"] else "0" for s in json.load(sys.stdin)["format-specific"]["data"]["encrypt"]["slots"]))'
}
# refuse IMG MESSAGE ARGS...: diskkit amend fails with exactly
# "diskkit: amend: IMG: MESSAGE" and the file is unchanged.
refuse() {
    local img=$1 msg=$2
    shift 2
    local before
    before=$(sha256sum < "$img")
    dk amend "$@" && fail "amend $* succeeded"
    [ "$(wc -l < out.txt)" = 1 ] || fail "not one line: $(cat out.txt)"
    grep -qxF "diskkit: amend: $img: $msg" out.txt ||
        grep -qxF "diskkit: amend: $msg" out.txt ||
        fail "amend $*: expected '$msg', got '$(cat out.txt)'"
    [ "$before" = "$(sha256sum < "$img")" ] || fail "refused amend changed $img"
}

qemu-img create -q -f raw ref.raw 4M
qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'write -P 0x11 1M 100k' ref.raw >/dev/null
printf '%s\n' "$P0" > p0.txt

step "base image made by qemu-img, data by qemu-io"
qretry create -q -f qcow2 $SEC -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 \
    base.qcow2 4M || fail "qemu-img create"
qemu-io $SEC --image-opts "$(io base.qcow2 s0)" -c 'write -P 0x5a 0 64k' \
    -c 'write -P 0x11 1M 100k' >/dev/null || fail qemu-io
after base.qcow2 s0

step "diskkit adds a key in the first free slot (--image-opts)"
cp base.qcow2 a.qcow2
dk amend $SEC --image-opts "$(io a.qcow2 s0)" \
    -o encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10 ||
    fail "add: $(cat out.txt)"
[ "$(active a.qcow2)" = 11000000 ] || fail "slots after add: $(active a.qcow2)"
opens a.qcow2 s1 || fail "qemu cannot open with the added key"
opens a.qcow2 s0 || fail "qemu cannot open with the old key"
after a.qcow2 s1

step "diskkit adds a key in keyslot=5, image key from --passphrase-file"
dk amend --passphrase-file p0.txt --object secret,id=s2,data="$P2" \
    -o encrypt.state=active,encrypt.new-secret=s2,encrypt.keyslot=5,encrypt.iter-time=10 \
    a.qcow2 || fail "add keyslot=5: $(cat out.txt)"
[ "$(active a.qcow2)" = 11000100 ] || fail "slots after keyslot=5: $(active a.qcow2)"
opens a.qcow2 s2 || fail "qemu cannot open with the key in slot 5"
after a.qcow2 s2

step "qemu-img amend adds a key, diskkit reads with it"
cp base.qcow2 q.qcow2
qretry amend $SEC --image-opts "$(io q.qcow2 s0)" \
    -o encrypt.state=active,encrypt.new-secret=s2,encrypt.keyslot=3,encrypt.iter-time=10 ||
    fail "qemu-img amend"
dk convert --object secret,id=x,data="$P2" -O raw q.qcow2 q.raw || fail "read: $(cat out.txt)"
cmp q.raw ref.raw || fail "diskkit read with the qemu-added key differs"
dk convert $SEC --image-opts "$(io q.qcow2 s0)" -O raw q0.raw || fail "read s0: $(cat out.txt)"
cmp q0.raw ref.raw || fail "diskkit read with the old key differs"
after q.qcow2 s2

step "refusals: one line, qemu's words, file unchanged"
refuse a.qcow2 "Refusing to overwrite active keyslot 0 - please erase it first" \
    $SEC --image-opts "$(io a.qcow2 s0)" -o encrypt.state=active,encrypt.new-secret=s1,encrypt.keyslot=0
refuse a.qcow2 "Invalid keyslot 8 specified, must be between 0 and 7" \
    $SEC --image-opts "$(io a.qcow2 s0)" -o encrypt.state=active,encrypt.new-secret=s1,encrypt.keyslot=8
refuse a.qcow2 "'new-secret' is required to activate a keyslot" \
    $SEC --image-opts "$(io a.qcow2 s0)" -o encrypt.state=active
refuse a.qcow2 "No secret with id 'nosuch'" \
    $SEC --image-opts "$(io a.qcow2 s0)" -o encrypt.state=active,encrypt.new-secret=nosuch
refuse a.qcow2 "Parameter 'state' is missing" \
    $SEC --image-opts "$(io a.qcow2 s0)" -o encrypt.new-secret=s1
refuse a.qcow2 "No keyslots match given (old) password for erase operation" \
    $SEC $BAD --image-opts "$(io a.qcow2 s0)" -o encrypt.state=inactive,encrypt.old-secret=bad
refuse a.qcow2 "Given keyslot 1 doesn't contain the given old password for erase operation" \
    $SEC $BAD --image-opts "$(io a.qcow2 s0)" -o encrypt.state=inactive,encrypt.keyslot=1,encrypt.old-secret=bad
refuse a.qcow2 "Given keyslot 2 is already erased (inactive) " \
    $SEC --image-opts "$(io a.qcow2 s0)" -o encrypt.state=inactive,encrypt.keyslot=2
refuse a.qcow2 "Invalid password, cannot unlock any keyslot" \
    $SEC $BAD --image-opts "$(io a.qcow2 bad)" -o encrypt.state=active,encrypt.new-secret=s1
refuse a.qcow2 "image is encrypted: give the passphrase with --object secret,... or --passphrase-file" \
    $SEC -o encrypt.state=inactive,encrypt.keyslot=1 a.qcow2
refuse base.qcow2 "Attempt to erase the only active keyslot 0 which will erase all the data in the image irreversibly - refusing operation" \
    $SEC --image-opts "$(io base.qcow2 s0)" -o encrypt.state=inactive,encrypt.keyslot=0
refuse base.qcow2 "All the active keyslots match the (old) password that was given and erasing them will erase all the data in the image irreversibly - refusing operation" \
    $SEC --image-opts "$(io base.qcow2 s0)" -o encrypt.state=inactive,encrypt.old-secret=s0

step "refusals on plain and legacy AES images (qemu's words)"
qemu-img create -q -f qcow2 plain.qcow2 4M
qemu-img create -q -f qcow2 --object secret,id=s0,data="$P0" \
    -o encrypt.format=aes,encrypt.key-secret=s0 aes.qcow2 4M 2>/dev/null || fail "create aes"
for o in encrypt.state=active,encrypt.new-secret=s1 encrypt.state=inactive,encrypt.keyslot=0; do
    qemu-img amend $SEC -f qcow2 -o "$o" plain.qcow2 2>q.txt && fail "qemu-img accepted $o"
    grep -qF "Can't amend encryption options - encryption not present" q.txt ||
        fail "qemu-img's message changed: $(cat q.txt)"
    refuse plain.qcow2 "Can't amend encryption options - encryption not present" \
        $SEC -f qcow2 -o "$o" plain.qcow2
    refuse aes.qcow2 "Only LUKS encryption options can be amended" \
        $SEC --image-opts "$(io aes.qcow2 s0)" -o "$o"
done

step "diskkit erases by keyslot: qemu can no longer open with that key"
dk amend $SEC --image-opts "$(io a.qcow2 s0)" -o encrypt.state=inactive,encrypt.keyslot=5 ||
    fail "erase keyslot=5: $(cat out.txt)"
[ "$(active a.qcow2)" = 11000000 ] || fail "slots after erase: $(active a.qcow2)"
opens a.qcow2 s2 && fail "qemu still opens with the erased key"
opens a.qcow2 s1 || fail "qemu cannot open with s1 after the erase"
opens a.qcow2 s0 || fail "qemu cannot open with s0 after the erase"
after a.qcow2 s0

step "diskkit erases by old-secret"
dk amend $SEC --image-opts "$(io a.qcow2 s1)" -o encrypt.state=inactive,encrypt.old-secret=s0 ||
    fail "erase old-secret: $(cat out.txt)"
[ "$(active a.qcow2)" = 01000000 ] || fail "slots after erase: $(active a.qcow2)"
opens a.qcow2 s0 && fail "qemu still opens with the erased old secret"
opens a.qcow2 s1 || fail "qemu cannot open with s1"
after a.qcow2 s1

step "--force: overwrite an active slot, erase the last one"
dk amend $SEC --force --image-opts "$(io a.qcow2 s1)" \
    -o encrypt.state=active,encrypt.new-secret=s2,encrypt.keyslot=1,encrypt.iter-time=10 ||
    fail "forced overwrite: $(cat out.txt)"
opens a.qcow2 s2 || fail "qemu cannot open with the key that replaced slot 1"
opens a.qcow2 s1 && fail "qemu still opens with the replaced key"
after a.qcow2 s2
cp a.qcow2 last.qcow2
dk amend $SEC --force --image-opts "$(io last.qcow2 s2)" -o encrypt.state=inactive,encrypt.keyslot=1 ||
    fail "forced erase of the last slot: $(cat out.txt)"
[ "$(active last.qcow2)" = 00000000 ] || fail "slots after forced erase: $(active last.qcow2)"
opens last.qcow2 s2 && fail "qemu still opens after the last slot was erased"
# qemu-img check needs a key now; diskkit checks without one.
dk check last.qcow2 || fail "check after erasing every slot: $(cat out.txt)"

step "qemu-img amend erases a slot diskkit added"
cp base.qcow2 e.qcow2
dk amend $SEC --image-opts "$(io e.qcow2 s0)" \
    -o encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10 || fail "add: $(cat out.txt)"
qretry amend $SEC --image-opts "$(io e.qcow2 s1)" -o encrypt.state=inactive,encrypt.old-secret=s0 ||
    fail "qemu-img erase"
dk convert $SEC --image-opts "$(io e.qcow2 s0)" -O raw e.raw &&
    fail "diskkit opens with a key qemu-img erased"
grep -qF "Invalid password, cannot unlock any keyslot" out.txt || fail "message: $(cat out.txt)"
dk convert $SEC --image-opts "$(io e.qcow2 s1)" -O raw e.raw || fail "read s1: $(cat out.txt)"
cmp e.raw ref.raw || fail "content after qemu-img erase differs"
after e.qcow2 s1

step "amend -o help lists qemu-img's amend options"
qemu-img amend -f qcow2 -o help > qh.txt
dk amend -f qcow2 -o help || fail "help: $(cat out.txt)"
diff qh.txt out.txt || fail "amend -o help differs from qemu-img's"
echo "all LUKS key slot tests passed"
