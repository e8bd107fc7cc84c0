"""At a terminal tiered-run behaves like `timeout --foreground`: Ctrl-C reaches the
workload as SIGINT, Ctrl-Z stops the whole tree, the workload can open /dev/tty. Driven
through a real pseudo-terminal; tiered-run is its session leader with it as controlling
terminal, as under a login shell."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import struct
import termios
import threading
import time
from pathlib import Path

import pytest
from conftest import ALL_BACKENDS, SPAWNED, gone, guard_argv, run_cli, wait_for, written_pid
from workloads import DAEMON, PY

from tiered_run.backends.plain import PlainBackend
from tiered_run.model.report import Outcome
from tiered_run.model.spec import Limits, RunSpec

CTRL_C, CTRL_Z = b"\x03", b"\x1a"


class OnTerminal:
    """tiered-run started on a pty; everything it and the workload write is collected."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        raw: bool = False,
        size: tuple[int, int] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`args` for tiered-run, or with `raw` a whole command line (a shell). `size`:
        (rows, columns) of the terminal; without it, 0 x 0 as a fresh pty has. `env`:
        variables set over ours."""
        master, slave = os.openpty()
        if size is not None:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))

        def take_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        on_terminal = {"stdin": slave, "stdout": slave, "stderr": slave, "cwd": cwd}
        if raw:
            self.proc = SPAWNED.popen(args, preexec_fn=take_terminal, **on_terminal)
        else:
            self.proc = run_cli(
                *args,
                command=None,
                report=False,
                wait=False,
                preexec_fn=take_terminal,
                env=env,
                **on_terminal,
            )
        os.close(slave)
        self.master = master
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: every process has closed the terminal
                return
            if not data:
                return
            self.output += data

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_for_output(self, needle: bytes, within: float = 20) -> None:
        assert wait_for(lambda: needle in self.output, within), self.output.decode(errors="replace")

    def finish(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(5)
        os.close(self.master)
        return code


@pytest.fixture
def terminal():
    def start(*args: str, cwd: Path, raw: bool = False) -> OnTerminal:
        return OnTerminal(list(args), cwd, raw)

    return start


def test_workload_can_open_dev_tty(terminal, tmp_path):
    term = terminal("--", PY, "-c", "open('/dev/tty', 'w').write('via-dev-tty\\n')", cwd=tmp_path)
    assert term.finish() == 0
    assert b"via-dev-tty" in term.output


SUMMARY_ON_CTRL_C = """
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda s, f: got.append(s))
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
print("ready", flush=True)
while not got:
    time.sleep(0.01)
time.sleep(0.5)  # a second signal would arrive in here
print("summary: got " + ",".join(signal.Signals(s).name for s in got), flush=True)
sys.exit(2)
"""


def test_ctrl_c_reaches_the_workload_once_as_sigint(terminal, tmp_path):
    report = tmp_path / "r.json"
    term = terminal("--report", str(report), "--", PY, "-c", SUMMARY_ON_CTRL_C, cwd=tmp_path)
    term.wait_for_output(b"ready")
    term.type(CTRL_C)
    assert term.finish() == 130
    assert b"summary: got SIGINT\r\n" in term.output  # SIGINT, once, and not SIGTERM
    assert json.loads(report.read_text())["outcome"] == "interrupted"


def test_ctrl_c_still_ends_setsid_daemons(terminal, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    code = DAEMON + "\nprint('ready', flush=True)\ntime.sleep(30)"
    term = terminal("--kill-after", "0.5", "--", PY, "-c", code, str(pid_file), cwd=tmp_path)
    term.wait_for_output(b"ready")
    daemon = written_pid(pid_file)
    term.type(CTRL_C)
    assert term.finish() == 130
    assert gone(daemon)


COUNTERS = """
import os, sys, time
path = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    path += ".daemon"
for i in range(400):
    with open(path, "a") as f:
        f.write(f"{i}\\n")
    time.sleep(0.05)
