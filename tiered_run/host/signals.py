"""Signals to tiered-run, handled the same way from the first instant to the last byte.

The entry point blocks the ending signals before anything heavy is imported and hands
them to a thread that takes them with sigwaitinfo(2); they are never unblocked. A signal
that comes while options are parsed, while a run is set up, during it, or while its
report is written is recorded here and acted on by whoever owns that moment (the
supervisor while a run is live, the ladder between steps, the entry point at the end).
Nothing is lost to a default action in between, and each signal comes with who sent it:
the terminal (Ctrl-C), another process (a CI runner's kill), or a process of the run's
own tree (a workload's `kill 0` at a terminal, which reaches tiered-run's process group).

A signal the caller set to be ignored (`nohup`, a CI runner) stays ignored, for tiered-run
and, through exec, for the workload: that is what the caller asked for. Children get the
signal mask tiered-run was started with (`restore_in_child`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Signals that end a run: the terminal's Ctrl-C and Ctrl-\, a CI runner's SIGTERM, a
# closed terminal's SIGHUP. Each makes tiered-run end the run and exit 128 + N.
ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_SI_KERNEL = 0x80  # si_code of a signal the kernel sent: a terminal's Ctrl-C, Ctrl-\, hang-up


@dataclass(frozen=True)
class Received:
    """One ending signal: its number and where it came from (siginfo_t)."""

    signum: int
    sender: int | None = None  # the sending process (kill, sigqueue), None for the kernel
    from_kernel: bool = False  # typed at the terminal, or the terminal hung up

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


Listener = Callable[[Received], None]


class Held:
    """Signals held back while the workload is spawned: whether the run itself sent one (a
    `kill 0` right after exec comes before the spawn returns) can only be told once the
    main pid is known."""

    def __init__(self) -> None:
        self._held: list[Received] | None = None
        self._lock = threading.Lock()

    def hold(self) -> None:
        with self._lock:
            self._held = []

    def took(self, received: Received) -> bool:
        """Whether `received` was held back (between `hold` and `release`)."""
        with self._lock:
            if self._held is None:
                return False
            self._held.append(received)
            return True

    def release(self) -> list[Received]:
        """Stop holding; the signals held back, in order."""
        with self._lock:
            held, self._held = self._held or [], None
        return held


_received: list[Received] = []
_listener: Listener | None = None
_wake = threading.Event()
_lock = threading.Lock()
_installed: frozenset[int] = frozenset()
_original_mask: frozenset[int] | None = None
_claimed = False


def install() -> None:
    """Take every ending signal from now on; one the caller ignores stays ignored."""
    global _installed, _original_mask
    wanted = frozenset(sig for sig in ENDING if signal.getsignal(sig) is not signal.SIG_IGN)
    if not wanted:
        return
    _original_mask = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, wanted))
    _installed = wanted
    threading.Thread(target=_take, name="tiered-run-signals", daemon=True).start()


def _take() -> None:
    while True:
        info = signal.sigwaitinfo(_installed)
        from_kernel = info.si_code == _SI_KERNEL
        deliver(Received(info.si_signo, None if from_kernel else info.si_pid, from_kernel))


def deliver(received: Received) -> None:
    """Record a signal and pass it to the listener (called by the signal thread; tests may
    call it to drive a run)."""
    with _lock:
        _received.append(received)
        listener = _listener
    _wake.set()
    if listener is not None:
        listener(received)


def restore_in_child() -> None:
    """In a forked child before exec: the signal mask tiered-run was started with."""
    if _original_mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _original_mask)


def handled() -> frozenset[int]:
    """The ending signals tiered-run acts on (those the caller did not ignore)."""
    return _installed


def first() -> Received | None:
    """The first ending signal received so far, or None."""
    return _received[0] if _received else None


def count() -> int:
    return len(_received)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener(received)` for each signal while the block runs (from the signal
    thread: the listener must be thread-safe)."""
    global _listener
    with _lock:
        previous, _listener = _listener, listener
    try:
        yield
    finally:
        with _lock:
            _listener = previous


def wait(seconds: float) -> bool:
    """Sleep up to `seconds`; True at once if a signal has come (now or before)."""
    if _received:
        return True
    _wake.wait(seconds)
    return bool(_received)


def claim() -> None:
    """Whoever calls this reports the signals from now on (a run: outcome `interrupted`);
    otherwise the entry point exits 128 + N for them."""
    global _claimed
    _claimed = True


def claimed() -> bool:
    return _claimed


@contextmanager
def finishing(exit_code: int) -> Iterator[None]:
    """While a result is being written: a first signal is noted and the writing goes on, so
    the report is not lost; a second one exits at once with the result's own code (a report
    target that blocks for ever, such as a FIFO whose reader never reads, cannot hold
    tiered-run)."""
    seen = 0

    def second_ends(_received: Received) -> None:
        nonlocal seen
        seen += 1
        if seen >= 2:
            import os

            os._exit(exit_code)

    with listening(second_ends):
        yield


def reset() -> None:
    """Forget received signals (tests drive several runs in one process)."""
    global _claimed
    with _lock:
        _received.clear()
    _wake.clear()
    _claimed = False
