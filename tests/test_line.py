"""A command line click would take and a user would not mean: refused in one line, with
nothing started."""

from __future__ import annotations

import pytest
from conftest import run_cli


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--report", "a.json", "--report", "b.json", "--", "touch", "m"], "--report given twice"),
        (["--summary", "a.md", "--summary=b.md", "--", "touch", "m"], "--summary given twice"),
        (["--tier", "", "--", "touch", "m"], "--tier: empty value"),
        (["--tier=", "--", "touch", "m"], "--tier: empty value"),
        (["--cwd", "", "--", "touch", "m"], "--cwd: empty value"),
        (["--config", "", "tiers"], "--config: empty value"),
        (["init", "--system", "--user-config"], "--system and --user-config both given"),
        (["init", "--layout", ""], "--layout: empty value"),
        (["export", "--format", "systemd", "--slices", "--dir", ""], "--dir: empty value"),
        (["ladder", "--report", "a.json", "l.toml", "--report", "b.json"], "--report given"),
        (["history", "--last", "2", "--last", "3"], "--last given twice"),
    ],
)
def test_what_click_would_take_silently_is_refused(args, needle, tmp_path):
    result = run_cli(*args, command=None, report=False, text=True, cwd=tmp_path)
    assert result.returncode == 125, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("tiered-run: error: ") and needle in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing ran, nothing written


def test_the_command_s_own_words_are_its_own(tmp_path):
    """After the command starts (or after --), repeated and empty words are the
    workload's: only tiered-run's options are checked."""
    result = run_cli(
        "--backend", "plain", "--", "sh", "-c", 'echo "$@"', "sh", "--report", "x", "--report", "",
        command=None, report=False, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "--report x --report \n"


def test_options_that_may_repeat_still_do(tmp_path):
    result = run_cli(
        "--backend", "plain", "--env", "A=1", "--env", "B=2", "--", "sh", "-c", "echo $A$B",
        command=None, report=False, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "12\n"
