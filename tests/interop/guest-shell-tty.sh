#!/usr/bin/env bash
# guest-shell-tty.sh - `diskkit shell` at a terminal (a pty): the prompt,
# commands and their output, and, when a line-editing library (libedit or
# GNU readline) is installed, history recall with the up arrow; without
# one (or with DISKKIT_NO_EDITOR set) the up arrow is just bytes.
set -u
DISKKIT=${DISKKIT:?}
command -v mkfs.ext4 >/dev/null || { echo "mkfs.ext4 not installed"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not installed"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/tree/etc"
echo tty-host > "$T/tree/etc/hostname"
mkfs.ext4 -q -F -d "$T/tree" "$T/fs.raw" 8M >/dev/null 2>&1 || { echo "mkfs.ext4 -d failed"; exit 77; }

# session ENV...: runs the shell on a pty, types "cat /etc/hostname",
# then up-arrow + Enter, then "exit"; prints everything the shell wrote.
session() {
    env "$@" python3 - "$DISKKIT" "$T/fs.raw" <<'PY'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "shell", "--ro", "-f", "raw", sys.argv[2]])
out = b""
def drain(t):
    global out
    end = time.time() + t
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return
            if not d:
                return
            out += d
def wait_prompt(n):
    end = time.time() + 10
    while out.count(b"><fs> ") < n and time.time() < end:
        drain(0.1)
wait_prompt(1)
os.write(fd, b"cat /etc/hostname\r")
wait_prompt(2)
os.write(fd, b"\x1b[A\r")
wait_prompt(3)
os.write(fd, b"exit\r")
drain(1)
os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
PY
}

fail() { echo "FAIL: $*"; exit 1; }
out=$(session DISKKIT_NO_EDITOR=1)
n=$(grep -c "^tty-host" <<<"$out")
[ "$n" = 1 ] || fail "without an editor: expected one hostname line, got $n: $out"
grep -q "><fs> " <<<"$out" || fail "no prompt at a terminal: $out"

have_editor=no
for l in libedit.so.2 libreadline.so.8; do
    python3 -c "import ctypes,sys; ctypes.CDLL(sys.argv[1])" "$l" 2>/dev/null && have_editor=$l
done
if [ "$have_editor" = no ]; then
    echo "no libedit/readline installed: history recall not tested"
else
    out=$(session)
    n=$(grep -c "^tty-host" <<<"$out")
    [ "$n" = 2 ] || fail "with $have_editor: up arrow did not repeat the command ($n hostname lines): $out"
    echo "history recall works with $have_editor"
fi
echo "guest-shell-tty: all passed"
