"""Bad input is refused before anything runs: exit 125, one line naming problem and fix."""

from __future__ import annotations

import functools
import os
import sys

import pytest
from conftest import ONLINE_CPUS, run_cli

tiered_run = functools.partial(run_cli, command=None, report=False, text=True)


def touch_cmd(marker) -> list[str]:
    return ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"]


BAD = {
    "unknown tier": (["--tier", "nope"], "unknown tier 'nope'", "known tiers: batch, system, user"),
    "CPUs not online": (["--cpus", "4000"], "not online", "online:"),
    "malformed CPU list": (["--cpus", "3-1"], "runs backwards", "--cpus"),
    "malformed size": (["--memory", "2X"], "malformed size", "300M"),
    "malformed duration": (["--timeout", "5x"], "malformed duration", "1.5s"),
    "negative duration": (["--kill-after", "-1"], "negative", "--kill-after"),
    "protected tier": (["--tier", "system"], "protected", "another --tier"),
    "unknown user": (["--user", "no-such-user-xyz"], "unknown user", "getent"),
    "unknown backend": (["--backend", "docker"], "docker", "--backend"),
    "soft above hard": (["--memory", "1G", "--memory-high", "2G"], "soft ceiling", "--memory"),
    "bad env": (["--env", "NOEQUALS"], "KEY=VALUE", "--env"),
    "missing config": (["--config", "/nonexistent/x.toml"], "does not exist", "--config"),
    "report dir missing": (["--report", "/nonexistent/r.json"], "does not exist", "--report"),
    "junit dir missing": (["--junit", "/nonexistent/j.xml"], "does not exist", "--junit"),
    "log dir missing": (["--log", "/nonexistent/run.log"], "does not exist", "--log"),
    "memory in bytes": (["--memory", "100"], "did you mean 100M?", "--memory"),
    "memory fraction": (["--memory", "1.5"], "fraction of a byte", "--memory"),
    "memory beyond any machine": (["--memory", "9" * 310], "too large", "--memory"),
    "memory above this machine": (["--memory", "1P"], "above this machine", "--memory"),
    "huge CPU range": (["--cpus", "0-5000000"], "8191", "--cpus"),
    "huge timeout": (["--timeout", "1e300"], "malformed duration", "--timeout"),
    "unknown placeholder": (["--before-kill", "dump {tid}"], "{tid}", "{pid} or {cgroup}"),
    "unbalanced quote": (["--before-kill", "sh -c 'dump"], "No closing quotation", "--before-kill"),
    "empty before-kill": (["--before-kill", " "], "expected a command", "--before-kill"),
    "timeout over a year": (["--timeout", "400d"], "365d", "--timeout"),
    "nan load": (["--load-max", "nan"], "from 0", "--load-max"),
    "nan pressure": (["--pressure-max", "nan"], "to 100", "--pressure-max"),
    "huge interval": (["--interval", "1e10"], "--interval", "too long"),
    "interval over a minute": (["--interval", "2min"], "at most 1 min", "--interval"),
    "zero interval": (["--interval", "0"], "above 0", "--interval"),
    "tasks above the kernel": (["--tasks-max", "99999999"], "4194304", "--tasks-max"),
    "report to stdout": (["--report", "-"], "mix the JSON report", "--report run.json"),
    "env key with NUL-free =": (["--env", "=1"], "KEY=VALUE", "--env"),
}
if len(ONLINE_CPUS) > 1:  # the built-in system tier is protected only where there are 2+ CPUs
    BAD["protected CPU"] = (["--cpus", "0"], "protected tier 'system'", "--allow-protected-cpus")


# Without root, --user is refused as needing root before the name is looked up.
AS_ROOT = {"unknown user"}


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, marks=[pytest.mark.root] if case in AS_ROOT else []) for case in BAD],
    ids=list(BAD),
)
def test_bad_input_exits_125_with_one_line_and_starts_nothing(case, tmp_path):
    args, *needles = BAD[case]
    marker = tmp_path / "started"
    proc = tiered_run(*args, *touch_cmd(marker), cwd=tmp_path)
    assert proc.returncode == 125, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    message = lines[-1]
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    assert message.startswith("tiered-run: error: "), message
    assert not marker.exists()
    assert proc.stdout == ""


