"""tiered-run's own output (events, table, report, log) can fail in every way a pipeline or
a CI runner makes it fail; enforcement and the exit code never depend on it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import gone, guard_argv, run_cli
from workloads import PY

from tiered_run.backends.plain import PlainBackend
from tiered_run.engine.supervisor import Supervisor
from tiered_run.model.report import Outcome
from tiered_run.model.spec import Limits, RunSpec

HOLD_5_MIB = "import time; x = b'1' * (5 << 20); time.sleep(12)"
EXIT_3 = "import sys; sys.exit(3)"
MEMORY_HOG = "x = [b'1' * (50 << 20) for _ in range(40)]"
FORK_STORM = (
    "import os, time\n"
    "for _ in range(300):\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError:\n"
    "        break\n"
    "    if pid == 0:\n"
    "        time.sleep(20)\n"
    "        os._exit(0)\n"
    "time.sleep(20)\n"
)


def run_into_closed_pipe(args: list[str], tmp_path: Path, timeout: float = 60) -> int:
    """Run tiered-run with stdout and stderr on a pipe nobody reads (`2>&1 | true`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return run_cli(
            *args, command=None, report=False, stdout=write_end, stderr=write_end, timeout=timeout
        ).returncode
    finally:
        os.close(write_end)


def test_events_to_a_closed_pipe_do_not_switch_off_the_timeout(tmp_path):
    """`tiered-run -v --memory-high ... --timeout 2 -- ... 2>&1 | true`: the event printed
    on the broken pipe used to kill the monitor thread, and the timeout with it."""
    code = run_into_closed_pipe(
        ["-v", "--memory-high", "1M", "--timeout", "2", "--", PY, "-c", HOLD_5_MIB], tmp_path
    )
    assert code == 124


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--timeout", "1", "--", "sleep", "5"], 124),
        (["--memory", "100M", "--", PY, "-c", MEMORY_HOG], 122),
        (["--tasks-max", "20", "--", PY, "-c", FORK_STORM], 123),
        (["--", PY, "-c", EXIT_3], 3),
    ],
    ids=["timeout", "memory", "tasks", "own code"],
)
def test_exit_code_stands_when_stdout_and_stderr_are_gone(args, code, tmp_path):
    assert run_into_closed_pipe(args, tmp_path) == code


def test_exit_code_stands_with_stderr_closed(tmp_path):
    """`tiered-run ... 2>&-`: nothing to print to, nothing opened later takes fd 2, and the
    workload finds its stderr closed, as it would without tiered-run."""
    script = ["sh", "-c", "echo to-stdout; echo to-stderr >&2"]
    results = []
    for argv in (script, guard_argv("--timeout", "5", "--", *script)):
        out = tmp_path / f"out-{len(results)}.txt"
        with out.open("wb") as stdout:
            proc = subprocess.run(
                argv, stdout=stdout, cwd=tmp_path, preexec_fn=lambda: os.close(2), timeout=60
            )
        results.append((proc.returncode, out.read_text()))
    direct, guarded = results
    assert direct[0] != 0  # the shell could not write to the closed stderr
    assert guarded == direct == (direct[0], "to-stdout\n")


def test_output_to_a_closed_stdout_keeps_the_exit_code(tmp_path):
    """`tiered-run tiers | true`: no traceback, no "Exception ignored", no exit 1 or 120."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = run_cli("tiers", command=None, report=False, stdout=write_end, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 0
    assert proc.stderr == ""


class BrokenCounters(PlainBackend):
    """A backend whose counters fail after a few samples, as a vanished cgroup file would."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0

    def sample(self):
        self.samples += 1
        if self.samples > 3:
            raise RuntimeError("counter file vanished")
        return super().sample()


def test_a_failing_monitor_ends_the_run_as_an_error(tmp_path):
    pid_file = tmp_path / "sleep.pid"
    spec = RunSpec(
        command=("sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"),
        limits=Limits(cpus=tuple(sorted(os.sched_getaffinity(0)))),
    )
    report = Supervisor(spec, BrokenCounters(), "test", None).run()
    assert report.outcome is Outcome.ERROR
    assert report.exit_code == 125
    assert "counter file vanished" in report.message
    assert gone(int(pid_file.read_text()))  # it was ended, not left to run to its end


@pytest.mark.parametrize("path", ["/proc/x.log", "/nonexistent-dir/x.log"])
def test_log_that_cannot_be_opened_is_refused_before_the_start(path, tmp_path):
    marker = tmp_path / "started"
    proc = run_cli("--log", path, "--", "touch", str(marker), command=None, report=False, text=True)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tiered-run: error: --log")
    assert not marker.exists()


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs: a log on it fills up after 64 KiB."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_log_on_a_full_disk_is_a_warning_and_output_still_flows(full_disk, tmp_path):
    """The tee thread died on ENOSPC, the pipe stopped being drained, and the workload
    blocked until the timeout (or for ever without one)."""
    report = tmp_path / "r.json"
    lines = 'import sys\nfor i in range(20000): print("line", i)\nprint("end", file=sys.stderr)'
    args = ["--log", str(full_disk / "out.log"), "--timeout", "30"]
    proc = run_cli(*args, "--", PY, "-c", lines, command=None, report=report)
    assert proc.returncode == 0
    assert proc.stdout.count(b"\n") == 20000
    assert "end" in proc.stderr
    data = json.loads(report.read_text())
    assert data["outcome"] == "exited"
    assert any("log stopped" in warning for warning in data["warnings"])


