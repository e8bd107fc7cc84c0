"""`--before-kill`: a last look at a breached run before its first ending signal, whose
output lands on stderr, in the log and in the report, and which never stops the kill."""

from __future__ import annotations

import threading

import pytest
from conftest import ALL_BACKENDS, python_cmd, run_cli

from tiered_run.engine.before_kill import expand, look
from tiered_run.model.report import BeforeKill, RunReport

pytestmark = pytest.mark.root(reason="guarded runs need root for cgroups here")

# Writes MARK on its first SIGTERM, then goes on sleeping until it is killed.
MARKS_SIGTERM = """
import signal, sys, time
def on_term(*_):
    open(sys.argv[1], "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(40)
"""


def _look_at(mark) -> str:
    """A hook that tells whether the workload was signalled yet and what it runs."""
    return (
        f"sh -c 'if test -e {mark}; then echo signalled-before; else echo not-signalled; fi; "
        'echo cgroup=[{cgroup}]; tr "\\0" " " < /proc/{pid}/cmdline; echo\''
    )


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_timed_out_sleeper_is_looked_at_before_the_first_signal(backend, tmp_path):
    mark, log = tmp_path / "signalled", tmp_path / "run.log"
    result = run_cli(
        "--backend", backend, "--timeout", "1", "--log", str(log),
        "--before-kill", _look_at(mark),
        "--", *python_cmd(MARKS_SIGTERM), str(mark),
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 124, result.stderr
    assert mark.exists()  # the kill still came
    looked = result.report["before_kill"]
    assert looked["returncode"] == 0 and not looked["timed_out"]
    assert looked["output"].startswith("not-signalled\n")
    assert "time.sleep(40)" in looked["output"]
    in_cgroup = looked["output"].split("cgroup=[", 1)[1].split("]", 1)[0]
    assert (in_cgroup == "") == (backend == "plain")
    kinds = [event["kind"] for event in result.report["events"]]
    assert kinds[:2] == ["timeout", "before-kill"]
    for where in (result.stderr, log.read_text()):
        assert "tiered-run: before-kill: sh -c" in where
        assert "not-signalled" in where
        assert "tiered-run: before-kill: end of output" in where


def test_a_look_that_hangs_is_killed_and_the_run_still_ends(tmp_path):
    result = run_cli(
        "--timeout", "0.5", "--before-kill", "sh -c 'echo looking; exec sleep 50'",
        "--", "sleep", "30",
        tmp_path=tmp_path, quiet=True,
    )  # fmt: skip
    assert result.returncode == 124
    looked = result.report["before_kill"]
    assert looked["timed_out"] and looked["returncode"] is None
    assert looked["output"] == "looking\n"
    assert "killed after" in result.stderr and "its time limit" in result.stderr


def test_a_look_that_cannot_start_does_not_stop_the_kill(tmp_path):
    result = run_cli(
        "--timeout", "0.5", "--before-kill", "/nonexistent/py-spy dump --pid {pid}",
        "--", "sleep", "30",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 124
    looked = result.report["before_kill"]
    assert looked["error"] and looked["returncode"] is None
    assert "could not be started" in result.stderr


def test_nothing_is_run_for_a_run_that_ends_by_itself(tmp_path):
    mark = tmp_path / "looked"
    result = run_cli(
        "--timeout", "30", "--before-kill", f"touch {mark}", "--", "true", tmp_path=tmp_path
    )
    assert result.returncode == 0
    assert result.report["before_kill"] is None
    assert not mark.exists()
    assert "before-kill" not in result.stderr


def test_placeholders_are_filled_argument_by_argument():
    template = ("py-spy", "dump", "--pid", "{pid}", "--", "{cgroup}/x", "{{literal}}")
    assert expand(template, 42, "/sys/fs/cgroup/run") == (
        "py-spy", "dump", "--pid", "42", "--", "/sys/fs/cgroup/run/x", "{literal}",
    )  # fmt: skip
    assert expand(("{cgroup}",), 42, None) == ("",)


def test_a_hurried_end_cuts_the_look_short():
    hurry = threading.Event()
    threading.Timer(0.2, hurry.set).start()
    looked = look(("sleep", "30"), hurry, limit_s=30)
    assert looked.returncode is None and not looked.timed_out
    assert "to hurry the end" in looked.summary()


def test_long_output_is_cut_and_said_to_be(tmp_path):
    looked = look(("sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"))
    assert looked.truncated and looked.returncode == 0
    assert len(looked.output) == 64 * 1024
    assert "(cut)" in looked.summary()


def test_the_report_keeps_the_look_through_json(tmp_path):
    hook = BeforeKill(("echo", "hi"), 0, 0.01, "hi\n")
    data = {"command": ["true"], "outcome": "timeout", "before_kill": hook.to_dict()}
    base = {
        "run_id": "r", "tier": None, "backend": "plain", "backend_reason": "", "exit_code": 124,
        "returncode": None, "signal": None, "message": "", "started_at": "", "wall_s": 1.0,
        "cpu_s": None, "peak_memory_bytes": None, "peak_memory_source": None,
        "peak_tasks": None, "cpus": [0], "cpus_seen": None, "leftover_killed": 0,
        "limits": {}, "enforced_by_kernel": [], "memory_high_exceeded": False, "host": None,
        "log": None,
    }  # fmt: skip
    report = RunReport.from_dict({**base, **data})
    assert report.before_kill == hook
    assert report.to_dict()["before_kill"]["command"] == ["echo", "hi"]
