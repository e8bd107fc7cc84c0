"""Bounded test workloads, as `python3 -c` programs. Each stops by itself."""

from __future__ import annotations

import sys

PY = sys.executable

SIGTERM_IGNORER = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(40)
"""

# Touches 50 MiB at a time up to 2 GiB, slowly enough for a sampling monitor to see it.
MEMORY_HOG = """
import time
chunks = []
for _ in range(40):
    chunks.append(b"\\x01" * (50 << 20))
    time.sleep(0.05)
"""

# Four children, each touching up to 600 MiB in 25 MiB steps; the parent waits for them.
SPREAD_HOG = """
import os, time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        chunks = []
        for _ in range(24):
            chunks.append(b"\\x01" * (25 << 20))
            time.sleep(0.05)
        time.sleep(10)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
"""

# A child touches 50 MiB at a time up to 2 GiB (killed at the ceiling); the main process
# would sleep on for 30 s and exit 0 by itself.
CHILD_HOG_MAIN_SLEEPS = """
import os, time
if os.fork() == 0:
    chunks = []
    for _ in range(40):
        chunks.append(b"\\x01" * (50 << 20))
        time.sleep(0.05)
    os._exit(0)
time.sleep(30)
"""


# Forks sleeping children until refused or 2000 exist; each child sleeps at most 20 s.
FORK_STORM = """
import os, time
for i in range(2000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    time.sleep(0.001)
time.sleep(20)
"""

# Starts a setsid'd, double-forked daemon (pid written to argv[1]) and exits 0 at once.
DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as f:  # renamed: whoever sees it sees the pid
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(40)
    os._exit(0)
os.wait()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
"""

# Tries to run on every CPU, then reports where it may run.
AFFINITY_ESCAPE = """
import os
try:
    os.sched_setaffinity(0, range(os.cpu_count()))
except OSError:
    pass
print(",".join(map(str, sorted(os.sched_getaffinity(0)))))
"""

# 200 MiB of every byte value to stdout, and a marker on stderr.
FLOOD = """
import sys
block = bytes(range(256)) * 4096
for _ in range(200):
    sys.stdout.buffer.write(block)
sys.stdout.buffer.flush()
sys.stderr.write("flood done\\n")
"""
