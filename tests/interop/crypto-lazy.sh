#!/usr/bin/env bash
# crypto-lazy.sh - libcrypto is loaded at run time, only for encrypted
# images (lib/crypto-lib.c):
#  - diskkit is not linked with libcrypto (ldd);
#  - with libcrypto.so.3 made unloadable (a user+mount namespace binds
#    /dev/null over it), plain images and info/check of a LUKS image work,
#    while reading with a passphrase and creating an encrypted image fail
#    with one line naming libcrypto.so.3, and leave the image untouched;
#  - outside the namespace the LUKS image reads (so the test can fail).
# Skips when qemu-img or unprivileged namespaces are unavailable.
. "$(dirname "$0")/lib.sh"
need qemu-img ldd unshare ldconfig
DK=$DISKKIT
cd "$T"

note "not linked with libcrypto"
if ldd "$DK" | grep -q libcrypto; then
    fail "diskkit is linked with libcrypto: $(ldd "$DK" | grep libcrypto)"
fi

PW=lazy-pw
SEC="--object secret,id=s,data=$PW"
qemu-img create -q -f qcow2 plain.qcow2 1M
qemu_create -f qcow2 $SEC -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10 \
    luks.qcow2 1M || fail "fixture: LUKS image not created"
note "with libcrypto: encrypted image reads"
"$DISKKIT" dd $SEC if=luks.qcow2 of=out.raw count=1 >/dev/null 2>&1 ||
    fail "cannot read the LUKS image with libcrypto available"

lib=$(ldconfig -p | awk '$1 == "libcrypto.so.3" { print $NF; exit }')
[ -n "$lib" ] || skip "libcrypto.so.3 not in the ld.so cache"
lib=$(readlink -f "$lib")
unshare -rm mount --bind /dev/null "$lib" 2>/dev/null ||
    skip "unprivileged user+mount namespaces not available"

# without CMD...: runs CMD with libcrypto.so.3 unloadable; stdout in
# out.std, stderr in out.txt.
without() {
    unshare -rm sh -c 'mount --bind /dev/null "$1" && shift && exec "$@"' sh "$lib" "$@" \
        >out.std 2>out.txt
}

note "without libcrypto: plain images and LUKS info/check work"
without "$DK" info plain.qcow2 || fail "info of a plain image: $(cat out.txt)"
without "$DK" info luks.qcow2 || fail "info of a LUKS image: $(cat out.txt)"
grep -q luks out.std || fail "info does not describe the LUKS header: $(cat out.std)"
without "$DK" check luks.qcow2 || fail "check of a LUKS image: $(cat out.txt)"

want='encrypted images need libcrypto.so.3 (OpenSSL 3)'
# expect_nolib WHAT: the last run failed cleanly with the loader's message.
expect_nolib() {
    local rc=$1
    [ "$rc" -ne 0 ] || fail "$2 succeeded without libcrypto"
    [ "$rc" -lt 128 ] || fail "$2 crashed (exit $rc): $(cat out.txt)"
    [ "$(wc -l < out.txt)" -eq 1 ] || fail "$2: not one line: $(cat out.txt)"
    grep -qF "$want" out.txt || fail "$2: unexpected message: $(cat out.txt)"
}
note "without libcrypto: unlocking fails with one clear line"
sum=$(sha256sum luks.qcow2)
rc=0; without "$DK" dd $SEC if=luks.qcow2 of=out.raw count=1 || rc=$?
expect_nolib $rc "dd of a LUKS image"
rc=0; without "$DK" write $SEC luks.qcow2 /new.txt </dev/null || rc=$?
expect_nolib $rc "write into a LUKS image"
[ "$(sha256sum luks.qcow2)" = "$sum" ] || fail "the LUKS image changed"

note "without libcrypto: creating an encrypted image fails"
rc=0
without "$DK" create -f qcow2 $SEC -o encrypt.format=luks,encrypt.key-secret=s new.qcow2 1M ||
    rc=$?
expect_nolib $rc "create with encrypt.format=luks"
rc=0
without "$DK" create -f qcow2 $SEC -o encrypt.format=aes,encrypt.key-secret=s aes.qcow2 1M ||
    rc=$?
expect_nolib $rc "create with encrypt.format=aes"
echo "ok"
