"""A run report for people: the headline and the key/value table on stderr.

Renderers return strings and never print, so the CLI decides where each one goes. Each
thing is said once, in one style: durations as `format_duration` writes them, shares in
percent, at most one pair of parentheses in a row. Arguments, paths and output that are
not UTF-8 (Python holds them surrogate-escaped) come out as `\\xNN`, and control
characters are shown, not acted on (see `text`).
"""

from __future__ import annotations

import shlex

from tiered_run.inputs.units import format_cpus, format_duration, format_size
from tiered_run.model.report import Outcome, RunReport, signal_name
from tiered_run.render.text import for_terminal, one_line, truncate

COMMAND_WIDTH = 70
MAX_EVENTS = 10


def headline(report: RunReport) -> str:
    """One line saying how the run ended; what `-q` prints and what the table starts with."""
    message = one_line(report.message) or report.outcome.value
    return for_terminal(f"tiered-run: {message}")


def never_started(report: RunReport) -> bool:
    """No workload process ever ran (the supervisor gives such runs no wall time)."""
    return report.wall_s == 0 and report.returncode is None and report.signal is None


def render_table(report: RunReport) -> str:
    """The end-of-run summary for a terminal: headline, key/value rows, then the first events.

    A run that never started (command not found, not executable, interrupted before the
    start) has nothing to tabulate: its headline is the whole story.
    """
    lines = [headline(report)]
    if never_started(report):
        return lines[0] + "\n"
    if report.outcome is not Outcome.ERROR:
        rows = report_rows(report)
        from tabulate import tabulate  # imported here: it costs start-up time of every run

        lines.append(tabulate(rows, tablefmt="plain", disable_numparse=True))
    lines.extend(f"warning: {one_line(warning)}" for warning in report.warnings)
    if report.events:
        lines.append("events:")
        lines.extend(
            f"  +{event.t:.2f}s  {event.kind}: {one_line(event.message)}"
            for event in report.events[:MAX_EVENTS]
        )
        if len(report.events) > MAX_EVENTS:
            lines.append(f"  ... {len(report.events) - MAX_EVENTS} more")
    return for_terminal("\n".join(lines) + "\n")


def report_rows(report: RunReport) -> list[tuple[str, str]]:
    """The table's (key, value) rows, for the terminal and the Markdown summary alike. Rows
    whose value is None are left out: they only matter when something happened."""
    return [(key, value) for key, value in _rows(report) if value is not None]


def _rows(report: RunReport) -> list[tuple[str, str | None]]:
    return [
        ("exit code", _exit_code(report)),
        ("command", truncate(shlex.join(report.command), COMMAND_WIDTH)),
        ("tier", report.tier or "none"),
        ("backend", _backend(report)),
        ("kernel-enforced", ", ".join(report.enforced_by_kernel) or None),
        ("not enforced", _not_enforced(report)),
        ("wall time", _of(format_duration(report.wall_s), _limit_duration(report, "timeout_s"))),
        ("CPU time", _cpu_time(report)),
        ("peak memory", _memory(report)),
        ("not reclaimable", _memory_kept(report)),
        ("memory measured", report.peak_memory_method),
        ("peak tasks", tasks_cell(report)),
        ("I/O", io_cell(report)),
        ("CPU throttled", _throttled(report)),
        ("stalled", _stalled(report)),
        ("CPUs allowed", _cpu_set(report.cpus) if report.cpus else "unknown"),
        ("CPUs used", "unknown" if report.cpus_seen is None else _cpu_set(report.cpus_seen)),
        ("leftovers killed", str(report.leftover_killed)),
        ("memory-high exceeded", "yes" if report.memory_high_exceeded else None),
        ("host load peak", _host_load(report)),
        ("host pressure peak", _pressure(report)),
        ("protected CPUs busy", _protected(report)),
        ("log file", report.log),
    ]


def _exit_code(report: RunReport) -> str:
    """The code, and the signal that ended the main process where the message does not
    already say it (a breach kills it; a death by signal names it in the headline)."""
    name = signal_name(report.signal)
    if name is None or report.outcome is Outcome.SIGNAL:
        return str(report.exit_code)
    return f"{report.exit_code}, the main process ended by {name}"


def _backend(report: RunReport) -> str:
    reason = report.backend_reason
    return f"{report.backend}: {reason}" if reason else report.backend


def _not_enforced(report: RunReport) -> str | None:
    if not report.not_enforced:
        return None
    them = "them" if len(report.not_enforced) > 1 else "it"
    return f"{', '.join(report.not_enforced)}: {report.backend} has no controller for {them} here"


def _of(value: str, limit: str | None) -> str:
    return f"{value} of {limit}" if limit else value


def limit_value(report: RunReport, key: str) -> float | None:
    """A number from `report.limits`, which holds JSON-ish values typed only as object."""
    value = report.limits.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _limit_duration(report: RunReport, key: str) -> str | None:
    value = limit_value(report, key)
    return None if value is None else format_duration(value)


def _limit_number(report: RunReport, key: str, unit: str = "") -> str | None:
    value = limit_value(report, key)
    return None if value is None else f"{value:g}{unit}"


def tasks_cell(report: RunReport) -> str:
    limit = limit_value(report, "tasks_max")
    if report.peak_tasks is None:
        return "unknown" if limit is None else f"unknown (limit {limit:g})"
    return _of(str(report.peak_tasks), None if limit is None else f"{limit:g}")