def test_missing_command_is_a_usage_error(tmp_path):
    proc = tiered_run("--timeout", "8", cwd=tmp_path)
    assert proc.returncode == 125
    assert "no command given" in proc.stderr and "--" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_user_option_refused_when_not_root(unprivileged):
    marker = unprivileged / "started"
    proc = tiered_run("--user", "root", "--", "sh", "-c", f"touch {marker}", unprivileged=True)
    assert proc.returncode == 125, proc.stderr
    assert "needs root" in proc.stderr
    assert not marker.exists()


def test_config_errors_name_the_file_and_key(tmp_path):
    config = tmp_path / "tiered-run.toml"
    config.write_text('[tiers.fast]\ncpus = "0"\nmemroy = "1G"\n')
    proc = tiered_run("--tier", "fast", "--", "true", cwd=tmp_path)
    assert proc.returncode == 125
    assert str(config) in proc.stderr and "memroy" in proc.stderr and "tiers.fast" in proc.stderr


def test_tier_whose_cpus_this_machine_lacks_is_refused(tmp_path):
    config = tmp_path / "tiered-run.toml"
    config.write_text(f'[tiers.big]\ncpus = "{max(ONLINE_CPUS) + 1}-{max(ONLINE_CPUS) + 16}"\n')
    proc = tiered_run("--tier", "big", "--", "true", cwd=tmp_path)
    assert proc.returncode == 125
    assert "tier 'big'" in proc.stderr and "not online" in proc.stderr


@pytest.mark.parametrize(
    ("command", "code"),
    [("/nonexistent/program", 127), ("plain-file", 126)],
    ids=["not found", "not executable"],
)
def test_commands_that_cannot_start_exit_like_a_shell(command, code, tmp_path):
    (tmp_path / "plain-file").write_text("not a program\n")
    proc = tiered_run("--", os.path.join(tmp_path, command), cwd=tmp_path)
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr
    assert "error" in proc.stderr


def test_tiers_lists_the_resolved_tiers(tmp_path):
    proc = tiered_run("tiers", cwd=tmp_path)
    assert proc.returncode == 0
    for name in ("system", "user", "batch"):
        assert name in proc.stdout
    assert "built-in defaults" in proc.stdout


def test_bad_duration_message_shows_the_forms_systemd_users_type(tmp_path):
    proc = tiered_run("--timeout", "5 apples", "--", "true", cwd=tmp_path)
    assert proc.returncode == 125
    assert "e.g. 8, 1.5s, 500ms, 5min, 1h 30m, 1d" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("duration", ["5min", "30sec", "1h 30m", "1d", "500ms", "1h30m"])
def test_systemd_style_durations_are_accepted(duration, tmp_path):
    marker = tmp_path / "started"
    proc = tiered_run("-q", "--timeout", duration, *touch_cmd(marker), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


def test_a_subcommand_after_global_options_is_that_subcommand(tmp_path):
    # `tiered-run --config mine.toml tiers` ran a program called tiers (exit 127).
    config = tmp_path / "mine.toml"
    config.write_text(f'[tiers.mine]\ncpus = "{ONLINE_CPUS[-1]}"\n')
    proc = tiered_run("--config", str(config), "tiers", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "mine" in proc.stdout and str(config) in proc.stdout


def test_double_dash_still_ends_the_options_before_a_program_named_like_a_subcommand(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "tiers"
    program.write_text("#!/bin/sh\necho program-called-tiers\n")
    program.chmod(0o755)
    proc = tiered_run(
        "-q", "--timeout", "5", "--", "tiers", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "program-called-tiers\n"


def test_an_option_value_that_looks_like_a_subcommand_stays_a_value(tmp_path):
    proc = tiered_run("--tier", "tiers", "--", "true", cwd=tmp_path)
    assert proc.returncode == 125
    assert "unknown tier 'tiers'" in proc.stderr


def test_a_run_option_before_a_subcommand_that_lacks_it_is_one_usage_error(tmp_path):
    proc = tiered_run("--timeout", "5", "tiers", cwd=tmp_path)
    assert proc.returncode == 125
    assert "--timeout" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
