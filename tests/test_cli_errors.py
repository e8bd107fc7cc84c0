"""Bad input is refused before anything runs: exit 125, one line naming problem and fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ONLINE_CPUS
from workloads import PY


def tiered_run(*args: str, cwd, user: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "tiered_run", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        user=user,
        timeout=60,
    )


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
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
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
    assert message.lower().startswith(("tiered-run: error", "error:")), message
    assert not marker.exists()
    assert proc.stdout == ""


def test_missing_command_is_a_usage_error(tmp_path):
    proc = tiered_run("--timeout", "8", cwd=tmp_path)
    assert proc.returncode == 125
    assert "no command given" in proc.stderr and "--" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user first")
def test_user_option_refused_when_not_root(tmp_path):
    tmp_path.chmod(0o777)
    marker = tmp_path / "started"
    try:
        proc = tiered_run(
            "--user", "root", "--", "sh", "-c", f"touch {marker}", cwd=tmp_path, user="nobody"
        )
    except PermissionError:
        pytest.skip(f"{PY} is not executable by nobody")
    if "No module named" in proc.stderr:
        pytest.skip("this Python install is not readable by nobody")
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
