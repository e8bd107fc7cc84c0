"""The files tiered-run writes for the user: the output log, JSON reports, JUnit XML.

Every path is checked before anything starts, so a run is never wasted on a report that
cannot be written, and the log is opened before the workload is spawned.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiered_run.errors import UsageError


def check_output(path: str | Path | None, option: str) -> None:
    """Refuse an output file that could not be written, before anything runs."""
    if path is not None and not Path(path).parent.is_dir():
        raise UsageError(f"{option} {path}: directory {Path(path).parent} does not exist")


def open_log(path: Path) -> int:
    """A descriptor for `--log`, truncated; refused (UsageError) when it cannot be opened."""
    check_output(path, "--log")
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise UsageError(
            f"--log {path}: cannot open it ({err.strerror}); choose another file"
        ) from err


def write_text(path: Path, text: str) -> None:
    """Write a finished report; raises OSError when the file cannot take it."""
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
