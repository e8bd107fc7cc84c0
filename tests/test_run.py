"""The core promise, tested against the real kernel: ceilings hold, the whole tree dies,
nothing is lost or left behind, and the report and exit code say what happened."""

from __future__ import annotations

import hashlib
import json
import pwd
import signal

import pytest
from conftest import (
    ALL_BACKENDS,
    AUTO_BACKEND,
    HAS_CPUSET,
    ONLINE_CPUS,
    backend_params,
    gone,
    leaked_cgroups,
    python_cmd,
    run_cli,
    wait_for,
    written_pid,
)
from workloads import (
    AFFINITY_ESCAPE,
    DAEMON,
    FLOOD,
    FORK_STORM,
    MEMORY_HOG,
    PY,
    SIGTERM_IGNORER,
    SPREAD_HOG,
)

pytestmark = pytest.mark.root(reason="guarded runs need root for cgroups here")

KERNEL_BACKENDS = backend_params("cgroup1")


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_exit_code_passes_through(backend, tmp_path):
    result = run_cli(
        "--backend", backend, "--", *python_cmd("raise SystemExit(7)"), tmp_path=tmp_path
    )
    assert result.returncode == 7
    assert result.report["outcome"] == "exited"
    assert result.report["returncode"] == 7
    assert result.report["backend"] == backend


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_death_by_signal_passes_through_as_128_plus_n(backend, tmp_path):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)"
    result = run_cli("--backend", backend, "--", *python_cmd(code), tmp_path=tmp_path)
    assert result.returncode == 128 + signal.SIGUSR1
    assert result.report["outcome"] == "signal"
    assert result.report["signal_name"] == "SIGUSR1"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_timeout_kills_a_sigterm_ignorer(backend, tmp_path):
    result = run_cli(
        "--backend",
        backend,
        "--timeout",
        "1",
        "--kill-after",
        "0.5",
        "--",
        *python_cmd(SIGTERM_IGNORER),
        tmp_path=tmp_path,
    )
    assert result.returncode == 124
    report = result.report
    assert report["outcome"] == "timeout"
    assert report["wall_s"] >= 1.0
    assert [e["kind"] for e in report["events"]] == ["timeout", "sigkill"]
    assert b"ready" in result.stdout


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_memory_hog_is_stopped_at_its_ceiling(backend, tmp_path):
    result = run_cli(
        "--backend",
        backend,
        "--memory",
        "300M",
        "--timeout",
        "30",
        "--",
        *python_cmd(MEMORY_HOG),
        tmp_path=tmp_path,
    )
    assert result.returncode == 122, result.stderr
    report = result.report
    assert report["outcome"] == "memory"
    assert report["peak_memory_bytes"] is not None
    if report["peak_memory_source"] == "kernel":
        assert report["peak_memory_bytes"] <= 300 << 20


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_memory_spread_over_children_counts_as_one_tree(backend, tmp_path):
    # Each child stays far below the ceiling; only their sum crosses it.
    result = run_cli(
        "--backend",
        backend,
        "--memory",
        "400M",
        "--timeout",
        "30",
        "--",
        *python_cmd(SPREAD_HOG),
        tmp_path=tmp_path,
    )
    assert result.returncode == 122, result.stderr
    assert result.report["outcome"] == "memory"
    assert result.report["peak_tasks"] >= 5


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_fork_storm_is_held_at_the_tasks_ceiling(backend, tmp_path):
    result = run_cli(
        "--backend",
        backend,
        "--tasks-max",
        "50",
        "--timeout",
        "30",
        "--",
        *python_cmd(FORK_STORM),
        tmp_path=tmp_path,
    )
    assert result.returncode == 123, result.stderr
    report = result.report
    assert report["outcome"] == "tasks"
    if "tasks-limit" in report["enforced_by_kernel"]:
        assert report["peak_tasks"] <= 50


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_setsid_double_forked_daemon_is_killed(backend, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    result = run_cli(
        "--backend",
        backend,
        "--kill-after",
        "0.5",
        "--",
        PY,
        "-c",
        DAEMON,
        str(pid_file),
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    daemon = int(pid_file.read_text())
    assert gone(daemon)
    assert result.report["leftover_killed"] == 1
    assert "leftover" in result.report["message"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_workload_runs_only_on_the_tier_cpus(backend, tmp_path):
    if len(ONLINE_CPUS) < 2:
        pytest.skip("needs two CPUs to show a restriction")
    cpu = ONLINE_CPUS[-1]
    result = run_cli(
        "--backend",
        backend,
        "--cpus",
        str(cpu),
        "--",
        *python_cmd("import os; print(sorted(os.sched_getaffinity(0)))"),
        tmp_path=tmp_path,
    )
    assert result.stdout.strip() == f"[{cpu}]".encode()
    assert result.report["cpus"] == [cpu]


@pytest.mark.skipif(not HAS_CPUSET, reason="no cpuset controller: affinity can be widened")
def test_affinity_escape_attempt_stays_in_the_cpuset(tmp_path):
    if len(ONLINE_CPUS) < 2:
        pytest.skip("needs two CPUs to show a restriction")
    cpu = ONLINE_CPUS[-1]
    result = run_cli("--cpus", str(cpu), "--", *python_cmd(AFFINITY_ESCAPE), tmp_path=tmp_path)
    assert result.stdout.strip() == str(cpu).encode()
    assert set(result.report["cpus_seen"]) <= {cpu}


def test_output_flood_passes_through_and_is_logged_byte_exact(tmp_path):
    expected = hashlib.sha256((bytes(range(256)) * 4096) * 200).hexdigest()
    log = tmp_path / "run.log"
    result = run_cli("--log", str(log), "--", *python_cmd(FLOOD), tmp_path=tmp_path)
    assert result.returncode == 0
    assert hashlib.sha256(result.stdout).hexdigest() == expected
    assert "flood done" in result.stderr
    logged = log.read_bytes()
    assert len(logged) == 200 * (1 << 20) + len(b"flood done\n")
    assert logged.replace(b"flood done\n", b"", 1) == result.stdout


def test_log_is_complete_up_to_a_kill(tmp_path):
    log = tmp_path / "run.log"
    code = "import time\nfor i in range(100):\n print(i, flush=True); time.sleep(0.05)"
    result = run_cli(
        "--log", str(log), "--timeout", "1", "--", *python_cmd(code), tmp_path=tmp_path
    )
    assert result.returncode == 124
    assert log.read_bytes() == result.stdout
    assert result.stdout.startswith(b"0\n1\n")


@pytest.mark.parametrize("backend", backend_params("systemd", "cgroup1", "plain"))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_tiered_run_kills_tree_and_writes_report(backend, sig, tmp_path):
    pid_file, report = tmp_path / "daemon.pid", tmp_path / "report.json"
    proc = run_cli(
        "--backend",
        backend,
        "--kill-after",
        "0.5",
        "--",
        PY,
        "-c",
        DAEMON + "\ntime.sleep(40)",
        str(pid_file),
        command=None,
        report=report,
        wait=False,
    )
    daemon = written_pid(pid_file)
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == 128 + sig
    data = json.loads(report.read_text())
    assert data["outcome"] == "interrupted"
    assert data["exit_code"] == 128 + sig
    assert gone(daemon)
    assert not [p for p in leaked_cgroups() if data["run_id"] in p]


@pytest.mark.skipif(AUTO_BACKEND == "plain", reason="needs a cgroup backend")
def test_sigkill_of_tiered_run_still_ends_the_tree_and_cleans_up(tmp_path):
    pid_file = tmp_path / "daemon.pid"
    proc = run_cli(
        "--", PY, "-c", DAEMON + "\ntime.sleep(40)", str(pid_file),
        command=None, report=False, quiet=True, wait=False,
    )  # fmt: skip
    daemon = written_pid(pid_file)
    proc.kill()
    proc.wait()
    assert wait_for(lambda: gone(daemon), within=3)
    assert wait_for(lambda: not [p for p in leaked_cgroups() if f"tiered-run-p{proc.pid}-" in p], 3)


def test_user_switch_drops_to_the_account_like_su(tmp_path):
    # A shell, not this Python: its install may not be readable by nobody.
    script = 'echo "$(id -u) $(id -g) $USER $HOME"'
    result = run_cli("--user", "nobody", "--cwd", "/", "--", "sh", "-c", script, tmp_path=tmp_path)

    nobody = pwd.getpwnam("nobody")
    assert result.returncode == 0, result.stderr
    uid, gid, user, home = result.stdout.decode().split()
    assert (int(uid), int(gid), user, home) == (
        nobody.pw_uid,
        nobody.pw_gid,
        "nobody",
        nobody.pw_dir,
    )


# Spins (at nice 19, for at most 60 s) so that the host's 1-minute load average is above 0.
SPIN = (
    "import os, time\nos.nice(19)\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"
)


def load1() -> float:
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


@pytest.fixture
def host_over_zero_load(spawned):
    """A host whose load average stays above 0 for the whole test, so that `--load-max 0`
    is always breached: a spinning process of ours, ended with the test, keeps it there."""
    spawned.popen(python_cmd(SPIN))
    assert wait_for(lambda: load1() > 0, within=15), "the load average stayed at 0"


def test_pause_freezes_the_tree_while_the_host_is_over_its_load_ceiling(
    tmp_path, host_over_zero_load
):
    marker = tmp_path / "ran"
    code = f"import time, pathlib; time.sleep(0.5); pathlib.Path({str(marker)!r}).touch()"
    result = run_cli(
        "--pressure-max",
        "0",
        "--load-max",
        "0",
        "--on-load",
        "pause",
        "--timeout",
        "2",
        "--",
        *python_cmd(code),
        tmp_path=tmp_path,
    )
    assert any(e["kind"] == "pause" for e in result.report["events"]), result.report["events"]
    assert result.returncode == 124
    assert not marker.exists()


def test_load_kill_ends_the_run_with_the_load_outcome(tmp_path, host_over_zero_load):
    result = run_cli(
        "--load-max",
        "0",
        "--pressure-max",
        "0",
        "--on-load",
        "kill",
        "--timeout",
        "5",
        "--",
        *python_cmd("import time; time.sleep(3)"),
        tmp_path=tmp_path,
    )
    assert result.returncode == 121
    assert result.report["outcome"] == "load"


def test_report_describes_a_cgroup_run(tmp_path):
    result = run_cli(
        "--memory", "1G", "--", *python_cmd("x = b'1' * (20 << 20)"), tmp_path=tmp_path
    )
    report = result.report
    assert report["peak_memory_bytes"] >= 20 << 20
    assert report["limits"]["memory_bytes"] == 1 << 30
    assert report["cpu_s"] > 0
    assert "peak memory" in result.stderr and "exited" in result.stderr


def test_default_command_and_run_subcommand_are_the_same(tmp_path):
    for args in (["-q", "--", "false"], ["run", "-q", "--", "false"]):
        proc = run_cli(*args, command=None, report=False)
        assert proc.returncode == 1, proc.stderr
        assert "exited with code 1" in proc.stderr


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_orphan_holding_the_output_does_not_keep_tiered_run_waiting(backend, tmp_path):
    pid_file, log = tmp_path / "daemon.pid", tmp_path / "run.log"
    code = DAEMON + "\nprint('main done', flush=True)"
    result = run_cli(
        "--backend",
        backend,
        "--log",
        str(log),
        "--kill-after",
        "0.5",
        "--",
        PY,
        "-c",
        code,
        str(pid_file),
        tmp_path=tmp_path,
        timeout=30,
    )
    assert result.returncode == 0
    assert gone(int(pid_file.read_text()))
    assert log.read_bytes() == result.stdout == b"main done\n"
