"""A detached watchdog that ends the run if tiered-run itself is killed (e.g. SIGKILL by CI).

It is forked before the run's container exists, holds the read end of a pipe, and waits.
tiered-run tells it the workload's pid and, at a normal end, "done". EOF without "done"
means tiered-run died: the watchdog kills the workload's process group and calls the
backend's stale cleanup, which kills and removes every container whose owner is gone.
"""

from __future__ import annotations

import os
import signal

from tiered_run.backends.base import Backend


class Sentinel:
    def __init__(self, backend: Backend) -> None:
        read_end, self._write_end = os.pipe()
        middle = os.fork()
        if middle == 0:  # pragma: no cover - runs in the forked watchdog
            try:
                os.close(self._write_end)
                os.setsid()
                if os.fork() == 0:
                    _watch(read_end, backend)
            finally:
                os._exit(0)
        os.close(read_end)
        os.waitpid(middle, 0)

    def watch(self, pid: int) -> None:
        os.write(self._write_end, f"{pid}\n".encode())

    def release(self) -> None:
        """The run ended normally: the watchdog exits without touching anything."""
        if self._write_end >= 0:
            try:
                os.write(self._write_end, b"done\n")
            finally:
                os.close(self._write_end)
                self._write_end = -1


def _watch(read_end: int, backend: Backend) -> None:  # pragma: no cover - forked child
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
    if b"done" in lines:
        os._exit(0)
    try:
        if lines:
            os.killpg(int(lines[-1]), signal.SIGKILL)
    except (ProcessLookupError, PermissionError, ValueError):
        pass
    try:
        backend.cleanup_stale()
    finally:
        os._exit(0)
