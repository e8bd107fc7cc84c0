"""`tiered-run doctor` on the machine the tests run on. Each kind of machine must show its
own findings: a hybrid host without systemd (a container, a CI runner), a pure cgroup v2
machine with systemd, and a hybrid one with systemd seen from a login-like session scope,
the layout of the user's Ubuntu 20.04 (the last two in the VM stage)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import HAS_SYSTEMD, Result, guard_argv, run_cli
from contract import (
    DOCTOR_CEILING_JSON_KEYS,
    DOCTOR_GUARDS_JSON_KEYS,
    DOCTOR_JSON_KEYS,
    DOCTOR_MACHINE_JSON_KEYS,
    DOCTOR_TIER_JSON_KEYS,
    FINDING_JSON_KEYS,
)

from tiered_run.host.cgroup_facts import read_cgroup_facts

MODE = read_cgroup_facts().mode
ALL_KERNEL = {key: "kernel" for key in DOCTOR_GUARDS_JSON_KEYS}
SOFT_TIER = """
default_tier = "heavy"
[tiers.heavy]
memory = "512M"
memory_high = "400M"
tasks_max = 256
timeout = "1min"
"""


def doctor(*args: str, **kwargs) -> Result:
    return run_cli(*args, command="doctor", report=False, text=True, **kwargs)


def diagnosis(*args: str, **kwargs) -> tuple[Result, dict]:
    result = doctor("--json", *args, **kwargs)
    assert result.returncode in (0, 1), result.stderr
    return result, json.loads(result.stdout)


def by_id(data: dict) -> dict[str, dict]:
    return {finding["id"]: finding for finding in data["findings"]}


def config(tmp_path: Path, text: str = SOFT_TIER, mode: int = 0o644) -> Path:
    path = tmp_path / "tiers.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


# -- on any machine -------------------------------------------------------------------------


def test_the_json_keys_are_pinned():
    _, data = diagnosis()
    assert set(data) == DOCTOR_JSON_KEYS
    assert data["schema_version"] == 2 and data["kind"] == "doctor"
    assert set(data["machine"]) == DOCTOR_MACHINE_JSON_KEYS
    assert set(data["machine"]["guards"]) == DOCTOR_GUARDS_JSON_KEYS
    assert set(data["tier"]) == DOCTOR_TIER_JSON_KEYS
    assert all(set(c) == DOCTOR_CEILING_JSON_KEYS for c in data["tier"]["ceilings"])
    assert all(set(f) == FINDING_JSON_KEYS for f in data["findings"])


def test_the_exit_code_is_whether_the_default_tier_is_held():
    result, data = diagnosis()
    assert result.returncode == data["exit_code"] == (0 if data["tier"]["guarded"] else 1)
    assert data["tier"]["default"] and data["machine"]["cgroup_mode"] == MODE


def test_the_table_goes_by_area_and_ends_with_the_verdict():
    result = doctor()
    lines = result.stdout.splitlines()
    assert lines[0].startswith("tiered-run doctor: Linux ")
    for area in ("cgroups", "backend", "systemd", "kernel", "cpus", "memory", "containers"):
        assert area in lines, area
    assert lines[-1].endswith(f"(exit {result.returncode})")
    assert result.stderr == ""


def test_a_protected_tier_cannot_start(tmp_path):
    path = config(tmp_path, '[tiers.host]\ncpus = "0"\nprotected = true\n')
    result, data = diagnosis("--config", str(path), "--tier", "host")
    assert result.returncode == 1
    assert "is protected" in data["tier"]["blockers"][0]


def test_an_unknown_tier_is_refused_in_one_line():
    result = doctor("--tier", "nosuch")
    assert result.returncode == 125
    assert result.stderr.startswith("tiered-run: error: unknown tier 'nosuch'")
    assert result.stdout == ""


def test_a_config_a_run_would_refuse_is_a_problem_not_a_crash(tmp_path):
    result, data = diagnosis("--config", str(config(tmp_path, mode=0o666)))
    assert result.returncode == 1 and data["tier"] is None
    found = by_id(data)["tiers.config"]
    assert found["severity"] == "problem" and "writable by group or others" in found["summary"]


def test_without_root_doctor_says_what_root_would_give(unprivileged):
    result, data = diagnosis(unprivileged=True)
    assert result.returncode == 1  # nothing but the monitor holds the ceilings
    assert data["machine"]["root"] is False
    auto = by_id(data)["backend.auto"]
    assert auto["severity"] == "warning" and "sudo" in auto["remedy"]
    assert data["machine"]["guards"]["memory"] in ("monitor", "not-applied")


# -- this kind of machine -------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.skipif(HAS_SYSTEMD or MODE != "hybrid", reason="a hybrid host without systemd")
def test_a_hybrid_host_without_systemd(tmp_path):
    result, data = diagnosis()
    machine, found = data["machine"], by_id(data)
    assert machine["pid1"] != "systemd" and machine["systemd_version"] is None
    assert machine["backend"] == "cgroup1"
    assert machine["guards"] == {
        **ALL_KERNEL,
        "memory_high": "monitor",  # cgroup v1 has no memory.high
        "memory_low": "not-applied",  # nor memory.low
        # blkio.bfq.weight is read only by bfq, which schedules no disk here
        "io_weight": machine["guards"]["io_weight"],
    }
    assert found["systemd.init"]["severity"] == "note"
    assert "not systemd" in found["systemd.init"]["summary"]
    for id_ in ("cgroups.mode", "cgroups.v1-access", "cgroups.unified", "backend.auto"):
        assert found[id_]["severity"] == "ok", found[id_]
    assert "max_usage_in_bytes" in found["kernel.memory-peak"]["summary"]
    assert "systemd.session-scope" not in found
    assert result.returncode == 0  # the built-in default tier: CPUs, memory, tasks
    # A tier with a soft ceiling: on cgroup v1 only the monitor watches it.
    result, data = diagnosis("--config", str(config(tmp_path)))
    ceilings = {c["key"]: c for c in data["tier"]["ceilings"]}
    assert ceilings["memory_high"]["guard"] == "monitor"
    assert ceilings["memory"]["how"] == "cgroup v1 memory.limit_in_bytes"
    assert result.returncode == 1
    assert "memory_high not held" in doctor("--config", str(tmp_path / "tiers.toml")).stdout


@pytest.mark.root
@pytest.mark.skipif(not HAS_SYSTEMD or MODE != "v2", reason="pure cgroup v2 with systemd")
def test_pure_cgroup_v2_with_systemd(tmp_path):
    result, data = diagnosis()
    machine, found = data["machine"], by_id(data)
    assert isinstance(machine["systemd_version"], int) and machine["pid1"] == "systemd"
    assert machine["backend"] == "systemd"
    # io.weight is read only once io.cost is switched on, or by bfq
    assert machine["guards"] == {**ALL_KERNEL, "io_weight": machine["guards"]["io_weight"]}
    assert found["systemd.init"]["severity"] == "ok"
    assert found["systemd.delegate"]["severity"] == "ok"
    assert found["cgroups.mode"]["summary"].startswith("cgroup v2 (unified)")
    assert found["kernel.cgroup-kill"]["severity"] == "ok"
    assert result.returncode == 0
    tier = json.loads(doctor("--json", "--config", str(config(tmp_path))).stdout)["tier"]
    ceilings = {c["key"]: c for c in tier["ceilings"]}
    assert ceilings["memory_high"]["how"] == "MemoryHigh= on the run's scope"
    assert tier["guarded"]


@pytest.mark.root
@pytest.mark.skipif(not HAS_SYSTEMD or MODE != "hybrid", reason="hybrid cgroups with systemd")
def test_hybrid_with_systemd_from_a_login_session(tmp_path):
    """The user's machine: tiered-run started in a login session's scope of user-0.slice,
    whose CPUs were narrowed (here to CPU 1, as logind's session narrowed theirs)."""
    session = f"session-t{os.getpid()}.scope"
    proc = subprocess.run(
        [
            "systemd-run", "--scope", "--quiet", "--collect", "--slice=user-0.slice",
            f"--unit={session}", "taskset", "-c", "1", *guard_argv("doctor", "--json"),
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    machine, found = data["machine"], by_id(data)
    assert machine["cgroup_mode"] == "hybrid" and isinstance(machine["systemd_version"], int)
    assert machine["session_scope"] == session
    assert machine["backend"] == "systemd"
    assert machine["guards"]["memory_high"] == "monitor"  # MemoryHigh= needs cgroup v2
    assert machine["cpus_allowed"] == [1]
    scope = found["systemd.session-scope"]
    assert scope["severity"] == "note" and f"user-0.slice/{session}" in scope["summary"]
    assert "may use CPUs 1 of online" in scope["consequence"]
    assert "tiered-<tier>.slice" in scope["consequence"]
    assert found["cpus.online"]["severity"] == "warning"
    assert found["systemd.delegate"]["severity"] == "ok"
    assert proc.returncode == data["exit_code"]


def test_a_config_that_is_not_there_is_refused_in_one_line(tmp_path):
    result = run_cli(
        "--config", str(tmp_path / "nonexist.toml"), command="doctor", report=False, text=True
    )
    assert result.returncode == 125
    (line,) = result.stderr.strip().splitlines()
    assert "does not exist" in line and result.stdout == ""
