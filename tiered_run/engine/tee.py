"""Copies the workload's stdout and stderr to ours and to a log file, byte for byte.

Only used with --log; without it the workload writes to our descriptors directly. The
pipes are drained until EOF, which arrives once the whole tree is gone, so the log is
complete up to the moment of a kill. A process that escaped the kill and still holds a
pipe cannot keep tiered-run waiting: `close` stops after a bounded drain.

It behaves like `tee` where a stream fails:
- our stdout or stderr is gone (`| head` exited, a CI runner closed its pipe): that
  stream is no longer copied and its pipe is closed, so the workload gets EPIPE or
  SIGPIPE on its next write, as it would writing there itself; the log keeps what came
  before, and the other stream goes on;
- the log cannot be written (a full disk): a warning, and the output still reaches the
  terminal. Neither ever stops the pipes being drained, which would block the workload.

The bytes are not copied through Python where the kernel can move them: `tee(2)`
duplicates what is in the workload's pipe into a pipe of our own without consuming it,
`splice(2)` moves that duplicate into the log and the original to our stdout or stderr.
A target that takes no splice (a terminal on older kernels) gets `read`/`write` instead;
either way each chunk reaches the log first, then the target, as before.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import fcntl
import os
import selectors
import threading
import time

_CHUNK = 1 << 20
_PIPE_SIZE = 1 << 20
_NAMES = {1: "stdout", 2: "stderr"}
_SPLICE_F_NONBLOCK = 2
_NO_SPLICE = {errno.EINVAL, errno.ENOSYS, errno.EBADF, errno.ESPIPE}


class _Moved(enum.Enum):
    MOVED = "moved"  # a chunk reached the log and the target (or there was none after all)
    EOF = "eof"
    GONE = "gone"  # the target is gone: this stream is cut
    NOT_HERE = "not here"  # the kernel cannot move it: read and copy


def _libc_tee() -> ctypes._CFuncPtr | None:
    """tee(2) from the C library (the os module has splice but not tee); None without."""
    try:
        tee = ctypes.CDLL(None, use_errno=True).tee
    except (OSError, AttributeError):
        return None
    tee.restype = ctypes.c_ssize_t
    tee.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)
    return tee


class Tee:
    def __init__(self, log_fd: int) -> None:
        """Takes ownership of `log_fd`, an open, writable descriptor (see outputs.open_log)."""
        self._log: int | None = log_fd
        self._logged = 0
        self._pipes: dict[int, int] = {}  # read end -> our descriptor to copy to
        self._spliced: set[int] = set()  # targets that took a splice (others: read/write)
        self._unspliceable: set[int] = set()
        self._tee = _libc_tee()
        self._dup: tuple[int, int] | None = None  # our pipe for tee(2)'s duplicate
        self._log_spliceable = True
        self.child_fds: list[int] = []
        # Where our stdout and stderr are one file (a terminal, `2>&1`), the workload gets
        # one pipe for both, so their order is kept, on the terminal and in the log; two
        # pipes could not tell which of two quick writes came first.
        targets = (1,) if _same_file(1, 2) else (1, 2)
        for target in targets:
            read_end, write_end = os.pipe()
            try:
                fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            except OSError:
                pass  # a smaller pipe only costs more wake-ups
            self._pipes[read_end] = target
            self.child_fds.append(write_end)
        if len(targets) == 1:
            self.child_fds.append(self.child_fds[0])
        self._stop = threading.Event()
        self._give_up = 0.0
        self._thread = threading.Thread(target=self._pump, name="tiered-run-tee", daemon=True)
        self._closed = False
        self.warnings: list[str] = []

    def start(self) -> None:
        """Call after the child holds the write ends: closing ours makes EOF possible."""
        for fd in set(self.child_fds):
            os.close(fd)
        self.child_fds = []
        self._thread.start()

    def _pump(self) -> None:
        with selectors.DefaultSelector() as selector:
            for read_end in self._pipes:
                selector.register(read_end, selectors.EVENT_READ)
            open_ends = set(self._pipes)
            while open_ends:
                ready = selector.select(timeout=0.1)
                if self._stop.is_set() and (not ready or time.monotonic() > self._give_up):
                    break
                for key, _ in ready:
                    moved = self._move(key.fd)
                    if moved is _Moved.NOT_HERE:
                        data = os.read(key.fd, _CHUNK)
                        moved = (
                            _Moved.EOF
                            if not data
                            else _Moved.MOVED
                            if self._copy(self._pipes[key.fd], data)
                            else _Moved.GONE
                        )
                    if moved is _Moved.MOVED:
                        continue
                    gone = moved is _Moved.GONE
                    # EOF, or our end of that stream is gone: stop reading it. Closing the
                    # pipe makes the workload's next write to it fail, as with `tee`.
                    selector.unregister(key.fd)
                    open_ends.discard(key.fd)
                    if gone:
                        os.close(key.fd)
                        del self._pipes[key.fd]

    def _move(self, source: int) -> _Moved:
        """One chunk from `source` to the log, then its target, inside the kernel."""
        target = self._pipes[source]
        if self._tee is None or target in self._unspliceable:
            return _Moved.NOT_HERE
        if self._log is not None:
            if self._dup is None:
                self._dup = os.pipe()
                try:
                    fcntl.fcntl(self._dup[1], fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
                except OSError:
                    pass
            count = self._tee(source, self._dup[1], _CHUNK, _SPLICE_F_NONBLOCK)
            if count < 0:
                if ctypes.get_errno() == errno.EAGAIN:
                    return _Moved.MOVED  # nothing there after all
                self._tee = None
                return _Moved.NOT_HERE
            if count == 0:
                return _Moved.EOF
            self._splice_log(count)
        else:
            count = _CHUNK
        try:
            moved = _splice_all(source, target, count, exact=self._log is not None)
        except OSError as err:
            if err.errno in _NO_SPLICE and target not in self._spliced:
                self._unspliceable.add(target)
                if self._log is None:
                    return _Moved.NOT_HERE
                data = _read_exactly(source, count)
                return _Moved.MOVED if self._copy_to(target, data) else _Moved.GONE
            self._target_gone(target, err)
            return _Moved.GONE
        self._spliced.add(target)
        return _Moved.MOVED if moved else _Moved.EOF

    def _splice_log(self, count: int) -> None:
        """The duplicate of `count` bytes from our pipe into the log; a failing log is
        dropped with a warning, and the duplicate with it."""
        assert self._dup is not None and self._log is not None
        if self._log_spliceable:
            try:
                while count > 0:  # counted as it goes: a warning says exactly where it stopped
                    step = os.splice(self._dup[0], self._log, count)
                    self._logged += step
                    count -= step
                return
            except OSError as err:
                if err.errno not in _NO_SPLICE:
                    self._log_failed(err)
                    for fd in self._dup:
                        os.close(fd)
                    self._dup = None
                    return
                self._log_spliceable = False  # e.g. an O_APPEND file: through Python
        self._write_log(_read_exactly(self._dup[0], count))

    def _copy(self, target: int, data: bytes) -> bool:
        """Log `data`, then copy it to `target`; False when `target` is gone."""
        self._write_log(data)
        return self._copy_to(target, data)

    def _copy_to(self, target: int, data: bytes) -> bool:
        try:
            _write_all(target, data)
        except OSError as err:
            self._target_gone(target, err)
            return False
        return True

    def _target_gone(self, target: int, err: OSError) -> None:
        self.warnings.append(
            f"tiered-run's {_NAMES[target]} went away ({err.strerror}); the workload's "
            f"{_NAMES[target]} was cut there" + (", as in the log" if self._log is not None else "")
        )

    def _write_log(self, data: bytes) -> None:
        if self._log is None:
            return
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._log, view)
                self._logged += written
                view = view[written:]
        except OSError as err:
            self._log_failed(err)

    def _log_failed(self, err: OSError) -> None:
        assert self._log is not None
        self.warnings.append(
            f"the log stopped after {self._logged} bytes ({err.strerror}); the rest of "
            "the output went to the terminal only"
        )
        os.close(self._log)
        self._log = None

    def close(self, drain_s: float = 2.0, trailer: bytes = b"") -> None:
        """Wait for EOF on both pipes, or stop after `drain_s` of silence from a straggler,
        then add `trailer` to the log (tiered-run's own words, e.g. --before-kill's output).
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._thread.join(drain_s)
            self._give_up = time.monotonic() + drain_s
            self._stop.set()
            self._thread.join()
        for fd in {*self._pipes, *self.child_fds, *(self._dup or ())}:
            os.close(fd)
        self._dup = None
        self._pipes = {}
        self.child_fds = []
        if trailer:
            self._write_log(trailer)
        if self._log is not None:
            os.close(self._log)
            self._log = None


def _same_file(a: int, b: int) -> bool:
    try:
        first, second = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _splice_all(source: int, target: int, count: int, *, exact: bool) -> int:
    """Splice `count` bytes (`exact`), or what one call moves (not `exact`: 0 at EOF)."""
    moved = 0
    while True:
        step = os.splice(source, target, count - moved)
        moved += step
        if not exact or step == 0 or moved >= count:
            return moved


def _read_exactly(fd: int, count: int) -> bytes:
    parts = []
    while count > 0 and (part := os.read(fd, count)):
        parts.append(part)
        count -= len(part)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
