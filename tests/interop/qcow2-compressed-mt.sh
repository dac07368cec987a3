#!/usr/bin/env bash
# qcow2-compressed-mt.sh - compressed qcow2 with several copy-engine
# workers: reads of qemu-img's zlib and zstd images decompress outside the
# image lock (qcow2-io.c invariant 4) and must give the exact bytes with
# 1 or 8 workers, including a last cluster that is only partly inside the
# image; convert -c with 4 workers must pass qemu-img check/compare and be
# no larger than qemu-img's output (same codec settings as qemu).
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3
need_format qcow2

# 12 MiB + 3 KiB: text-like data, random data, zeros and a partial last cluster
truncate -s $((12 * 1024 * 1024 + 3072)) "$T/in.raw"
write_random "$T/in.raw" 7M 1M
write_pattern "$T/in.raw" raw 9M 64k 0x5c
python3 - "$T/in.raw" <<'PY'
import base64, os, sys
with open(sys.argv[1], 'r+b') as f:
    f.write(base64.b64encode(os.urandom(4608 * 1024)))   # 6 MiB, compressible
    f.seek(12 * 1024 * 1024)            # data in the last, partial cluster
    f.write(b'tail' * 700)
PY

for c in zlib zstd; do
    note "$c: read qemu-img's compressed image with 1 and 8 workers"
    qemu-img convert -q -c -f raw -O qcow2 -o compression_type=$c "$T/in.raw" "$T/q.$c.qcow2"
    for m in 1 8; do
        rm -f "$T/out.raw"
        "$DISKKIT" convert -m $m -O raw "$T/q.$c.qcow2" "$T/out.raw" || fail "$c -m $m read"
        cmp "$T/in.raw" "$T/out.raw" || fail "$c -m $m: bytes differ"
    done

    note "$c: convert -c with 4 workers"
    "$DISKKIT" convert -c -m 4 -O qcow2 -o compression_type=$c "$T/in.raw" "$T/d.$c.qcow2" \
        || fail "$c: convert -c"
    qemu-img check -q "$T/d.$c.qcow2" || fail "$c: qemu-img check"
    qemu-img compare -q "$T/in.raw" "$T/d.$c.qcow2" || fail "$c: qemu-img compare"
    ds=$(stat -c %s "$T/d.$c.qcow2"); qs=$(stat -c %s "$T/q.$c.qcow2")
    [ "$ds" -le "$qs" ] || fail "$c: diskkit output $ds bytes > qemu-img's $qs"
done
echo "ok"
