"""The live status line at a terminal: one line at the bottom of the screen, redrawn in place.

    [tiered-run]  12.3s/1m00s  running  mem 412.0 MiB/2.0 GiB  tasks 17/512  cpu 1.95/4  load 3.10

The workload keeps the terminal (its output, its prompts, `isatty`), so the line cannot
simply be written after its output: the next line of the workload would be glued to it.
As apt does for its progress bar, the bottom row is kept out of the scrolling region
(DECSTBM) while the run goes on: the workload's output scrolls above it, and the line is
drawn on the bottom row with the cursor saved and restored around it. The region is given
back and the row cleared at the end, before the summary table.

Only loaded where `options.live_status` found a terminal on stderr (not `-q`, not CI, not
`TERM=dumb`). The monitor's callbacks only put into a queue; one thread of its own reads
it and writes, so a terminal that blocks (Ctrl-S) never stalls enforcement.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tiered_run.inputs.units import format_size
from tiered_run.model.report import Event, Outcome, TimelinePoint
from tiered_run.model.spec import OnLoad, RunSpec
from tiered_run.render.text import for_terminal

REDRAW_S = 0.25
_ENDING_KINDS = {o.value for o in (Outcome.TIMEOUT, Outcome.MEMORY, Outcome.TASKS)}
_ENDING_KINDS |= {Outcome.INTERRUPTED.value, "before-kill", "sigkill", "leftovers", "error"}
_GREEN, _YELLOW, _RED = "32", "33", "31"


@dataclass
class _Run:
    """What is known of the run being shown, updated from its samples and events."""

    spec: RunSpec
    label: str
    started: float
    memory: int | None = None
    tasks: int | None = None
    cpu_busy: float | None = None
    load: float | None = None
    state: str = "running"
    last_cpu: tuple[float, float] | None = None


class StatusLine:
    """The line and the scrolling region under it; see the module docstring."""

    def __init__(
        self,
        fd: int = 2,
        color: bool = True,
        clock: Callable[[], float] = time.monotonic,
        size: Callable[[int], os.terminal_size] = os.get_terminal_size,
    ) -> None:
        self._fd = fd
        self._color = color
        self._clock = clock
        self._size = size
        self._queue: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._run: _Run | None = None
        self._waiting: str | None = None
        self._rows = 0
        self._broken = False
        self._thread = threading.Thread(target=self._loop, name="tiered-run-status", daemon=True)
        self._thread.start()

    # -- from any thread: never blocks -------------------------------------------------------

    def start_run(self, spec: RunSpec, label: str = "") -> None:
        """A run begins (a ladder's step: `label` says which)."""
        self._queue.put(("run", (spec, label, self._clock())))

    def on_event(self, event: Event) -> None:
        self._queue.put(("event", event))

    def on_sample(self, point: TimelinePoint) -> None:
        self._queue.put(("sample", point))

    def waiting(self, text: str) -> None:
        """Something other than a run is going on (a ladder waits for the host): say what."""
        self._queue.put(("wait", text))

    def close(self, wait_s: float = 1.0) -> None:
        """Clear the line and give the bottom row back to the terminal."""
        self._queue.put(("close", None))
        self._thread.join(wait_s)

    # -- the thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        next_draw = 0.0
        while True:
            try:
                kind, value = self._queue.get(timeout=REDRAW_S)
            except queue.Empty:
                kind, value = "tick", None
            if kind == "close":
                self._release()
                return
            self._take(kind, value)
            # A change of state or of what is waited for is shown at once.
            urgent = kind in ("event", "wait", "run")
            if (urgent or self._clock() >= next_draw) and not self._broken:
                self._draw()
                next_draw = self._clock() + REDRAW_S / 2

    def _take(self, kind: str, value: object) -> None:
        if kind == "run":
            spec, label, started = value  # type: ignore[misc]
            self._run, self._waiting = _Run(spec, label, started), None
        elif kind == "wait":
            self._waiting = str(value)
        elif kind == "sample" and self._run is not None:
            _sampled(self._run, value)  # type: ignore[arg-type]
        elif kind == "event" and self._run is not None:
            event: Event = value  # type: ignore[assignment]
            if event.kind == Outcome.LOAD.value and self._run.spec.limits.on_load is OnLoad.KILL:
                self._run.state = "stopping"
            else:
                self._run.state = _state_after(self._run.state, event)

    def _draw(self) -> None:
        try:
            columns, rows = self._size(self._fd)
        except OSError:
            return
        if rows < 3 or columns < 20:
            return
        setup = ""
        if rows != self._rows:
            # Room for the line: one new line, then the region above the bottom row, the
            # cursor back where the output goes on (apt's sequence).
            setup = "\n\x1b7" + f"\x1b[1;{rows - 1}r" + "\x1b8\x1b[1A"
            if self._rows:  # resized: the old region is replaced, no new line needed
                setup = "\x1b7" + f"\x1b[1;{rows - 1}r" + "\x1b8"
            self._rows = rows
        line = self._render(columns - 1)
        self._write(f"{setup}\x1b7\x1b[{rows};1H\x1b[2K{line}\x1b8")

    def _release(self) -> None:
        if self._rows and not self._broken:
            self._write(f"\x1b7\x1b[{self._rows};1H\x1b[2K\x1b[r\x1b8")
        self._rows = 0

    def _write(self, text: str) -> None:
        data = text.encode(errors="replace")
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            self._broken = True  # the terminal is gone: nothing more is drawn

    # -- the text ------------------------------------------------------------------------

    def _render(self, width: int) -> str:
        """The line, cut to `width` visible characters, then coloured."""
        parts = self._parts()
        shown: list[str] = []
        used = 0
        for text, color in parts:
            text = for_terminal(text)
            room = width - used - (2 if shown else 0)
            if room <= 0:
                break
            cut = text if len(text) <= room else text[: max(room - 1, 0)] + "~"
            used += len(cut) + (2 if shown else 0)
            shown.append(f"\x1b[{color}m{cut}\x1b[0m" if color and self._color else cut)
        return "  ".join(shown)

    def _parts(self) -> list[tuple[str, str | None]]:
        if self._waiting is not None or self._run is None:
            return [("[tiered-run]", None), (self._waiting or "starting", _YELLOW)]
        run, limits = self._run, self._run.spec.limits
        elapsed = self._clock() - run.started
        parts: list[tuple[str, str | None]] = [("[tiered-run]" + run.label, None)]
        timeout = limits.timeout
        parts.append(
            (
                _clock(elapsed) + (f"/{_clock(timeout)}" if timeout else ""),
                _YELLOW if timeout and elapsed >= 0.8 * timeout else None,
            )
        )
        # The state early: on a narrow terminal the figures at the end are cut first.
        parts.append((run.state, {"running": _GREEN, "stopping": _RED}.get(run.state, _YELLOW)))
        memory = "?" if run.memory is None else format_size(run.memory)
        hard, soft = limits.memory, limits.memory_high
        level = None
        if run.memory is not None and hard and run.memory >= 0.95 * hard:
            level = _RED
        elif run.memory is not None and (
            (hard and run.memory >= 0.8 * hard) or (soft and run.memory > soft)
        ):
            level = _YELLOW
        parts.append((f"mem {memory}" + (f"/{format_size(hard)}" if hard else ""), level))
        tasks = "?" if run.tasks is None else str(run.tasks)
        ceiling = f"/{limits.tasks_max}" if limits.tasks_max else ""
        parts.append((f"tasks {tasks}{ceiling}", None))
        busy = "?" if run.cpu_busy is None else f"{run.cpu_busy:.2f}"
        parts.append((f"cpu {busy}/{len(limits.cpus)}", None))
        if run.load is not None:
            over = limits.load_max is not None and run.load > limits.load_max
            ceiling = f"/{limits.load_max:g}" if limits.load_max is not None else ""
            parts.append((f"load {run.load:.2f}{ceiling}", _YELLOW if over else None))
        return parts


def _sampled(run: _Run, point: TimelinePoint) -> None:
    run.memory = point.memory_bytes if point.memory_bytes is not None else run.memory
    run.tasks = point.tasks if point.tasks is not None else run.tasks
    run.load = point.load1 if point.load1 is not None else run.load
    if point.cpu_s is not None:
        last = run.last_cpu
        if last is not None and point.t - last[0] >= 0.5:  # steadier than two close samples
            run.cpu_busy = max(0.0, (point.cpu_s - last[1]) / (point.t - last[0]))
            run.last_cpu = (point.t, point.cpu_s)
        elif last is None:
            run.last_cpu = (point.t, point.cpu_s)


def _state_after(state: str, event: Event) -> str:
    """running, paused by host load, stopped (Ctrl-Z) or stopping, after `event`."""
    if event.kind in _ENDING_KINDS:
        return "stopping"
    if state == "stopping":
        return state  # nothing brings a run back from its end
    if event.kind == "pause":
        return "paused by host load"
    if event.kind == "stopped":
        return "stopped (Ctrl-Z)"
    if event.kind in ("resume", "continued"):
        return "running"
    return state


def _clock(seconds: float) -> str:
    """12.3s, 4m05s, 1h02m: short, and as wide from one second to the next."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
