"""The descriptors tiered-run was started with: standard streams and inherited ones.

Two things are settled before anything else opens a file:

- A closed stdin, stdout or stderr (`2>&-`, a CI runner that closed its pipes) is reopened
  on /dev/null. Otherwise the next file tiered-run opens (a log, a cgroup file, the
  watchdog's pipe) would take that number and receive output meant for a terminal. The
  workload still gets it closed, as it would without tiered-run (`closed_standard`).
- The descriptors the caller passed on purpose (fd 3 and above without close-on-exec,
  e.g. the `make -j` jobserver pipe) are noted, so the workload gets them as it would
  from `timeout`. tiered-run's own descriptors are all close-on-exec (PEP 446).
"""

from __future__ import annotations

import fcntl
import os

_inherited: tuple[int, ...] | None = None
_closed: tuple[int, ...] = ()


def ensure_standard_streams() -> None:
    """Reopen any closed fd 0-2 on /dev/null (read for 0, write for 1 and 2)."""
    global _closed
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            _closed += (fd,)
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)


def closed_standard() -> tuple[int, ...]:
    """The standard descriptors the caller had closed (reopened on /dev/null for us)."""
    return _closed


def capture_inherited() -> tuple[int, ...]:
    """Note the inheritable descriptors above 2 as they are now; call once, at entry."""
    global _inherited
    _inherited = tuple(_open_inheritable())
    return _inherited


def inherited() -> tuple[int, ...]:
    """The caller's descriptors still open and inheritable, to pass to the workload.

    Without a capture at entry (tiered-run used as a library) every inheritable
    descriptor open now counts as the caller's.
    """
    current = _open_inheritable()
    if _inherited is None:
        return tuple(current)
    return tuple(fd for fd in _inherited if fd in current)


def _open_inheritable() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                fds.append(fd)
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return sorted(fds)
