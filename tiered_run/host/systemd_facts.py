"""systemd's side of `doctor`: whether it is init, its version, where it put us (a login
session's scope?), and whether a transient scope with Delegate=yes can be made, which is
what the systemd backend does for every run. Every call to systemd is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tiered_run.backends.ownership import PREFIX
from tiered_run.host.commands import ask
from tiered_run.model.facts import SystemdFacts

_CALL_WAIT_S = 20.0  # systemd under emulation can take seconds to answer
_VERSION = re.compile(r"systemd (\d+)")


def read_systemd_facts(
    own: Mapping[str, str],
    *,
    try_scope: bool = True,
    proc_root: Path = Path("/proc"),
    run_root: Path = Path("/run"),
) -> SystemdFacts:
    """`own` is /proc/self/cgroup as parsed; `try_scope` makes a transient scope (as root,
    where systemd is init) to see whether Delegate=yes works."""
    running = (run_root / "systemd/system").is_dir()
    try:
        pid1 = (proc_root / "1/comm").read_text().strip()
    except OSError:
        pid1 = None
    # systemd names our cgroup in its own hierarchy: the unified one, or name=systemd.
    unit_path = (own.get("name=systemd") or own.get("")) if running else None
    version = _version() if running else None
    delegate, detail = None, ""
    if not running:
        detail = "systemd is not the init system"
    elif os.geteuid() != 0:
        detail = "not tried: transient system scopes need root"
    elif shutil.which("systemd-run") is None:
        delegate, detail = False, "systemd-run is not installed"
    elif try_scope:
        delegate, detail = _try_delegated_scope()
    return SystemdFacts(
        pid1=pid1,
        running=running,
        version=version,
        unit_path=unit_path,
        delegate=delegate,
        delegate_detail=detail,
    )


def _version() -> int | None:
    out = _call(["systemctl", "--version"])
    match = _VERSION.match(out.stdout) if out is not None else None
    return int(match.group(1)) if match else None


def _try_delegated_scope() -> tuple[bool, str]:
    """Run `cat /proc/self/cgroup` in a transient, delegated, collected scope, as the
    systemd backend does with its placeholder, and see that it landed there."""
    unit = f"{PREFIX}doctor-{os.getpid()}-{os.urandom(3).hex()}.scope"
    argv = ["systemd-run", "--scope", "--quiet", "--collect", f"--unit={unit}"]
    out = _call([*argv, "-p", "Delegate=yes", "--", "cat", "/proc/self/cgroup"])
    if out is None:
        return False, f"systemd-run did not finish within {_CALL_WAIT_S:g} s"
    if out.returncode != 0:
        return False, " ".join(out.stderr.split()) or f"systemd-run exited {out.returncode}"
    if unit not in out.stdout:
        return False, f"the process did not land in {unit}"
    return True, f"systemd-run --scope -p Delegate=yes made {unit}"


def _call(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    return ask(argv, _CALL_WAIT_S)
