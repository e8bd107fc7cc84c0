"""The one reading of /proc/PID/stat behind every liveness question."""

from __future__ import annotations

import os
import subprocess
import threading

from tiered_run.host.processes import is_alive, is_zombie, parse_stat, read_stat, start_ticks

# A command name may hold spaces and parentheses: the fields are those after the last ")".
STAT = "4242 (a) (b c) S 17 4242 4242 0 -1 4194560 " + " ".join(["0"] * 12) + " 987654 0 0"


def test_fields_after_a_command_name_with_parentheses():
    stat = parse_stat(STAT)
    assert (stat.state, stat.ppid, stat.start_ticks) == ("S", 17, 987654)
    assert not stat.exited
    assert parse_stat(STAT.replace(") S ", ") Z ")).exited


def test_this_process_is_alive_and_names_itself():
    me = read_stat(os.getpid())
    assert me is not None and me.ppid == os.getppid()
    assert is_alive(os.getpid()) and not is_zombie(os.getpid())
    assert start_ticks(os.getpid()) == me.start_ticks


def test_a_zombie_is_not_alive_and_a_reaped_process_is_gone():
    child = subprocess.Popen(["true"])
    pause = threading.Event()
    for _ in range(6000):  # `true` exits at once; nothing reaps it until wait()
        if is_zombie(child.pid):
            break
        pause.wait(0.005)
    assert is_zombie(child.pid)
    assert not is_alive(child.pid)
    assert child.wait() == 0
    assert read_stat(child.pid) is None
    assert not is_alive(child.pid) and not is_zombie(child.pid)
    assert start_ticks(child.pid) is None
