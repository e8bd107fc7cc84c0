"""Samples taken in interleaved rounds, so that a slow spell of the machine falls on every
guard alike; a failed sample is recorded and reported, never fatal."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

import psutil

T = TypeVar("T")


class SampleError(Exception):
    """One sample could not be taken; the run goes on."""


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def interleave(
    rounds: int,
    samplers: dict[str, Callable[[], T]],
    failures: list[str],
    warmup: bool = False,
    rounds_of: dict[str, int] | None = None,
) -> dict[str, list[T]]:
    """Each round calls every sampler once, in an order rotated by one each round; a
    sampler named in `rounds_of` takes part in that many rounds only."""
    names = list(samplers)
    results: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds + int(warmup)):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if rounds_of and r - int(warmup) >= rounds_of.get(name, rounds):
                continue
            try:
                value = samplers[name]()
            except (
                SampleError,
                OSError,
                subprocess.SubprocessError,
                ValueError,
                KeyError,
                psutil.Error,
            ) as err:
                label = "warm-up" if warmup and r == 0 else f"round {r + 1 - int(warmup)}"
                failures.append(f"{name}, {label}: {err}")
                log(f"  sample failed: {name}, {label}: {err}")
                continue
            if not (warmup and r == 0):
                results[name].append(value)
    return results