def test_log_and_head_end_like_tee(tmp_path):
    """`tiered-run --log out.txt -- yes | head -1` never ended (the log grew past 1 GiB);
    with `tee` it ends at once. Here the producer stops by itself after 21 MB."""
    log, report = tmp_path / "out.txt", tmp_path / "r.json"
    guarded = " ".join(
        guard_argv("--log", str(log), "--report", str(report), "--", "seq", "3000000")
    )
    pipeline = subprocess.run(
        ["sh", "-c", f"{guarded} | head -1"], capture_output=True, cwd=tmp_path, timeout=60
    )
    assert pipeline.stdout == b"1\n"
    assert json.loads(report.read_text())["signal_name"] == "SIGPIPE"
    assert log.stat().st_size < 8 << 20  # what was read before head went away, no more


def into_head(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, bytes]:
    """Run `tiered-run ARGS | head -1`; returns the process once head has gone, and its
    stderr."""
    read_end, write_end = os.pipe()
    proc = run_cli(
        *args, command=None, report=False, wait=False, stdout=write_end, stderr=subprocess.PIPE
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as head:
        assert head.readline() == b"line 0\n"
    _, stderr = proc.communicate(timeout=30)
    return proc, stderr


def test_600_line_producer_into_head_ends(tmp_path):
    producer = "i=0; while [ $i -lt 600 ]; do echo line $i; i=$((i+1)); done"
    proc, _ = into_head(["--log", "out.txt", "--", "sh", "-c", producer], tmp_path)
    # It ends either way: all of it fitted in the pipes before head went away (0), or a
    # write came after and met the closed pipe (SIGPIPE), as with `tee`.
    assert proc.returncode in (0, 128 + 13)


def test_endless_producer_into_head_gets_sigpipe_and_stderr_still_flows(tmp_path):
    log, report = tmp_path / "out.txt", tmp_path / "r.json"
    # Stops by itself after ~27 MB, should the pipe never break.
    producer = "echo started >&2; i=0; while [ $i -lt 2000000 ]; do echo line $i; i=$((i+1)); done"
    args = ["--log", str(log), "--report", str(report), "--", "sh", "-c", producer]
    proc, stderr = into_head(args, tmp_path)
    data = json.loads(report.read_text())
    # The producer met the closed pipe as it would have without tiered-run in between.
    assert (data["outcome"], data["signal_name"]) == ("signal", "SIGPIPE")
    assert proc.returncode == 128 + 13
    assert log.read_bytes().startswith(b"line 0\n")
    assert b"started" in stderr
    assert any("stdout went away" in warning for warning in data["warnings"])


def test_log_keeps_the_order_of_stdout_and_stderr_on_one_terminal(tmp_path):
    """With `2>&1` (or a terminal) both streams are one file: the log and the output keep
    the order the workload wrote in; two pipes reordered them."""
    log = tmp_path / "out.log"
    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done"
    with (tmp_path / "both.txt").open("wb") as both:
        proc = run_cli(
            "--log", str(log), "--", "sh", "-c", script,
            command=None, report=False, stdout=both, stderr=subprocess.STDOUT,
        )  # fmt: skip
    assert proc.returncode == 0
    expected = "".join(f"out{i}\nerr{i}\n" for i in range(1, 6))
    assert log.read_text() == expected
    assert (tmp_path / "both.txt").read_text().startswith(expected)


def test_full_disk_warning_counts_every_byte_written(full_disk, tmp_path):
    log, report = full_disk / "out.log", tmp_path / "r.json"
    lines = "for i in range(20000): print('line', i)"
    proc = run_cli("--log", str(log), "--", PY, "-c", lines, command=None, report=report)
    assert proc.returncode == 0
    warning = next(w for w in json.loads(report.read_text())["warnings"] if "log stopped" in w)
    assert f"after {log.stat().st_size} bytes" in warning


# Writes of odd sizes, some far larger than the 1 MiB pipe, with every byte value.
MIXED_OUTPUT = (
    "import os, sys\n"
    "data = bytes(range(256)) * 20000\n"
    "at = 0\n"
    "for size in (1, 7, 65536, 3 << 20, 4095, 1 << 20, 300000):\n"
    "    os.write(1, data[at:at + size]); at += size\n"
    "os.write(2, b'err' * 1000)\n"
)


def _mixed_expected() -> bytes:
    data = bytes(range(256)) * 20000
    sizes = (1, 7, 65536, 3 << 20, 4095, 1 << 20, 300000)
    return data[: sum(sizes)]


@pytest.mark.parametrize("stdout_kind", ["file", "appended file", "pipe"])
def test_log_and_stdout_get_every_byte_whatever_stdout_is(tmp_path, stdout_kind):
    """The kernel moves the bytes where it can (tee and splice) and Python copies them where
    it cannot (a file opened for appending takes no splice): the log and our stdout get
    the same bytes, in order, either way."""
    log, out = tmp_path / "out.log", tmp_path / "stdout"
    expected = _mixed_expected()
    args = ["--log", str(log), "--", PY, "-c", MIXED_OUTPUT]
    if stdout_kind == "pipe":
        proc = run_cli(*args, command=None, report=False, stdout=subprocess.PIPE)
        got = proc.stdout
    else:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if stdout_kind == "appended file" else 0)
        fd = os.open(out, flags, 0o600)
        try:
            proc = run_cli(*args, command=None, report=False, stdout=fd)
        finally:
            os.close(fd)
        got = out.read_bytes()
    assert proc.returncode == 0
    assert got == expected
    # stdout and stderr are two files here: the log has each stream's bytes in order.
    logged = log.read_bytes()
    assert logged.replace(b"err" * 1000, b"", 1) == expected
    assert b"err" * 1000 in logged
