"""One guard started in its own session and reaped with wait4: its exit status, rusage and
a precise wall time, and a hard stop by pidfd if it outlives its limit."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .procs import boot_now
from .sampling import SampleError


class Launch:
    """A guard started in its own session; reaped with wait4 (for its rusage and a precise
    wall time), SIGTERMed and then SIGKILLed by pid if it outlives its limit."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        stderr: Path,
        stdout: Path | None = None,
    ) -> None:
        self.stderr = stderr
        with open(stderr, "wb") as err:
            if stdout is None:
                self._start(argv, env, cwd, subprocess.DEVNULL, err)
            else:
                with open(stdout, "wb") as out:
                    self._start(argv, env, cwd, out, err)
        self.argv = argv
        try:  # signals through a pidfd can never reach a reused pid
            self._pidfd: int | None = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self._pidfd = None
        self.status: int | None = None
        self.rusage: Any = None
        self.wall: float | None = None
        self.end_boot: float | None = None
        self.expired = False
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def _start(
        self, argv: list[str], env: dict[str, str], cwd: Path, out: IO[bytes] | int, err: IO[bytes]
    ) -> None:
        self.start_boot = boot_now()
        self._t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int:
        assert self.status is not None
        return os.waitstatus_to_exitcode(self.status)

    def failure(self, what: str = "") -> SampleError:
        """A SampleError with the exit code and the guard's last line on stderr."""
        try:
            lines = self.stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        said = f": {lines[-1][:200]}" if lines else ""
        return SampleError(f"{what + ', ' if what else ''}exit code {self.returncode}{said}")

    def _done(self, status: int, rusage: Any) -> None:
        self.wall = time.perf_counter() - self._t0
        self.end_boot = boot_now()
        with self._lock:
            self.status = status
        self.rusage = rusage
        self.proc.returncode = os.waitstatus_to_exitcode(status)

    def poll(self) -> bool:
        if self.status is None:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid == 0:
                return False
            self._done(status, rusage)
        return True

    def wait(self, limit: float) -> Launch:
        if self.status is None:
            timer = threading.Timer(limit, self._expire)
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
            try:
                _, status, rusage = os.wait4(self.pid, 0)
            finally:
                for t in self._timers:
                    t.cancel()
            self._done(status, rusage)
        if self.expired:
            raise SampleError(f"{self.argv[0]} still running after {limit:g} s: killed")
        return self

    def _signal(self, sig: int) -> None:
        with self._lock:
            if self.status is None:
                try:
                    if self._pidfd is not None:
                        signal.pidfd_send_signal(self._pidfd, sig)
                    else:
                        os.kill(self.pid, sig)
                except OSError:
                    pass

    def _expire(self) -> None:
        self.expired = True
        self._signal(signal.SIGTERM)
        timer = threading.Timer(10, self._signal, (signal.SIGKILL,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def __enter__(self) -> Launch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.status is None:
                self._signal(signal.SIGTERM)
                self.wait(15)
        except SampleError:
            pass
        finally:
            with self._lock:
                if self._pidfd is not None:
                    os.close(self._pidfd)
                    self._pidfd = None


def wait_for_pids(path: Path, launch: Launch, limit: float) -> list[int]:
    """The pids a workload wrote to `path` (atomically) once it had started them all."""
    deadline = time.monotonic() + limit
    while not path.exists():
        if launch.poll():
            raise SampleError(f"guard exited with {launch.returncode} before the workload was up")
        if time.monotonic() > deadline:
            raise SampleError(f"workload not up after {limit:g} s")
        time.sleep(0.005)
    return [int(p) for p in path.read_text().split()]
