"""The settle gate: pure decisions on synthetic host states, and the waiting loop driven by
a fake host and clock, so nothing here sleeps."""

from __future__ import annotations

import pytest
from factories import host_state

from tiered_run.model.host import HostState
from tiered_run.policy.settle import Miss, Thresholds, host_dict, missed, wait_until_settled

GiB = 1024**3


STRICT = Thresholds(load_max=2.0, memory_available_min=2 * GiB, pressure_max=20.0)


def test_a_healthy_host_misses_nothing():
    assert missed(host_state(1.0, 4 * GiB, cpu=5.0, memory=0.0, io=1.0), STRICT) == []


def test_each_threshold_is_named_with_its_value():
    misses = missed(host_state(3.5, 1 * GiB, cpu=50.0, memory=0.0, io=30.0), STRICT)
    assert [(m.key, m.resource) for m in misses] == [
        ("load_max", None),
        ("memory_available_min", None),
        ("pressure_max", "cpu"),
        ("pressure_max", "io"),
    ]
    text = [m.describe() for m in misses]
    assert text[0] == "load 3.50 above load_max 2"
    assert text[1] == "available memory 1.0 GiB below memory_available_min 2.0 GiB"
    assert text[2] == "cpu pressure 50.0 % above pressure_max 20 %"


def test_values_at_the_threshold_pass():
    assert missed(host_state(2.0, 2 * GiB, cpu=20.0), STRICT) == []


def test_unset_thresholds_and_missing_psi_are_not_checked():
    assert missed(host_state(99.0, 1, cpu=100.0), Thresholds()) == []
    assert missed(host_state(0.1, 8 * GiB), Thresholds(pressure_max=1.0)) == []


class FakeHost:
    """Returns the given states in turn (the last one forever) on a clock only sleep moves."""

    def __init__(self, *states: HostState) -> None:
        self.states = list(states)
        self.now = 100.0
        self.slept: list[float] = []

    def read(self) -> HostState:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_healthy_host_passes_at_once_without_sleeping():
    host = FakeHost(host_state())
    result = wait_until_settled(STRICT, host.read, host.clock, host.sleep)
    assert result.settled and result.samples == 1 and result.waited_s == 0
    assert host.slept == []


def test_waits_until_the_host_recovers():
    host = FakeHost(host_state(5.0), host_state(3.0), host_state(1.5))
    limits = Thresholds(load_max=2.0, timeout=60, interval=2)
    result = wait_until_settled(limits, host.read, host.clock, host.sleep)
    assert result.settled
    assert result.samples == 3
    assert host.slept == [2, 2]
    assert result.waited_s == pytest.approx(4)
    assert result.state.load1 == 1.5
    assert "settled after 4.0 s" in result.describe()


def test_gives_up_at_the_bound_and_names_what_was_missed():
    host = FakeHost(host_state(5.0, 1 * GiB))
    limits = Thresholds(load_max=2.0, memory_available_min=2 * GiB, timeout=5, interval=2)
    result = wait_until_settled(limits, host.read, host.clock, host.sleep)
    assert not result.settled
    assert host.slept == [2, 2, 1]  # the last sleep is cut to the bound
    assert result.waited_s == pytest.approx(5)
    assert [m.key for m in result.misses] == ["load_max", "memory_available_min"]
    text = result.describe()
    assert "did not settle within 5 s" in text and "load 5.00 above load_max 2" in text
    assert result.to_dict()["missed"][0] == Miss("load_max", 5.0, 2.0).to_dict()


def test_a_host_that_settles_at_the_last_sample_passes():
    host = FakeHost(host_state(5.0), host_state(5.0), host_state(1.0))
    limits = Thresholds(load_max=2.0, timeout=2, interval=1)
    assert wait_until_settled(limits, host.read, host.clock, host.sleep).settled


def test_host_dict_for_reports():
    assert host_dict(None) is None
    assert host_dict(host_state(1.0, 5, cpu=2.0)) == {
        "load1": 1.0,
        "memory_available_bytes": 5,
        "pressure_pct": {"cpu": 2.0},
        "pressure_max_pct": 2.0,
    }