def _cpu_time(report: RunReport) -> str:
    if report.cpu_s is None:
        return "unknown"
    text = format_duration(report.cpu_s)
    if report.wall_s > 0:
        text += f", {report.cpu_s / report.wall_s:.2f} CPUs busy on average"
    return text


def _memory(report: RunReport) -> str:
    ceiling = limit_value(report, "memory_bytes")
    peak = report.peak_memory_bytes
    if peak is None:
        return "unknown" if ceiling is None else f"unknown (ceiling {format_size(ceiling)})"
    text = format_size(peak)
    notes = [f"{peak / ceiling * 100:.0f} %"] if ceiling else []
    if (soft := limit_value(report, "memory_high_bytes")) is not None:
        notes.append(f"soft ceiling {format_size(soft)}")
    if report.peak_memory_source == "sampled":
        notes.append("sampled")
    text = _of(text, None if not ceiling else format_size(ceiling))
    return f"{text} ({', '.join(notes)})" if notes else text


def _memory_kept(report: RunReport) -> str | None:
    """The part of the peak that page cache does not explain: what a ceiling must leave."""
    kept, split = report.peak_memory_unreclaimable_bytes, report.memory_split
    if kept is None or split is None:
        return None
    names = (("anon", "anon_bytes"), ("shmem", "shmem_bytes"), ("kernel", "kernel_bytes"))
    parts = [f"{name} {format_size(split[key])}" for name, key in names if split.get(key)]
    parts.append(f"page cache {format_size(split.get('file_bytes') or 0)}")
    return f"at most {format_size(kept)} of the peak; nearest sample: {', '.join(parts)}"


def io_cell(report: RunReport) -> str | None:
    """Bytes read and written, operations where counted, and the write ceiling if any."""
    io = report.io
    if io is None:
        return None
    parts = [
        f"read {_bytes(io.get('read_bytes'))}",
        f"written {_bytes(io.get('write_bytes'))}",
    ]
    if io.get("read_ops") is not None and io.get("write_ops") is not None:
        parts.append(f"{io['read_ops']} reads, {io['write_ops']} writes")
    text = ", ".join(parts)
    if report.io_source == "sampled":
        text += " (sampled, at least)"
    return text


def _bytes(value: int | None) -> str:
    return "unknown" if value is None else format_size(value)


def _throttled(report: RunReport) -> str | None:
    quota = limit_value(report, "cpu_quota_pct")
    if report.cpu_throttled_s is None or quota is None:
        return None
    return f"{format_duration(report.cpu_throttled_s)} held back by the {quota:g} % quota"


def _stalled(report: RunReport) -> str | None:
    """PSI of the run's own cgroup: how long some task of it waited for each resource."""
    stall = report.pressure_stall
    if not stall or all(value is None for value in stall.values()):
        return None
    parts = [
        f"{name} {format_duration(stall[key] or 0)}"
        for name, key in (("cpu", "cpu_s"), ("memory", "memory_s"), ("io", "io_s"))
        if stall.get(key) is not None
    ]
    return f"{', '.join(parts)} (PSI some, this run's cgroup)"


def _cpu_set(cpus: tuple[int, ...]) -> str:
    """`1`, `4-7 (4 CPUs)`: the count only where the list does not show it at a glance."""
    if not cpus:
        return "none"
    text = format_cpus(cpus)
    return text if len(cpus) == 1 else f"{text} ({len(cpus)} CPUs)"


def _host_load(report: RunReport) -> str | None:
    host = report.host
    if host is None:
        return None
    peak = _of(f"{host.load1_peak:.2f}", _limit_number(report, "load_max"))
    return f"{peak} (start {host.load1_start:.2f}, end {host.load1_end:.2f})"


def _pressure(report: RunReport) -> str | None:
    """PSI `some avg10`: the share of time tasks on the host stalled for want of a resource;
    the peak is the highest of cpu, memory and io, which the row says."""
    host = report.host
    if host is None or host.pressure_peak_pct is None:
        return None
    peak = _of(f"{host.pressure_peak_pct:.1f} %", _limit_number(report, "pressure_max_pct", " %"))
    return f"{peak} (PSI some avg10, highest of cpu, memory, io)"


def _protected(report: RunReport) -> str | None:
    """Busy share of the CPUs the workload must leave alone."""
    host = report.host
    if host is None or not host.protected_cpus or host.protected_cpu_busy_peak_pct is None:
        return None
    busy = host.protected_cpu_busy_peak_pct
    return f"{busy:.0f} % at peak on {format_cpus(host.protected_cpus)}"


def io_of(report: RunReport) -> str:
    """`2.0 MiB / 30.0 MiB`: bytes read and written, for a ladder's step row."""
    io = report.io
    if io is None:
        return "unknown"
    text = f"{_bytes(io.get('read_bytes'))} / {_bytes(io.get('write_bytes'))}"
    return f"{text} (sampled)" if report.io_source == "sampled" else text


def peak_of(report: RunReport) -> str:
    peak, ceiling = report.peak_memory_bytes, limit_value(report, "memory_bytes")
    text = "unknown" if peak is None else format_size(peak)
    return text if ceiling is None else f"{text} / {format_size(ceiling)}"
