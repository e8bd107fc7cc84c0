"""Signals to tiered-run are handled the same way whenever they come: before the run,
during it, and while its report is being written; ignored ones stay ignored."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time

import pytest
from conftest import run_cli, wait_for
from workloads import PY

# Late enough for the interpreter to be up (before that, Python's own defaults apply),
# early enough to fall into option parsing, imports and the run's set-up.
EARLY = [0.08, 0.15, 0.3, 0.5]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
@pytest.mark.parametrize("delay", EARLY)
def test_signal_in_the_first_instants_still_gives_a_report(sig, delay, tmp_path):
    report = tmp_path / "r.json"
    proc = run_cli(
        "--", "sleep", "10", command=None, report=report, wait=False, stderr=subprocess.PIPE
    )
    time.sleep(delay)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, stderr
    assert b"Traceback" not in stderr and b"Aborted" not in stderr
    data = json.loads(report.read_text())
    assert data["outcome"] == "interrupted"
    assert data["exit_code"] == 128 + sig


def test_signal_ignored_by_the_caller_stays_ignored(tmp_path):
    """`nohup tiered-run -- sleep 3` survived SIGHUP only without tiered-run."""
    proc = run_cli(
        "--", "sleep", "2",
        command=None, report=False, wait=False,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    time.sleep(0.7)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 0


def test_signal_while_the_report_is_written_keeps_the_report_and_its_code(tmp_path):
    """A report target that blocks (a FIFO whose reader is there but does not read yet): a
    signal then used to kill tiered-run with another exit status and lose the report."""
    fifo = tmp_path / "report.fifo"
    with _full_fifo(fifo) as (reader, filled):
        proc = run_cli(
            "--", PY, "-c", "import sys; sys.exit(3)",
            command=None, report=fifo, wait=False, stderr=subprocess.PIPE,
        )  # fmt: skip
        # The run is over once the workload is gone; tiered-run then waits for room.
        assert wait_for(lambda: _blocked_in(proc.pid, WRITE), within=20)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        received = _drain(reader, proc)
    assert proc.wait(timeout=30) == 3
    data = json.loads(received[filled:])
    assert data["outcome"] == "exited" and data["exit_code"] == 3


def test_second_signal_ends_a_blocked_report_write_with_the_runs_code(tmp_path):
    fifo = tmp_path / "report.fifo"
    with _full_fifo(fifo):
        proc = run_cli(
            "--", PY, "-c", "import sys; sys.exit(3)",
            command=None, report=fifo, wait=False, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert wait_for(lambda: _blocked_in(proc.pid, WRITE), within=20)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 3


@contextlib.contextmanager
def _full_fifo(path):
    """A FIFO with a reader (us) and no room left in it: (our descriptor, bytes in it)."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    filled = 0
    try:
        with contextlib.suppress(BlockingIOError):
            while True:
                filled += os.write(fd, b" " * 4096)
        yield fd, filled
    finally:
        os.close(fd)


def _drain(fd: int, proc: subprocess.Popen) -> bytes:
    """Everything in the FIFO until `proc` is done writing to it."""
    data = b""
    while True:
        done = proc.poll() is not None
        try:
            while chunk := os.read(fd, 65536):
                data += chunk
        except BlockingIOError:
            pass
        if done:
            return data
        time.sleep(0.01)


def test_sigterm_between_ladder_steps_stops_the_ladder(tmp_path):
    ladder = tmp_path / "l.toml"
    ladder.write_text(
        '[[step]]\nname = "one"\ncommand = "sleep 1"\n'
        '[[step]]\nname = "two"\ncommand = "sleep 1"\n'
        '[settle]\nload_max = 0.0\ntimeout = "30s"\ninterval = "0.2s"\n'
    )
    report = tmp_path / "r.json"
    proc = run_cli(str(ladder), command="ladder", report=report, wait=False, stderr=subprocess.PIPE)
    time.sleep(1.5)  # in the settle wait: load 0.0 is never reached
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    data = json.loads(report.read_text())
    assert data["outcome"] == "interrupted"


def _blocked_in(pid: int, syscall: int) -> bool:
    """The main thread of `pid` waits in the kernel in `syscall`."""
    try:
        with open(f"/proc/{pid}/syscall") as handle:
            number = handle.read().split()[0]
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state == "S" and number == str(syscall)


WRITE = 1 if os.uname().machine == "x86_64" else 64  # aarch64
