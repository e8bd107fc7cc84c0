"""A watchdog that ends the run if tiered-run itself is killed (e.g. SIGKILL by CI).

It is tiered-run's own child, in a session of its own (a Ctrl-C at the terminal does not
reach it), and holds one end of a socket pair whose other end only tiered-run has.
tiered-run tells it the workload's pid and, at a normal end, "done": the watchdog then
exits at once and tiered-run reaps it, so it never lingers as a zombie under a parent that
does not reap (an init that reaps slowly, a CI agent as PID 1).

EOF without "done" means tiered-run died: the watchdog kills the run's tree through the
backend (nested cgroups included) and the workload's process group, waits until
tiered-run has really exited (the watchdog is reparented then, and the locks tiered-run
held on its cgroups are gone), and calls the backend's stale cleanup, which kills and
removes every run whose owner is gone. Orphaned by then, it is reaped by whoever
inherits it.

tiered-run writes with MSG_NOSIGNAL, which a socket has and a pipe has not: a watchdog
killed by the workload or a clean-up script makes watch()/release() return False, never
raise or deliver SIGPIPE.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from tiered_run.backends.base import Backend
from tiered_run.host.processes import start_ticks

OWNER_EXIT_WAIT_S = 5.0
DONE_WAIT_S = 2.0  # the watchdog exits within microseconds of "done" unless it is stopped
_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGTSTP)


class Sentinel:
    def __init__(self, backend: Backend, after_kill: Callable[[], object] | None = None) -> None:
        """`after_kill`: what the watchdog does once it has killed the tree of a tiered-run
        that died, before the cgroups go (removing the run's container)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        owner = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked watchdog
            try:
                _watch(theirs.fileno(), owner, backend, after_kill)
            finally:
                os._exit(0)
        theirs.close()
        self.pid = pid
        self._sock: socket.socket | None = ours
        self._lost = False
        self._lock = threading.Lock()
        self._tracked: list[tuple[int, int]] = []
        backend.exclude(pid)

    def watch(self, pid: int) -> bool:
        """Tell the watchdog the workload's pid; whether the watchdog is still there."""
        return self._send(f"{pid}\n".encode())

    def track(self, members: list[tuple[int, int]]) -> bool:
        """The processes of the tree as (pid, start time), for a backend without cgroups
        (plain): should tiered-run die, the watchdog kills those still the same."""
        if members == self._tracked:
            return not self._lost
        self._tracked = members
        return self._send(b"tree " + " ".join(f"{p}:{s}" for p, s in members).encode() + b"\n")

    def release(self) -> bool:
        """The run ended normally: the watchdog exits and is reaped. Returns whether it was
        still there to the end (False: it was killed, or had to be)."""
        there = self._send(b"done\n")
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            there = self._reap() and there
        return there

    def _send(self, data: bytes) -> bool:
        with self._lock:  # the monitor thread sends the tree while the main thread may end
            if self._lost or self._sock is None:
                return False
            try:
                self._sock.sendall(data, socket.MSG_NOSIGNAL)
            except OSError:
                self._lost = True
            return not self._lost

    def _reap(self) -> bool:
        """Wait for the watchdog to exit; one that does not (stopped) is killed. Whether it
        exited by itself."""
        deadline = time.monotonic() + DONE_WAIT_S
        while True:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return True  # reaped already (SIGCHLD ignored, or a reaper of all children)
            if pid:
                return True
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)  # still our unreaped child: the pid is its
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        return False


def _kill_listed(tree: bytes) -> None:  # pragma: no cover - forked child
    """SIGKILL the processes of the last tree tiered-run sent (`tree PID:START ...`), each
    only if it is still the process that was sent (same start time: pids are reused)."""
    for word in tree.split()[1:]:
        pid, _, start = word.partition(b":")
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            if start_ticks(int(pid)) == int(start):
                os.kill(int(pid), signal.SIGKILL)


def _watch(  # pragma: no cover - forked child
    fd: int, owner: int, backend: Backend, after_kill: Callable[[], object] | None
) -> None:
    os.setsid()
    for sig in _IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(devnull, std)
    # Every other descriptor goes, the locks on tiered-run's cgroups among them: a lock
    # held here would make tiered-run's runs look alive after it died.
    os.closerange(3, fd)
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
    main, tree, pending = None, b"", b""
    while chunk := os.read(fd, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line == b"done":
                return
            if line.startswith(b"tree "):
                tree = line  # only the latest: the line is resent whenever the tree changes
            elif line.isdigit():
                main = int(line)
    with contextlib.suppress(Exception):
        backend.kill(signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if main is not None:
            os.killpg(main, signal.SIGKILL)  # the plain backend's tree, without a terminal
    _kill_listed(tree)
    deadline = time.monotonic() + OWNER_EXIT_WAIT_S
    while os.getppid() == owner and time.monotonic() < deadline:
        time.sleep(0.002)
    if after_kill is not None:
        with contextlib.suppress(Exception):
            after_kill()
    backend.cleanup_stale()
