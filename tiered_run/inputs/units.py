"""Parsing of the sizes, durations and CPU lists users type, and writing them back; pure
functions. Every value is range-checked here, at parse time, so a ceiling the kernel would
wrap or a number that would exhaust the host never reaches a run."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decimal import Decimal

MiB = 1024**2
# Beyond any machine and still far below 2^63, where the kernel's 64-bit counters wrap
# (a 2^64 ceiling became an instant OOM "at the 16.0 EiB ceiling").
MAX_SIZE = 1024**6
MAX_DURATION = 365 * 86400.0  # a year: far beyond any run, far below what timers overflow at
MAX_INTERVAL = 60.0  # a monitor that samples less often than this cannot enforce anything
MAX_CPU = 8191  # the kernel's NR_CPUS is at most 8192
NO_CEILING = 0  # what `none` and `infinity` parse to where a ceiling may be lifted
NONE_WORDS = frozenset({"none", "infinity"})

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
    "p": 1024**5,
    "pb": 1000**5,
    "pib": 1024**5,
    "e": 1024**6,
    "eb": 1000**6,
    "eib": 1024**6,
}
# ASCII only: `\d` would also take other scripts' digits, which no one types for a size.
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", re.ASCII)
_SIZE_EXAMPLE = "e.g. 300M, 2G, 512MiB"
_PLAIN_SECONDS = re.compile(r"\d+(?:\.\d+)?|\.\d+", re.ASCII)
# What a duration may contain before the library sees it: ASCII digits and unit letters
# only (the library also reads other scripts' digits), and no number with two dots.
_DURATION_TEXT = re.compile(r"[0-9a-z.,\s]+", re.ASCII)
_TWO_DOTS = re.compile(r"\d*\.\d*\.")
_DURATION_EXAMPLE = "e.g. 8, 1.5s, 500ms, 5min, 1h 30m, 1d"


def parse_size(text: str | int | float, *, ceiling: bool = False) -> int:
    """Bytes from `300M`, `2G`, `512MiB`, `1.5GB` or a byte count of at least 1 MiB.

    Single-letter units are binary (as in systemd and Docker); `KB/MB/GB` are decimal. A
    count below 1 MiB without a unit (`--memory 100`) and a fraction of a byte
    (`--memory 1.5`) are refused with a hint: nobody means a 100-byte ceiling, and `100B`
    still says it on purpose. Where `ceiling` is set, `none` and `infinity` give
    NO_CEILING, so an option can lift a tier's ceiling.
    """
    from decimal import Decimal  # exact for any number of digits; imported when used

    if isinstance(text, bool):
        raise ValueError(f"expected a size, {_SIZE_EXAMPLE}; got {str(text).lower()}")
    if isinstance(text, int | float):
        if isinstance(text, float) and not math.isfinite(text):
            raise ValueError(f"size must be a finite number, got {text!r}: {_SIZE_EXAMPLE}")
        number, unit, shown = Decimal(text), "", repr(text)
    else:
        word = str(text).strip().lower()
        if ceiling and word in NONE_WORDS:
            return NO_CEILING
        match = _SIZE_RE.fullmatch(str(text))
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _SIZE_UNITS:
            hint = "none for no ceiling, " if ceiling else ""
            raise ValueError(f"malformed size {text!r}: use bytes or a unit, {hint}{_SIZE_EXAMPLE}")
        number, shown = Decimal(match.group(1)), repr(text)
    return _checked_size(number, unit, shown)


def _checked_size(number: Decimal, unit: str, shown: str) -> int:
    if number <= 0:
        raise ValueError(f"size must be positive, got {shown}: {_SIZE_EXAMPLE}")
    if number > MAX_SIZE:  # before multiplying: a 300-digit number stays cheap
        raise ValueError(f"size {shown} is too large: at most 1 EiB, {_SIZE_EXAMPLE}")
    value = number * _SIZE_UNITS[unit]
    plain = format(number.normalize(), "f")
    if unit in ("", "b") and value != value.to_integral_value():
        raise ValueError(
            f"size {shown} is a fraction of a byte: did you mean {plain}M or {plain}G? "
            f"Give a unit, {_SIZE_EXAMPLE}"
        )
    if unit == "" and value < MiB:
        raise ValueError(
            f"size {shown} is only {plain} bytes: did you mean {plain}M? "
            f"Give a unit, {_SIZE_EXAMPLE}, or {plain}B for bytes"
        )
    if value > MAX_SIZE:
        raise ValueError(f"size {shown} is too large: at most 1 EiB, {_SIZE_EXAMPLE}")
    return int(value)


def parse_duration(text: str | float | int, *, maximum: float = MAX_DURATION) -> float:
    """Seconds from what `timeout` and systemd users type: `8`, `1.5s`, `500ms`, `30sec`,
    `5min`, `2m`, `1h30m`, `1h 30m`, `1d`, `2 minutes`.

    Plain seconds are read here; anything with units goes to pytimeparse2, imported only
    then so that start-up stays small. The result must be at most `maximum`.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a duration, {_DURATION_EXAMPLE}; got {str(text).lower()}")
    if isinstance(text, int | float):
        return _checked_seconds(float(text), repr(text), maximum)
    raw = str(text).strip().lower()
    if raw.startswith("-") and raw[1:2].isdigit():
        raise ValueError(f"duration must not be negative, got {text!r}; 0 = none")
    if _PLAIN_SECONDS.fullmatch(raw):
        return _checked_seconds(float(raw), repr(text), maximum)
    value = None
    if raw and _DURATION_TEXT.fullmatch(raw) and not _TWO_DOTS.search(raw):
        from pytimeparse2 import parse

        try:
            value = parse(raw)
        except (ArithmeticError, ValueError):
            value = None
    if value is None:
        raise ValueError(f"malformed duration {text!r}: use seconds or units, {_DURATION_EXAMPLE}")
    return _checked_seconds(float(value), repr(text), maximum)


