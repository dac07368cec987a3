#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Run by tests/fuzz/run.sh (make fuzz): DISKKIT N SEED, in a directory with seeds/.
# Mutation fuzz of diskkit's format parsers: flip bytes in metadata areas of
# seed images, run read-only commands (and check -r all on a copy) under the
# ASan build, report crashes (sanitizer reports, signals) and hangs.
import os, random, shutil, subprocess, sys, time
DK = sys.argv[1]; N = int(sys.argv[2]); seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
random.seed(seed)
seeds = sorted(os.listdir('seeds'))
os.makedirs('crash', exist_ok=True)
env = dict(os.environ, ASAN_OPTIONS='detect_leaks=1:abort_on_error=0', UBSAN_OPTIONS='print_stacktrace=1')
def meta_regions(data):
    # first 64 KiB plus a few random areas
    return [(0, min(len(data), 65536))] + [(random.randrange(len(data)), 4096) for _ in range(2)]
found = 0
t0 = time.time()
for i in range(N):
    s = random.choice(seeds)
    data = bytearray(open('seeds/' + s, 'rb').read())
    for _ in range(random.choice([1, 1, 2, 4, 8, 16])):
        off, ln = random.choice(meta_regions(data))
        p = off + random.randrange(max(1, min(ln, len(data) - off)))
        r = random.random()
        if r < 0.5:
            data[p] ^= 1 << random.randrange(8)
        elif r < 0.8:
            data[p] = random.choice([0, 0xff, 0x7f, 0x80, 1, random.randrange(256)])
        else:
            # an 8-byte big value at an aligned spot
            p &= ~7
            data[p:p+8] = random.choice([b'\xff'*8, b'\x00'*8, b'\x7f\xff\xff\xff\xff\xff\xff\xff',
                                         os.urandom(8), (1 << 40).to_bytes(8, 'big')])
    ext = s.split('.')[-1]
    f = 'cur.' + ext
    open(f, 'wb').write(data)
    cmds = [[DK, 'info', f], [DK, 'check', f], [DK, 'map', '--output', 'json', f],
            [DK, 'convert', '-O', 'raw', f, 'out.raw'], [DK, 'convert', '--salvage', '-O', 'qcow2', f, 'out.qcow2']]
    if ext == 'qcow2' and random.random() < 0.5:
        shutil.copy(f, 'rep.' + ext)
        cmds.append([DK, 'check', '-r', 'all', 'rep.' + ext])
        cmds.append([DK, 'snapshot', '-l', 'rep.' + ext])
    for c in cmds:
        try:
            p = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, env=env)
            err = p.stderr.decode(errors='replace')
            bad = p.returncode < 0 or 'Sanitizer' in err or 'runtime error' in err or p.returncode > 3 and p.returncode != 63
            why = err[-3000:]
        except subprocess.TimeoutExpired:
            bad = True; why = 'TIMEOUT'
        if bad:
            found += 1
            name = 'crash/%d-%s' % (i, s)
            shutil.copy(f, name)
            open(name + '.txt', 'w').write(' '.join(c) + '\n' + why)
            print('FOUND', name, c[1:3], why.splitlines()[:3] if why else '', flush=True)
            break
    for o in ('out.raw', 'out.qcow2'):
        if os.path.exists(o): os.unlink(o)
print('done', N, 'found', found, 'in %.0fs' % (time.time() - t0))
sys.exit(1 if found else 0)
