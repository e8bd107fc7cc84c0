"""Turn a RunReport into text for people (table), machines (JSON) and CI dashboards (JUnit).

Renderers return strings and never print, so the CLI decides where each one goes. Each
thing is said once, in one style: durations as `format_duration` writes them, shares in
percent, at most one pair of parentheses in a row. Arguments, paths and output that are
not UTF-8 (Python holds them surrogate-escaped) come out as `\\xNN` in every renderer, so
JSON and XML stay valid and the table shows which bytes they were.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from tiered_run.inputs.units import format_cpus, format_duration, format_size
from tiered_run.model.report import Outcome, RunReport, signal_name
from tiered_run.render.text import escape_char as _escape_char
from tiered_run.render.text import for_terminal, printable

if TYPE_CHECKING:
    from tiered_run.workflows.calibrate import CalibrationReport
    from tiered_run.workflows.ladder import LadderReport

COMMAND_WIDTH = 70
MAX_EVENTS = 10

_FAILURES = frozenset(
    {Outcome.EXITED, Outcome.TIMEOUT, Outcome.MEMORY, Outcome.TASKS, Outcome.LOAD, Outcome.SIGNAL}
)
# XML 1.0 cannot carry most control characters, and workload output often has some (ANSI colour).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def headline(report: RunReport) -> str:
    """One line saying how the run ended; what `-q` prints and what the table starts with."""
    message = _one_line(report.message) or report.outcome.value
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
        rows = [(key, value) for key, value in _rows(report) if value is not None]
        from tabulate import tabulate  # imported here: it costs start-up time of every run

        lines.append(tabulate(rows, tablefmt="plain", disable_numparse=True))
    lines.extend(f"warning: {_one_line(warning)}" for warning in report.warnings)
    if report.events:
        lines.append("events:")
        lines.extend(
            f"  +{event.t:.2f}s  {event.kind}: {_one_line(event.message)}"
            for event in report.events[:MAX_EVENTS]
        )
        if len(report.events) > MAX_EVENTS:
            lines.append(f"  ... {len(report.events) - MAX_EVENTS} more")
    return for_terminal("\n".join(lines) + "\n")


def render_json(report: RunReport) -> str:
    """The machine-readable report; its keys are a contract guarded by `schema_version`."""
    return render_dict_json(report.to_dict())


def render_junit(
    reports: list[RunReport], suite: str = "tiered-run", names: list[str] | None = None
) -> str:
    """One JUnit testsuite with a testcase per run, so CI shows breaches as failing tests.

    Breaches and non-zero exits are failures; runs that could not start or were interrupted
    are errors, because they say nothing about the workload itself.
    """
    if names is not None and len(names) != len(reports):
        raise ValueError(f"got {len(names)} names for {len(reports)} reports")
    failures = errors = 0
    root = ET.Element("testsuite", name=_xml_text(suite))
    for index, report in enumerate(reports):
        name = names[index] if names is not None else shlex.join(report.command)
        case = ET.SubElement(
            root,
            "testcase",
            classname="tiered-run",
            name=_xml_text(name),
            time=f"{report.wall_s:.3f}",
        )
        if _passed(report):
            continue
        if report.outcome in _FAILURES:
            tag, failures = "failure", failures + 1
        else:
            tag, errors = "error", errors + 1
        detail = ET.SubElement(
            case,
            tag,
            message=_xml_text(report.message),
            type=report.outcome.value,
        )
        detail.text = _xml_text(render_table(report))
    root.set("tests", str(len(reports)))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    root.set("time", f"{sum(report.wall_s for report in reports):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _passed(report: RunReport) -> bool:
    return report.outcome is Outcome.EXITED and report.exit_code == 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub(_escape_char, printable(text))


def _printable_tree(value: object) -> object:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _printable_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable_tree(item) for item in value]
    return value


def _rows(report: RunReport) -> list[tuple[str, str | None]]:
    """Rows whose value is None are left out: they only matter when something happened."""
    return [
        ("exit code", _exit_code(report)),
        ("command", _truncate(shlex.join(report.command), COMMAND_WIDTH)),
        ("tier", report.tier or "none"),
        ("backend", _backend(report)),
        ("kernel-enforced", ", ".join(report.enforced_by_kernel) or None),
        ("not enforced", _not_enforced(report)),
        ("wall time", _of(format_duration(report.wall_s), _limit_duration(report, "timeout_s"))),
        ("CPU time", _cpu_time(report)),
        ("peak memory", _memory(report)),
        ("not reclaimable", _memory_kept(report)),
        ("memory measured", report.peak_memory_method),
        ("peak tasks", _tasks(report)),
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
    return f"{', '.join(report.not_enforced)}: applied only by the systemd backend"


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _of(value: str, limit: str | None) -> str:
    return f"{value} of {limit}" if limit else value


def _limit_value(report: RunReport, key: str) -> float | None:
    """A number from `report.limits`, which holds JSON-ish values typed only as object."""
    value = report.limits.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _limit_duration(report: RunReport, key: str) -> str | None:
    value = _limit_value(report, key)
    return None if value is None else format_duration(value)


def _limit_number(report: RunReport, key: str, unit: str = "") -> str | None:
    value = _limit_value(report, key)
    return None if value is None else f"{value:g}{unit}"


def _tasks(report: RunReport) -> str:
    limit = _limit_value(report, "tasks_max")
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
    ceiling = _limit_value(report, "memory_bytes")
    peak = report.peak_memory_bytes
    if peak is None:
        return "unknown" if ceiling is None else f"unknown (ceiling {format_size(ceiling)})"
    text = format_size(peak)
    notes = [f"{peak / ceiling * 100:.0f} %"] if ceiling else []
    if (soft := _limit_value(report, "memory_high_bytes")) is not None:
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


# Ladders and calibration ----------------------------------------------------------------


def render_ladder_table(ladder: LadderReport) -> str:
    """One row per step (what it did to the host included), then why steps failed or did
    not run, and the ladder's own headline last, where the eye lands."""
    from tabulate import tabulate

    show_expect = any(r.step.expect is not Outcome.EXITED for r in ladder.steps)
    rows, notes = [], []
    for result in ladder.steps:
        report, step = result.report, result.step
        before, after = result.host_before, result.host_after
        rows.append(
            [
                step.index,
                _truncate(step.name, 28),
                *([step.expect.value] if show_expect else []),
                result.status.value.replace("_", " "),
                "-" if report is None else f"{report.outcome.value} ({report.exit_code})",
                "-" if report is None else format_duration(report.wall_s),
                "-" if report is None else _peak_of(report),
                "-" if report is None else _tasks(report).replace(" of ", " / "),
                "-" if report is None else report.leftover_killed,
                "-"
                if before is None or after is None
                else f"{before.load1:.2f} -> {after.load1:.2f}",
            ]
        )
        notable = step.expect is not Outcome.EXITED or (report and report.leftover_killed)
        if result.reason and (result.status.value != "passed" or notable):
            notes.append(f"  {step.label}: {_one_line(result.reason)}")
    headers = ["#", "step", *(["expect"] if show_expect else []), "result", "outcome", "wall"]
    headers += ["peak memory", "peak tasks", "leftovers", "host load"]
    lines = [tabulate(rows, headers=headers, disable_numparse=True)]
    if notes:
        lines += ["", *notes]
    lines += ["", ladder_headline(ladder)]
    return for_terminal("\n".join(lines) + "\n")


