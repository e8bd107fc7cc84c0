"""Files tiered-run writes as root: no symlink another user planted is followed, no file
another user owns is reused, reports appear whole, and whatever can be refused is refused
before the workload starts (exit 125, one line)."""

from __future__ import annotations

import errno
import functools
import json
import os
import pwd
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import Result, run_cli

from tiered_run.errors import UsageError
from tiered_run.host.outputs import (
    OutputKind,
    check_output,
    open_log,
    write_atomically,
    write_new,
)

NOBODY = pwd.getpwnam("nobody")
OPTIONS = ("--log", "--report", "--junit")
root_only = pytest.mark.root(reason="the attacks are on a root tiered-run")
tiered_run = functools.partial(run_cli, command=None, report=False, quiet=True, text=True)


def refused(proc: Result, *needles: str) -> None:
    """Exit 125 with one line naming the problem."""
    assert proc.returncode == 125, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tiered-run: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def marker_cmd(marker: Path) -> list[str]:
    return ["--", "sh", "-c", f"echo hi; touch {marker}"]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.conf"
    path.write_text("precious\n")
    return path


def plant_link(directory: Path, target: Path, owner: int = NOBODY.pw_uid) -> Path:
    link = directory / "x.out"
    link.symlink_to(target)
    os.lchown(link, owner, -1)
    return link


# -- symlinks planted by another user ---------------------------------------------------


@root_only
@pytest.mark.parametrize("option", OPTIONS)
def test_symlink_in_a_sticky_directory_is_not_followed(option, tmp_path, victim):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    link = plant_link(shared, victim)
    marker = tmp_path / "started"

    proc = tiered_run(option, str(link), *marker_cmd(marker), cwd=tmp_path)

    refused(proc, option, "not followed", "nobody")
    assert victim.read_text() == "precious\n"
    assert not marker.exists()


@root_only
@pytest.mark.parametrize("option", OPTIONS)
def test_symlink_in_a_directory_another_user_owns_is_not_followed(option, tmp_path, victim):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY.pw_uid, NOBODY.pw_gid)
    link = plant_link(theirs, victim, owner=0)  # they can swap it whoever owns it
    marker = tmp_path / "started"

    proc = tiered_run(option, str(link), *marker_cmd(marker), cwd=tmp_path)

    refused(proc, "not followed", "owned by nobody")
    assert victim.read_text() == "precious\n"
    assert not marker.exists()