def parse_timeout(text: str | float | int) -> float:
    """A wall-time ceiling: a duration, where 0, `none` and `infinity` mean no timeout."""
    if isinstance(text, str) and text.strip().lower() in NONE_WORDS:
        return 0.0
    return parse_duration(text)


def parse_interval(text: str | float | int) -> float:
    """A sampling period: above 0 and at most a minute (`--interval 1e10` left the
    monitor thread dead and SIGTERM ignored)."""
    value = parse_duration(text, maximum=MAX_INTERVAL)
    if value <= 0:
        raise ValueError(f"must be above 0, e.g. 0.25s; got {text!r}")
    return value


def parse_number(
    raw: str | float | int, *, low: float, high: float, example: str, whole: bool = False
) -> float:
    """A finite number from `low` to `high` (`nan` compares false to every bound and
    would slip through a plain range check, leaving a ceiling that never fires)."""
    kind = "a whole number" if whole else "a number"
    value: float
    if isinstance(raw, str):
        try:
            if not raw.isascii():  # int() and float() also read other scripts' digits
                raise ValueError(raw)
            value = int(raw) if whole else float(raw)
        except ValueError:
            raise ValueError(f"expected {kind}, e.g. {example}; got {raw!r}") from None
    elif (
        isinstance(raw, int | float)
        and not isinstance(raw, bool)
        and not (whole and isinstance(raw, float))
    ):
        value = raw
    else:
        raise ValueError(f"expected {kind}, e.g. {example}; got {raw!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(
            f"must be from {_plain(low)} to {_plain(high)}, e.g. {example}; got {raw!r}"
        )
    return value


def _plain(number: float) -> str:
    return str(int(number)) if number == int(number) else f"{number:g}"


def _checked_seconds(value: float, shown: str, maximum: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"duration must be a finite number of seconds, got {shown}; 0 = none")
    if value < 0:
        raise ValueError(f"duration must not be negative, got {shown}; 0 = none")
    if value > maximum:
        most = "365d" if maximum == MAX_DURATION else format_duration(maximum)
        raise ValueError(f"duration {shown} is too long: at most {most}")
    return value


def format_duration(seconds: float) -> str:
    """A duration in one style at every length, which parse_duration reads back:
    `0.02 s`, `8 s`, `1 min 15.3 s`, `1 h 2 min 5.25 s`, `2 h`."""
    seconds = round(seconds, 2)
    if seconds < 60:
        return f"{_decimal(seconds)} s"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    parts = [(hours, "h"), (minutes, "min"), (round(rest, 2), "s")]
    return " ".join(f"{_decimal(value)} {unit}" for value, unit in parts if value)


def _decimal(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def parse_cpus(text: str | int) -> tuple[int, ...]:
    """Sorted CPU numbers from a kernel-style list: `1`, `4-19`, `0,2-3`."""
    cpus: set[int] = set()
    raw = str(text).strip()
    for part in raw.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part, re.ASCII)
        if not match:
            raise ValueError(f"malformed CPU list {text!r}: use e.g. 1, 4-19 or 0,2-3")
        low = _cpu_number(match.group(1), text)
        high = _cpu_number(match.group(2), text) if match.group(2) is not None else low
        if high < low:
            raise ValueError(f"malformed CPU list {text!r}: range {low}-{high} runs backwards")
        cpus.update(range(low, high + 1))
    return tuple(sorted(cpus))


def _cpu_number(digits: str, text: object) -> int:
    """Checked before any range is built: `0-5000000` must not allocate millions of CPUs."""
    if len(digits) > 5 or int(digits) > MAX_CPU:
        raise ValueError(f"CPU list {text!r}: CPU numbers go up to {MAX_CPU} at most")
    return int(digits)


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
    import humanize  # only where a size is shown

    return humanize.naturalsize(value, binary=True)


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 process`, `3 processes`, `1 fork`, `2 forks`."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {many or (word + 'es' if word.endswith('s') else word + 's')}"


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
