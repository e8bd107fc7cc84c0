"""The systemd backend on a machine with systemd as PID 1 (run in the VM stage)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import HAS_SYSTEMD, guard_argv, run_cli, wait_for

pytestmark = [
    pytest.mark.root(reason="needs root on a machine with systemd as PID 1"),
    pytest.mark.skipif(not HAS_SYSTEMD, reason="needs a machine with systemd as PID 1"),
]


def units() -> list[str]:
    out = subprocess.run(
        ["systemctl", "list-units", "--all", "--plain", "--no-legend", "tiered-run-*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_workload_from_a_login_session_lands_in_the_tier_slice(tmp_path):
    # Like a desktop terminal: tiered-run itself starts inside a session scope of user-0.slice.
    session = f"session-t{os.getpid()}.scope"
    proc = subprocess.run(
        [
            "systemd-run",
            "--scope",
            "--quiet",
            "--collect",
            "--slice=user-0.slice",
            f"--unit={session}",
            *guard_argv("-q", "--tier", "batch", "--", "cat", "/proc/self/cgroup"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    unified = next(line for line in lines if line.startswith("0::"))
    assert "/tiered.slice/tiered-batch.slice/tiered-run-" in unified
    assert session not in proc.stdout
    memory = [line for line in lines if ":memory:" in line]
    if memory:  # hybrid: the memory controller follows the scope too
        assert "tiered-batch.slice" in memory[0]


def test_scope_carries_the_tier_limits(tmp_path):
    script = (
        'u=$(grep -o "tiered-run-[^/]*\\.scope" /proc/self/cgroup | head -n1); '
        'systemctl show -p MemoryMax -p TasksMax -p Slice "$u"'
    )
    result = run_cli(
        "--backend",
        "systemd",
        "--memory",
        "300M",
        "--tasks-max",
        "40",
        "--",
        "sh",
        "-c",
        script,
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    shown = dict(line.split("=", 1) for line in result.stdout.decode().split())
    assert shown["MemoryMax"] == str(300 << 20)
    assert shown["TasksMax"] == "41"  # the ceiling, plus the placeholder keeping the scope
    assert shown["Slice"] == "tiered-batch.slice"
    assert result.report["backend"] == "systemd"


def test_no_unit_or_cgroup_is_left_after_runs(tmp_path):
    run_cli("--backend", "systemd", "--", "true", tmp_path=tmp_path)
    run_cli("--backend", "systemd", "--timeout", "0.5", "--", "sleep", "30", tmp_path=tmp_path)
    wait_for(lambda: not units(), step=0.1)
    assert units() == []
    leftovers = [
        os.path.join(root, d)
        for root, dirs, _ in os.walk("/sys/fs/cgroup/tiered.slice")
        for d in dirs
        if d.startswith("tiered-run-")
    ]
    assert leftovers == []
