#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Run by tests/fuzz/run.sh (make fuzz): DISKKIT N SEED, in a directory with seeds/.
# Mutation fuzz of the guest layer: partition tables and ext4 metadata.
import os, random, shutil, subprocess, sys, time
DK = sys.argv[1]; N = int(sys.argv[2]); random.seed(int(sys.argv[3]))
seeds = sorted(os.listdir('seeds'))
os.makedirs('crash', exist_ok=True)
env = dict(os.environ, ASAN_OPTIONS='detect_leaks=1', UBSAN_OPTIONS='print_stacktrace=1')
found = 0; t0 = time.time()
for i in range(N):
    s = random.choice(seeds)
    data = bytearray(open('seeds/' + s, 'rb').read())
    fs0 = 0 if s == 'whole.raw' else 2048 * 512
    regions = [(0, 17408)] if s != 'whole.raw' else []
    regions += [(fs0, 8192), (fs0 + 1024, 2048), (fs0 + 4096, 65536)]   # sb, gdt, bitmaps/inodes
    for _ in range(random.choice([1, 2, 4, 8])):
        off, ln = random.choice(regions)
        p = off + random.randrange(ln)
        r = random.random()
        if r < 0.6:
            data[p] ^= 1 << random.randrange(8)
        else:
            data[p] = random.choice([0, 0xff, random.randrange(256)])
    open('cur.raw', 'wb').write(data)
    cmds = [[DK, 'list-filesystems', '-f', 'raw', 'cur.raw'], [DK, 'inspect', '-f', 'raw', 'cur.raw'],
            [DK, 'ls', '-lR', '-f', 'raw', 'cur.raw', '/'], [DK, 'cat', '-f', 'raw', 'cur.raw', '/etc/hostname'],
            [DK, 'df', '-f', 'raw', 'cur.raw']]
    if random.random() < 0.3:
        shutil.copy('cur.raw', 'w.raw')
        cmds.append([DK, 'shell', '-f', 'raw', '-c', 'write /etc/new hello; mkdir /d2; rm /etc/f3', 'w.raw'])
    for c in cmds:
        try:
            p = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, env=env)
            err = p.stderr.decode(errors='replace')
            bad = p.returncode < 0 or 'Sanitizer' in err or 'runtime error' in err or p.returncode > 2
            why = err[-3000:]
        except subprocess.TimeoutExpired:
            bad = True; why = 'TIMEOUT'
        if bad:
            found += 1
            name = 'crash/%d-%s' % (i, s)
            shutil.copy('cur.raw', name)
            open(name + '.txt', 'w').write(' '.join(c) + '\n' + why)
            print('FOUND', name, c[1], why.splitlines()[:4], flush=True)
            break
print('done', N, 'found', found, 'in %.0fs' % (time.time() - t0))
sys.exit(1 if found else 0)
