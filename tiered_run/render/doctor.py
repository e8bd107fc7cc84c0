"""`doctor`'s diagnosis for people (findings by area, then the tier's ceilings and what
holds each) and for machines (JSON with `schema_version`)."""

from __future__ import annotations

import textwrap

from tiered_run.inputs.units import format_cpus, format_size
from tiered_run.model.findings import Diagnosis, Finding, Severity, TierCheck
from tiered_run.policy.tiers import cpu_list
from tiered_run.render.json import render_dict_json
from tiered_run.render.text import for_terminal

WIDTH = 100
_MARK = {
    Severity.OK: "ok",
    Severity.NOTE: "note",
    Severity.WARNING: "warning",
    Severity.PROBLEM: "PROBLEM",
}
_INDENT = " " * 11


def render_doctor_json(diagnosis: Diagnosis) -> str:
    return render_dict_json(diagnosis.to_dict())


def render_doctor(diagnosis: Diagnosis) -> str:
    lines = [_headline(diagnosis), ""]
    area = None
    for finding in diagnosis.findings:
        if finding.area != area:
            area = finding.area
            lines.append(area)
        lines.extend(_finding(finding))
    lines.append("")
    if diagnosis.tier is not None:
        lines.extend(_tier(diagnosis.tier))
        lines.append("")
    lines.append(verdict(diagnosis))
    return for_terminal("\n".join(lines) + "\n")


def _headline(diagnosis: Diagnosis) -> str:
    machine = diagnosis.machine
    online = machine.get("cpus_online") or []
    systemd = machine.get("systemd_version")
    init = f"systemd {systemd}" if systemd else f"PID 1 {machine.get('pid1') or 'unknown'}"
    memory = machine.get("memory_total_bytes")
    return (
        f"tiered-run doctor: Linux {machine.get('kernel')}, cgroup {machine.get('cgroup_mode')}, "
        f"{init}, CPUs {format_cpus(online)}"
        + (f", {format_size(memory)} memory" if isinstance(memory, int) else "")
        + f"; backend {machine.get('backend')}"
    )


def _finding(finding: Finding) -> list[str]:
    mark = _MARK[finding.severity].ljust(9)
    lines = _wrap(finding.summary, f"  {mark}")
    if finding.consequence:
        lines += _wrap(finding.consequence, _INDENT)
    if finding.remedy and finding.severity is not Severity.OK:
        lines += _wrap(f"fix: {finding.remedy}", _INDENT, _INDENT + "     ")
    return lines


def _wrap(text: str, first: str, rest: str = _INDENT) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _tier(tier: TierCheck) -> list[str]:
    from tabulate import tabulate

    what = "default tier" if tier.default else "tier"
    on = f" on {cpu_list(tier.cpus)}" if tier.cpus else ""
    lines = [f"{what} {tier.name!r} (from {tier.source}){on}"]
    if tier.ceilings:
        rows = [
            [c.key, c.shown, c.guard.value, c.how + (f"; but {c.trouble}" if c.trouble else "")]
            for c in tier.ceilings
        ]
        table = tabulate(
            rows, headers=["ceiling", "value", "held by", "how"], disable_numparse=True
        )
        lines += ["  " + line for line in table.splitlines()]
    for blocker in tier.blockers:
        lines += _wrap(f"cannot start: {blocker}", "  ", "    ")
    for note in tier.notes:
        lines += _wrap(f"note: {note}", "  ", "    ")
    return lines


def verdict(diagnosis: Diagnosis) -> str:
    """The last line: what the exit code says, in words."""
    tier = diagnosis.tier
    if tier is None:
        return "no tier can be checked: the config cannot be read (exit 1)"
    name = repr(tier.name)
    if tier.blockers:
        return f"a run in tier {name} cannot start here (exit 1)"
    weak = [c.key for c in tier.ceilings if not c.guarded]
    if weak:
        return (
            f"tier {name}: {', '.join(weak)} not held by the kernel or by design here; "
            "see the table (exit 1)"
        )
    return f"tier {name}: every ceiling it sets is held here (exit 0)"
