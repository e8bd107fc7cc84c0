"""Slurm for real: a one-node cluster started by the tests (see slurm_cluster.py) runs a
ladder, a calibration and a run through `--executor slurm`, with the same outcomes, exit
codes and reports as here, and checks the exported batch script with `sbatch --test-only`
and by running it. Every daemon is stopped at the end, and nothing of the cluster is left."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import run_cli, wait_for
from slurm_cluster import PARTITION, Cluster, missing

PY = sys.executable
pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

LADDER = f"""
name = "three"
[defaults]
timeout = "60s"
memory = "150M"
[[step]]
name = "small"
command = ["{PY}", "-c", "x = b'1' * (20 << 20); print('small ok')"]
[[step]]
name = "hog"
command = ["{PY}", "-c", "x = [b'1' * (50 << 20) for _ in range(20)]"]
[[step]]
name = "after"
command = ["{PY}", "-c", "print('not reached')"]
"""
# What a run's report must say alike wherever it ran.
SAME = (
    "outcome", "exit_code", "returncode", "command", "tier", "limits", "cpus", "backend",
    "enforced_by_kernel", "not_enforced", "warnings", "schema_version",
)  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster()
    try:
        cluster.start()
    except RuntimeError as err:
        cluster.stop()
        if "no network namespace" in str(err):
            pytest.skip(f"a network namespace with a veth pair cannot be made here: {err}")
        raise
    yield cluster
    killed = cluster.stop()
    assert not killed, f"processes left in the cluster's namespace: {killed}"
    assert all(proc.poll() is not None for proc in cluster.processes.values())
    assert not cluster.in_namespace()


def through_slurm(cluster: Cluster, *args: str, **kwargs):
    return run_cli(
        "--executor", "slurm", "--partition", PARTITION, *args, wrap=cluster.prefix,
        env={"SLURM_CONF": str(cluster.conf)}, **kwargs,
    )  # fmt: skip


def test_a_ladder_through_slurm_ends_as_it_does_here(cluster, tmp_path):
    ladder = tmp_path / "three.toml"
    ladder.write_text(LADDER)
    here = run_cli(str(ladder), command="ladder", tmp_path=tmp_path, text=True)
    there = through_slurm(cluster, str(ladder), command="ladder", tmp_path=tmp_path, text=True)
    assert here.returncode == there.returncode == 122, there.stderr
    for result in (here, there):
        report = result.report
        assert report["outcome"] == "failed" and report["exit_code"] == 122
        assert [s["status"] for s in report["steps"]] == ["passed", "failed", "not_run"]
        assert "small ok" in result.stdout and "not reached" not in result.stdout
        assert "tiered-run: ladder three failed" in result.stderr
    for mine, theirs in zip(here.report["steps"][:2], there.report["steps"][:2], strict=True):
        assert {k: mine["report"][k] for k in SAME} == {k: theirs["report"][k] for k in SAME}
        assert mine["reason"].split(":")[0] == theirs["reason"].split(":")[0]
    assert there.report["steps"][1]["report"]["outcome"] == "memory"
    assert there.report["steps"][1]["host_before"] is not None  # the node's, from its report
    assert "slurm job" in there.stderr
    assert not cluster.jobs()


def test_a_calibration_runs_its_memory_ceilings_at_once(cluster, tmp_path):
    result = through_slurm(
        cluster, "--memory-steps", "60M,120M,240M", "--timeout", "60s", "--",
        PY, "-c", "x = b'1' * (80 << 20)", command="calibrate", tmp_path=tmp_path, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    attempts = result.report["attempts"]
    assert [a["outcome"] for a in attempts] == ["memory", "exited"]
    assert [a["memory_bytes"] for a in attempts] == [60 << 20, 120 << 20]
    assert result.stderr.count("slurm job") >= 3  # all three submitted before any result
    assert "memory = " in result.stdout
    assert wait_for(lambda: not cluster.jobs(), within=20)  # the third, not needed, cancelled


def test_ctrl_c_ends_the_job_and_reports_the_interruption(cluster, tmp_path):
    report = tmp_path / "run.json"
    proc = through_slurm(
        cluster, "--timeout", "60s", "--memory", "200M", "--", PY, "-c",
        "import time; print('started', flush=True); time.sleep(60)",
        command="run", report=report, wait=False, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout.readline() == b"started\n"  # relayed from the job while it runs
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    data = json.loads(report.read_text())
    assert data["outcome"] == "interrupted" and data["signal_name"] == "SIGINT"
    assert data["exit_code"] == 130
    assert wait_for(lambda: not cluster.jobs(), within=20)


def test_the_exported_batch_script_passes_sbatch_and_runs(cluster, tmp_path):
    result = run_cli(
        "--format", "slurm", "--memory", "100M", "--timeout", "30s", "--",
        PY, "-c", "print('from the job')", command="export", report=False, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    script = tmp_path / "job.sh"
    script.write_text(result.stdout)
    checked = cluster.run("sbatch", "--test-only", str(script), check=False)
    assert checked.returncode == 0 and "to start at" in checked.stderr, checked.stderr
    bad = tmp_path / "bad.sh"
    bad.write_text(result.stdout.replace("--cpus-per-task=1", "--cpus-per-task=1000"))
    assert cluster.run("sbatch", "--test-only", str(bad), check=False).returncode != 0
    ran = cluster.run("sbatch", "--wait", "--parsable", f"--chdir={tmp_path}", str(script))
    job = ran.stdout.strip().split(";")[0]
    report = json.loads(Path(tmp_path / f"tiered-run-{job}.json").read_text())
    assert report["outcome"] == "exited" and report["exit_code"] == 0
    # The tier it ran in stays with the report, not as a temporary file on the node.
    tier = tomllib.loads((tmp_path / f"tiered-run-{job}.toml").read_text())
    assert tier["tiers"][report["tier"]]["memory"] == 100 << 20
    assert report["limits"]["memory_bytes"] == 100 << 20
    out = next(tmp_path.glob(f"slurm-{job}.out")).read_text()
    assert "from the job" in out
    assert wait_for(lambda: not cluster.jobs(), within=10)
