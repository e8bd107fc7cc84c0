"""Config and ladder files another user could have written are refused, not obeyed: they
decide which account a workload runs as and which commands run."""

from __future__ import annotations

import functools
import os
import pwd
import stat
from pathlib import Path

import pytest
from conftest import Result, run_cli

from tiered_run.inputs.trust import file_problem, path_problem

NOBODY = pwd.getpwnam("nobody")
root_only = pytest.mark.root(reason="the attacks are on a root tiered-run")
BATCH_AS_NOBODY = '[tiers.batch]\nuser = "nobody"\ncpus = "0"\n'


tiered_run = functools.partial(run_cli, command=None, report=False, text=True)


def refused(proc: Result, *needles: str) -> None:
    assert proc.returncode == 125, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tiered-run: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def give_to_nobody(path: Path) -> Path:
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    return path


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A sticky world-writable directory, like /tmp, owned by root."""
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(0o1777)
    return path


def run_id(cwd: Path, *args: str, env: dict[str, str] | None = None):
    """Runs `id -u` in the default tier; refused or run as root, never as nobody."""
    marker = cwd / "started"
    proc = tiered_run(*args, "--", "sh", "-c", f"id -u; touch {marker}", cwd=cwd, env=env)
    return proc, marker


# -- the attack, and its variants ---------------------------------------------


@root_only
def test_a_config_planted_in_a_shared_directory_does_not_move_roots_job(shared):
    config = shared / "tiered-run.toml"
    config.write_text(BATCH_AS_NOBODY)
    give_to_nobody(config)

    proc, marker = run_id(shared)

    refused(proc, str(config), "owned by nobody", "chown root")
    assert not marker.exists()


@root_only
def test_a_world_writable_config_of_roots_is_refused(tmp_path):
    config = tmp_path / "tiered-run.toml"
    config.write_text(BATCH_AS_NOBODY)
    config.chmod(0o666)

    proc, marker = run_id(tmp_path)

    refused(proc, "writable by group or others", f"chmod go-w {config}")
    assert not marker.exists()


@root_only
@pytest.mark.parametrize("how", ["--config", "TIERED_RUN_CONFIG", "HOME"])
def test_every_config_location_is_checked(how, tmp_path):
    home = tmp_path / "home"
    (home / ".config/tiered-run").mkdir(parents=True)
    config = home / ".config/tiered-run/config.toml"
    config.write_text(BATCH_AS_NOBODY)
    give_to_nobody(config)
    args, env = {
        "--config": (("--config", str(config)), None),
        "TIERED_RUN_CONFIG": ((), {"TIERED_RUN_CONFIG": str(config)}),
        "HOME": ((), {"HOME": str(home)}),
    }[how]

    proc, marker = run_id(tmp_path, *args, env=env)

    refused(proc, "owned by nobody")
    assert not marker.exists()


@root_only
def test_a_directory_another_user_owns_makes_the_config_untrusted(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    give_to_nobody(theirs)  # they could swap the file
    config = theirs / "tiered-run.toml"
    config.write_text(BATCH_AS_NOBODY)  # owned by root, 0644

    proc, marker = run_id(theirs)

    refused(proc, f"directory {theirs} is owned by nobody", "move the file")
    assert not marker.exists()


@root_only
def test_a_world_writable_directory_that_is_not_sticky_is_refused(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    (open_dir / "tiered-run.toml").write_text(BATCH_AS_NOBODY)

    proc, _ = run_id(open_dir)

    refused(proc, "writable by group or others (mode 0777)")


@root_only
def test_a_symlink_planted_in_a_sticky_directory_is_not_followed(tmp_path, shared):
    real = tmp_path / "real.toml"
    real.write_text(BATCH_AS_NOBODY)
    link = shared / "tiered-run.toml"
    link.symlink_to(real)
    os.lchown(link, NOBODY.pw_uid, -1)

    proc, marker = run_id(shared)

    refused(proc, "not followed")
    assert not marker.exists()


@root_only
def test_roots_own_config_in_a_sticky_directory_is_read(shared):
    (shared / "tiered-run.toml").write_text('[tiers.mine]\ncpus = "0"\n')

    proc = tiered_run("tiers", cwd=shared)

    assert proc.returncode == 0, proc.stderr
    assert "mine" in proc.stdout and str(shared / "tiered-run.toml") in proc.stdout


@root_only
def test_a_foreign_pyproject_without_our_section_is_not_in_the_way(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    give_to_nobody(project)
    (project / "pyproject.toml").write_text('[project]\nname = "theirs"\n')
    give_to_nobody(project / "pyproject.toml")

    proc = tiered_run("-q", "--", "true", cwd=project)

    assert proc.returncode == 0, proc.stderr


@root_only
def test_a_foreign_pyproject_with_our_section_is_refused(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    pyproject = project / "pyproject.toml"
    pyproject.write_text('[tool.tiered-run.tiers.batch]\nuser = "nobody"\n')
    give_to_nobody(pyproject)

    proc, marker = run_id(project)

    refused(proc, "pyproject.toml", "owned by nobody")
    assert not marker.exists()


# -- ladders ----------------------------------------------------------------------------


@root_only
@pytest.mark.parametrize("attack", ["world-writable", "owned by nobody"])
def test_an_untrusted_ladder_runs_no_step(attack, tmp_path):
    marker = tmp_path / "started"
    ladder = tmp_path / "ladder.toml"
    ladder.write_text(f'[[step]]\nname = "a"\ncommand = ["touch", "{marker}"]\n')
    if attack == "world-writable":
        ladder.chmod(0o666)
    else:
        give_to_nobody(ladder)

    proc = tiered_run("ladder", str(ladder), cwd=tmp_path)

    refused(proc, f"ladder file {ladder}")
    assert not marker.exists()


# -- the rule itself (pure), for root and for other users --------------------------------


def fake_stat(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, uid, 10, 0, 0, 0))


@pytest.mark.parametrize(
    ("euid", "owner", "mode", "trusted"),
    [
        (0, 0, 0o644, True),
        (0, 0, 0o664, False),
        (0, 1000, 0o644, False),
        (1000, 1000, 0o644, True),
        (1000, 0, 0o644, True),
        (1000, 1001, 0o644, False),
        (1000, 1001, 0o666, False),
        (1000, 1000, 0o646, False),
    ],
)
def test_whose_files_are_trusted(euid, owner, mode, trusted):
    problem = file_problem("/x.toml", fake_stat(stat.S_IFREG | mode, owner), euid)
    assert (problem is None) == trusted, problem


def test_a_device_or_fifo_is_not_a_config():
    assert "not a regular file" in file_problem("/x", fake_stat(stat.S_IFIFO | 0o600, 0), 0)


def test_path_problem_walks_up_to_the_root(tmp_path):
    assert path_problem(str(tmp_path), os.geteuid()) is None
    os.chmod(tmp_path, 0o777)
    try:
        assert str(tmp_path) in path_problem(str(tmp_path / "."), os.geteuid())
    finally:
        os.chmod(tmp_path, 0o700)
