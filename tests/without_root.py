"""How tests run tiered-run as a user who cannot make cgroups: ourselves when the suite
does not run as root, else `nobody`, with a Python that account can run; or why not."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import site
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tiered_run

IS_ROOT = os.geteuid() == 0
UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class Unprivileged:
    """How tiered-run runs here as a user without root: this Python as ourselves when we
    are not root, else as `nobody` with a Python that account can run; or why it cannot."""

    python: str = ""
    env: dict[str, str] = field(default_factory=dict)
    user: pwd.struct_passwd | None = None  # None: as ourselves
    problem: str | None = None

    def popen_kwargs(self) -> dict[str, object]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}


@functools.cache
def unprivileged_how() -> Unprivileged:
    """Probed once, on first use. The venv's Python is tried first; where that account
    cannot reach it (a base interpreter under /root, a venv made by `mktemp -d`), a system
    Python of the same version with this checkout and the venv's packages on PYTHONPATH."""
    if not IS_ROOT:
        return Unprivileged(sys.executable)
    try:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        return Unprivileged(problem=f"no account {UNPRIVILEGED_USER!r} to run tiered-run as")
    checkout = str(Path(tiered_run.__file__).resolve().parents[1])
    candidates = [(sys.executable, {})]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path=os.defpath)
    if system and os.path.realpath(system) != os.path.realpath(sys.executable):
        paths = os.pathsep.join([checkout, *site.getsitepackages()])
        candidates.append((system, {"PYTHONPATH": paths}))
    problems = []
    for python, env in candidates:
        how = Unprivileged(python, env, user)
        problem = _cannot_run(how)
        if problem is None:
            return how
        problems.append(problem)
    return Unprivileged(
        problem=f"{UNPRIVILEGED_USER} can run no Python here: {'; '.join(problems)}"
    )


def _cannot_run(how: Unprivileged) -> str | None:
    """Why `how` cannot import tiered-run and what it needs, or None."""
    probe = "import tiered_run.cli.entry, click, psutil"
    try:
        out = subprocess.run(
            [how.python, "-c", probe],
            capture_output=True,
            text=True,
            cwd="/",
            env={**os.environ, **how.env},
            timeout=60,
            **how.popen_kwargs(),
        )
    except OSError as err:
        return f"{how.python}: {err.strerror}{_closed_directory(how.python)}"
    if out.returncode == 0:
        return None
    last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
    return f"{how.python}: {last}{_closed_directory(how.python)}"


def _closed_directory(path: str) -> str:
    """` (DIR is mode 0700)` for the first directory on the real path others cannot enter."""
    for directory in reversed(Path(os.path.realpath(path)).parents):
        mode = stat.S_IMODE(directory.stat().st_mode)
        if not mode & stat.S_IXOTH:
            return f" ({directory} is mode {mode:04o})"
    return ""
