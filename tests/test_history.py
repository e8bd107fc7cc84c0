"""The local run history: `--history` / `history = true` record, `tiered-run history`
shows the runs and the trend; concurrent runs, a locked or broken database never fail a
run."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from factories import make_report
from workloads import PY

from tiered_run.host.history import record, runs_of
from tiered_run.policy.trend import trend

# Touches as many MiB as the file `size` in the working directory says: one command whose
# peak grows from run to run, as a test suite's does.
GROWING = "x = bytearray(int(open('size').read()) << 20); x[::4096] = b'1' * len(x[::4096])"


@pytest.fixture
def history(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "state" / "history.sqlite3"
    path.parent.mkdir()
    monkeypatch.setenv("TIERED_RUN_HISTORY", str(path))
    return path


def _history(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, command="history", report=False, text=True)


# -- the trend -----------------------------------------------------------------------------


def test_the_trend_is_the_newer_half_against_the_older_half():
    assert trend("peak memory", [100, 100, 118, 118]).change_pct == pytest.approx(18)
    # One odd run moves a median little: the older half is still 100.
    assert trend("peak memory", [100, 500, 100, 100, 100, 100]).change_pct == 0
    assert trend("wall time", [10, None, 10, 5, 5]).change_pct == pytest.approx(-50)
    few = trend("peak memory", [1, 2, 3, None])
    assert few.change_pct is None and "needs 4 runs" in few.describe()
    assert (
        trend("peak memory", [1, 1, 2, 2]).describe() == "peak memory +100 % over the last 4 runs"
    )


# -- recording -----------------------------------------------------------------------------


def _record_many(path: str, count: int, queue) -> None:
    warnings = [record(make_report(wall_s=float(i)), Path(path)) for i in range(count)]
    queue.put([w for w in warnings if w])


def test_concurrent_runs_all_land_and_the_database_stays_whole(tmp_path):
    path = tmp_path / "h" / "history.sqlite3"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    writers = [context.Process(target=_record_many, args=(str(path), 25, queue)) for _ in range(6)]
    for writer in writers:
        writer.start()
    warnings = [queue.get(timeout=60) for _ in writers]
    for writer in writers:
        writer.join(timeout=60)
    assert warnings == [[]] * 6
    assert len(runs_of("make -j4 test", 1000, path)) == 150
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


@pytest.mark.root(reason="guarded runs need root for cgroups here")
def test_history_shows_a_growing_peak_as_a_trend(history, tmp_path):
    for size in (40, 40, 80, 80, 80):
        (tmp_path / "size").write_text(str(size))
        result = run_cli("--history", "--", PY, "-c", GROWING, report=False, text=True)
        assert result.returncode == 0, result.stderr
    shown = _history("--", PY, "-c", GROWING)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("exited (0)") == 5
    line = next(x for x in shown.stdout.splitlines() if x.startswith("peak memory"))
    change = int(line.split()[2])
    assert 50 <= change <= 150, line  # 40 MiB touched, then 80: the peak about doubles
    data = json.loads(_history("--json").stdout)
    (command,) = data["commands"]
    assert len(command["runs"]) == 5 and command["trends"][0]["change_pct"] > 50
    assert _history("--last", "2", "--", PY, "-c", GROWING).stdout.count("exited (0)") == 2


def test_parallel_cli_runs_each_get_their_row(history, tmp_path):
    procs = [
        run_cli("--backend", "plain", "--history", "--", "true", report=False, wait=False)
        for _ in range(4)
    ]
    assert [proc.wait(timeout=60) for proc in procs] == [0] * 4
    assert len(runs_of("true", 100, history)) == 4


def test_config_history_true_records_without_the_flag(history, tmp_path):
    (tmp_path / "tiered-run.toml").write_text("history = true\n")
    assert run_cli("--backend", "plain", "--", "true", report=False).returncode == 0
    assert len(runs_of("true", 10, history)) == 1
    (tmp_path / "tiered-run.toml").write_text('history = "yes"\n')
    refused = run_cli("--backend", "plain", "--", "true", report=False, text=True)
    assert refused.returncode == 125
    assert "history must be true or false" in refused.stderr


# -- a history that cannot take the run ----------------------------------------------------


def _run_with_history(tmp_path: Path):
    report = tmp_path / "r.json"
    result = run_cli(
        "--backend", "plain", "--history", "--", "sh", "-c", "exit 3", report=report, text=True
    )
    return result, json.loads(report.read_text())


def test_a_locked_history_is_a_warning_and_the_code_stands(history, tmp_path):
    record(make_report(), history)  # made
    holder = sqlite3.connect(history, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result, report = _run_with_history(tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 3
    assert "warning: history: not recorded" in result.stderr and "locked" in result.stderr
    assert any("locked" in w for w in report["warnings"])


@pytest.mark.parametrize("kind", ["garbage", "symlink"])
def test_a_broken_or_planted_history_is_a_warning_and_left_alone(kind, history, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    if kind == "garbage":
        history.write_bytes(b"not a database at all" * 100)
    else:
        history.symlink_to(victim)
    result, report = _run_with_history(tmp_path)
    assert result.returncode == 3
    (warning,) = [w for w in report["warnings"] if w.startswith("history: not recorded")]
    assert ("symlink" in warning) if kind == "symlink" else ("not a database" in warning)
    assert victim.read_text() == "precious\n"
    if kind == "garbage":
        shown = _history()
        assert shown.returncode == 125 and len(shown.stderr.strip().splitlines()) == 1


def test_an_empty_history_says_how_to_fill_it(history):
    shown = _history()
    assert shown.returncode == 0
    assert "run with --history" in shown.stdout
    assert not os.path.exists(history)  # reading makes nothing


def test_a_ladder_records_each_step_that_ran(history, tmp_path):
    ladder = tmp_path / "l.toml"
    steps = [("one", "true"), ("two", "false"), ("three", "true")]
    ladder.write_text("".join(f'[[step]]\nname = "{n}"\ncommand = "{c}"\n\n' for n, c in steps))
    result = run_cli(
        str(ladder), "--backend", "plain", "--history", command="ladder", report=False, text=True
    )
    assert result.returncode == 1, result.stderr  # step two fails; three does not run
    assert len(runs_of("true", 10, history)) == 1 and len(runs_of("false", 10, history)) == 1


def test_a_history_in_a_directory_that_is_not_there_is_not_made(tmp_path, monkeypatch):
    """A mistyped TIERED_RUN_HISTORY made a tree from the root down."""
    missing = tmp_path / "no" / "such" / "h.sqlite3"
    monkeypatch.setenv("TIERED_RUN_HISTORY", str(missing))
    result, report = _run_with_history(tmp_path)
    assert result.returncode == 3
    assert any("does not exist" in w for w in report["warnings"])
    assert not (tmp_path / "no").exists()
