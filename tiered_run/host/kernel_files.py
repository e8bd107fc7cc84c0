"""Reading one kernel file that may not be there: doctor's readers ask many questions of
/proc and /sys, and a missing or unreadable file is an answer (the feature is absent, or
hidden from us), not an error."""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path) -> str | None:
    """The file's text, or None when it cannot be read (missing, no permission, not text)."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def read_int(path: Path) -> int | None:
    """The file's one integer (e.g. `pids.max`, `/proc/sys/vm/panic_on_oom`), or None when
    it cannot be read or holds anything else (`max`)."""
    text = (read_text(path) or "").strip()
    try:
        return int(text)
    except ValueError:
        return None
