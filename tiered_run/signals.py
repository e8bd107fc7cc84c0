"""Signals to tiered-run, handled the same way from the first instant to the last byte.

The entry point installs the handlers before anything heavy is imported, and they are
never restored: a signal that comes while options are parsed, while a run is set up,
during it, or while its report is written is recorded here and acted on by whoever owns
that moment (the supervisor while a run is live, the ladder between steps, the entry point
at the end). Nothing is lost to a default action in between.

A signal the caller set to be ignored (`nohup`, a CI runner) stays ignored, for tiered-run
and, through exec, for the workload: that is what the caller asked for.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Signals that end a run: the terminal's Ctrl-C and Ctrl-\, a CI runner's SIGTERM, a
# closed terminal's SIGHUP. Each makes tiered-run end the run and exit 128 + N.
ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

Listener = Callable[[int], None]

_received: list[int] = []
_listener: Listener | None = None
_wake = threading.Event()
_installed: set[int] = set()
_claimed = False


def install() -> None:
    """Record every ending signal from now on; one the caller ignores stays ignored."""
    for sig in ENDING:
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue
        signal.signal(sig, _record)
        _installed.add(sig)


def handled() -> frozenset[int]:
    """The ending signals tiered-run acts on (those the caller did not ignore)."""
    return frozenset(_installed)


def _record(signum: int, _frame: object) -> None:
    _received.append(signum)
    _wake.set()
    listener = _listener
    if listener is not None:
        listener(signum)


def first() -> int | None:
    """The first ending signal received so far, or None."""
    return _received[0] if _received else None


def count() -> int:
    return len(_received)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener(signum)` (in the main thread) for each signal while the block runs."""
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
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

    def second_ends(_signum: int) -> None:
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
    _received.clear()
    _wake.clear()
    _claimed = False
