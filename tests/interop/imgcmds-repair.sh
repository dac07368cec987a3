#!/usr/bin/env bash
# imgcmds-repair.sh - qcow2 check and repair on damaged images. Each fixture
# is a qemu-img-made image with a few bytes changed by python3; diskkit
# check must give qemu-img check's verdict (exit code, corruption and leak
# counts), and after `diskkit check -r leaks|all` qemu-img check must give
# the same verdict as after qemu-img's own repair of the same image.
set -u
: "${DISKKIT:?}"
for t in qemu-img qemu-io python3; do
    command -v $t >/dev/null || { echo "$t not installed"; exit 77; }
done
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
qemu-img create -q -f qcow2 probe.qcow2 1M
"$DISKKIT" check probe.qcow2 >/dev/null 2>&1 ||
    { echo "qcow2 check not available in this build"; exit 77; }
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

cat >damage.py <<'EOF'
# damage.py SRC KIND... - writes KIND.qcow2, a copy of SRC with one
# qcow2 structure damaged, for each KIND (one python start: it is slow).
import shutil, struct, sys
def damage(path, kind):
    global f
    f = open(path, 'r+b')
    try:
        edit(kind)
    finally:
        f.close()
def rd(off, n): f.seek(off); return f.read(n)
def u64(off): return struct.unpack('>Q', rd(off, 8))[0]
def w64(off, v): f.seek(off); f.write(struct.pack('>Q', v))
def w16(off, v): f.seek(off); f.write(struct.pack('>H', v))
def edit(kind):
    cbits = struct.unpack('>I', rd(20, 4))[0]; cs = 1 << cbits
    l1 = u64(40); reft = u64(48)
    rb = u64(reft) & ~0x1ff                 # refcount block 0 (16-bit entries)
    l2 = u64(l1) & 0x00fffffffffffe00       # L2 table of guest cluster 0
    e0 = u64(l2)                            # L2 entry of guest cluster 0
    data = e0 & 0x00fffffffffffe00
    def rc_off(cluster): return rb + 2 * cluster
    COPIED = 1 << 63
    if kind == 'leak':                      # refcount too high: a leak
        w16(rc_off(data >> cbits), 2)
    elif kind == 'leak-free':               # a cluster past the data marked used
        size = f.seek(0, 2); f.truncate(size + cs)
        w16(rc_off(size >> cbits), 1)
    elif kind == 'low':                     # refcount too low (0) for a data cluster
        w16(rc_off(data >> cbits), 0)
    elif kind == 'past-end':                # L2 entry pointing far past EOF
        w64(l2 + 8, COPIED | (1 << 40))
    elif kind == 'over-reftable':           # L2 entry on the refcount table
        w64(l2 + 8, COPIED | reft)
    elif kind == 'over-l1':                 # L2 entry on the L1 table
        w64(l2 + 8, COPIED | l1)
    elif kind == 'copied':                  # OFLAG_COPIED missing on a data cluster
        w64(l2, e0 & ~COPIED)
    elif kind == 'corrupt-bit':             # clean image with the corrupt bit set
        w64(72, u64(72) | 2)
    elif kind == 'unaligned':               # L2 entry not cluster aligned
        w64(l2 + 8, COPIED | (data + 512))
    # The refcount structure itself: qemu rebuilds it with -r all.
    elif kind == 'rb-outside':              # refcount block far past EOF
        w64(reft, 1 << 40)
    elif kind == 'rb-zero':                 # refcount block 0 gone: refcounts 0
        w64(reft, 0)
    elif kind == 'rb-shared':               # refcount block on a data cluster
        w64(reft, data)
    elif kind == 'rb-unaligned':            # refcount block not cluster aligned
        w64(reft, rb + 256)
    else:
        sys.exit('unknown damage ' + kind)
for kind in sys.argv[2:]:
    shutil.copyfile(sys.argv[1], kind + '.qcow2')
    damage(kind + '.qcow2', kind)
EOF

jget() {     # key json: the integer value of KEY in JSON text, 0 when absent
    local v
    v=$(printf '%s\n' "$2" | sed -n "s/^ *\"$1\": \([0-9]*\).*/\1/p")
    echo "${v:-0}"
}
counts() {   # tool image -> "exit corruptions leaks" (qemu-img or diskkit json)
    local tool=$1 img=$2 out rc
    if [ "$tool" = qemu ]; then out=$(qemu-img check --output json "$img" 2>/dev/null)
    else out=$("$DISKKIT" check --output json "$img" 2>/dev/null); fi
    rc=$?
    echo "$rc $(jget corruptions "$out") $(jget leaks "$out")"
}

qemu-img create -q -f qcow2 pristine.qcow2 8M
qemu-io -c 'write -P 0x5a 0 256k' -c 'write -P 0x6b 2M 64k' pristine.qcow2 >/dev/null

KINDS="leak leak-free low past-end over-reftable over-l1 copied corrupt-bit unaligned
       rb-outside rb-zero rb-shared"
