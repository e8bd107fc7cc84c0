"""A detached watchdog that ends the run if tiered-run itself is killed (e.g. SIGKILL by CI).

It holds the read end of a pipe whose write end only tiered-run has, and waits for EOF,
which comes when tiered-run exits, however it exits. tiered-run tells it the workload's
pid and, at a normal end, "done". EOF without "done" means tiered-run died: the watchdog
kills the workload's process group. Either way it then waits until tiered-run is really
gone (EOF arrives while it is still exiting, when it would still count as an owner) and
calls the backend's stale cleanup, which kills and removes every container whose owner is
gone (after a normal end, only what tiered-run could not remove while alive, such as the
leaf it moved itself into).
"""

from __future__ import annotations

import os
import signal
import time

from tiered_run.backends.base import Backend
from tiered_run.backends.cgroupfs import is_alive

OWNER_EXIT_WAIT_S = 5.0


class Sentinel:
    def __init__(self, backend: Backend) -> None:
        read_end, self._write_end = os.pipe()
        owner = os.getpid()
        middle = os.fork()
        if middle == 0:  # pragma: no cover - runs in the forked watchdog
            try:
                os.close(self._write_end)
                os.setsid()
                if os.fork() == 0:
                    _watch(read_end, owner, backend)
            finally:
                os._exit(0)
        os.close(read_end)
        os.waitpid(middle, 0)

    def watch(self, pid: int) -> None:
        os.write(self._write_end, f"{pid}\n".encode())

    def release(self) -> None:
        """The run ended normally; the pipe stays open so the watchdog waits for our exit."""
        os.write(self._write_end, b"done\n")


def _watch(read_end: int, owner: int, backend: Backend) -> None:  # pragma: no cover - forked child
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, read_end)
    os.closerange(read_end + 1, 65536)
    data = b""
    while chunk := os.read(read_end, 4096):
        data += chunk
    lines = data.split()
    try:
        if lines and b"done" not in lines:
            os.killpg(int(lines[-1]), signal.SIGKILL)
    except (ProcessLookupError, PermissionError, ValueError):
        pass
    deadline = time.monotonic() + OWNER_EXIT_WAIT_S
    while is_alive(owner) and time.monotonic() < deadline:
        time.sleep(0.002)
    try:
        backend.cleanup_stale()
    finally:
        os._exit(0)
