"""The facts `doctor` reads, from fake /proc, /sys, cgroupfs and /etc trees under tmp_path:
the readers are thin, and what they cannot read is unknown, never an error."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tiered_run.host.cgroup_facts import read_cgroup_facts
from tiered_run.host.kernel_facts import kernel_parameters, read_cpu_facts, read_kernel_facts
from tiered_run.host.process_facts import read_engines, read_processes
from tiered_run.host.systemd_facts import read_systemd_facts
from tiered_run.model.facts import ProcessFacts, SystemdFacts

GiB = 1024**3


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def mountinfo(tmp_path: Path, *mounts: tuple[str, str, str]) -> Path:
    """A mountinfo with (directory below tmp_path, fstype, super options) lines."""
    lines = [
        f"{30 + i} 1 0:{i} / {tmp_path / where} rw,relatime - {kind} {kind} {options}"
        for i, (where, kind, options) in enumerate(mounts)
    ]
    return write(tmp_path / "self/mountinfo", "\n".join(lines) + "\n")


# -- cgroups --------------------------------------------------------------------------------


def test_a_hybrid_machine_with_a_disabled_oom_killer_above_us(tmp_path):
    """Ubuntu 20.04's layout: v1 controllers, a controller-less cgroup2, and (as Docker's
    --oom-kill-disable leaves it) a memory group above ours whose OOM killer is off."""
    info = mountinfo(
        tmp_path,
        ("cg/cpuset", "cgroup", "rw,cpuset"),
        ("cg/memory", "cgroup", "rw,memory"),
        ("cg/pids", "cgroup", "rw,pids"),
        ("cg/systemd", "cgroup", "rw,xattr,name=systemd"),
        ("cg/unified", "cgroup2", "rw"),
    )
    write(
        tmp_path / "self/cgroup",
        "5:name=systemd:/user.slice/user-0.slice/session-3.scope\n"
        "4:pids:/\n3:memory:/docker/ab\n2:cpuset:/\n0::/user.slice/user-0.slice/session-3.scope\n",
    )
    write(tmp_path / "cg/cpuset/cpuset.effective_cpus", "2-19\n")
    memory = tmp_path / "cg/memory"
    write(memory / "memory.limit_in_bytes", str(2**63 - 4096))
    write(memory / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")
    write(memory / "docker/memory.limit_in_bytes", str(20 * GiB))
    write(memory / "docker/memory.oom_control", "oom_kill_disable 1\nunder_oom 0\n")
    write(memory / "docker/ab/memory.limit_in_bytes", str(2**63 - 4096))
    write(memory / "docker/ab/memory.oom_control", "oom_kill_disable 0\n")
    write(memory / "docker/ab/cgroup.procs", "1\n")
    write(memory / "docker/ab/memory.memsw.limit_in_bytes", "0\n")
    (tmp_path / "cg/pids").mkdir()
    (tmp_path / "cg/unified/user.slice/user-0.slice/session-3.scope").mkdir(parents=True)

    facts = read_cgroup_facts(info, tmp_path / "self")

    assert facts.mode == "hybrid"
    assert facts.v1_controllers == {"cpuset", "memory", "pids"}
    assert facts.cpuset == tuple(range(2, 20))
    assert [(c.cgroup, c.limit, c.oom_kill_disable) for c in facts.ceilings] == [
        ("/docker/ab", None, False),
        ("/docker", 20 * GiB, True),
        ("/", None, False),
    ]
    assert facts.swap_accounting is True
    memory_group = next(g for g in facts.v1 if g.hierarchy == "memory")
    assert memory_group.path == "/docker/ab" and memory_group.directory == str(memory / "docker/ab")
    assert facts.unified is not None and facts.unified.path.endswith("session-3.scope")


def test_a_pure_v2_group_shared_with_other_processes(tmp_path):
    info = mountinfo(tmp_path, ("cg", "cgroup2", "rw,nsdelegate"))
    write(tmp_path / "self/cgroup", "0::/user.slice/app.scope\n")
    group = tmp_path / "cg/user.slice/app.scope"
    write(group / "cgroup.controllers", "cpuset cpu io memory pids\n")
    write(group / "cgroup.subtree_control", "")
    write(group / "cgroup.procs", f"{os.getpid()}\n4242\n")
    write(group / "cgroup.kill", "")
    write(group / "memory.max", "max\n")
    write(group / "memory.swap.max", "max\n")
    write(group / "cpuset.cpus.effective", "0-3\n")
    write(tmp_path / "cg/user.slice/memory.max", f"{8 * GiB}\n")

    facts = read_cgroup_facts(info, tmp_path / "self")

    assert facts.mode == "v2"
    unified = facts.unified
    assert unified is not None
    assert unified.controllers == ("cpu", "cpuset", "io", "memory", "pids")
    assert unified.subtree == () and unified.others == (4242,)
    assert {"cgroup.kill", "memory.max", "memory.swap.max"} <= set(unified.files)
    assert "memory.peak" not in unified.files
    assert [(c.cgroup, c.limit) for c in facts.ceilings] == [("/user.slice", 8 * GiB)]
    assert facts.cpuset == (0, 1, 2, 3) and facts.swap_accounting is True


def test_no_cgroup_mounts_is_mode_none_and_unreadable_files_are_unknown(tmp_path):
    facts = read_cgroup_facts(tmp_path / "missing", tmp_path / "self")
    assert facts.mode == "none" and facts.unified is None and facts.cpuset is None


# -- kernel and CPUs ------------------------------------------------------------------------


def test_kernel_facts_from_proc(tmp_path):
    proc = tmp_path / "proc"
    write(proc / "sys/kernel/osrelease", "5.4.0-150-generic\n")
    write(proc / "cmdline", "BOOT_IMAGE=/vmlinuz ro quiet isolcpus=2-3 psi=1\n")
    for name in ("cpu", "memory", "io"):
        write(proc / "pressure" / name, "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    write(proc / "meminfo", "MemTotal: 1000 kB\nSwapTotal:  2097148 kB\n")
    write(proc / "sys/vm/overcommit_memory", "2\n")
    write(proc / "sys/vm/overcommit_ratio", "50\n")
    write(proc / "sys/vm/overcommit_kbytes", "0\n")
    write(proc / "sys/vm/panic_on_oom", "1\n")

    facts = read_kernel_facts(proc)

    assert facts.release == "5.4.0-150-generic"
    assert facts.psi == ("cpu", "memory", "io") and facts.psi_problem is None
    assert facts.swap_total == 2097148 * 1024
    assert (facts.overcommit_memory, facts.overcommit_ratio, facts.panic_on_oom) == (2, 50, 1)


def test_a_kernel_without_psi_says_why(tmp_path):
    facts = read_kernel_facts(tmp_path)
    assert facts.psi == () and "CONFIG_PSI" in (facts.psi_problem or "")


def test_cpu_isolation_from_sysfs_and_the_command_line(tmp_path):
    cpu = tmp_path / "sys/devices/system/cpu"
    write(cpu / "online", "0-19\n")
    write(cpu / "isolated", "4-19\n")
    cmdline = "ro isolcpus=domain,managed_irq,4-19 nohz_full=4-19 rcu_nocbs=4-19 -- init=x"

    facts = read_cpu_facts(tmp_path / "sys", cmdline, allowed=tuple(range(2, 20)))

    assert facts.online == tuple(range(20)) and facts.allowed == tuple(range(2, 20))
    assert facts.isolated == facts.nohz_full == facts.rcu_nocbs == tuple(range(4, 20))
    assert facts.isolcpus == "domain,managed_irq,4-19"


def test_cpu_facts_without_isolation():
    facts = read_cpu_facts(cmdline="ro quiet")
    assert facts.isolated == () and facts.isolcpus is None and facts.online


def test_kernel_parameters_stop_where_init_s_begin():
    assert kernel_parameters("ro a=1 rcu_nocbs -- b=2") == {"ro": "", "a": "1", "rcu_nocbs": ""}


# -- processes and container engines ---------------------------------------------------------


def fake_process(
    proc: Path,
    pid: int,
    comm: str,
    *,
    cpu: int,
    allowed: str,
    uid: int = 0,
    kthread: bool = False,
    cgroup: str = "/",
    argv: tuple[str, ...] = (),
) -> None:
    flags = 0x00200000 if kthread else 0x400100
    fields = ["S", "1", str(pid), str(pid), "0", "-1", str(flags)] + ["0"] * 29 + [str(cpu)]
    write(proc / str(pid) / "stat", f"{pid} ({comm}) {' '.join(fields)} 0 0\n")
    write(
        proc / str(pid) / "status",
        f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCpus_allowed_list:\t{allowed}\n",
    )
    write(proc / str(pid) / "cgroup", f"0::{cgroup}\n")
    write(proc / str(pid) / "cmdline", "\0".join((comm, *argv)) + "\0")


def test_processes_leave_kernel_threads_out(tmp_path):
    proc = tmp_path / "proc"
    fake_process(proc, 2, "kthreadd", cpu=0, allowed="0-3", kthread=True)
    fake_process(proc, 700, "firefox (web)", cpu=1, allowed="0-3", uid=1000, cgroup="/user.slice")
    write(proc / "meminfo", "")  # not a process

    assert read_processes(proc) == (
        ProcessFacts(700, "firefox (web)", 1000, 1, (0, 1, 2, 3), "/user.slice"),
    )


def test_container_engines_and_their_cgroup_drivers(tmp_path):
    proc, etc, usr = tmp_path / "proc", tmp_path / "etc", tmp_path / "usr"
    fake_process(
        proc,
        900,
        "dockerd",
        cpu=0,
        allowed="0-19",
        cgroup="/system.slice/docker.service",
        argv=("-H", "fd://", "--exec-opt", "native.cgroupdriver=systemd"),
    )
    fake_process(proc, 901, "containerd", cpu=1, allowed="0-19")
    write(
        etc / "containerd/config.toml",
        "[plugins.cri.containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
    )
    write(usr / "share/containers/containers.conf", '[engine]\ncgroup_manager = "systemd"\n')
    write(etc / "containers/containers.conf", '[engine]\ncgroup_manager = "cgroupfs"\n')
    bin_dir = tmp_path / "bin"
    write(bin_dir / "podman", "").chmod(0o755)

    engines = read_engines(
        read_processes(proc), proc_root=proc, etc_root=etc, usr_root=usr, search_path=str(bin_dir)
    )

    docker, containerd, podman = engines
    assert (docker.name, docker.pid, docker.cgroup, docker.allowed[-1]) == (
        "dockerd",
        900,
        "/system.slice/docker.service",
        19,
    )
    assert (docker.cgroup_driver, docker.driver_source) == ("systemd", "dockerd --exec-opt")
    assert containerd.cgroup_driver == "systemd"
    assert (podman.pid, podman.cgroup_driver) == (None, "cgroupfs")  # the admin's file wins


def test_docker_driver_from_daemon_json_and_engines_not_installed(tmp_path):
    proc, etc = tmp_path / "proc", tmp_path / "etc"
    fake_process(proc, 900, "dockerd", cpu=0, allowed="0-3")
    write(etc / "docker/daemon.json", json.dumps({"exec-opts": ["native.cgroupdriver=cgroupfs"]}))
    engines = read_engines(
        read_processes(proc), proc_root=proc, etc_root=etc, usr_root=tmp_path, search_path=""
    )
    assert [(e.name, e.cgroup_driver) for e in engines] == [("dockerd", "cgroupfs")]


# -- systemd --------------------------------------------------------------------------------


def test_without_systemd_nothing_is_asked_of_it(tmp_path):
    write(tmp_path / "proc/1/comm", "tini\n")
    facts = read_systemd_facts({"": "/"}, proc_root=tmp_path / "proc", run_root=tmp_path / "run")
    assert facts == SystemdFacts(
        pid1="tini", running=False, delegate_detail="systemd is not the init system"
    )


def test_a_login_session_scope_is_told_from_systemd_s_own_hierarchy(tmp_path):
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    write(tmp_path / "proc/1/comm", "systemd\n")
    own = {"name=systemd": "/user.slice/user-1000.slice/session-4.scope", "memory": "/user.slice"}
    facts = read_systemd_facts(
        own, try_scope=False, proc_root=tmp_path / "proc", run_root=tmp_path / "run"
    )
    assert facts.running and facts.pid1 == "systemd"
    assert (facts.session, facts.user_slice) == ("session-4.scope", "user-1000.slice")
    assert SystemdFacts("systemd", True, unit_path="/system.slice/x.service").session is None
