"""Calibration decisions: which ceilings to try, and what to recommend from a passing run.

Pure functions over numbers and a report, so the schedule and the rounding can be tested
without running anything (workflows.calibrate runs the attempts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from itertools import pairwise

from tiered_run.errors import UsageError
from tiered_run.inputs.units import format_duration, format_size, parse_size
from tiered_run.model.report import RunReport

DEFAULT_FACTOR = 1.5
DEFAULT_HEADROOM = 1.25
DEFAULT_TIMEOUT_SPAN = 10  # --timeout-max defaults to 10 x --timeout-start without a tier one
MIN_MEMORY = 16 * 1024**2  # below this a process tree cannot reliably even start
MiB = 1024**2


@dataclass(frozen=True)
class Recommendation:
    """Ceilings as a tier would state them, from the passing attempt's peak and wall time."""

    memory: str | None
    memory_high: str | None
    timeout: str
    peak_memory: int | None
    peak_memory_source: str | None
    wall_s: float
    headroom: float
    # The part of the peak that cannot be reclaimed (anon + shmem + kernel); page cache
    # shrinks under a lower ceiling instead of failing, so the ceilings come from this.
    peak_unreclaimable: int | None = None

    def toml(self, tier: str | None) -> str:
        peak = "unknown" if self.peak_memory is None else format_size(self.peak_memory)
        basis = (
            f"memory from the part that cannot be reclaimed (anon + shmem + kernel), "
            f"{format_size(self.peak_unreclaimable)} at its peak; the peak with page cache "
            f"was {peak}"
            if self.peak_unreclaimable is not None
            else f"memory from the peak, {peak} ({self.peak_memory_source or 'not measured'})"
        )
        lines = [
            f"# paste into [tiers.{tier or 'NAME'}]: {basis}; wall {format_duration(self.wall_s)};"
            f" headroom x{self.headroom:g}",
        ]
        if self.memory is not None:
            lines.append(f'memory = "{self.memory}"')
            if self.memory_high is not None:
                lines.append(f'memory_high = "{self.memory_high}"')
        lines.append(f'timeout = "{self.timeout}"')
        return "\n".join(lines) + "\n"


def escalate(start: float, maximum: float, factor: float, quantum: float) -> tuple[float, ...]:
    """start, start x factor, ... rounded up to `quantum`, ending exactly at maximum."""
    if factor <= 1:
        raise UsageError(f"--factor must be above 1, e.g. 1.5; got {factor:g}")
    if start > maximum:
        raise UsageError(f"the start ceiling {start:g} is above the maximum {maximum:g}")
    steps, value = [], start
    while value < maximum:
        steps.append(math.ceil(value / quantum) * quantum)
        value = steps[-1] * factor
    return (*[s for s in steps if s < maximum], maximum)


def schedule(
    name: str,
    start: float | None,
    maximum: float | None,
    steps: tuple[float, ...] | None,
    fixed: float | None,
    factor: float,
    fallback_max: float | None,
) -> tuple[float | None, ...]:
    """The ceilings to try for `name` (memory or timeout), from whichever options were given.

    None alone means the tier's own ceiling, unchanged between attempts.
    """
    given = [
        option
        for option, value in (
            (f"--{name}", fixed),
            (f"--{name}-start", start),
            (f"--{name}-steps", steps),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise UsageError(f"{given[0]} and {given[1]} both set the {name} ceilings; use one")
    if maximum is not None and start is None:
        raise UsageError(f"--{name}-max needs --{name}-start, e.g. --{name}-start {_EXAMPLE[name]}")
    if steps is not None:
        if not steps or any(b <= a for a, b in pairwise(steps)):
            raise UsageError(f"--{name}-steps must list rising ceilings, e.g. {_STEPS[name]}")
        return steps
    if fixed is not None or start is None:
        return (fixed,)
    if start <= 0:
        raise UsageError(f"--{name}-start must be above 0, e.g. {_EXAMPLE[name]}")
    top = maximum if maximum is not None else fallback_max
    quantum = MiB if name == "memory" else 0.5
    return escalate(
        start, top if top is not None else start * DEFAULT_TIMEOUT_SPAN, factor, quantum
    )


_EXAMPLE = {"memory": "512M", "timeout": "10s"}
_STEPS = {"memory": "--memory-steps 12G,18G,20G", "timeout": "--timeout-steps 30s,1m,5m"}


def readable_size(value: int) -> str:
    """`value` rounded up to two significant digits of MiB or GiB: 187.5 MiB -> 190M."""
    value = max(value, MIN_MEMORY)
    unit, size = ("G", 1024**3) if value >= 1024**3 else ("M", MiB)
    amount = Decimal(value) / Decimal(size)
    quantum = Decimal(1).scaleb(amount.adjusted() - 1)
    rounded = (amount / quantum).to_integral_value(rounding=ROUND_CEILING) * quantum
    text = f"{rounded:f}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text}{unit}"


def readable_duration(seconds: float) -> str:
    """Whole seconds, rounded up, as `45s`, `2m30s` or `1h5m`."""
    total = max(1, math.ceil(seconds - 1e-9))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{u}" for n, u in parts if n) or "1s"


def recommend(report: RunReport, headroom: float) -> Recommendation:
    """memory = need x headroom, memory_high = the need, timeout = wall x headroom; all
    rounded up to values a person would write. The need is the part of the peak that
    cannot be reclaimed where the report has it (page cache is reclaimed at a ceiling, it
    does not kill), else the whole peak. A soft ceiling that rounds to the hard one is left
    out: it would say nothing."""
    peak = report.peak_memory_bytes
    need = report.peak_memory_unreclaimable_bytes
    if need is None or (peak is not None and need > peak):
        need = peak
    memory = memory_high = None
    if need is not None:
        memory_high = readable_size(need)
        memory = readable_size(max(math.ceil(need * headroom), parse_size(memory_high)))
        if memory_high == memory:
            memory_high = None
    return Recommendation(
        memory=memory,
        memory_high=memory_high,
        timeout=readable_duration(report.wall_s * headroom),
        peak_memory=peak,
        peak_memory_source=report.peak_memory_source,
        wall_s=report.wall_s,
        headroom=headroom,
        peak_unreclaimable=report.peak_memory_unreclaimable_bytes,
    )
