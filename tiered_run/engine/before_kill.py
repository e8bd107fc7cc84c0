"""`--before-kill`: a last look at the run when a ceiling or the timeout is breached.

The monitor calls it between the breach and the first ending signal, the way
pytest-timeout dumps the stacks before it ends a hung test: `py-spy dump --pid {pid}`
can still see where the workload was. It must never weaken enforcement, so it is
bounded: it gets `LIMIT_S`, then its whole process group is killed and the kill of the
run goes ahead; a second signal to tiered-run (a hurried end) cuts it short at once.

It runs outside the run's cgroup (a child of tiered-run, in its own session, with the
signal mask tiered-run was started with), so it never counts against the run's ceilings
and is never killed with the tree. Its output goes to an unnamed temporary file, not a
pipe: a process it left behind that still holds the file cannot keep anyone waiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from tiered_run.host import signals
from tiered_run.model.report import BeforeKill

LIMIT_S = 5.0  # what the kill of the run waits for it, at most
MAX_OUTPUT = 64 * 1024  # bytes kept for the report and the log
_POLL_S = 0.02


def expand(template: Sequence[str], pid: int | None, cgroup: str | None) -> tuple[str, ...]:
    """The command with `{pid}` (the main process) and `{cgroup}` (the run's cgroup
    directory, empty without one) filled in, argument by argument; the template was
    checked when the option was read (`inputs.settings`)."""
    values = {"pid": "" if pid is None else str(pid), "cgroup": cgroup or ""}
    return tuple(arg.format(**values) for arg in template)


def look(
    command: tuple[str, ...],
    hurry: threading.Event | None = None,
    limit_s: float = LIMIT_S,
) -> BeforeKill:
    """Run `command` for at most `limit_s` (less once `hurry` is set) and keep its output."""
    hurry = hurry if hurry is not None else threading.Event()
    started = time.monotonic()
    import tempfile  # only where --before-kill is given

    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                preexec_fn=signals.restore_in_child,
            )
        except (OSError, subprocess.SubprocessError) as err:
            why = getattr(err, "strerror", None) or str(err)
            return BeforeKill(command, None, 0.0, "", error=why)
        deadline = started + limit_s
        while not _ended(proc.pid) and time.monotonic() < deadline and not hurry.is_set():
            hurry.wait(_POLL_S)
        killed = not _ended(proc.pid)
        timed_out = killed and not hurry.is_set()
        try:
            # Also what it left running in its group; it is not reaped yet, so its PID (the
            # group's ID) cannot have been reused.
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        duration = time.monotonic() - started
        output.seek(0)
        data = output.read(MAX_OUTPUT + 1)
    return BeforeKill(
        command=command,
        returncode=None if killed else proc.returncode,
        duration_s=round(duration, 3),
        output=data[:MAX_OUTPUT].decode(errors="replace"),
        truncated=len(data) > MAX_OUTPUT,
        timed_out=timed_out,
    )


def _ended(pid: int) -> bool:
    """Whether `pid` has ended, leaving it unreaped (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
