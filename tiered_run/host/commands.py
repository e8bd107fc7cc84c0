"""Asking another program a question (systemctl, systemd-run): its answer, or None when
it is not there, fails to start or does not answer in time. A question is never a reason
to hang or fail: the caller says what not knowing means."""

from __future__ import annotations

import subprocess


def ask(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[str] | None:
    """Run `argv` with no input and its output captured as text; None when it could not
    run or did not finish within `timeout_s` (then it is killed)."""
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=timeout_s,
        )
    except (OSError, subprocess.SubprocessError):
        return None
