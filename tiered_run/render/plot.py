"""`tiered-run plot`: a saved report's timeline as a picture, like psrecord's.

One panel per run (a ladder report: one per step that ran), each four rows over the same
time axis: memory against its ceilings, tasks against theirs, CPUs busy against the CPUs
allowed, and the host's 1-minute load (and PSI pressure) against its ceilings. The
events are drawn across every row: a breach (timeout, memory, tasks, load, an
interruption) as a red line labelled with its kind, the soft memory ceiling's crossing
and the final SIGKILL as thinner lines, and the time the tree was frozen (paused for host
load, stopped with Ctrl-Z) as a shaded span.

Every marker carries a gid (`breach-timeout`, `pause`...) that an SVG keeps as its id, and
SVG text is kept as text, so a test, or a user's grep, can find what was drawn.

This module imports matplotlib at the top: only `cli.plot` imports it, and only once the
plot command runs (matplotlib is the optional `plot` extra).
"""

from __future__ import annotations

import io
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no display, no global figure state
from matplotlib.ticker import MaxNLocator

from tiered_run.inputs.units import format_size
from tiered_run.model.report import Outcome, RunReport
from tiered_run.render.text import for_terminal, one_line, truncate

FORMATS = ("png", "svg")
BREACH_KINDS = frozenset(o.value for o in (Outcome.TIMEOUT, Outcome.MEMORY, Outcome.TASKS))
INTERRUPTED = Outcome.INTERRUPTED.value
# A ceiling this many times above the peak is only named in the legend: drawn, it would
# flatten the curve to the floor.
OFF_SCALE = 4.0
_PANEL_W, _PANEL_H = 7.0, 7.0
_BREACH, _SOFT, _CEILING = "#c0392b", "#e67e22", "#7f8c8d"


@dataclass(frozen=True)
class Panel:
    """One run to draw, with the title that tells it apart (a ladder's step)."""

    title: str
    report: RunReport


def panels_of(data: dict[str, object]) -> list[Panel]:
    """A run report's one panel, or a panel for every step of a ladder report that ran.

    Raises ValueError (KeyError, TypeError) for data that is not such a report."""
    if data.get("kind") == "ladder":
        found = []
        for step in data.get("steps") or []:  # type: ignore[union-attr]
            if isinstance(step, dict) and isinstance(step.get("report"), dict):
                report = RunReport.from_dict(step["report"])
                title = f"step {step.get('index')}: {step.get('name')} ({step.get('status')})"
                found.append(Panel(title, report))
        return found
    report = RunReport.from_dict(data)
    return [Panel(_command(report), report)]


