"""The live status line: on a terminal a person watches, one line at the bottom redrawn in
place (elapsed/timeout, state, memory/ceiling, tasks, CPU, host load); never without a
terminal, with -q, or in CI; NO_COLOR respected. Driven through a real pseudo-terminal."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from conftest import python_cmd, run_cli
from test_terminal import OnTerminal

from tiered_run.cli.status import StatusLine, _clock
from tiered_run.model.report import Event, TimelinePoint
from tiered_run.model.spec import Limits, OnLoad, RunSpec

pytestmark = pytest.mark.root(reason="guarded runs need root for cgroups here")

ROWS, COLUMNS = 24, 120
WATCHED = {"TERM": "xterm-256color", "CI": "", "NO_COLOR": ""}
REGION = f"\x1b[1;{ROWS - 1}r".encode()  # the rows above the line scroll, the line stays
GIVEN_BACK = b"\x1b[r"
GREEN = b"\x1b[32mrunning"


def on_terminal(tmp_path, *args: str, **env: str) -> OnTerminal:
    return OnTerminal(list(args), tmp_path, size=(ROWS, COLUMNS), env={**WATCHED, **env})


def status_lines(output: bytes) -> list[str]:
    """Every drawing of the line: what is written on the bottom row."""
    drawn = re.findall(rb"\x1b\[%d;1H\x1b\[2K(.*?)\x1b8" % ROWS, output)
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line.decode()) for line in drawn]
    return [line for line in plain if line.startswith("[tiered-run]")]  # not the clearing


def test_the_line_appears_on_a_terminal_and_is_cleared_at_the_end(tmp_path):
    code = "import time; print('working', flush=True); time.sleep(1.5); print('done')"
    term = on_terminal(tmp_path, "--timeout", "20", "--memory", "1G", "--", *python_cmd(code))
    assert term.finish() == 0
    out = term.output
    assert REGION in out and GIVEN_BACK in out
    lines = status_lines(out)
    assert lines, out
    last = lines[-1]
    assert last.startswith("[tiered-run]") and "/20.0s" in last and "running" in last
    assert re.search(r"mem [0-9.]+ [KM]iB/1\.0 GiB", last) and "tasks 1/" in last
    assert "cpu " in last and "load " in last
    assert GREEN in out
    # The workload's output and the summary are there, the summary after the line is gone.
    assert b"working" in out and b"done" in out
    assert out.rindex(GIVEN_BACK) < out.index(b"exit code")


def test_the_line_says_stopping_at_a_breach(tmp_path):
    term = on_terminal(
        tmp_path, "--timeout", "1", "--before-kill", "sleep 0.6", "--", "sleep", "30"
    )
    assert term.finish() == 124
    states = [line.split("  ")[2] for line in status_lines(term.output)]
    assert states[0] == "running" and states[-1] == "stopping"


def test_no_color_keeps_the_line_plain(tmp_path):
    term = on_terminal(tmp_path, "--", "sleep", "0.6", NO_COLOR="1")
    assert term.finish() == 0
    assert status_lines(term.output) and b"\x1b[32m" not in term.output


@pytest.mark.parametrize(
    ("args", "env"),
    [(["-q"], {}), ([], {"CI": "true"}), ([], {"TERM": "dumb"})],
    ids=["quiet", "CI", "dumb terminal"],
)
def test_no_line_with_q_in_ci_or_on_a_dumb_terminal(tmp_path, args, env):
    term = on_terminal(tmp_path, *args, "--", "sleep", "0.6", **env)
    assert term.finish() == 0
    assert REGION not in term.output and not status_lines(term.output)


def test_never_without_a_terminal(tmp_path):
    result = run_cli(
        "--timeout", "5", "--", "sleep", "0.6", tmp_path=tmp_path, env=WATCHED,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0
    assert "\x1b[" not in result.stderr and "[tiered-run]" not in result.stderr


def test_verbose_says_tier_cpus_ceilings_and_backend_at_the_start(tmp_path):
    result = run_cli(
        "-v", "--timeout", "5", "--memory", "1G", "--tasks-max", "64", "--", "true",
        tmp_path=tmp_path,
    )  # fmt: skip
    (start,) = [line for line in result.stderr.splitlines() if "start:" in line]
    assert start.startswith("tiered-run: start: tier batch, CPUs ")
    assert "timeout 5 s" in start and "memory 1.0 GiB" in start and "tasks 64" in start
    assert f"backend {result.report['backend']} (" in start


# -- the line itself, on a pipe instead of a terminal ------------------------------------


class _Size:
    def __init__(self, columns: int = 100, rows: int = 10) -> None:
        self.size = os.terminal_size((columns, rows))

    def __call__(self, _fd: int) -> os.terminal_size:
        return self.size


def _drawn(feed, columns: int = 100, color: bool = False) -> list[str]:
    read_end, write_end = os.pipe()
    now = [100.0]
    status = StatusLine(write_end, color=color, clock=lambda: now[0], size=_Size(columns))
    feed(status, now)
    status.close()
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    drawn = re.findall(rb"\x1b\[10;1H\x1b\[2K(.*?)\x1b8", output)
    return [line.decode() for line in drawn if line.startswith(b"[tiered-run]")]


SPEC = RunSpec(
    ("make",),
    Limits(cpus=(0, 1), timeout=60.0, memory=1 << 30, tasks_max=64, load_max=4.0,
           on_load=OnLoad.PAUSE),
)  # fmt: skip


def test_the_line_follows_samples_and_events():
    def feed(status: StatusLine, now: list[float]) -> None:
        status.start_run(SPEC, " step 2/3")
        status.on_sample(TimelinePoint(0.0, 100 << 20, 3, 0.0, 1.5, None))
        status.on_sample(TimelinePoint(1.0, 900 << 20, 5, 1.5, 5.0, None))
        now[0] += 50
        status.on_event(Event(50.0, "pause", "host load 5.00 above 4"))

    last = _drawn(feed, columns=130)[-1]
    assert last == (
        "[tiered-run] step 2/3  50.0s/1m00s  paused by host load  mem 900.0 MiB/1.0 GiB  "
        "tasks 5/64  cpu 1.50/2  load 5.00/4"
    )


def test_the_line_is_cut_to_the_terminal_and_the_state_kept():
    def feed(status: StatusLine, _now: list[float]) -> None:
        status.start_run(SPEC)
        status.on_sample(TimelinePoint(0.0, 100 << 20, 3, 0.0, 1.5, None))
        status.on_event(Event(0.1, "timeout", "still running"))

    last = _drawn(feed, columns=50)[-1]
    assert len(last) <= 49 and "stopping" in last


def test_a_settle_wait_says_why():
    def feed(status: StatusLine, _now: list[float]) -> None:
        status.waiting('step 1 "a": settle wait 3 s of 60 s: load 5.00 above load_max 2')

    assert _drawn(feed)[-1].endswith("load 5.00 above load_max 2")


def test_durations_are_short():
    assert [_clock(s) for s in (1.25, 65, 3725)] == ["1.2s", "1m05s", "1h02m"]


def test_a_ladder_says_why_it_waits_for_the_host(tmp_path):
    ladder = tmp_path / "ladder.toml"
    ladder.write_text(
        'name = "settle"\n[settle]\nload_max = 0.001\ntimeout = "1s"\n'
        '[[step]]\nname = "quick"\ncommand = ["true"]\n'
    )
    result = run_cli("ladder", str(ladder), command=None, tmp_path=tmp_path)
    (line,) = [line for line in result.stderr.splitlines() if "settle" in line and "wait" in line]
    assert line.startswith('tiered-run: step 1 "quick": waiting up to 1 s for the host to settle: ')
    assert "above load_max 0.001" in line
