"""Writing tiered-run's own text (tables, headlines, JSON on stdout, events) to its stdout
and stderr, such that a stream that is gone never changes what happened.

`tiered-run ... | head`, a closed stderr, a CI runner that stopped reading: a write that
fails marks that stream broken, later writes to it are skipped, and the exit code stays
the run's. Text is encoded with `surrogateescape`, so a non-UTF-8 argument or path comes
out as the bytes it was.
"""

from __future__ import annotations

import errno
import os
import sys

STDOUT = 1
STDERR = 2
# A reader that went away (EPIPE), a terminal that hung up (EIO), a full disk (ENOSPC),
# a descriptor that is not writable (EBADF, EINVAL): the stream is gone, not the run.
_GONE = (errno.EPIPE, errno.EIO, errno.ENOSPC, errno.EBADF, errno.EINVAL, errno.EDQUOT)

_broken: set[int] = set()
_lost: dict[int, str] = {}  # fd -> why what was written there is lost (not a reader gone)


def write(fd: int, text: str) -> bool:
    """Write all of `text` to `fd` (1 or 2); False if the stream is, or just became, broken."""
    if fd in _broken:
        return False
    _flush_python_buffers()
    data = memoryview(text.encode("utf-8", "surrogateescape"))
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError as err:
        if err.errno not in _GONE:
            raise
        _broken.add(fd)
        if err.errno != errno.EPIPE:
            _lost[fd] = err.strerror or str(err)
        return False
    return True


def out(text: str) -> bool:
    return write(STDOUT, text)


def err(text: str) -> bool:
    """A line (or lines) on stderr; a missing final newline is added."""
    return write(STDERR, text if text.endswith("\n") else text + "\n")


def broken(fd: int) -> bool:
    return fd in _broken


def lost(fd: int) -> str | None:
    """Why output written to `fd` was lost (a full disk, a hung-up terminal), or None. A
    reader that went away (`| head`) is not a loss: it had all it wanted."""
    return _lost.get(fd)


def _flush_python_buffers() -> None:
    """Text printed through sys.stdout/sys.stderr (click) must come out before ours."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def settle_before_exit() -> None:
    """Flush what Python still buffers; a stream that cannot take it is pointed at
    /dev/null, so the interpreter's own flush at exit cannot fail and turn the exit code
    into 120 with an "Exception ignored" message."""
    for fd, stream in ((STDOUT, sys.stdout), (STDERR, sys.stderr)):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            _broken.add(fd)
        if fd in _broken:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