def render_plot(panels: Sequence[Panel], fmt: str) -> bytes:
    """The picture of `panels` as PNG or SVG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 8}):
        figure = Figure(figsize=(_PANEL_W * columns, _PANEL_H * rows), layout="constrained")
        subfigures = figure.subfigures(rows, columns, squeeze=False)
        for index, panel in enumerate(panels):
            draw_panel(subfigures[index // columns][index % columns], panel)
        for spare in range(len(panels), rows * columns):
            subfigures[spare // columns][spare % columns].set_visible(False)
        out = io.BytesIO()
        figure.savefig(out, format=fmt, dpi=100, metadata=_metadata(fmt))
    return out.getvalue()


def _metadata(fmt: str) -> dict[str, str | None]:
    # No date in the SVG: the same report makes the same file.
    return {"Software": "tiered-run"} if fmt == "png" else {"Date": None}


def draw_panel(figure, panel: Panel) -> list[Axes]:  # figure: a matplotlib (Sub)Figure
    report = panel.report
    axes = figure.subplots(4, 1, sharex=True)
    figure.suptitle(f"{panel.title}\n{_headline(report)}", fontsize=9)
    points = report.timeline
    times = [p.t for p in points]
    _memory(axes[0], report, times)
    _tasks(axes[1], report, times)
    _cpu(axes[2], report, times)
    _host(axes[3], report)
    axes[3].set_xlabel("seconds since the start")
    end = max([report.wall_s, *times, *(e.t for e in report.events)], default=1.0) or 1.0
    for ax in axes:
        ax.set_xlim(0, end * 1.02)  # room for a breach at the very end
        ax.set_ylim(0, max(ax.get_ylim()[1], 1) * 1.1)
        ax.grid(True, alpha=0.3)
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    _events(axes, report, end)
    return list(axes)


def _headline(report: RunReport) -> str:
    text = f"{report.outcome.value}: exit {report.exit_code}, {report.wall_s:.1f} s"
    if report.tier:
        text += f", tier {report.tier}"
    return text + f", {report.backend}"


def _command(report: RunReport) -> str:
    return for_terminal(truncate(one_line(shlex.join(report.command)), 70))


def _limit(report: RunReport, key: str) -> float | None:
    value = report.limits.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _ceiling(ax: Axes, value: float | None, peak: float, label: str, color: str, gid: str,
             shown: str) -> None:  # fmt: skip
    """A ceiling as a dashed line, or as a note where it would flatten the curve."""
    if value is None:
        return
    if peak > 0 and value > peak * OFF_SCALE:  # said in the legend only
        ax.plot([], [], color=color, linestyle="--", label=f"{label} {shown} (off the scale)",
                gid=gid)  # fmt: skip
        return
    ax.axhline(value, color=color, linestyle="--", linewidth=1.2, label=f"{label} {shown}",
               gid=gid)  # fmt: skip


def _memory(ax: Axes, report: RunReport, times: list[float]) -> None:
    values = [p.memory_bytes for p in report.timeline]
    known = [v for v in values if v is not None]
    hard, soft = _limit(report, "memory_bytes"), _limit(report, "memory_high_bytes")
    scale_of = max([*known, report.peak_memory_bytes or 0, hard or 0, soft or 0, 1])
    if known and hard is not None and hard > max(known) * OFF_SCALE:
        scale_of = max([*known, soft or 0, 1])
    unit, div = _unit(scale_of)
    ax.plot(times, [None if v is None else v / div for v in values], color="#2c7fb8",
            label="memory", gid="memory")  # fmt: skip
    peak = max(known, default=0) / div
    _ceiling(ax, None if hard is None else hard / div, peak, "ceiling", _BREACH,
             "memory-ceiling", format_size(int(hard or 0)))  # fmt: skip
    _ceiling(ax, None if soft is None else soft / div, peak, "soft ceiling", _SOFT,
             "memory-soft-ceiling", format_size(int(soft or 0)))  # fmt: skip
    ax.set_ylabel(f"memory ({unit})")
    ax.legend(loc="upper left", fontsize=7)


def _unit(largest: float) -> tuple[str, float]:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if largest >= div:
            return unit, float(div)
    return "KiB", 1024.0


def _tasks(ax: Axes, report: RunReport, times: list[float]) -> None:
    values = [p.tasks for p in report.timeline]
    ax.step(times, values, where="post", color="#41ab5d", label="tasks", gid="tasks")
    peak = max((v for v in values if v is not None), default=0)
    limit = _limit(report, "tasks_max")
    _ceiling(ax, limit, peak, "ceiling", _BREACH, "tasks-ceiling", f"{limit or 0:g}")
    ax.set_ylabel("tasks")
    ax.legend(loc="upper left", fontsize=7)


def _cpu(ax: Axes, report: RunReport, times: list[float]) -> None:
    """CPUs busy between two samples: the CPU time they add over the wall time between."""
    busy_t, busy = [], []
    last: tuple[float, float] | None = None
    for point in report.timeline:
        if point.cpu_s is None:
            continue
        if last is not None and point.t > last[0]:
            busy_t.append(point.t)
            busy.append(max(0.0, (point.cpu_s - last[1]) / (point.t - last[0])))
        last = (point.t, point.cpu_s)
    ax.plot(busy_t, busy, color="#756bb1", label="CPUs busy", gid="cpu")
    if report.cpus:
        ax.axhline(len(report.cpus), color=_CEILING, linestyle="--", linewidth=1.2,
                   label=f"CPUs allowed {len(report.cpus)}", gid="cpus-allowed")  # fmt: skip
    ax.set_ylabel("CPUs busy")
    ax.legend(loc="upper left", fontsize=7)


def _host(ax: Axes, report: RunReport) -> None:
    load = [(p.t, p.load1) for p in report.timeline if p.load1 is not None]
    ax.plot([t for t, _ in load], [v for _, v in load], color="#636363", marker=".",
            label="host load (1 min)", gid="host-load")  # fmt: skip
    peak = max((v for _, v in load), default=0.0)
    limit = _limit(report, "load_max")
    _ceiling(ax, limit, peak, "load ceiling", _BREACH, "load-ceiling", f"{limit or 0:g}")
    ax.set_ylabel("host load")
    ax.legend(loc="upper left", fontsize=7)
    pressure = [(p.t, p.pressure_pct) for p in report.timeline if p.pressure_pct is not None]
    if pressure:
        twin = ax.twinx()
        twin.plot([t for t, _ in pressure], [v for _, v in pressure], color="#fd8d3c",
                  linewidth=0.8, alpha=0.7, label="PSI some avg10 %", gid="pressure")  # fmt: skip
        twin.set_ylabel("pressure %")
        twin.set_ylim(0, 100)
        twin.legend(loc="upper right", fontsize=7)


def _events(axes: Sequence[Axes], report: RunReport, end: float) -> None:
    """Breaches, warnings and the frozen spans, across every row; labels on the top one."""
    frozen_since: dict[str, float] = {}
    for event in report.events:
        kind = event.kind
        breach = kind in BREACH_KINDS or kind == INTERRUPTED
        breach |= kind == Outcome.LOAD.value and report.outcome is Outcome.LOAD
        if breach:
            for ax in axes:
                ax.axvline(event.t, color=_BREACH, linewidth=2, gid=f"breach-{kind}")
            late = event.t > end * 0.8  # its label to the left, inside the panel
            axes[0].annotate(f"{kind} breach", (event.t, 1.0), xycoords=("data", "axes fraction"),
                             xytext=(-4 if late else 4, -10), textcoords="offset points",
                             ha="right" if late else "left", color=_BREACH,
                             fontweight="bold", gid=f"breach-{kind}-label")  # fmt: skip
        elif kind in ("memory-high", "sigkill", "load", "before-kill"):
            color = _SOFT if kind != "sigkill" else "black"
            for ax in axes:
                ax.axvline(event.t, color=color, linestyle=":", linewidth=1.2, gid=kind)
            axes[0].annotate(kind, (event.t, 0.0), xycoords=("data", "axes fraction"),
                             xytext=(3, 3), textcoords="offset points", color=color,
                             fontsize=7, gid=f"{kind}-label")  # fmt: skip
        elif kind in ("pause", "stopped"):
            frozen_since.setdefault(kind, event.t)
        elif kind in ("resume", "continued"):
            started = frozen_since.pop("pause" if kind == "resume" else "stopped", None)
            if started is not None:
                _frozen(axes, started, event.t, kind)
    for kind, started in frozen_since.items():  # frozen until the end
        _frozen(axes, started, end, kind)


def _frozen(axes: Sequence[Axes], start: float, stop: float, kind: str) -> None:
    why = "paused: host load" if kind in ("pause", "resume") else "stopped (Ctrl-Z)"
    gid = "pause" if kind in ("pause", "resume") else "stopped"
    for ax in axes:
        ax.axvspan(start, stop, color="#bdbdbd", alpha=0.4, gid=gid)
    axes[0].annotate(why, (start, 0.5), xycoords=("data", "axes fraction"), xytext=(3, 0),
                     textcoords="offset points", fontsize=7, gid=f"{gid}-label")  # fmt: skip
