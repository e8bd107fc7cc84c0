"""A run at a terminal, and Ctrl-Z.

At a terminal the workload stays in tiered-run's session and process group, as with
`timeout --foreground`: Ctrl-C reaches it as SIGINT straight from the terminal (pytest
prints its summary, `finally` blocks run), and it can open /dev/tty (ssh, sudo and git
prompts). Processes that leave the group (setsid'd daemons) are still ended through the
cgroup. Without a terminal (CI) the workload gets a session of its own, as before.

Ctrl-Z (SIGTSTP) stops the whole tree, not only tiered-run: the tree is frozen, the
timeout stops counting, and tiered-run stops itself so the shell sees the job stopped;
`fg` (SIGCONT) thaws the tree and the clock goes on. A background job that reads from
(SIGTTIN) or, with `stty tostop`, writes to (SIGTTOU) the terminal is stopped the same
way: the kernel sends those to the whole process group, tiered-run included.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import TracebackType


class Terminal:
    """tiered-run's controlling terminal, held open for the run."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def controlling(cls) -> Terminal | None:
        """The controlling terminal, or None (CI, cron, a service, `setsid`)."""
        try:
            return cls(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC))
        except OSError:
            return None

    @property
    def foreground(self) -> bool:
        """Whether tiered-run's process group is the terminal's foreground group, i.e. the
        one the terminal sends Ctrl-C, Ctrl-\\ and Ctrl-Z to."""
        try:
            return os.tcgetpgrp(self.fd) == os.getpgrp()
        except OSError:
            return False

    def close(self) -> None:
        os.close(self.fd)


STOPPING = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


class StopWithTree:
    """While active, a stop signal to tiered-run stops the whole tree before tiered-run.

    `on_stop(signum)` freezes the tree and `on_continue()` thaws it; both run in the main
    thread, in the signal handler. A stop signal the caller ignores stays ignored.
    """

    def __init__(self, on_stop: Callable[[int], None], on_continue: Callable[[], None]) -> None:
        self._on_stop = on_stop
        self._on_continue = on_continue
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopWithTree:
        for sig in STOPPING:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, self._stop)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous = {}

    def _stop(self, signum: int, _frame: object) -> None:
        self._on_stop(signum)
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once the shell sends SIGCONT (fg, bg)
        self._on_continue()
