"""A planned tier layout (`policy.layout`) as the TOML config `tiered-run init` writes,
with a comment above each value saying why it is what it is."""

from __future__ import annotations

import json
import textwrap

from tiered_run.inputs.units import format_cpus
from tiered_run.policy.layout import Plan, PlannedTier

WIDTH = 88


def render_tier_config(plan: Plan, machine_line: str, command: str) -> str:
    """`machine_line`: what the layout was made for (CPUs, memory, cgroups, backend);
    `command`: an example run in the default tier."""
    lines = _comment(f"tiered-run tiers made by `tiered-run init` for {machine_line}.")
    for note in plan.notes:
        lines += _comment(note)
    lines += [
        "#",
        *_comment(
            "`tiered-run doctor` shows what holds each ceiling on this machine, "
            "`tiered-run tiers` the tiers as they resolve. Run the workload with:"
        ),
        f"#   {command}",
        "",
        f"default_tier = {_value(plan.default)}",
    ]
    for tier in plan.tiers:
        lines += ["", *_tier(tier)]
    return "\n".join(lines) + "\n"


def _tier(tier: PlannedTier) -> list[str]:
    lines = [f"[tiers.{tier.name}]"]
    for planned in tier.values:
        if planned.why:
            lines += _comment(planned.why)
        lines.append(f"{planned.key} = {_value(planned.value)}")
    for why in tier.left_out:
        lines += _comment(why)
    return lines


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent="# ", subsequent_indent="# ")


def _value(value: object) -> str:
    """A TOML value: a bool, an int, or a basic string (JSON's escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return _value(format_cpus(value))
    return json.dumps(str(value), ensure_ascii=False)
