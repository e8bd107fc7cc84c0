"""Parsing of the sizes, durations and CPU lists users type; pure functions."""

from __future__ import annotations

import math
import re

import humanize

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str | int) -> int:
    """Bytes from `300M`, `2G`, `512MiB`, `1.5GB` or a plain byte count.

    Single-letter units are binary (as in systemd and Docker); `KB/MB/GB` are decimal.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"size must be positive, got {text}: use e.g. 300M, 2G, 512MiB")
        return text
    match = _SIZE_RE.match(str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"malformed size {text!r}: use bytes or a unit, e.g. 300M, 2G, 512MiB")
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}: use e.g. 300M, 2G, 512MiB")
    return value


def parse_duration(text: str | float | int) -> float:
    """Seconds from `8`, `8s`, `1.5s`, `250ms`, `2m`, `1h30m`."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return _finite_seconds(float(text), text)
    raw = str(text).strip().lower()
    try:
        value = float(raw)
    except ValueError:
        parts = _DURATION_RE.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ValueError(
                f"malformed duration {text!r}: use seconds or units, e.g. 8, 1.5s, 250ms, 2m, 1h30m"
            ) from None
        return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    return _finite_seconds(value, text)


def _finite_seconds(value: float, text: object) -> float:
    if not math.isfinite(value):
        raise ValueError(f"duration must be a finite number of seconds, got {text!r}; 0 = none")
    if value < 0:
        raise ValueError(f"duration must not be negative, got {text!r}; 0 = none")
    return value


def parse_cpus(text: str | int) -> tuple[int, ...]:
    """Sorted CPU numbers from a kernel-style list: `1`, `4-19`, `0,2-3`."""
    cpus: set[int] = set()
    raw = str(text).strip()
    for part in raw.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"malformed CPU list {text!r}: use e.g. 1, 4-19 or 0,2-3")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ValueError(f"malformed CPU list {text!r}: range {low}-{high} runs backwards")
        cpus.update(range(low, high + 1))
    return tuple(sorted(cpus))


def format_cpus(cpus: tuple[int, ...] | list[int] | frozenset[int]) -> str:
    """The kernel's compact form of a CPU set: (0, 2, 3, 4) -> `0,2-4`."""
    ordered = sorted(cpus)
    ranges: list[str] = []
    start = prev = None
    for cpu in [*ordered, None]:
        if start is not None and (cpu is None or cpu != prev + 1):
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if cpu is not None and start is None:
            start = cpu
        prev = cpu
    return ",".join(ranges)


def format_size(value: float) -> str:
    """Bytes in binary units, as the kernel and the ceilings count them."""
    return humanize.naturalsize(value, binary=True)


def parse_signal(text: str | int) -> int:
    """A signal by name or number, as `kill` and `timeout -s` take it: TERM, SIGINT, 9."""
    import signal

    raw = str(text).strip().upper()
    number = int(raw) if raw.isdigit() else None
    name = raw if raw.startswith("SIG") else f"SIG{raw}"
    try:
        sig = signal.Signals(number) if number is not None else signal.Signals[name]
    except (KeyError, ValueError):
        raise ValueError(
            f"unknown signal {text!r}: use a name or number, e.g. TERM, INT, 9"
        ) from None
    if sig in (signal.SIGSTOP, signal.SIGCONT, signal.SIGCHLD):
        raise ValueError(f"{sig.name} cannot end a run; use e.g. TERM or INT")
    return int(sig)
