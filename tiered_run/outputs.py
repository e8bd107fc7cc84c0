"""The files tiered-run writes for the user: the output log, JSON reports, JUnit XML.

tiered-run usually runs as root, so a path it is given may be a trap: a symlink another
user planted (`/tmp/x.log -> /etc/important.conf`), a file another user created to read
the workload's output, a hard link to a file of root's. Every path is therefore walked
with `safepath.resolve` (no symlink followed where another user could have planted it),
opened with O_NOFOLLOW and O_CLOEXEC, and refused when the file there belongs to someone
else. Reports are written to a temporary file in the same directory and renamed into
place, so a reader never sees half a report, and a rename replaces a name, never writes
through a symlink.

Everything that can be checked is checked before anything starts (`check_output`), so a
run is never wasted on a report that cannot be written; the log is opened before the
workload is spawned. A report that cannot be written after the run raises OSError or
UsageError, which the command turns into a warning: the run's exit code stands.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.safepath import Resolved, UnsafePath, owner_name, resolve

_KERNEL_TREES = ("/proc", "/sys")


class OutputKind(enum.Enum):
    """How a file is written, which decides what may stand at its path."""

    # `--log`: written as a stream while the run goes on; a regular file (truncated), a
    # FIFO or a character device such as /dev/null.
    STREAM = "stream"
    # `--report`, `--junit`: written once, atomically, so only a regular file can be
    # replaced; a device cannot be renamed over. A FIFO (a reader waiting for the
    # report) is written straight through: a pipe's reader sees a stream anyway.
    REPORT = "report"


def check_output(
    path: str | Path | None, option: str, kind: OutputKind = OutputKind.REPORT
) -> None:
    """Refuse, before anything runs, an output path that could not or must not be written."""
    if path is None:
        return
    target = _resolve(path, option)
    if target.stat is None:
        if not os.access(target.directory, os.W_OK | os.X_OK):
            raise UsageError(
                f"{option} {path}: cannot create files in {target.directory}; "
                "choose a writable directory"
            )
        return
    _check_existing(path, option, kind, target.stat)
    writable = target.path if kind is OutputKind.STREAM else target.directory
    if not os.access(writable, os.W_OK):
        raise UsageError(f"{option} {path}: {writable} is not writable; choose another file")
    if kind is OutputKind.STREAM and stat.S_ISCHR(target.stat.st_mode):
        fd = _open_stream(target, option, path)
        os.close(fd)


def open_log(path: Path) -> int:
    """A descriptor for `--log`, truncated if it is a regular file; refused (UsageError)
    when the path is unsafe or cannot be opened. Checked again here: the path may have
    changed since `check_output`."""
    target = _resolve(path, "--log")
    if target.stat is not None:
        _check_existing(path, "--log", OutputKind.STREAM, target.stat)
    return _open_stream(target, "--log", path)


def write_atomically(path: Path, text: str, option: str) -> None:
    """Write a finished report under a temporary name in the same directory, then rename
    it over `path`: a reader sees the old report or the new one, never half of one.

    Raises OSError when the file cannot take it (disk full), UsageError when the path has
    become unsafe since it was checked.
    """
    target = _resolve(path, option)
    mode = 0o666 & ~_umask()
    if target.stat is not None:
        _check_existing(path, option, OutputKind.REPORT, target.stat)
        mode = stat.S_IMODE(target.stat.st_mode)
        if stat.S_ISFIFO(target.stat.st_mode):
            _write_to_fifo(target, path, option, text)
            return
    temporary = os.path.join(target.directory, f".{target.name}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    try:
        try:
            data = text.encode("utf-8", errors="surrogateescape")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, target.path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _write_to_fifo(target: Resolved, path: str | Path, option: str, text: str) -> None:
    """Wait for the FIFO's reader (a signal cannot make tiered-run give up the report, see
    signals.finishing) and write the report through."""
    fd = os.open(target.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        _check_existing(path, option, OutputKind.REPORT, os.fstat(fd))
        view = memoryview(text.encode("utf-8", errors="surrogateescape"))
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _resolve(path: str | Path, option: str) -> Resolved:
    text = os.fsdecode(path)
    if not text:
        raise UsageError(f"{option}: empty file name; give a file, e.g. {option} run.out")
    try:
        target = resolve(text)
    except UnsafePath as err:
        raise UsageError(f"{option} {text}: {err}; choose another path") from None
    if any(target.path == tree or target.path.startswith(tree + "/") for tree in _KERNEL_TREES):
        hint = " (the output already goes to stdout)" if option == "--log" else ""
        raise UsageError(
            f"{option} {text}: {target.path} is a kernel interface, not a file{hint}; choose a file"
        )
    return target


def _check_existing(path: str | Path, option: str, kind: OutputKind, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise UsageError(f"{option} {path}: is a directory; give a file name in it")
    if kind is OutputKind.REPORT and not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise UsageError(
            f"{option} {path}: not a regular file or FIFO; a report is written to a "
            "temporary file and renamed into place, so give a file path"
        )
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        raise UsageError(
            f"{option} {path}: not a file, FIFO or character device; choose another path"
        )
    # Devices can only be made by root; a regular file or a FIFO someone else made is a
    # way to read the workload's output (or, hard-linked, to overwrite a file of ours).
    if not stat.S_ISCHR(mode) and st.st_uid != os.geteuid():
        raise UsageError(
            f"{option} {path}: belongs to {owner_name(st.st_uid)}, not to us; "
            "remove it or choose another file"
        )
    if stat.S_ISREG(mode) and st.st_nlink > 1 and kind is OutputKind.STREAM:
        raise UsageError(
            f"{option} {path}: has {st.st_nlink} hard links, so writing it would change "
            "another file too; remove it or choose another file"
        )


def _open_stream(target: Resolved, option: str, path: str | Path) -> int:
    """Open for writing without following a symlink, without blocking on a FIFO that has
    no reader, and without truncating anything before it was checked."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(target.path, flags, 0o644)
    except OSError as err:
        if err.errno == errno.ENXIO:  # a FIFO nobody reads
            raise UsageError(
                f"{option} {path}: a FIFO with no reader; start the reader first"
            ) from err
        raise UsageError(
            f"{option} {path}: cannot open it ({err.strerror}); choose another file"
        ) from err
    try:
        st = os.fstat(fd)
        _check_existing(path, option, OutputKind.STREAM, st)
        if stat.S_ISREG(st.st_mode):
            os.ftruncate(fd, 0)
        elif stat.S_ISCHR(st.st_mode):
            os.write(fd, b"")  # /dev/full refuses even this
        os.set_blocking(fd, True)
    except OSError as err:
        os.close(fd)
        raise UsageError(
            f"{option} {path}: cannot be written ({err.strerror}); choose another file"
        ) from err
    except BaseException:
        os.close(fd)
        raise
    return fd


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for an instant)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