# shellcheck disable=SC2086
python3 damage.py pristine.qcow2 $KINDS rb-unaligned || { echo "damage.py failed"; exit 1; }
for kind in $KINDS; do
    cp $kind.qcow2 base.qcow2
    d=$(counts diskkit base.qcow2); q=$(counts qemu base.qcow2)
    [ "$d" = "$q" ] || fail "$kind: diskkit check '$d' vs qemu-img check '$q'"
    cp base.qcow2 before.qcow2
    "$DISKKIT" check base.qcow2 >/dev/null 2>&1
    cmp -s base.qcow2 before.qcow2 || fail "$kind: check without -r modified the image"
    for mode in leaks all; do
        cp base.qcow2 d.qcow2; cp base.qcow2 q.qcow2
        "$DISKKIT" check -r $mode d.qcow2 >d.out 2>&1; rd=$?
        qemu-img check -r $mode q.qcow2 >q.out 2>&1; rq=$?
        [ "$rd" = "$rq" ] || fail "$kind -r $mode: exit $rd vs qemu-img $rq"
        after_d=$(counts qemu d.qcow2); after_q=$(counts qemu q.qcow2)
        [ "$after_d" = "$after_q" ] ||
            fail "$kind -r $mode: after repair qemu-img check says '$after_d' vs '$after_q'"
        qemu-img compare -q d.qcow2 q.qcow2 2>/dev/null ||
            [ "${after_q%% *}" != 0 ] || fail "$kind -r $mode: content differs from qemu's"
        grep -q "Double checking the fixed image now" d.out ||
            ! grep -q "Double checking" q.out || fail "$kind -r $mode: repair text missing"
    done
    case $kind in rb-*)   # a rebuild keeps the guest data and says so
        qemu-img compare -q -U pristine.qcow2 d.qcow2 || fail "$kind: data changed by the rebuild"
        grep -q "^Rebuilding refcount structure" d.out || fail "$kind: no rebuild line" ;;
    esac
    echo "ok: $kind ($q)"
done

# An unaligned refcount block: the same verdict as qemu-img check, but
# where qemu-img's rebuild stops on its own overlap check, diskkit's new
# structure lies past the end of the file and the repair completes.
cp rb-unaligned.qcow2 base.qcow2
d=$(counts diskkit base.qcow2); q=$(counts qemu base.qcow2)
[ "$d" = "$q" ] || fail "rb-unaligned: diskkit check '$d' vs qemu-img check '$q'"
"$DISKKIT" check base.qcow2 >d.out 2>&1; qemu-img check base.qcow2 >q.out 2>&1
cmp -s d.out q.out || { fail "rb-unaligned: check output differs"; diff d.out q.out | head; }
"$DISKKIT" check -r all base.qcow2 >d.out 2>&1 || { fail "rb-unaligned: repair failed"; cat d.out; }
grep -q "^Rebuilding refcount structure" d.out || fail "rb-unaligned: no rebuild"
qemu-img check -q base.qcow2 || fail "rb-unaligned: not clean after the repair"
qemu-img compare -q pristine.qcow2 base.qcow2 || fail "rb-unaligned: data changed by the rebuild"
# The rebuilt structure serves later writes: allocate, then check again.
qemu-io -c 'write -P 0x7c 5M 1M' base.qcow2 >/dev/null
"$DISKKIT" check base.qcow2 >/dev/null 2>&1 || fail "rb-unaligned: write after the rebuild"
qemu-img check -q base.qcow2 || fail "rb-unaligned: qemu-img check after a write"
# With snapshots, compressed clusters and 1-bit and 64-bit refcounts the
# counts the rebuild writes are not all 1.
for opt in "refcount_bits=16" "refcount_bits=64" "refcount_bits=1"; do
    qemu-img create -q -f qcow2 -o "$opt" s.qcow2 8M
    qemu-io -c 'write -P 0x11 0 1M' s.qcow2 >/dev/null
    [ "$opt" = refcount_bits=1 ] || qemu-img snapshot -c one s.qcow2
    qemu-io -c 'write -P 0x22 512k 1M' s.qcow2 >/dev/null
    qemu-img convert -c -O qcow2 -o "$opt" s.qcow2 c.qcow2
    [ "$opt" = refcount_bits=1 ] || qemu-img snapshot -c one c.qcow2
    for img in s c; do
        qemu-img convert -O raw $img.qcow2 $img.raw
        python3 - $img.qcow2 <<'PYEOF'
import struct, sys
f = open(sys.argv[1], 'r+b'); h = f.read(56)
f.seek(struct.unpack('>Q', h[48:56])[0]); f.write(struct.pack('>Q', 0))
PYEOF
        "$DISKKIT" check -r all $img.qcow2 >d.out 2>&1 ||
            { fail "$opt $img: rebuild failed"; cat d.out; }
        grep -q "^Rebuilding refcount structure" d.out || fail "$opt $img: no rebuild"
        qemu-img check -q $img.qcow2 || fail "$opt $img: not clean after the rebuild"
        qemu-img compare -q -F raw $img.qcow2 $img.raw || fail "$opt $img: data changed"
        if [ "$opt" != refcount_bits=1 ]; then
            "$DISKKIT" snapshot -a one $img.qcow2 || fail "$opt $img: apply after the rebuild"
            qemu-img check -q $img.qcow2 || fail "$opt $img: check after apply"
        fi
    done
done

# The report lines are qemu-img's.
cp leak.qcow2 base.qcow2
"$DISKKIT" check base.qcow2 >d.out 2>&1; qemu-img check base.qcow2 >q.out 2>&1
cmp -s d.out q.out || { fail "leak: check output differs"; diff d.out q.out; }
cp over-reftable.qcow2 base.qcow2
"$DISKKIT" check base.qcow2 >d.out 2>&1; qemu-img check base.qcow2 >q.out 2>&1
cmp -s d.out q.out || { fail "over-reftable: check output differs"; diff d.out q.out; }
# A corrupt image cannot be written until repaired.
cp corrupt-bit.qcow2 base.qcow2
"$DISKKIT" check -r all base.qcow2 >/dev/null 2>&1 || fail "corrupt-bit: repair failed"
qemu-img info base.qcow2 | grep -q "corrupt: false" || fail "corrupt bit not cleared"
[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all qcow2 repair checks passed"