def ladder_headline(ladder: LadderReport) -> str:
    """How the ladder ended, in one line; what `-q` prints on failure."""
    return for_terminal(
        f"tiered-run: ladder {ladder.name} {ladder.outcome.value} in"
        f" {format_duration(ladder.wall_s)}, exit code {ladder.exit_code}:"
        f" {_one_line(ladder.message)}"
    )


def render_ladder_junit(ladder: LadderReport) -> str:
    """render_junit over the steps that ran, judged by each step's `expect` (a memory breach
    can be a pass); steps that never ran are <skipped/>, so CI shows the whole ladder."""
    pairs = [(result, result.report) for result in ladder.steps if result.report is not None]
    names = [result.step.name for result, _ in pairs]
    root = ET.fromstring(render_junit([report for _, report in pairs], ladder.name, names))
    counts = {"failure": 0, "error": 0}
    for case, (result, report) in zip(root.findall("testcase"), pairs, strict=True):
        for child in list(case):
            case.remove(child)
        case.text = None
        if result.status.value == "passed":
            continue
        tag = "failure" if report.outcome in _FAILURES else "error"
        counts[tag] += 1
        detail = ET.SubElement(
            case, tag, message=_xml_text(result.reason), type=report.outcome.value
        )
        detail.text = _xml_text(render_table(report))
    for result in ladder.steps:
        if result.report is None:
            name = _xml_text(result.step.name)
            case = ET.SubElement(root, "testcase", classname="tiered-run", name=name, time="0")
            ET.SubElement(case, "skipped", message=_xml_text(result.reason))
    root.set("tests", str(len(ladder.steps)))
    root.set("failures", str(counts["failure"]))
    root.set("errors", str(counts["error"]))
    root.set("skipped", str(len(ladder.steps) - len(pairs)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def render_calibration_table(calibration: CalibrationReport) -> str:
    """Every attempt with its ceilings and what it used, then the verdict; one line when the
    command never started (not found, not executable)."""
    from tabulate import tabulate

    attempts = calibration.attempts
    if len(attempts) == 1 and never_started(attempts[0].report):
        return headline(attempts[0].report) + "\n"

    rows = []
    for attempt in calibration.attempts:
        report = attempt.report
        rows.append(
            [
                attempt.index,
                "-" if attempt.memory is None else format_size(attempt.memory),
                "-" if attempt.timeout is None else format_duration(attempt.timeout),
                f"{report.outcome.value} ({report.exit_code})",
                format_duration(report.wall_s),
                _peak_of(report),
            ]
        )
    headers = ["#", "memory", "timeout", "outcome", "wall", "peak memory"]
    table = tabulate(rows, headers=headers, disable_numparse=True)
    outcome = calibration.outcome.value
    what = outcome if outcome == "calibrated" else f"calibration {outcome}"
    verdict = f"tiered-run: {what}: {_one_line(calibration.message)}"
    return for_terminal(f"{table}\n\n{verdict}\n")


def render_dict_json(data: dict[str, object]) -> str:
    """JSON for run, ladder and calibration reports: valid Unicode, undecodable bytes as
    `\\xNN` (a lone surrogate escape would break strict JSON readers)."""
    return json.dumps(_printable_tree(data), indent=2, sort_keys=False) + "\n"


def _peak_of(report: RunReport) -> str:
    peak, ceiling = report.peak_memory_bytes, _limit_value(report, "memory_bytes")
    text = "unknown" if peak is None else format_size(peak)
    return text if ceiling is None else f"{text} / {format_size(ceiling)}"