"""


def test_ctrl_z_stops_the_whole_tree_and_fg_resumes_it(terminal, tmp_path):
    count, report = tmp_path / "count", tmp_path / "r.json"
    term = terminal(
        "--timeout", "3", "--report", str(report), "--", PY, "-c", COUNTERS, str(count),
        cwd=tmp_path,
    )  # fmt: skip
    daemon = Path(f"{count}.daemon")
    assert wait_for(lambda: count.exists() and daemon.exists())
    term.type(CTRL_Z)
    assert wait_for(lambda: _state(term.proc.pid) == "T"), "tiered-run did not stop"
    time.sleep(0.3)
    sizes = count.stat().st_size, daemon.stat().st_size
    time.sleep(1.5)
    assert (count.stat().st_size, daemon.stat().st_size) == sizes  # nothing ran while stopped
    os.killpg(term.proc.pid, signal.SIGCONT)  # what `fg` does
    assert wait_for(lambda: daemon.stat().st_size > sizes[1]), "the tree did not resume"
    assert term.finish() == 124
    data = json.loads(report.read_text())
    kinds = [event["kind"] for event in data["events"]]
    assert "stopped" in kinds and "continued" in kinds
    # The timeout did not count while the tree was stopped.
    assert data["wall_s"] >= 3 + 1.5


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_signal_option_sends_sigint_once_without_a_terminal(backend, tmp_path):
    """Once: the plain backend sent it to the main process by pid and again by group."""
    proc = run_cli(
        "--backend", backend, "--signal", "INT", "--timeout", "1",
        "--", PY, "-c", SUMMARY_ON_CTRL_C, command=None, report=False,
    )  # fmt: skip
    assert proc.returncode == 124
    assert b"summary: got SIGINT\n" in proc.stdout


STOPPED_WITH_TERM_HANDLER = """
import os, signal, sys
signal.signal(signal.SIGTERM, lambda s, f: (print("term handled", flush=True), sys.exit(0)))
os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_stopped_workload_gets_sigcont_after_the_ending_signal(tmp_path):
    """A stopped process only acts on SIGTERM once continued; without SIGCONT it sat there
    until the SIGKILL after the grace."""
    report = tmp_path / "r.json"
    args = ["--timeout", "1", "--kill-after", "20"]
    proc = run_cli(*args, "--", PY, "-c", STOPPED_WITH_TERM_HANDLER, command=None, report=report)
    assert proc.returncode == 124
    assert b"term handled" in proc.stdout
    data = json.loads(report.read_text())
    assert not any(event["kind"] == "sigkill" for event in data["events"])


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rpartition(")")[2].split()[0]


def test_workloads_own_kill_0_is_not_an_interruption(terminal, tmp_path):
    """At a terminal the workload shares tiered-run's process group, so `kill 0` (as in
    `trap 'kill 0' EXIT`) reaches tiered-run too; it ended the run as interrupted (143)."""
    report = tmp_path / "r.json"
    script = "trap '' TERM; sleep 30 & kill 0; exit 0"
    term = terminal(
        "--kill-after", "0.5", "--report", str(report), "--", "bash", "-c", script, cwd=tmp_path
    )
    assert term.finish() == 0
    data = json.loads(report.read_text())
    assert data["outcome"] == "exited"
    assert any("kill 0" in event["message"] for event in data["events"])


READS_THE_TERMINAL = """
import os, sys, time
path = sys.argv[1]
if os.fork() == 0:  # a daemon that keeps counting unless the whole tree is stopped
    os.setsid()
    for i in range(600):
        with open(path, "a") as f:
            f.write(f"{i}\\n")
        time.sleep(0.05)
    os._exit(0)
time.sleep(0.5)
print("got", sys.stdin.readline().strip(), flush=True)
"""


