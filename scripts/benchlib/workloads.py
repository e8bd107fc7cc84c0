"""The workloads: `python -c` programs that each stop by themselves, so that a guard which
fails to end one never leaves the benchmark waiting."""

from __future__ import annotations

# argv: N, seconds, ready file. Holds N processes (itself and N-1 idle children) for
# `seconds` after writing every pid to the ready file; children give up after 20 s more.
HOLD = """
import os, signal, sys, time
n, hold, ready = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
kids = []
for _ in range(n - 1):
    pid = os.fork()
    if pid == 0:
        time.sleep(hold + 20)
        os._exit(0)
    kids.append(pid)
with open(ready + ".tmp", "w") as f:
    f.write(" ".join(map(str, [os.getpid(), *kids])))
os.rename(ready + ".tmp", ready)
time.sleep(hold)
for pid in kids:
    os.kill(pid, signal.SIGTERM)
for pid in kids:
    os.waitpid(pid, 0)
"""

# argv: pid file, N, daemons, seconds. A tree of N processes: itself, `daemons` setsid'd
# double-forked daemons and sleeping children; every pid goes to the pid file once all
# are started. Everything sleeps `seconds` at most.
TREE = """
import os, sys, time
path, n, daemons, life = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
r, w = os.pipe()
pids = [os.getpid()]
for _ in range(daemons):
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, f"{os.getpid()}\\n".encode())
            time.sleep(life)
        os._exit(0)
    os.waitpid(middle, 0)
for _ in range(n - 1 - daemons):
    pid = os.fork()
    if pid == 0:
        time.sleep(life)
        os._exit(0)
    pids.append(pid)
data = b""
while data.count(b"\\n") < daemons:
    data += os.read(r, 4096)
pids += [int(p) for p in data.split()]
with open(path + ".tmp", "w") as f:
    f.write(" ".join(map(str, pids)))
os.rename(path + ".tmp", path)
time.sleep(life)
"""

# argv: pid file. Sleeps 30 s.
SLEEPER = """
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(30)
"""

# argv: pid file. Ignores SIGTERM, sleeps 30 s.
IGNORER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(30)
"""

# Touches 64 MiB at a time with short sleeps (about 1 GiB/s); stops by itself at 3 GiB.
HOG = """
import time
chunks = []
for _ in range(48):
    chunks.append(b"\\x01" * (64 << 20))
    time.sleep(0.06)
"""

FLOOD_MIB = 200
# 200 MiB to stdout in 1 MiB writes.
FLOOD = f"""
import sys
block = bytes(range(256)) * 4096
out = sys.stdout.buffer
for _ in range({FLOOD_MIB}):
    out.write(block)
out.flush()
"""
