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
"""

from __future__ import annotations

import fcntl
import os
import selectors
import threading
import time

_CHUNK = 1 << 20
_PIPE_SIZE = 1 << 20
_NAMES = {1: "stdout", 2: "stderr"}


class Tee:
    def __init__(self, log_fd: int) -> None:
        """Takes ownership of `log_fd`, an open, writable descriptor (see outputs.open_log)."""
        self._log: int | None = log_fd
        self._logged = 0
        self._pipes: dict[int, int] = {}  # read end -> our descriptor to copy to
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
                    data = os.read(key.fd, _CHUNK)
                    if data and self._copy(self._pipes[key.fd], data):
                        continue
                    # EOF, or our end of that stream is gone: stop reading it. Closing the
                    # pipe makes the workload's next write to it fail, as with `tee`.
                    selector.unregister(key.fd)
                    open_ends.discard(key.fd)
                    if data:
                        os.close(key.fd)
                        del self._pipes[key.fd]

    def _copy(self, target: int, data: bytes) -> bool:
        """Log `data`, then copy it to `target`; False when `target` is gone."""
        self._write_log(data)
        try:
            _write_all(target, data)
        except OSError as err:
            self.warnings.append(
                f"tiered-run's {_NAMES[target]} went away ({err.strerror}); the workload's "
                f"{_NAMES[target]} was cut there"
                + (", as in the log" if self._log is not None else "")
            )
            return False
        return True

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
        for fd in {*self._pipes, *self.child_fds}:
            os.close(fd)
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
