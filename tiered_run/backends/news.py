"""The kernel's own word that something happened in a run, so the monitor can sleep
between samples instead of polling for it.

Two kinds of descriptor announce news:

- a cgroup v1 eventfd registered through `cgroup.event_control` on `memory.oom_control`:
  readable once the memcg (or one above it) has gone OOM; reading it resets it;
- a cgroup v2 interface file (`memory.events`, `pids.events`): the kernel calls
  `cgroup_file_notify` when a counter in it changes, and poll(2) then reports POLLPRI
  until the file is read again.

Measured on Linux 6.18, hybrid: the v1 `pids.events` (a refused fork) announces nothing
(poll stays silent while `max` counts up), so a v1 run's task ceiling is still seen by
sampling. News only wakes the monitor: what happened is still read from the counters.
"""

from __future__ import annotations

import os
import select
from pathlib import Path


def news_v1(memcg: Path) -> KernelNews:
    news = KernelNews()
    news.watch_oom_v1(memcg)
    return news


def news_v2(run: Path, controllers: frozenset[str]) -> KernelNews:
    news = KernelNews()
    for controller in ("memory", "pids"):
        if controller in controllers:
            news.watch_file(run / f"{controller}.events")
    return news


class KernelNews:
    """Descriptors that become ready when the kernel has news of a run; `wait` blocks until
    one does (True) or `stop_fd` is readable (False)."""

    def __init__(self) -> None:
        self._eventfds: list[int] = []
        self._files: list[int] = []
        self._extra: list[int] = []  # held open for an eventfd's registration

    def watch_oom_v1(self, memcg: Path) -> None:
        """An OOM of `memcg` or above: a second registration beside the one that counts
        (backends.oom.OomEvents), so that waking never takes a count away. Where the
        interface is gone (it is deprecated), nothing is added."""
        event = control = -1
        try:
            event = os.eventfd(0, os.EFD_CLOEXEC)
            control = os.open(memcg / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            with open(memcg / "cgroup.event_control", "w") as handle:
                handle.write(f"{event} {control}")
        except OSError:
            for fd in (event, control):
                if fd >= 0:
                    os.close(fd)
            return
        self._eventfds.append(event)
        self._extra.append(control)

    def watch_file(self, path: Path) -> None:
        """A change of a cgroup v2 events file; a file that is not there adds nothing."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.pread(fd, 4096, 0)  # armed from now: only a later change is news
        except OSError:
            os.close(fd)
            return
        self._files.append(fd)

    def __bool__(self) -> bool:
        return bool(self._eventfds or self._files)

    def wait(self, stop_fd: int) -> bool:
        """Block until there is news (and take it, so the next wait blocks again), or until
        `stop_fd` is readable."""
        poller = select.poll()
        poller.register(stop_fd, select.POLLIN)
        for fd in self._eventfds:
            poller.register(fd, select.POLLIN)
        for fd in self._files:
            poller.register(fd, select.POLLPRI)
        news = False
        for fd, _ in poller.poll():
            if fd == stop_fd:
                return False
            news = True
            if fd in self._eventfds:
                os.eventfd_read(fd)
            else:
                os.pread(fd, 4096, 0)
        return news

    def close(self) -> None:
        for fd in (*self._eventfds, *self._files, *self._extra):
            os.close(fd)
        self._eventfds, self._files, self._extra = [], [], []
