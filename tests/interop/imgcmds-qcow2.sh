#!/usr/bin/env bash
# imgcmds-qcow2.sh - check, resize, measure, rebase, commit, dd, snapshot
# and amend on qcow2 images, each compared with qemu-img doing the same
# operation on a copy of the same image (qemu-img compare / check / output).
set -u
: "${DISKKIT:?}"
command -v qemu-img >/dev/null || { echo "qemu-img not installed"; exit 77; }
command -v qemu-io >/dev/null || { echo "qemu-io not installed"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
qemu-img create -q -f qcow2 probe.qcow2 1M
"$DISKKIT" snapshot -l -f qcow2 probe.qcow2 >/dev/null 2>&1 ||
    { echo "qcow2 driver not available in this build"; exit 77; }
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_rc() {   # expected-rc description command...
    local want=$1 what=$2; shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    [ "$rc" = "$want" ] || { fail "$what: exit $rc, want $want"; cat out.txt err.txt; }
}
qcheck() {      # image: qemu-img check must be clean
    qemu-img check -q "$1" || fail "qemu-img check $1 not clean ($2)"
}
same() {        # a b what: identical guest content
    qemu-img compare -q "$1" "$2" || fail "$3: content differs"
}
mkbase() {      # name size: a qcow2 with a few data runs
    qemu-img create -q -f qcow2 "$1" "$2"
    qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 64k' -c 'write -P 0x33 100k 7k' \
        "$1" >/dev/null
}

# --- check on clean images: same text, JSON and exit code ------------------
mkbase a.qcow2 8M
qemu-img convert -c -O qcow2 a.qcow2 c.qcow2
for img in a.qcow2 c.qcow2 probe.qcow2; do
    for out in human json; do
        "$DISKKIT" check --output $out "$img" >d.txt 2>&1; rd=$?
        qemu-img check --output $out "$img" >q.txt 2>&1; rq=$?
        [ "$rd" = "$rq" ] || fail "check $img $out: exit $rd vs $rq"
        cmp -s d.txt q.txt || { fail "check $img $out output"; diff d.txt q.txt; }
    done
done
expect_rc 0 "check -q" "$DISKKIT" check -q a.qcow2
[ -s out.txt ] && fail "check -q printed"

# --- resize: grow, shrink, relative --------------------------------------
for op in "+3M" "20M" "--shrink 5M" "--shrink -- -2M"; do
    mkbase r1.qcow2 8M; cp r1.qcow2 r2.qcow2
    # shellcheck disable=SC2086
    expect_rc 0 "resize $op" "$DISKKIT" resize r1.qcow2 $op
    # shellcheck disable=SC2086
    qemu-img resize -q r2.qcow2 $op
    same r1.qcow2 r2.qcow2 "resize $op"
    qemu-img compare -q -s r1.qcow2 r2.qcow2 >/dev/null 2>&1 ||
        [ "$(qemu-img info --output json r1.qcow2 | grep virtual-size)" = \
          "$(qemu-img info --output json r2.qcow2 | grep virtual-size)" ] ||
        fail "resize $op size"
    qcheck r1.qcow2 "resize $op"
done
mkbase r1.qcow2 8M
expect_rc 1 "qcow2 shrink without --shrink" "$DISKKIT" resize r1.qcow2 -- -1M

# --- measure: same numbers as qemu-img -----------------------------------
for args in "--size 1G" "--size 100M -o cluster_size=4k" "--size 10G -o preallocation=metadata" \
            "--size 1M -o compat=0.10" "a.qcow2" "c.qcow2" "-o cluster_size=512 a.qcow2"; do
    for out in human json; do
        # shellcheck disable=SC2086
        "$DISKKIT" measure -O qcow2 $args --output $out >d.txt 2>&1
        # shellcheck disable=SC2086
        qemu-img measure -O qcow2 $args --output $out >q.txt 2>&1
        cmp -s d.txt q.txt || { fail "measure $args $out"; diff d.txt q.txt; }
    done
done
"$DISKKIT" measure -O raw a.qcow2 >d.txt; qemu-img measure -O raw a.qcow2 >q.txt
cmp -s d.txt q.txt || fail "measure -O raw from qcow2"

# --- rebase: safe onto another backing, detach, unsafe --------------------
prep_rebase() {
    rm -f b1 b2 t1 t2
    qemu-img create -q -f qcow2 b1 4M
    qemu-io -c 'write -P 1 0 2M' -c 'write -P 4 3M 4k' b1 >/dev/null
    qemu-img create -q -f raw b2 4M
    qemu-io -f raw -c 'write -P 1 0 1M' -c 'write -P 7 3M 64k' -c 'write -P 9 1536k 5k' \
        b2 >/dev/null
    qemu-img create -q -f qcow2 -b b1 -F qcow2 t1 4M
    qemu-io -c 'write -P 2 512k 64k' -c 'write -P 3 1900k 300k' t1 >/dev/null
    cp t1 t2
}
prep_rebase
expect_rc 0 "rebase safe" "$DISKKIT" rebase -b b2 -F raw t1
qemu-img rebase -b b2 -F raw t2
same t1 t2 "rebase safe (vs qemu-img)"
qcheck t1 "rebase safe"
qemu-img info t1 | grep -qx "backing file: b2" || fail "rebase: backing name"
qemu-img info t1 | grep -qx "backing file format: raw" || fail "rebase: backing fmt"
prep_rebase
expect_rc 0 "rebase detach" "$DISKKIT" rebase -b "" t1
qemu-img rebase -b "" t2
same t1 t2 "rebase detach"
qemu-img info t1 | grep -q "backing file" && fail "rebase detach kept a backing file"
qcheck t1 "rebase detach"
prep_rebase
expect_rc 0 "rebase unsafe" "$DISKKIT" rebase -u -b b2 -F raw t1
qemu-img rebase -u -b b2 -F raw t2
same t1 t2 "rebase unsafe"
prep_rebase
expect_rc 1 "rebase without -F" "$DISKKIT" rebase -b b2 t1
cmp -s t1 t2 || fail "failed rebase modified the image"
expect_rc 1 "rebase without -b" "$DISKKIT" rebase t1

# --- commit: backing content equals qemu-img commit's result ---------------
prep_commit() {  # the same base+overlay pair in cd/ (diskkit) and cq/ (qemu-img)
    rm -rf cd cq; mkdir cd cq
    qemu-img create -q -f qcow2 cd/base 4M
    qemu-io -c 'write -P 1 0 2M' cd/base >/dev/null
    qemu-img create -q -f qcow2 -b base -F qcow2 cd/top 6M
    qemu-io -c 'write -P 2 1M 2M' -c 'write -P 3 5M 64k' -c 'write -z 0 64k' cd/top >/dev/null
    cp cd/base cd/top cq/
}
prep_commit
expect_rc 0 "commit" "$DISKKIT" commit cd/top
[ "$(cat out.txt)" = "Image committed." ] || fail "commit output: $(cat out.txt)"
qemu-img commit -q cq/top
same cd/base cq/base "commit backing"
same cd/top cq/top "commit overlay"
qcheck cd/base "commit backing"; qcheck cd/top "commit top"
qemu-img map --output json cd/top | grep -q '"depth": 0' && fail "commit did not empty the top"
prep_commit
expect_rc 0 "commit -d" "$DISKKIT" commit -q -d cd/top
[ -s out.txt ] && fail "commit -q printed"
qemu-img commit -q -d cq/top
same cd/base cq/base "commit -d backing"
qemu-img map --output json cd/top | grep -q '"depth": 0' || fail "commit -d emptied the top"
expect_rc 1 "commit without backing" "$DISKKIT" commit a.qcow2

# --- commit -b: into a deeper layer, compared with qemu-img commit -b ------
# base (4M) <- mid (5M) <- top (6M):
# the top is larger than both, mid is shorter than the top (its tail reads
# as zeros through the top), and mid stores data, zeros and a run past the
# end of base.
prep_deep() {   # the same chain in dd/ (diskkit) and dq/ (qemu-img)
    rm -rf dd dq; mkdir dd dq
    qemu-img create -q -f qcow2 dd/base 4M
    qemu-io -c 'write -P 1 0 3M' dd/base >/dev/null
    qemu-img create -q -f qcow2 -b base -F qcow2 dd/mid 5M
    qemu-io -c 'write -P 2 1M 1M' -c 'write -z 2M 64k' -c 'write -P 7 4M 512k' \
        dd/mid >/dev/null
    qemu-img create -q -f qcow2 -b mid -F qcow2 dd/top 6M
    qemu-io -c 'write -P 3 1536k 64k' -c 'write -P 4 5M 64k' -c 'write -z 128k 64k' \
        dd/top >/dev/null
    cp dd/base dd/mid dd/top dq/
    qemu-img convert -O raw dd/top top-before.raw
}
prep_deep
cp dd/mid mid-before
expect_rc 0 "commit -b" "$DISKKIT" commit -b base dd/top
[ "$(cat out.txt)" = "Image committed." ] || fail "commit -b output: $(cat out.txt)"
qemu-img commit -q -b base dq/top
same dd/base dq/base "commit -b base"
same dd/base top-before.raw "commit -b base against the top's old content"
[ "$(qemu-img info --output json dd/base | grep '"virtual-size"')" = \
  "$(qemu-img info --output json dq/base | grep '"virtual-size"')" ] ||
    fail "commit -b base size differs from qemu-img's"
qcheck dd/base "commit -b base"
cmp -s dd/mid mid-before || fail "commit -b modified the intermediate layer"
cmp -s dd/top dq/top || fail "commit -b changed the top (-b implies -d)"
same dd/top top-before.raw "commit -b top"
# The base found by path (absolute, from another directory) as well as by
# the name the layer above records.
prep_deep
(cd / && "$DISKKIT" commit -q -b "$T/dd/base" "$T/dd/top") >out.txt 2>err.txt ||
    { fail "commit -b by absolute path"; cat err.txt; }
qemu-img commit -q -b base dq/top
same dd/base dq/base "commit -b by path"
# Into the direct backing file with -b: the top is kept.
prep_deep
expect_rc 0 "commit -b mid" "$DISKKIT" commit -b mid dd/top
qemu-img commit -q -b mid dq/top
same dd/mid dq/mid "commit -b mid"
cmp -s dd/top dq/top || fail "commit -b mid emptied the top"
qcheck dd/mid "commit -b mid"
# Names that are not in the chain: the top itself, a stranger, none at all.
prep_deep
cp dd/base dd/top .
expect_rc 1 "commit -b top" "$DISKKIT" commit -b top dd/top
grep -q "Did not find 'top' in the backing chain of 'dd/top'" err.txt ||
    fail "commit -b top message: $(cat err.txt)"
expect_rc 1 "commit -b stranger" "$DISKKIT" commit -b a.qcow2 dd/top
[ "$(wc -l <err.txt)" = 1 ] || fail "commit -b stranger: not one line"
expect_rc 1 "commit -b without backing" "$DISKKIT" commit -b base a.qcow2
grep -q "does not have a backing file" err.txt || fail "commit -b without backing message"
cmp -s dd/base base && cmp -s dd/top top || fail "a refused commit -b modified an image"
# The base is locked for writing: a reader holding it makes the commit fail.
prep_deep
qemu-io -r -c 'sleep 20000' dd/base >/dev/null 2>&1 &
qpid=$!
sleep 1
expect_rc 1 "commit -b with the base in use" "$DISKKIT" commit -b base dd/top
kill $qpid 2>/dev/null; wait $qpid 2>/dev/null
grep -qi "lock" err.txt || fail "commit -b base in use message: $(cat err.txt)"
cmp -s dd/base dq/base || fail "commit -b modified a base in use"

# --- dd into qcow2 -----------------------------------------------------------
for ops in "bs=64k" "bs=64k count=20 skip=3" "bs=4k count=1000"; do
    rm -f d1 d2
    # shellcheck disable=SC2086
    "$DISKKIT" dd -O qcow2 if=a.qcow2 of=d1 $ops; qemu-img dd -O qcow2 if=a.qcow2 of=d2 $ops
    same d1 d2 "dd -O qcow2 $ops"
    qcheck d1 "dd $ops"
done

# --- snapshots and amend (skip while the driver lacks them) ----------------
mkbase s.qcow2 4M
if "$DISKKIT" snapshot -c first s.qcow2 2>/dev/null; then
    qcheck s.qcow2 "snapshot create"
    qemu-io -c 'write -P 0x55 0 2M' s.qcow2 >/dev/null
    "$DISKKIT" snapshot -c second s.qcow2 || fail "snapshot create 2"
    "$DISKKIT" snapshot -l s.qcow2 >d.txt; qemu-img snapshot -l s.qcow2 >q.txt
    cmp -s d.txt q.txt || { fail "snapshot -l"; diff d.txt q.txt; }
    mkbase ref.qcow2 4M
    "$DISKKIT" snapshot -a first s.qcow2 || fail "snapshot apply"
    same s.qcow2 ref.qcow2 "snapshot apply"
    qcheck s.qcow2 "snapshot apply"
    qemu-io -c 'write -P 0x66 1M 1M' s.qcow2 >/dev/null
    qemu-img convert -l second -O raw s.qcow2 snap2.raw
    "$DISKKIT" snapshot -d first s.qcow2 || fail "snapshot delete"
    qcheck s.qcow2 "snapshot delete"
    qemu-img convert -l second -O raw s.qcow2 snap2b.raw
    cmp -s snap2.raw snap2b.raw || fail "snapshot delete changed another snapshot"
    expect_rc 1 "snapshot -d missing" "$DISKKIT" snapshot -d nosuch s.qcow2
    grep -q "Could not delete snapshot 'nosuch'" err.txt || fail "delete message"
    qemu-img snapshot -c byqemu s.qcow2
    "$DISKKIT" snapshot -l s.qcow2 >d.txt; qemu-img snapshot -l s.qcow2 >q.txt
    cmp -s d.txt q.txt || { fail "snapshot -l (qemu made)"; diff d.txt q.txt; }
else
    echo "note: qcow2 snapshot create not supported yet, skipping snapshot cases"
fi
mkbase am.qcow2 4M
if "$DISKKIT" amend -o lazy_refcounts=on am.qcow2; then
    qemu-img info am.qcow2 | grep -q "lazy refcounts: true" || fail "amend lazy_refcounts"
    qcheck am.qcow2 "amend"
    expect_rc 1 "amend unknown option" "$DISKKIT" amend -o nosuch=1 am.qcow2
    "$DISKKIT" amend -o help am.qcow2 | grep -q "^Amend options for 'qcow2':" ||
        fail "amend -o help"
    qemu-io -c 'write -P 0x77 2M 1M' am.qcow2 >/dev/null
    cp am.qcow2 am-ref.qcow2
    "$DISKKIT" amend -o lazy_refcounts=off,size=6M am.qcow2 || fail "amend lazy off + size"
    qemu-img amend -o lazy_refcounts=off,size=6M am-ref.qcow2
    same am.qcow2 am-ref.qcow2 "amend size"
    qemu-img info am.qcow2 | grep -q "lazy refcounts: false" || fail "amend lazy off"
    qcheck am.qcow2 "amend lazy off"
    expect_rc 1 "amend compat=0.10 with lazy_refcounts=on" "$DISKKIT" amend -o compat=0.10,lazy_refcounts=on am.qcow2
    expect_rc 1 "amend backing without format" "$DISKKIT" amend -o backing_file=b1 am.qcow2
    expect_rc 0 "amend backing" "$DISKKIT" amend -o backing_file=b1,backing_fmt=qcow2 am.qcow2
    qemu-img info am.qcow2 | grep -qx "backing file: b1" || fail "amend backing name"
    expect_rc 0 "amend drop backing" "$DISKKIT" amend -o backing_file= am.qcow2
    qemu-img info am.qcow2 | grep -q "backing file" && fail "amend drop backing"
    qcheck am.qcow2 "amend backing"
else
    echo "note: qcow2 amend not supported yet, skipping amend cases"
fi
[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all imgcmds qcow2 checks passed"
