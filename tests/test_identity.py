"""`--user`: the workload gets what `su - NAME` gives, never root's environment."""

from __future__ import annotations

import functools
import os
import pwd

import pytest
from conftest import run_cli

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.config import parse_config
from tiered_run.inputs.identity import login_environment, login_path, resolve_user
from tiered_run.inputs.plan import RunOptions, plan_run
from tiered_run.model.spec import UserSpec

NOBODY = pwd.getpwnam("nobody")
root_only = pytest.mark.root(reason="--user needs root")
SECRETS = {
    "MY_SECRET_TOKEN": "s3cr3t",
    "AWS_SECRET_ACCESS_KEY": "aws-s3cr3t",
    "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
    "PATH": "/root/secret-bin:/usr/bin:/bin",
}
HOST = Machine(cpus=(0, 1), memory_total=8 << 30)
ALICE = UserSpec("alice", 1001, 1001, (1001,), "/home/alice", "/bin/bash")


tiered_run = functools.partial(run_cli, command=None, report=False, quiet=True, text=True)


def workload_env(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


# -- the environment, as the workload sees it --------------------------------------------


@root_only
def test_root_secrets_do_not_reach_a_user_workload(tmp_path):
    proc = tiered_run("--user", "nobody", "--cwd", "/", "--", "env", cwd=tmp_path, env=SECRETS)

    assert proc.returncode == 0, proc.stderr
    env = workload_env(proc.stdout)
    for name, value in SECRETS.items():
        assert value not in proc.stdout, name
    assert "MY_SECRET_TOKEN" not in env and "SSH_AUTH_SOCK" not in env
    assert env["USER"] == env["LOGNAME"] == "nobody"
    assert env["HOME"] == NOBODY.pw_dir
    assert env["PATH"] == login_path(NOBODY.pw_uid)


@root_only
def test_env_option_wins_over_the_login_environment(tmp_path):
    proc = tiered_run(
        "--user", "nobody", "--cwd", "/", "--env", "HOME=/srv/build", "--env", "PATH=/opt/bin",
        "--", "/usr/bin/env", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    env = workload_env(proc.stdout)
    assert env["HOME"] == "/srv/build"
    assert env["PATH"] == "/opt/bin"


@root_only
def test_preserve_env_copies_only_the_named_variables(tmp_path):
    proc = tiered_run(
        "--user", "nobody", "--cwd", "/", "--preserve-env", "LANG,CI", "--preserve-env", "TZ",
        "--", "env", cwd=tmp_path, env={**SECRETS, "LANG": "C.UTF-8", "CI": "1", "TZ": "UTC"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    env = workload_env(proc.stdout)
    assert (env["LANG"], env["CI"], env["TZ"]) == ("C.UTF-8", "1", "UTC")
    assert "MY_SECRET_TOKEN" not in env


@root_only
def test_a_numeric_uid_is_accepted(tmp_path):
    proc = tiered_run("--user", str(NOBODY.pw_uid), "--cwd", "/", "--", "id", "-un", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "nobody"


@root_only
def test_verbose_says_which_config_and_environment_without_values(tmp_path):
    proc = tiered_run(
        "-v", "--user", "nobody", "--cwd", "/", "--env", "HOME=/x", "--", "true",
        cwd=tmp_path, env=SECRETS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "config: built-in defaults" in proc.stderr
    assert "su - nobody" in proc.stderr and "--env sets HOME" in proc.stderr
    assert "s3cr3t" not in proc.stderr and "/x" not in proc.stderr


# -- an empty user is refused, wherever it comes from -------------------------------------


def test_empty_user_on_the_command_line_is_refused(tmp_path):
    marker = tmp_path / "started"
    proc = tiered_run("--user", "", "--", "touch", str(marker), cwd=tmp_path)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and "--user: empty value" in proc.stderr
    assert not marker.exists()


def test_empty_user_in_a_tier_is_refused():
    config = parse_config({"tiers": {"t": {"user": ""}}}, HOST, "c.toml")
    with pytest.raises(UsageError, match=r"tier 't' \(from c.toml\): user: empty user name"):
        plan_run(("true",), RunOptions(tier="t"), config, HOST)


def test_empty_user_in_a_ladder_is_refused_before_any_step(tmp_path):
    ladder = tmp_path / "l.toml"
    marker = tmp_path / "started"
    ladder.write_text(
        f'[[step]]\nname = "a"\ncommand = ["touch", "{marker}"]\n'
        '[[step]]\nname = "b"\nuser = ""\ncommand = "true"\n'
    )
    proc = run_cli(str(ladder), command="ladder", report=False, text=True)
    assert proc.returncode == 125
    assert 'step 2 "b"' in proc.stderr and "empty user name" in proc.stderr
    assert not marker.exists()


def test_preserve_env_without_a_user_is_refused():
    config = parse_config({}, HOST, "c.toml")
    with pytest.raises(UsageError, match="only applies with --user"):
        plan_run(("true",), RunOptions(preserve_env=("LANG",)), config, HOST)


@root_only
def test_unknown_uid_is_refused():
    free = next(uid for uid in range(64000, 65000) if not _has_uid(uid))
    with pytest.raises(UsageError, match=f"no account has uid {free}"):
        resolve_user(str(free))


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@root_only
def test_groups_are_resolved_like_initgroups():
    user = resolve_user("daemon")
    entry = pwd.getpwnam("daemon")
    assert set(user.groups) == set(os.getgrouplist("daemon", entry.pw_gid))
    assert entry.pw_gid in user.groups


# -- building the environment (pure) ------------------------------------------------------


def test_login_environment_is_su_dash_plus_preserved_plus_env(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("ENV_SUPATH\tPATH=/sbin:/bin\nENV_PATH   PATH=/usr/bin:/bin\n")
    caller = {"TERM": "xterm", "LANG": "C", "MY_SECRET_TOKEN": "x", "HOME": "/root"}

    env = login_environment(ALICE, caller, ("LANG", "MISSING"), {"HOME": "/work"}, defs)

    assert env == {
        "TERM": "xterm",
        "HOME": "/work",
        "SHELL": "/bin/bash",
        "USER": "alice",
        "LOGNAME": "alice",
        "PATH": "/usr/bin:/bin",
        "LANG": "C",
    }


def test_login_path_reads_login_defs_and_falls_back_like_su(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("# ENV_PATH PATH=/commented\nENV_SUPATH /sbin:/bin\n")
    assert login_path(0, defs) == "/sbin:/bin"
    assert login_path(1000, defs) == "/usr/local/bin:/usr/bin:/bin"
    assert login_path(1000, tmp_path / "missing") == "/usr/local/bin:/usr/bin:/bin"
