"""The settle gate: wait until the host is healthy again before starting the next heavy step.

The decision is a pure function of one HostState and the thresholds; the waiting loop takes
its reader, clock and sleep as arguments so it can be driven by a fake host in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tiered_run.inputs.units import format_size
from tiered_run.model.host import HostState

DEFAULT_SETTLE_TIMEOUT = 60.0
DEFAULT_SETTLE_INTERVAL = 1.0


@dataclass(frozen=True)
class Thresholds:
    """What a healthy host looks like; None means that measure is not checked."""

    load_max: float | None = None
    memory_available_min: int | None = None
    pressure_max: float | None = None
    timeout: float = DEFAULT_SETTLE_TIMEOUT
    interval: float = DEFAULT_SETTLE_INTERVAL


@dataclass(frozen=True)
class Miss:
    """One threshold the host is outside of, with the value that missed it."""

    key: str
    value: float
    limit: float
    resource: str | None = None

    def describe(self) -> str:
        if self.key == "load_max":
            return f"load {self.value:.2f} above load_max {self.limit:g}"
        if self.key == "memory_available_min":
            return (
                f"available memory {format_size(self.value)} below "
                f"memory_available_min {format_size(self.limit)}"
            )
        return f"{self.resource} pressure {self.value:.1f} % above pressure_max {self.limit:g} %"

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "value": self.value,
            "limit": self.limit,
            "resource": self.resource,
            "message": self.describe(),
        }


def missed(state: HostState, thresholds: Thresholds) -> list[Miss]:
    """Every threshold `state` misses, in a fixed order; empty when the host is healthy.

    PSI is checked per resource where the kernel has it, so the message says which one.
    """
    misses = []
    if thresholds.load_max is not None and state.load1 > thresholds.load_max:
        misses.append(Miss("load_max", state.load1, thresholds.load_max))
    floor = thresholds.memory_available_min
    if floor is not None and state.memory_available < floor:
        misses.append(Miss("memory_available_min", state.memory_available, floor))
    if thresholds.pressure_max is not None:
        for resource, value in sorted(state.pressure.items()):
            if value > thresholds.pressure_max:
                misses.append(Miss("pressure_max", value, thresholds.pressure_max, resource))
    return misses


@dataclass(frozen=True)
class SettleResult:
    """How the gate ended: the last state it saw and, when it gave up, what was still missed."""

    settled: bool
    waited_s: float
    samples: int
    state: HostState
    misses: tuple[Miss, ...] = ()

    def describe(self) -> str:
        if self.settled:
            return f"host settled after {self.waited_s:.1f} s"
        missing = "; ".join(miss.describe() for miss in self.misses)
        return f"host did not settle within {self.waited_s:.0f} s: {missing}"

    @classmethod
    def from_dict(cls, data: dict[str, Any], state: HostState) -> SettleResult:
        """The gate's result read back from a ladder report (`to_dict`, which does not keep
        the last state: the step's host before it is that state)."""
        misses = tuple(
            Miss(m["key"], m["value"], m["limit"], m.get("resource")) for m in data["missed"]
        )
        return cls(data["settled"], data["waited_s"], data["samples"], state, misses)

    def to_dict(self) -> dict[str, object]:
        return {
            "settled": self.settled,
            "waited_s": self.waited_s,
            "samples": self.samples,
            "missed": [miss.to_dict() for miss in self.misses],
        }


def wait_until_settled(
    thresholds: Thresholds,
    read: Callable[[], HostState],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[float, list[Miss]], None] | None = None,
) -> SettleResult:
    """Sample the host every `interval` until it is healthy or `timeout` has passed.

    The first sample is taken at once, so a healthy host costs no waiting at all; the last
    one is taken at the bound, so a host that settles just in time still passes. Before
    each wait, `on_wait` gets the seconds waited so far and what the host misses: a wait
    of a minute must say why it waits.
    """
    start = clock()
    deadline = start + thresholds.timeout
    samples = 0
    while True:
        state = read()
        samples += 1
        misses = missed(state, thresholds)
        now = clock()
        if not misses:
            return SettleResult(True, now - start, samples, state)
        if now >= deadline:
            return SettleResult(False, now - start, samples, state, tuple(misses))
        if on_wait is not None:
            on_wait(now - start, misses)
        sleep(min(thresholds.interval, deadline - now))


def host_from_dict(data: dict[str, Any] | None) -> HostState | None:
    """A HostState read back from `host_dict`."""
    if data is None:
        return None
    return HostState(data["load1"], data["memory_available_bytes"], dict(data["pressure_pct"]))


def host_dict(state: HostState | None) -> dict[str, object] | None:
    """A HostState for the JSON reports."""
    if state is None:
        return None
    return {
        "load1": state.load1,
        "memory_available_bytes": state.memory_available,
        "pressure_pct": dict(state.pressure),
        "pressure_max_pct": state.pressure_max,
    }
