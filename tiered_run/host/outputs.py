"""The files tiered-run writes for the user: the output log, JSON reports, JUnit XML, and
the tier configs `init` writes.

tiered-run usually runs as root, so a path it is given may be a trap: a symlink another
user planted (`/tmp/x.log -> /etc/important.conf`), a file another user created to read
the workload's output, a hard link to a file of root's, or a directory of theirs on the
way that they swap for a symlink between our check and our write. Every path is therefore
walked with `safepath.open_parent` (no symlink followed where another user could have
planted it), and everything after that is done relative to the directory it holds open:
the file is opened there with O_NOFOLLOW and O_CLOEXEC, checked on its descriptor, and
refused when it belongs to someone else. Reports are written to a temporary file in that
directory and renamed into place there, so a reader never sees half a report, and a
rename replaces a name, never writes through a symlink.

Everything that can be checked is checked before anything starts (`check_output`,
`check_distinct`), so a run is never wasted on a report that cannot be written: a FIFO
nobody reads is refused then, and the log is opened before the workload is spawned. A
report that cannot be written after the run raises OSError or UsageError, which the
command turns into a warning: the run's exit code stands, and nothing waits for ever.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.host.safepath import Opened, UnsafePath, open_parent, owner_name

_KERNEL_TREES = ("/proc", "/sys")
# Report FIFOs opened by `check_output`, by (device, inode), until their report is written.
_held_fifos: dict[tuple[int, int], int] = {}


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
    """Refuse, before anything runs, an output path that could not or must not be written.

    A report FIFO is opened here, without blocking, and held until the report is written:
    nobody reading it is refused now rather than found after the run, and the reader (say
    `jq . <fifo`) does not see the end of its input before the report comes."""
    if path is None:
        return
    with _opened(path, option) as target:
        if target.stat is None:
            if not os.access(".", os.W_OK | os.X_OK, dir_fd=target.dir_fd):
                raise UsageError(
                    f"{option} {path}: cannot create files in {target.directory}; "
                    "choose a writable directory"
                )
            return
        mode = target.stat.st_mode
        _check_existing(path, option, kind, target.stat)
        if kind is OutputKind.STREAM or stat.S_ISFIFO(mode):
            where, writable = target.path, _may_write(target.name, target.dir_fd)
        else:
            where, writable = target.directory, _may_write(".", target.dir_fd)
        if not writable:
            raise UsageError(f"{option} {path}: {where} is not writable; choose another file")
        if kind is OutputKind.STREAM and stat.S_ISCHR(mode):
            os.close(_open_stream(target, option, path))
        elif kind is OutputKind.REPORT and stat.S_ISFIFO(mode):
            key = (target.stat.st_dev, target.stat.st_ino)
            if key not in _held_fifos:
                _held_fifos[key] = _open_fifo(target, option, path)


def check_distinct(
    outputs: Iterable[tuple[str, str | Path | None]],
    reads: Iterable[tuple[str, str | Path | None]] = (),
    lenient: Collection[str] = (),
) -> None:
    """Refuse two of (option, path) that name one file: the second would replace the first,
    or be mixed into it. Compared where they lead (the directory, as a device and inode,
    and the name), and by device and inode where the file exists, so that `r.json`,
    `./r.json`, a symlink to it and a hard link of it are all the same file.

    `reads` are (what, path) of the files the run reads (its config, a ladder file): an
    output on one of them would replace what the user wrote with a report. An output in
    `lenient` (one the environment names, such as GITHUB_STEP_SUMMARY) that cannot be
    written at all is left to fail, as a warning, when it is written."""
    outputs = list(outputs)
    for what, path in reads:
        read = _stat(path)
        for option, out in outputs:
            written = _stat(out)
            if read is not None and written is not None and os.path.samestat(read, written):
                raise UsageError(
                    f"{option} {out} is {what} {path}, which this run reads; writing it would "
                    f"replace what is there: give {option} a file of its own"
                )
    seen: dict[tuple[object, ...], str] = {}
    for option, path in outputs:
        if path is None:
            continue
        try:
            with _opened(path, option) as target:
                directory = os.fstat(target.dir_fd)
                keys: list[tuple[object, ...]] = [(directory.st_dev, directory.st_ino, target.name)]
                if target.stat is not None:
                    keys.append((target.stat.st_dev, target.stat.st_ino))
        except UsageError:
            if option in lenient:
                continue  # written at the end or not at all, with a warning then
            raise
        for key in keys:
            if key in seen:
                raise UsageError(
                    f"{seen[key]} and {option} {path} are the same file, so one would "
                    "replace the other; give each its own file"
                )
        seen.update(dict.fromkeys(keys, f"{option} {path}"))


def _stat(path: str | Path | None) -> os.stat_result | None:
    try:
        return os.stat(path) if path is not None else None
    except OSError:
        return None


def append_text(path: str | Path, text: str, option: str) -> None:
    """Append `text` to `path`, made if missing, as CI job summary files are written by each
    step in turn (GitHub's `GITHUB_STEP_SUMMARY`). Checked like a log: our own regular
    file, a FIFO or a device, no symlink followed where another user could plant one."""
    with _opened(path, option) as target:
        fd = _open_nonblocking(target, os.O_CREAT | os.O_APPEND, option, path)
        try:
            _check_existing(path, option, OutputKind.STREAM, os.fstat(fd))
            os.set_blocking(fd, True)
            _write_all(fd, text.encode("utf-8", errors="surrogateescape"))
        finally:
            os.close(fd)


def open_log(path: Path) -> int:
    """A descriptor for `--log`, truncated if it is a regular file; refused (UsageError)
    when the path is unsafe or cannot be opened. Checked again here: the path may have
    changed since `check_output`."""
    with _opened(path, "--log") as target:
        if target.stat is not None:
            _check_existing(path, "--log", OutputKind.STREAM, target.stat)
        return _open_stream(target, "--log", path)


def write_atomically(path: Path, text: str | bytes, option: str, mode: int | None = None) -> None:
    """Write a finished report under a temporary name in the same directory, then rename
    it over `path`: a reader sees the old report or the new one, never half of one.

    The directory is walked once and held; the temporary file is created, renamed and (on
    failure) removed relative to it, so none of it can be sent elsewhere by a directory on
    the way being swapped for a symlink in between. `mode`: the file's permissions (by
    default the old file's, or what the umask gives a new one).

    Raises OSError when the file cannot take it (disk full, a FIFO's reader gone),
    UsageError when the path has become unsafe since it was checked.
    """
    with _opened(path, option) as target:
        default = 0o666 & ~_umask()
        if target.stat is not None:
            _check_existing(path, option, OutputKind.REPORT, target.stat)
            if stat.S_ISFIFO(target.stat.st_mode):
                _write_to_fifo(target, path, option, text)
                return
            # The old report's permissions, never its set-id bits.
            default = stat.S_IMODE(target.stat.st_mode) & 0o777
        _replace(target, _encoded(text), default if mode is None else mode)


def write_new(path: Path, text: str, option: str, mode: int = 0o644) -> None:
    """Create `path` holding `text`, never replacing anything: the text goes to a temporary
    file in the held directory, which is then hard-linked to its name (which fails if the
    name exists, even one made a moment ago), so a reader never sees half of it.
    FileExistsError when something is at `path`; on a filesystem without hard links the
    file is created with O_EXCL and written in place."""
    data = text.encode("utf-8", errors="surrogateescape")
    if os.path.lexists(path):  # a symlink to nothing is something: it is not followed
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    with _opened(path, option) as target:
        if target.stat is not None:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        directory = target.dir_fd
        temporary = _temporary(target, data, mode)
        try:
            os.link(
                temporary,
                target.name,
                src_dir_fd=directory,
                dst_dir_fd=directory,
                follow_symlinks=False,
            )
        except OSError as err:
            if err.errno == errno.EEXIST:
                raise
            _write_new(target.name, directory, data, mode)
        finally:
            os.unlink(temporary, dir_fd=directory)


def _write_new(name: str, directory: int, data: bytes, mode: int) -> None:
    """Make `name` in `directory` (it must not exist; made 0600 so that no one reads it
    before `mode` is set), write `data`, set `mode` and sync it to disk. A file this made
    and could not fill is removed again: no half-written file is left under any name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=directory)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        try:
            os.unlink(name, dir_fd=directory)
        except OSError:
            pass
        raise


def _replace(target: Opened, data: bytes, mode: int) -> None:
    directory = target.dir_fd
    temporary = _temporary(target, data, mode)
    try:
        os.rename(temporary, target.name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=directory)
        except OSError:
            pass
        raise


def _temporary(target: Opened, data: bytes, mode: int) -> str:
    """A new file holding `data` with `mode`, beside `target` in its held directory, synced
    to disk: its name, for a rename or a link over `target`."""
    directory = target.dir_fd
    # The name shortened, so that the temporary name stays within NAME_MAX (255 bytes).
    stem = os.fsdecode(os.fsencode(target.name)[:64])
    temporary = f".{stem}.{os.urandom(4).hex()}.tmp"
    _write_new(temporary, directory, data, mode)
    return temporary


def _encoded(text: str | bytes) -> bytes:
    """A report's bytes: text as UTF-8 (paths that are not, as they were), a picture as is."""
    return text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogateescape")


def _write_to_fifo(target: Opened, path: str | Path, option: str, text: str | bytes) -> None:
    """Write the report through to the FIFO's reader: on the descriptor `check_output`
    opened, or, for a FIFO that came later, one opened now without blocking. A reader that
    is gone is an error (ENXIO, EPIPE), not a wait for ever; a reader that is there but
    slow is waited for (a signal cannot make tiered-run give up the report, a second one
    can: see signals.finishing)."""
    assert target.stat is not None
    fd = _held_fifos.pop((target.stat.st_dev, target.stat.st_ino), None)
    if fd is None:
        fd = _open_fifo(target, option, path)
    try:
        _check_existing(path, option, OutputKind.REPORT, os.fstat(fd))
        os.set_blocking(fd, True)
        _write_all(fd, _encoded(text))
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _may_write(name: str, dir_fd: int) -> bool:
    """access(2) on `name` in `dir_fd`, not following a symlink, as the real user."""
    return os.access(name, os.W_OK, dir_fd=dir_fd, follow_symlinks=False)


@contextmanager
def _opened(path: str | Path, option: str) -> Iterator[Opened]:
    """The directory `path` leads to, held open for the block (see safepath.open_parent)."""
    text = os.fsdecode(path)
    if not text:
        raise UsageError(f"{option}: empty file name; give a file, e.g. {option} run.out")
    try:
        target = open_parent(text)
    except UnsafePath as err:
        raise UsageError(f"{option} {err.said_of(text)}; choose another path") from None
    try:
        if any(target.path == tree or target.path.startswith(tree + "/") for tree in _KERNEL_TREES):
            hint = " (the output already goes to stdout)" if option == "--log" else ""
            raise UsageError(
                f"{option} {text}: {target.path} is a kernel interface, not a file{hint}; "
                "choose a file"
            )
        yield target
    finally:
        os.close(target.dir_fd)


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


def _open_stream(target: Opened, option: str, path: str | Path) -> int:
    """Open for writing without following a symlink, without blocking on a FIFO that has
    no reader, and without truncating anything before it was checked."""
    fd = _open_nonblocking(target, os.O_CREAT, option, path)
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


def _open_fifo(target: Opened, option: str, path: str | Path) -> int:
    """A report FIFO's write end, left non-blocking until the report is written."""
    fd = _open_nonblocking(target, 0, option, path)
    try:
        st = os.fstat(fd)
        _check_existing(path, option, OutputKind.REPORT, st)
        if not stat.S_ISFIFO(st.st_mode):
            raise UsageError(f"{option} {path}: changed while it was checked; try again")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_nonblocking(target: Opened, create: int, option: str, path: str | Path) -> int:
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK | create
    try:
        return os.open(target.name, flags, 0o644, dir_fd=target.dir_fd)
    except OSError as err:
        if err.errno == errno.ENXIO:  # a FIFO nobody reads
            raise UsageError(
                f"{option} {path}: a FIFO with no reader; start the reader first"
            ) from err
        raise UsageError(
            f"{option} {path}: cannot open it ({err.strerror}); choose another file"
        ) from err


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
