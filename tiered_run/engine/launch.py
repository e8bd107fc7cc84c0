"""Starting the workload already inside its container, on its CPUs, as its user.

Everything is applied in the child between fork and exec, so no instruction of the
workload runs unconstrained. The hook runs before any thread of tiered-run exists
(the monitor and the tee start after the spawn), so forking here is safe.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import subprocess
from dataclasses import dataclass

from tiered_run.backends.base import Backend
from tiered_run.engine.privileges import private_tmp, restrict
from tiered_run.errors import SpawnError
from tiered_run.host import signals, stdio
from tiered_run.model.spec import RunSpec, UserSpec
from tiered_run.model.usage import Capability
from tiered_run.policy.exit_codes import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_TOOL

_PR_SET_PDEATHSIG = 1
NPROC_SLACK = 2
_OWN_LATER_THREADS = 2
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Child:
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid


def spawn(
    spec: RunSpec, backend: Backend, output_fds: list[int] | None, own_session: bool = True
) -> Child:
    """Start the workload, constrained before exec.

    `own_session`: a new session and process group (no terminal: CI, services). At a
    terminal the workload stays in tiered-run's session and process group instead, like
    `timeout --foreground` (see jobcontrol). Descriptors the caller passed to tiered-run
    (fd 3 and above, e.g. a `make` jobserver) are passed on; tiered-run's own are not.
    """
    nproc_cap = None if Capability.TASKS_LIMIT in backend.capabilities else _nproc_cap(spec)
    error_read, error_write = os.pipe()

    # Streams the caller had closed stay closed for the workload, unless --log gave it pipes.
    reclose = [fd for fd in stdio.closed_standard() if fd == 0 or output_fds is None]

    def constrain() -> None:  # runs in the child, before exec
        try:
            signals.restore_in_child()
            backend.attach()
            os.sched_setaffinity(0, spec.limits.cpus)
            if spec.private_tmp:
                private_tmp()
            restrict(spec.privileges)
            if spec.limits.nice is not None:
                os.setpriority(os.PRIO_PROCESS, 0, spec.limits.nice)
            if nproc_cap is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc_cap, nproc_cap))
            if spec.user is not None:
                _become(spec.user)
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            for fd in reclose:  # last: nothing opened after this can take their numbers
                os.close(fd)
        except BaseException as err:
            os.write(error_write, f"{type(err).__name__}: {err}".encode())
            raise

    stdout, stderr = output_fds if output_fds else (None, None)
    try:
        popen = subprocess.Popen(
            list(spec.command),
            cwd=spec.cwd,
            env=spec.env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=own_session,
            preexec_fn=constrain,
            close_fds=True,
            pass_fds=stdio.inherited(),
        )
    except FileNotFoundError as err:
        raise SpawnError(
            f"command not found: {spec.command[0]}", EXIT_NOT_FOUND, path=spec.command[0]
        ) from err
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.ENOEXEC, errno.EISDIR, errno.EPERM):
            raise _spawn_failed(err, error_read, spec.command[0]) from err
        what = "a directory" if os.path.isdir(spec.command[0]) else err.strerror
        raise SpawnError(
            f"command not executable: {spec.command[0]} ({what})",
            EXIT_NOT_EXECUTABLE,
            path=spec.command[0],
        ) from err
    except subprocess.SubprocessError as err:
        raise _spawn_failed(err, error_read, spec.command[0]) from err
    finally:
        os.close(error_read)
        os.close(error_write)
    return Child(popen)


def _spawn_failed(err: Exception, error_read: int, command: str) -> SpawnError:
    """What went wrong before exec, as the child reported it through the error pipe."""
    os.set_blocking(error_read, False)
    try:
        detail = os.read(error_read, 4096).decode(errors="replace")
    except BlockingIOError:
        detail = ""
    return SpawnError(f"could not start the workload: {detail or err}", EXIT_TOOL, path=command)


def _become(user: UserSpec) -> None:
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)


def _nproc_cap(spec: RunSpec) -> int | None:
    """A per-user process cap as a backstop against fork storms where no pids cgroup exists.

    RLIMIT_NPROC counts every process of the user, so the cap is what the user already
    runs plus the tier's ceiling; root ignores it, so it is only set for other users. Forks
    it refuses are counted nowhere, so the cap leaves the tree NPROC_SLACK tasks above the
    ceiling: enough for the monitor to see the tree go over it (a tree held exactly at the
    ceiling would look like one that stayed within it) and still stop a storm.
    """
    uid = spec.user.uid if spec.user is not None else os.getuid()
    if spec.limits.tasks_max is None or uid == 0:
        return None
    import psutil  # only this rare path needs it; it costs every run start-up time

    running = sum(
        p.info["num_threads"] or 0
        for p in psutil.process_iter(["uids", "num_threads"])
        if p.info["uids"] and p.info["uids"].real == uid
    )
    # Where tiered-run runs as that user too, the threads it starts after the spawn (the
    # monitor's, the tee's) count against the cap as well.
    later = _OWN_LATER_THREADS if uid == os.getuid() else 0
    return running + later + spec.limits.tasks_max + NPROC_SLACK
