"""Who owns a run's cgroup: a lock held by the living owner, not a pid in a name.

The tiered-run that makes a cgroup directory holds an exclusive flock(2) on it for the
run's whole life. The kernel drops the lock when the last descriptor of that open file
description is closed: when the owner exits, however it exits, in whatever PID namespace
it lives. A process that later gets the owner's pid holds no lock. A cleaner judges a
directory stale only if it can take the lock without waiting (LOCK_NB), and keeps the lock
while it kills and removes the run. Measured on Linux 6.18, cgroup v1 and v2 (kernfs):
flock on a cgroup directory takes 2-10 us, a second open file description is refused with
EWOULDBLOCK (from another process too), and rmdir succeeds while the lock is held.

Descriptors are opened O_CLOEXEC, so the workload (forked, then exec'd) never keeps the
lock; the watchdog, forked without exec, closes every descriptor it inherits.

Names: `tiered-run-p<pid>-<hex>` for runs and probes, `tiered-run-p<pid>-self` for the
leaf tiered-run moves itself into on cgroup v2, `...-keep` for the systemd placeholder's
leaf. The pid is for people reading the tree; ownership is the lock. Earlier versions named
runs `tiered-run-<pid>-<hex>` and took no lock: such a directory is never killed (its owner
may be alive in another PID namespace), only removed when it holds no process and no
process has its pid here. Any other name is left alone.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from tiered_run.backends.base import os_failure
from tiered_run.errors import BackendError
from tiered_run.host.processes import is_alive

PREFIX = "tiered-run-"
CLAIM_WAIT_S = 2.0  # a cleaner holds a lock it took by mistake for microseconds

_CURRENT = re.compile(r"p(\d+)-(?:[0-9a-f]+(?:-keep)?|self)")
_LEGACY = re.compile(r"(\d+)-.+")


class Kind(enum.Enum):
    CURRENT = "current"  # judged by its lock
    LEGACY = "legacy"  # an earlier version's: judged by its pid, never killed
    FOREIGN = "foreign"  # not a run of ours: never touched


def kind_of(name: str) -> Kind:
    if not name.startswith(PREFIX):
        return Kind.FOREIGN
    rest = name[len(PREFIX) :]
    if _CURRENT.fullmatch(rest):
        return Kind.CURRENT
    if _LEGACY.fullmatch(rest):
        return Kind.LEGACY
    return Kind.FOREIGN


def new_run_id() -> str:
    """`p<our pid>-<random>`; a leading letter keeps earlier versions, which read the first
    field as a pid to check, away from it."""
    return f"p{os.getpid()}-{os.urandom(3).hex()}"  # not `secrets`: its import costs ~5 ms


def self_leaf_name() -> str:
    return f"{PREFIX}p{os.getpid()}-self"


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Owned:
    """A cgroup directory this process made (or reuses) and holds locked until `release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def __repr__(self) -> str:
        return f"Owned({str(self.path)!r})"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def claim(path: Path, reuse: bool = False) -> Owned:
    """mkdir `path` and lock it before anything runs in it.

    Between the mkdir and the lock a cleaner may see the directory unlocked and take it: it
    then finds no process, removes it and lets go within microseconds. So the lock is only
    trusted once the locked directory is still the one at `path` (same inode), and the
    directory is made again if a cleaner removed it. `reuse` accepts a directory that
    already exists (the self leaf of an earlier run of this process).
    """
    deadline = time.monotonic() + CLAIM_WAIT_S
    first = True
    while True:
        try:
            path.mkdir()
        except FileExistsError as err:
            if first and not reuse:
                raise os_failure(err, "create", path, detail="it already exists") from None
        except OSError as err:
            raise os_failure(err, "create", path) from err
        first = False
        fd = None
        try:
            fd = _open_dir(path)
            if _try_lock(fd) and os.stat(path).st_ino == os.fstat(fd).st_ino:
                return Owned(path, fd)
        except FileNotFoundError:
            pass  # removed by a cleaner: make it again
        except OSError as err:
            raise os_failure(err, "lock", path) from err
        if fd is not None:
            os.close(fd)
        if time.monotonic() > deadline:
            raise BackendError(
                f"cannot lock cgroup {path}: another process holds it",
                path=path,
                operation="lock",
                errno=errno.EWOULDBLOCK,
            )
        time.sleep(0.001)


@dataclass
class Stale:
    """A run directory whose owner is positively gone. For a current name we hold its lock
    until `release`, so no one else judges or reuses it meanwhile; a legacy one may only be
    removed if it is already empty (`may_kill` False)."""

    path: Path
    fd: int | None
    may_kill: bool

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def judge(path: Path) -> Stale | None:
    """The directory as Stale when its owner is positively gone, else None (alive, unknown,
    or gone from under us). Never blocks."""
    kind = kind_of(path.name)
    if kind is Kind.LEGACY:
        owner = int(path.name[len(PREFIX) :].split("-", 1)[0])
        return None if is_alive(owner) else Stale(path, None, may_kill=False)
    if kind is not Kind.CURRENT:
        return None
    try:
        fd = _open_dir(path)
    except OSError:
        return None
    if _try_lock(fd):
        return Stale(path, fd, may_kill=True)
    os.close(fd)
    return None


def stale_runs(parent: Path) -> list[Stale]:
    """The stale run directories directly below `parent`, each held until released."""
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(PREFIX)]
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        stale = judge(Path(entry.path))
        if stale is not None:
            found.append(stale)
    return found


def is_stale(path: Path | str) -> bool:
    """Whether the run directory at `path` has no living owner; takes and drops the lock."""
    stale = judge(Path(path))
    if stale is None:
        return False
    stale.release()
    return True
