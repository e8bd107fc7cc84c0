"""Backend selection: one cached probe per backend, a loop over them, a reason that says why."""

from __future__ import annotations

import pytest

import tiered_run.backends as backends
from tiered_run.backends import base, select_backend
from tiered_run.backends.base import Probe
from tiered_run.backends.cgroup1 import Cgroup1Backend
from tiered_run.backends.cgroup2 import Cgroup2Backend
from tiered_run.backends.plain import PlainBackend
from tiered_run.backends.systemd import SystemdBackend
from tiered_run.errors import UsageError
from tiered_run.model.usage import CONTAINING

V1 = Probe(True, "cgroup v1 controllers", CONTAINING)
NO_V1 = Probe(False, "cgroup v1 controllers not mounted: pids")
NO_V2 = Probe(False, "no cgroup2 filesystem is mounted")
NO_SYSTEMD = Probe(False, "systemd is not the init system (no /run/systemd/system)")
SYSTEMD = Probe(True, "systemd is PID 1: transient scope", CONTAINING)


@pytest.fixture
def machine(monkeypatch):
    """Stand-in probes for the cgroup backends, and no enclosing run unless a test says so."""

    def make(systemd: Probe, cgroup2: Probe, cgroup1: Probe, enclosing: str | None = None):
        probes = {SystemdBackend: systemd, Cgroup2Backend: cgroup2, Cgroup1Backend: cgroup1}
        for cls, probe in probes.items():
            monkeypatch.setitem(base._PROBES, cls, probe)
        # cgroup2 tells its capabilities from a cheap read of this machine: the stand-in's.
        offered = classmethod(lambda cls: cgroup2.capabilities)
        monkeypatch.setattr(Cgroup2Backend, "offered", offered)
        monkeypatch.setattr(backends, "enclosing_run", lambda: enclosing)

    return make


def test_a_probe_is_made_once_per_process():
    calls = []

    class Counted(PlainBackend):
        @classmethod
        def _probe(cls) -> Probe:
            calls.append(cls)
            return Probe(True, "counted")

    assert Counted.probe() is Counted.probe()
    assert Counted.unusable_reason() is None
    assert calls == [Counted]


def test_an_explicit_backend_keeps_what_it_offers_in_its_reason():
    _, reason = select_backend("plain")
    assert reason == f"{PlainBackend.probe().reason}; chosen with --backend"


def test_an_explicit_backend_that_cannot_work_is_refused_with_why(monkeypatch):
    monkeypatch.setitem(base._PROBES, SystemdBackend, NO_SYSTEMD)
    with pytest.raises(UsageError, match="--backend systemd cannot work here: systemd is not"):
        backends.choose.__wrapped__("systemd")


def test_auto_takes_the_first_backend_the_kernel_contains_with(machine):
    machine(NO_SYSTEMD, NO_V2, V1)
    assert backends._auto() == backends.Choice(Cgroup1Backend, "cgroup v1 controllers")


def test_auto_falls_back_to_plain_saying_what_the_cgroup_backends_lacked(machine):
    machine(NO_SYSTEMD, NO_V2, NO_V1)
    choice = backends._auto()
    assert choice.backend is PlainBackend
    assert choice.reason == f"no usable cgroup ({NO_V2.reason}; {NO_V1.reason})"


def test_auto_falls_back_to_a_cgroup2_without_controllers(machine):
    partial = Probe(True, "cgroup v2 without cpuset, memory, pids controllers")
    machine(NO_SYSTEMD, partial, NO_V1)
    choice = backends._auto()
    assert choice == backends.Choice(Cgroup2Backend, f"{partial.reason} ({NO_V1.reason})")


def test_a_nested_run_stays_below_its_own_cgroup_and_says_so(machine):
    machine(SYSTEMD, NO_V2, V1, enclosing="p1-abc")
    choice = backends._auto()
    assert choice.backend is Cgroup1Backend
    assert choice.qualifiers == ("nested in run p1-abc, whose ceilings and kill cover it",)


def test_systemd_names_the_tiers_slice(machine):
    machine(SYSTEMD, NO_V2, V1)
    choice = backends._auto()
    assert choice.backend is SystemdBackend
    assert SystemdBackend("batch").describe(choice.reason) == (
        "systemd is PID 1: transient scope in tiered-batch.slice"
    )
