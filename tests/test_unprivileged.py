"""tiered-run as a user who cannot make cgroups (`nobody` where the suite runs as root, else
whoever runs it), end to end on the plain backend: the exit code, every ceiling, the whole
tree killed however it ends, and the report, log and JUnit files in the user's own name.

The workloads are shell commands: a Python that such a user can run is not a given."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import gone, run_cli, wait_for, written_pid
from without_root import unprivileged_how

from tiered_run.engine.launch import NPROC_SLACK

SIGTERM_IGNORER = "trap '' TERM; echo ready; sleep 40"  # the sleep inherits the SIG_IGN
MEMORY_HOG = "head -c 600M /dev/zero | tail"  # tail holds the one endless line in memory
FORK_STORM = "i=0; while [ $i -lt 300 ]; do sleep 20 & i=$((i+1)); done; wait"
# A setsid'd sleeper (pid in daemon.pid) left behind by a shell that exits 0 at once.
DAEMON = "setsid sleep 40 >/dev/null 2>&1 & echo $! > daemon.pid"


def plain(*args: str, **kwargs):
    """`tiered-run --backend plain ARGS` as the unprivileged user, in its own directory."""
    return run_cli("--backend", "plain", *args, unprivileged=True, **kwargs)


def daemon_pid() -> int:
    return written_pid(Path("daemon.pid"))


def test_a_user_without_cgroups_gets_the_plain_backend_and_its_files(unprivileged):
    result = run_cli(
        "--log", "run.log", "--junit", "j.xml", "--", "sh", "-c", "echo out; exit 7",
        unprivileged=True,
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    report = result.report
    assert (report["outcome"], report["returncode"]) == ("exited", 7)
    assert report["backend"] == "plain"
    assert "no usable cgroup" in report["backend_reason"]
    assert result.stdout == b"out\n"
    assert (unprivileged / "run.log").read_bytes() == b"out\n"
    how = unprivileged_how()
    owner = os.getuid() if how.user is None else how.user.pw_uid
    for name in ("run.log", "j.xml", "report-0.json"):
        assert (unprivileged / name).stat().st_uid == owner, name


def test_death_by_signal_passes_through_as_128_plus_n(unprivileged):
    result = plain("--", "sh", "-c", "kill -USR1 $$")
    assert result.returncode == 128 + signal.SIGUSR1, result.stderr
    assert result.report["outcome"] == "signal"
    assert result.report["signal_name"] == "SIGUSR1"


def test_timeout_kills_a_sigterm_ignorer(unprivileged):
    result = plain("--timeout", "1", "--kill-after", "0.5", "--", "sh", "-c", SIGTERM_IGNORER)
    assert result.returncode == 124, result.stderr
    assert result.report["outcome"] == "timeout"
    assert [e["kind"] for e in result.report["events"]] == ["timeout", "sigkill"]
    assert b"ready" in result.stdout


def test_memory_hog_is_stopped_at_its_ceiling(unprivileged):
    result = plain("--memory", "100M", "--timeout", "30", "--", "sh", "-c", MEMORY_HOG)
    assert result.returncode == 122, result.stderr
    assert result.report["outcome"] == "memory"


def test_fork_storm_is_held_at_the_tasks_ceiling(unprivileged):
    """RLIMIT_NPROC holds it; the cap leaves NPROC_SLACK tasks above the ceiling so that the
    monitor can see the tree go over it (refused forks are counted nowhere)."""
    result = plain("--tasks-max", "50", "--timeout", "30", "--", "sh", "-c", FORK_STORM)
    assert result.report["peak_tasks"] <= 50 + NPROC_SLACK, result.stderr
    assert result.report["leftover_killed"] <= 50 + NPROC_SLACK


def test_fork_storm_held_by_the_process_limit_is_a_tasks_outcome(unprivileged):
    """Without root the plain backend holds a fork storm with RLIMIT_NPROC at the ceiling,
    and nothing counts the refused forks: the run ended as `exited`, not `tasks`."""
    result = plain("--tasks-max", "50", "--timeout", "30", "--", "sh", "-c", FORK_STORM)
    assert result.returncode == 123, result.stderr
    assert result.report["outcome"] == "tasks"


def test_setsid_daemon_is_killed(unprivileged):
    result = plain("--kill-after", "0.5", "--", "sh", "-c", DAEMON)
    assert result.returncode == 0, result.stderr
    assert gone(daemon_pid())
    assert result.report["leftover_killed"] == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_tiered_run_kills_tree_and_writes_report(sig, unprivileged):
    report = unprivileged / "report.json"
    proc = plain(
        "--kill-after", "0.5", "--", "sh", "-c", f"{DAEMON}; sleep 40",
        report=report, wait=False,
    )  # fmt: skip
    daemon = daemon_pid()
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == 128 + sig
    data = json.loads(report.read_text())
    assert (data["outcome"], data["exit_code"]) == ("interrupted", 128 + sig)
    assert gone(daemon)


def test_sigkill_of_tiered_run_still_ends_the_tree(unprivileged):
    """No cgroup to find the tree by: the watchdog kills it as last sampled."""
    proc = plain(
        "--interval", "0.1", "--", "sh", "-c", f"{DAEMON}; sleep 40",
        report=False, wait=False, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    daemon = daemon_pid()
    time.sleep(0.5)  # samples have told the watchdog the tree
    proc.kill()
    proc.wait()
    assert wait_for(lambda: gone(daemon))


def test_a_home_it_cannot_read_holds_no_config_of_its_own(tmp_path):
    """`sudo -u nobody tiered-run` keeps HOME=/root: the config lookup met EACCES on
    ~/.config/tiered-run/config.toml and failed with an internal error (exit 125)."""
    home = tmp_path / "closed"
    (home / ".config" / "tiered-run").mkdir(parents=True)
    home.chmod(0o700)  # the unprivileged user may not even look inside
    result = run_cli(
        "tiers", command=None, report=False, unprivileged=True, env={"HOME": str(home)}
    )
    assert result.returncode == 0, result.stderr
    assert "built-in defaults" in result.stdout.decode()
