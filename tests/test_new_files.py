"""Files written once and never over anything (a config `init` writes): created whole with
the mode asked for, refused where anything already stands, directories made on the way
without following what another user planted."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

import tiered_run.host.outputs as outputs
from tiered_run.errors import UsageError
from tiered_run.host.outputs import write_atomically, write_new
from tiered_run.host.safepath import make_directories

NOBODY = pwd.getpwnam("nobody")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_written_whole_with_the_mode_asked_for(tmp_path):
    old = os.umask(0o077)
    try:
        write_new(tmp_path / "config.toml", "a = 1\n", "init", mode=0o644)
    finally:
        os.umask(old)
    assert (tmp_path / "config.toml").read_text() == "a = 1\n"
    assert mode_of(tmp_path / "config.toml") == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]  # no temporary left


@pytest.mark.parametrize("kind", ["file", "symlink to a file", "directory"])
def test_nothing_that_stands_at_the_path_is_replaced(kind, tmp_path):
    path = tmp_path / "config.toml"
    mine = tmp_path / "mine.toml"
    mine.write_text("mine\n")
    if kind == "file":
        mine.rename(path)
        mine = path
    elif kind == "symlink to a file":
        path.symlink_to(mine)
    else:
        path.mkdir()
    with pytest.raises(FileExistsError):
        write_new(path, "a = 1\n", "init")
    assert mine.read_text() == "mine\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_file_made_after_the_check_is_not_replaced(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    make_temporary = outputs._temporary

    def racing(target, data, mode):
        name = make_temporary(target, data, mode)
        path.write_text("theirs\n")  # appears between the check and the write
        return name

    monkeypatch.setattr(outputs, "_temporary", racing)
    with pytest.raises(FileExistsError):
        write_new(path, "a = 1\n", "init")
    assert path.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_a_replacement_gets_the_mode_asked_for_not_the_old_one(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("old\n")
    path.chmod(0o666)
    write_atomically(path, "new\n", "init", mode=0o644)
    assert path.read_text() == "new\n"
    assert mode_of(path) == 0o644


def test_missing_directories_are_made_with_their_mode(tmp_path):
    target = tmp_path / "etc" / "tiered-run"
    old = os.umask(0o022)
    try:
        make_directories(target, "init")
        make_directories(target, "init")  # there already: nothing to do
    finally:
        os.umask(old)
    assert target.is_dir() and mode_of(target) == 0o755 and mode_of(target.parent) == 0o755


def test_a_file_in_the_way_of_a_directory_is_refused(tmp_path):
    (tmp_path / "etc").write_text("")
    with pytest.raises(UsageError, match="is not a directory"):
        make_directories(tmp_path / "etc" / "tiered-run", "init")


@pytest.mark.root(reason="the symlink is planted by another user")
def test_a_symlink_another_user_planted_on_the_way_is_not_followed(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY.pw_uid, NOBODY.pw_gid)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = theirs / "config"
    link.symlink_to(elsewhere)
    os.lchown(link, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(UsageError, match="not followed"):
        make_directories(link / "tiered-run", "init")
    assert list(elsewhere.iterdir()) == []
