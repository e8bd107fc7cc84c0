"""Ending a run's tree gracefully: the ending signal, SIGCONT, and SIGKILL after a grace.

Only the monitor ends a tree (at a breach, and what outlived the main process); the clock
and the wait are passed in so that a test can drive the grace with a fake clock.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tiered_run.backends.base import Backend

POLL_S = 0.005  # how often the tree is looked at during the grace

Clock = Callable[[], float]
# `wait(event, seconds)`: True once `event` is set, else False after `seconds`.
Wait = Callable[[threading.Event, float], object]


@dataclass(frozen=True)
class Ending:
    """How a run is ended gracefully: the first signal, and a process group to spare from it.

    `spare_pgrp` is tiered-run's own foreground process group at a terminal, whose members
    already got the terminal's Ctrl-C (SIGINT) or Ctrl-\\ (SIGQUIT): sending it again could
    cut short the clean-up that the first one started (pytest's summary).
    """

    signal: int = signal.SIGTERM
    spare_pgrp: int | None = None


def terminate_tree(
    backend: Backend,
    grace: float,
    hurry: threading.Event | None = None,
    ending: Ending = Ending(),
    *,
    clock: Clock = time.monotonic,
    wait: Wait = threading.Event.wait,
) -> int:
    """The ending signal to every process, SIGCONT so that stopped ones act on it (as
    `timeout` does), SIGKILL to whatever is left after `grace`, or at once when `hurry` is
    set. Returns how many processes had to be SIGKILLed."""
    hurry = hurry if hurry is not None else threading.Event()
    _send(backend, ending)
    if ending.signal not in (signal.SIGKILL, signal.SIGCONT):
        backend.kill(signal.SIGCONT)
    deadline = clock() + grace
    while (remaining := backend.pids()) and clock() < deadline:
        if wait(hurry, POLL_S):
            break
    if remaining:
        backend.kill(signal.SIGKILL)
    return len(remaining)


def _send(backend: Backend, ending: Ending) -> None:
    if ending.spare_pgrp is None:
        backend.kill(ending.signal)
        return
    for pid in backend.pids():
        try:
            if os.getpgid(pid) != ending.spare_pgrp:
                os.kill(pid, ending.signal)
        except ProcessLookupError:
            continue