def test_a_symlink_of_our_own_in_our_directory_is_followed_and_stays_a_link(tmp_path):
    real = tmp_path / "reports"
    real.mkdir()
    link = tmp_path / "latest.json"
    link.symlink_to(real / "run.json")

    proc = tiered_run("--report", str(link), "--", "true", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink()
    assert json.loads((real / "run.json").read_text())["exit_code"] == 0


# -- files that are not ours ------------------------------------------------------------


@root_only
@pytest.mark.parametrize("option", OPTIONS)
def test_a_file_another_user_owns_is_not_reused(option, tmp_path):
    trap = tmp_path / "out"
    trap.write_text("theirs\n")
    os.chown(trap, NOBODY.pw_uid, NOBODY.pw_gid)
    trap.chmod(0o666)  # so that they could read what we would write
    marker = tmp_path / "started"

    proc = tiered_run(option, str(trap), *marker_cmd(marker), cwd=tmp_path)

    refused(proc, "belongs to nobody", "choose another file")
    assert trap.read_text() == "theirs\n"
    assert trap.stat().st_uid == NOBODY.pw_uid
    assert not marker.exists()


def test_a_log_hard_linked_to_another_file_is_refused(tmp_path, victim):
    link = tmp_path / "run.log"
    os.link(victim, link)

    proc = tiered_run("--log", str(link), "--", "true", cwd=tmp_path)

    refused(proc, "hard links")
    assert victim.read_text() == "precious\n"


# -- paths that cannot work, refused before the start -----------------------------------


@pytest.mark.parametrize(
    ("option", "path", "needle"),
    [
        ("--report", "", "empty value"),
        ("--junit", "", "empty value"),
        ("--log", "", "empty value"),
        ("--report", ".", "is a directory"),
        ("--log", ".", "is a directory"),
        ("--report", "missing/r.json", "does not exist"),
        ("--report", "/proc/self/status", "kernel interface"),
        ("--junit", "/sys/kernel/mm/x.xml", "kernel interface"),
        ("--log", "/proc/self/fd/1", "kernel interface"),
        ("--report", "/dev/full", "not a regular file"),
        ("--report", "/dev/null", "not a regular file"),
        ("--junit", "/dev/full", "not a regular file"),
        ("--log", "/dev/full", "No space left"),
    ],
)
def test_unusable_output_paths_are_refused_before_the_start(option, path, needle, tmp_path):
    marker = tmp_path / "started"
    proc = tiered_run(option, path, *marker_cmd(marker), cwd=tmp_path)
    refused(proc, needle)
    assert not marker.exists()


def test_a_log_may_be_a_character_device(tmp_path):
    proc = tiered_run("--log", "/dev/null", "--", "echo", "hi", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi\n"


def test_a_log_may_be_a_fifo_with_a_reader(tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as reader:
            received.append(reader.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc = tiered_run("--log", str(fifo), "--", "echo", "through the fifo", cwd=tmp_path)
    reader.join(30)

    assert proc.returncode == 0, proc.stderr
    assert received == [b"through the fifo\n"]


def test_a_fifo_nobody_reads_is_refused_instead_of_hanging(tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    proc = tiered_run("--log", str(fifo), "--", "true", cwd=tmp_path)
    refused(proc, "no reader")


@pytest.mark.parametrize("option", ["--report", "--junit"])
def test_a_report_fifo_nobody_reads_is_refused_before_the_start(option, tmp_path):
    """It used to be found only after the run, which then waited for a reader for ever."""
    fifo = tmp_path / "r.fifo"
    os.mkfifo(fifo)
    marker = tmp_path / "started"
    proc = tiered_run(option, str(fifo), *marker_cmd(marker), cwd=tmp_path, timeout=30)
    refused(proc, option, "no reader", "start the reader first")
    assert not marker.exists()


def _reader(fifo: Path, received: list[bytes] | None = None) -> threading.Thread:
    """A reader like `jq . <fifo &`, started before tiered-run: reads it all, or (without
    `received`) goes away at once."""

    def read() -> None:
        with open(fifo, "rb") as reader:
            if received is not None:
                received.append(reader.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_a_report_may_be_a_fifo_with_a_reader(tmp_path):
    fifo = tmp_path / "r.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = _reader(fifo, received)

    proc = tiered_run("--report", str(fifo), "--", "sh", "-c", "sleep 0.3; exit 3", cwd=tmp_path)
    reader.join(30)

    assert proc.returncode == 3, proc.stderr
    assert [json.loads(data)["exit_code"] for data in received] == [3]
    assert fifo.exists() and stat.S_ISFIFO(fifo.lstat().st_mode)  # written through


def test_a_report_fifo_whose_reader_went_away_is_a_warning_not_a_hang(tmp_path):
    fifo = tmp_path / "r.fifo"
    os.mkfifo(fifo)
    reader = _reader(fifo)  # opens it when tiered-run checks it, and closes it again

    proc = tiered_run(
        "--timeout", "20", "--report", str(fifo), "--", "sh", "-c", "sleep 1; exit 3",
        cwd=tmp_path, timeout=30,
    )  # fmt: skip
    reader.join(5)

    assert proc.returncode == 3, proc.stderr  # the workload's own code stands
    assert f"tiered-run: warning: --report {fifo}: not written (Broken pipe)" in proc.stderr


def test_a_report_fifo_that_appeared_after_the_check_is_not_waited_for(tmp_path):
    fifo = tmp_path / "r.fifo"
    os.mkfifo(fifo)
    done = threading.Event()

    def unblock() -> None:  # a write that waits for a reader would wait for ever
        if not done.wait(10):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    try:
        with pytest.raises(UsageError, match="no reader"):
            write_atomically(fifo, "{}\n", "--report")
    finally:
        done.set()


# -- two outputs on one file ----------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"), [("--log", "--report"), ("--report", "--junit"), ("--log", "--junit")]
)
def test_two_outputs_on_one_file_are_refused(first, second, tmp_path):
    """The second used to replace the first without a word."""
    marker = tmp_path / "started"
    out = tmp_path / "out"
    proc = tiered_run(first, "out", second, str(out), *marker_cmd(marker), cwd=tmp_path)
    refused(proc, f"{first} out and {second} {out} are the same file", "give each its own file")
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.parametrize("other", ["./r.json", "link.json", "hard.json"])
def test_one_file_under_another_name_is_the_same_file(other, tmp_path):
    report = tmp_path / "r.json"
    report.write_text("old")
    (tmp_path / "link.json").symlink_to("r.json")
    os.link(report, tmp_path / "hard.json")
    marker = tmp_path / "started"
    proc = tiered_run("--report", "r.json", "--junit", other, *marker_cmd(marker), cwd=tmp_path)
    refused(proc, "are the same file")
    assert not marker.exists()
    assert report.read_text() == "old"


def test_ladder_and_demo_refuse_two_outputs_on_one_file(tmp_path):
    marker = tmp_path / "started"
    ladder = tmp_path / "l.toml"
    ladder.write_text(f'[[step]]\nname = "one"\ncommand = "touch {marker}"\n')
    for command in (["ladder", str(ladder)], ["demo"]):
        proc = tiered_run(*command, "--report", "out", "--junit", "./out", cwd=tmp_path)
        refused(proc, "--report out and --junit ./out are the same file")
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.toml"]


def test_outputs_on_different_files_are_accepted(tmp_path):
    proc = tiered_run(
        "--log", "run.log", "--report", "r.json", "--junit", "j.xml", "--", "echo", "hi",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run.log").read_text() == "hi\n"
    assert json.loads((tmp_path / "r.json").read_text())["exit_code"] == 0
    assert (tmp_path / "j.xml").read_text().startswith("<?xml")


@root_only
def test_a_directory_we_cannot_write_is_refused(open_dir):
    """As nobody (a forked child: this Python may not be executable by nobody)."""
    locked = open_dir / "locked"
    locked.mkdir(mode=0o755)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 3
        try:
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            check_output(str(locked / "r.json"), "--report")
            code = 1
        except UsageError as err:
            code = 0 if "cannot create files" in str(err) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- reports appear whole ---------------------------------------------------------------


def test_report_is_replaced_whole_and_keeps_its_mode(tmp_path):
    report = tmp_path / "r.json"
    report.write_text("old")
    report.chmod(0o600)

    write_atomically(report, '{"new": true}\n', "--report")

    assert report.read_text() == '{"new": true}\n'
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary left


def test_new_report_gets_the_mode_a_plain_open_would_give(tmp_path):
    proc = tiered_run("--report", "r.json", "--junit", "j.xml", "--", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("r.json", "j.xml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.xml", "r.json"]


def test_a_report_keeps_its_permissions_but_never_set_id_bits(tmp_path):
    report = tmp_path / "r.json"
    report.write_text("old")
    report.chmod(0o6750)

    write_atomically(report, "{}\n", "--report")

    assert stat.S_IMODE(report.stat().st_mode) == 0o750


def test_a_report_with_a_name_as_long_as_a_name_can_be(tmp_path):
    """The temporary name used to be the name plus 14 characters: past NAME_MAX."""
    report = tmp_path / ("r" * 250)
    write_atomically(report, "{}\n", "--report")
    assert [p.name for p in tmp_path.iterdir()] == [report.name]


def test_a_report_that_cannot_be_written_after_the_run_is_a_warning(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = tiered_run(
        "--report", str(out / "r.json"), "--", "sh", "-c", f"rm -r {out}; exit 3", cwd=tmp_path
    )
    assert proc.returncode == 3  # the workload's own code stands
    assert "tiered-run: warning: not written: --report" in proc.stderr


def test_check_output_kinds_accept_what_they_can_write(tmp_path):
    check_output("/dev/null", "--log", OutputKind.STREAM)
    with pytest.raises(UsageError, match="not a regular file"):
        check_output("/dev/null", "--report", OutputKind.REPORT)
    check_output(tmp_path / "new.json", "--report")


# -- a directory swapped for a symlink while tiered-run writes --------------------------


def _swap_for_ever(directory: Path, target: Path) -> None:  # pragma: no cover - forked child
    """As nobody: make `directory/real` a real directory, then a symlink to `target`, again
    and again, as fast as the kernel lets us."""
    try:
        os.setgid(NOBODY.pw_gid)
        os.setuid(NOBODY.pw_uid)
        os.chdir(directory)
        os.mkdir("parked")
        while True:
            try:
                os.rename("parked", "real")
                time.sleep(0.0001)
                os.rename("real", "parked")
                os.symlink(target, "real")
                time.sleep(0.0001)
                os.unlink("real")
            except OSError:
                for name in ("real", "parked"):
                    try:
                        os.unlink(name) if os.path.islink(name) else None
                    except OSError:
                        pass
                if not os.path.isdir("parked") and not os.path.isdir("real"):
                    os.mkdir("parked")
    finally:
        os._exit(0)


@pytest.fixture
def swapping(open_dir, spawned):
    """`open_dir/theirs/real`, which nobody keeps swapping between a directory of theirs
    and a symlink to `open_dir/rootonly`, a directory only root can enter."""
    theirs = open_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY.pw_uid, NOBODY.pw_gid)
    rootonly = open_dir / "rootonly"
    rootonly.mkdir(mode=0o700)
    victim = rootonly / "victim.conf"
    victim.write_text("precious\n")
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        _swap_for_ever(theirs, rootonly)
    spawned.adopt_fork(pid)
    time.sleep(0.05)
    yield theirs / "real" / "victim.conf", rootonly
    spawned.reap()  # the swapping stops before open_dir goes


def _attempts(write, rounds: int) -> int:
    """Call `write` `rounds` times; how many were written (the others were refused)."""
    written = 0
    for _ in range(rounds):
        try:
            write()
            written += 1
        except UsageError:
            pass
        except OSError as err:  # the directory vanished between two steps
            assert err.errno in (errno.ENOENT, errno.ENOTDIR), err
    return written


@root_only
def test_a_report_through_a_directory_swapped_for_a_symlink_stays_out_of_it(swapping):
    path, rootonly = swapping

    written = _attempts(lambda: write_atomically(path, "{}\n", "--report"), 3000)

    assert written > 0  # the race was run, not refused from the start
    assert (rootonly / "victim.conf").read_text() == "precious\n"
    assert sorted(p.name for p in rootonly.iterdir()) == ["victim.conf"]


@root_only
def test_a_log_through_a_directory_swapped_for_a_symlink_stays_out_of_it(swapping):
    path, rootonly = swapping

    def write() -> None:
        os.close(open_log(path))

    written = _attempts(write, 3000)

    assert written > 0
    assert (rootonly / "victim.conf").read_text() == "precious\n"
    assert sorted(p.name for p in rootonly.iterdir()) == ["victim.conf"]


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs of the test's own: a disk that fills up (needs root to mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = os.system(f"mount -t tmpfs -o size=64k tiered-run-test {mount} 2>/dev/null")
    if made != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    yield mount
    assert os.system(f"umount {mount}") == 0


def test_a_report_that_does_not_fit_leaves_the_old_one_and_no_half_file(small_fs):
    report = small_fs / "r.json"
    report.write_text("old\n")
    with pytest.raises(OSError) as raised:
        write_atomically(report, "x" * (1 << 20), "--report")
    assert raised.value.errno == errno.ENOSPC
    assert report.read_text() == "old\n"
    assert [p.name for p in small_fs.iterdir()] == ["r.json"]


def test_a_new_file_that_does_not_fit_is_not_left_half_written(small_fs):
    with pytest.raises(OSError) as raised:
        write_new(small_fs / "tiered-run.toml", "x" * (1 << 20), "init")
    assert raised.value.errno == errno.ENOSPC
    assert list(small_fs.iterdir()) == []


# -- an output on a file the run reads ----------------------------------------------------


@pytest.mark.parametrize(
    ("command", "option", "what"),
    [
        (["ladder", "l.toml"], "--report", "the ladder file"),
        (["ladder", "link.toml"], "--junit", "the ladder file"),
        (["run", "--log"], "--log", "the config"),
        (["calibrate", "--memory-steps", "1G", "--report"], "--report", "the config"),
    ],
)
def test_an_output_on_a_file_the_run_reads_is_refused(command, option, what, tmp_path):
    """`ladder l.toml --report l.toml` used to replace the user's ladder with its report."""
    marker = tmp_path / "started"
    ladder = tmp_path / "l.toml"
    ladder.write_text(f'[[step]]\nname = "one"\ncommand = "touch {marker}"\n')
    (tmp_path / "link.toml").symlink_to("l.toml")
    config = tmp_path / "tiered-run.toml"  # found in the working directory, not named
    config.write_text('[tiers.batch]\ncpus = "0"\n')
    before = {p.name: p.read_bytes() for p in (ladder, config)}
    target = "l.toml" if what == "the ladder file" else "./tiered-run.toml"
    args = [*command, target] if command[-1] == option else [*command, option, target]
    if command[0] != "ladder":
        args += ["--", "sh", "-c", f"touch {marker}"]
    quiet = command[0] != "calibrate"  # calibrate has no -q
    proc = run_cli(*args, command=None, report=False, quiet=quiet, text=True, cwd=tmp_path)
    refused(proc, f"{option} {target} is {what}", "which this run reads")
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in (ladder, config)} == before