def test_background_read_from_the_terminal_stops_the_whole_tree(terminal, tmp_path):
    """In the background a read from the terminal sends SIGTTIN to the whole process group:
    tiered-run stopped with it, unsupervised, while daemons of the tree ran on."""
    count, report = tmp_path / "count", tmp_path / "r.json"
    (tmp_path / "reader.py").write_text(READS_THE_TERMINAL)
    shell = terminal("bash", "--norc", "--noprofile", "-i", cwd=tmp_path, raw=True)
    guarded = guard_argv("--timeout", "30", "--report", str(report), "--", PY, "reader.py")
    shell.type(f"{' '.join(guarded)} {count} &\n".encode())
    assert wait_for(lambda: count.exists() and _stopped_job(shell), within=20), shell.output
    time.sleep(0.3)
    size = count.stat().st_size
    time.sleep(1.0)
    assert count.stat().st_size == size  # the daemon is stopped too
    shell.type(b"fg\n")
    time.sleep(0.5)
    shell.type(b"typed-line\n")
    shell.wait_for_output(b"got typed-line")
    shell.type(b"exit\n")
    shell.finish()
    data = json.loads(report.read_text())
    assert data["outcome"] == "exited" and data["exit_code"] == 0
    stops = [e["message"] for e in data["events"] if e["kind"] == "stopped"]
    assert stops and "SIGTTIN" in stops[0]


def _stopped_job(shell: OnTerminal) -> bool:
    """The background job's tiered-run (bash printed `[1] PID`) is stopped."""
    found = re.search(rb"\[1\] (\d+)", shell.output)
    return found is not None and _state(int(found.group(1))) == "T"


def test_sigkill_of_tiered_run_ends_a_plain_tree_at_a_terminal(terminal, tmp_path):
    """At a terminal the workload shares tiered-run's process group, so the watchdog could
    not kill it by group: with the plain backend a setsid'd daemon survived a SIGKILL of
    tiered-run. The watchdog now kills the tree as last sampled."""
    pid_file = tmp_path / "daemon.pid"
    code = DAEMON + "\nprint('ready', flush=True)\ntime.sleep(30)"
    term = terminal(
        "--backend", "plain", "--interval", "0.1", "--", PY, "-c", code, str(pid_file),
        cwd=tmp_path,
    )  # fmt: skip
    term.wait_for_output(b"ready")
    daemon = written_pid(pid_file)
    time.sleep(0.5)  # samples have told the watchdog the tree
    term.proc.kill()
    assert wait_for(lambda: gone(daemon), within=10)


def test_kill_0_that_comes_before_the_spawn_returns_is_still_the_runs_own(monkeypatch):
    """A workload's `kill 0` right after exec reached the signal thread before the spawn
    had returned the main pid, and was taken as an interruption (143): held until the pid
    is known, it is judged like one a second later."""
    from tiered_run.engine import supervisor as supervising
    from tiered_run.host.signals import Received

    real_spawn = supervising.spawn
    runs: list[supervising.Supervisor] = []

    def spawn_then_signalled(*args, **kwargs):
        child = real_spawn(*args, **kwargs)
        runs[0]._on_signal(Received(signal.SIGTERM, sender=child.pid))  # as the thread would
        return child

    monkeypatch.setattr(supervising, "spawn", spawn_then_signalled)
    spec = RunSpec(
        command=("sleep", "0.3"), limits=Limits(cpus=tuple(sorted(os.sched_getaffinity(0))))
    )
    run = supervising.Supervisor(spec, PlainBackend(), "test", None)
    runs.append(run)
    report = run.run()
    assert report.outcome is Outcome.EXITED
    assert report.exit_code == 0
    assert any("not taken as an interruption" in event.message for event in report.events)


def test_log_at_a_terminal_gets_what_the_terminal_shows(terminal, tmp_path):
    """A terminal takes no splice (the log's bytes go through Python to it instead): both
    the terminal and the log get the workload's output, the log byte for byte."""
    log = tmp_path / "out.log"
    code = "import sys\nfor i in range(3000): print('line', i)\nprint('end', file=sys.stderr)"
    term = terminal("-q", "--log", str(log), "--", PY, "-c", code, cwd=tmp_path)
    assert term.finish() == 0
    expected = "".join(f"line {i}\n" for i in range(3000)) + "end\n"
    assert log.read_text() == expected
    assert b"line 2999" in term.output and b"end" in term.output
