"""The host's processes for `doctor`: which CPU each last ran on and may run on, and the
container engines (dockerd, containerd, podman) with the cgroup driver they were given.
One pass over /proc; a process that exits meanwhile is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from collections.abc import Iterable
from pathlib import Path

from tiered_run.backends.cgroupfs import parse_proc_cgroup
from tiered_run.inputs.units import parse_cpus
from tiered_run.model.facts import ContainerEngine, ProcessFacts

_PF_KTHREAD = 0x00200000  # /proc/PID/stat flags: a kernel thread
# The daemons whose containers are made by them, not by whoever asks (docker run).
ENGINES = ("dockerd", "containerd", "podman")
_SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def read_processes(proc_root: Path = Path("/proc")) -> tuple[ProcessFacts, ...]:
    """Every process but kernel threads, in pid order."""
    found = []
    try:
        pids = sorted(int(name) for name in os.listdir(proc_root) if name.isdigit())
    except OSError:
        return ()
    for pid in pids:
        process = _process(proc_root / str(pid), pid)
        if process is not None:
            found.append(process)
    return tuple(found)


def _process(directory: Path, pid: int) -> ProcessFacts | None:
    try:
        stat = (directory / "stat").read_bytes().decode(errors="replace")
        status = (directory / "status").read_text(errors="replace")
    except OSError:
        return None  # gone, or not ours to read
    comm, _, rest = stat.partition(" (")[2].rpartition(")")
    fields = rest.split()
    try:
        if int(fields[6]) & _PF_KTHREAD:
            return None
        cpu = int(fields[36])
    except (IndexError, ValueError):
        return None
    uid, allowed = 0, ()
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "Uid":
            uid = int(value.split()[1])  # effective
        elif key == "Cpus_allowed_list":
            try:
                allowed = parse_cpus(value.strip())
            except ValueError:
                allowed = ()
    try:
        groups = parse_proc_cgroup((directory / "cgroup").read_text())
    except (OSError, ValueError):
        groups = {}
    return ProcessFacts(
        pid=pid,
        comm=comm,
        uid=uid,
        cpu=cpu,
        allowed=allowed,
        cgroup=groups.get("name=systemd") or groups.get("", ""),
    )


def read_engines(
    processes: Iterable[ProcessFacts],
    *,
    proc_root: Path = Path("/proc"),
    etc_root: Path = Path("/etc"),
    usr_root: Path = Path("/usr"),
    search_path: str | None = _SEARCH_PATH,
) -> tuple[ContainerEngine, ...]:
    """Each container engine that runs, or is installed without a daemon running, with the
    cgroup driver its configuration gives (None: its default, which the policy knows)."""
    engines = []
    running = {p.comm: p for p in processes if p.comm in ENGINES}
    for name in ENGINES:
        process = running.get(name)
        if process is None and shutil.which(name, path=search_path) is None:
            continue
        argv = _cmdline(proc_root, process.pid) if process is not None else []
        driver, source = _driver(name, argv, etc_root, usr_root)
        engines.append(
            ContainerEngine(
                name=name,
                pid=process.pid if process else None,
                uid=process.uid if process else None,
                cgroup=process.cgroup if process else "",
                allowed=process.allowed if process else (),
                cgroup_driver=driver,
                driver_source=source,
            )
        )
    return tuple(engines)


def _cmdline(proc_root: Path, pid: int) -> list[str]:
    try:
        raw = (proc_root / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [os.fsdecode(word) for word in raw.split(b"\0") if word]


def _driver(name: str, argv: list[str], etc: Path, usr: Path) -> tuple[str | None, str]:
    if name == "dockerd":
        return _docker_driver(argv, etc)
    if name == "containerd":
        return _containerd_driver(argv, etc)
    return _podman_driver(etc, usr)


def _option(argv: list[str], *names: str) -> list[str]:
    """Every value of an option given as `--name value` or `--name=value`."""
    values = []
    for index, word in enumerate(argv):
        for name in names:
            if word == name and index + 1 < len(argv):
                values.append(argv[index + 1])
            elif word.startswith(name + "="):
                values.append(word[len(name) + 1 :])
    return values


def _docker_driver(argv: list[str], etc: Path) -> tuple[str | None, str]:
    for value in _option(argv, "--exec-opt"):
        if value.startswith("native.cgroupdriver="):
            return value.partition("=")[2], "dockerd --exec-opt"
    config = Path(next(iter(_option(argv, "--config-file")), etc / "docker/daemon.json"))
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None, "default"
    for value in data.get("exec-opts", []) if isinstance(data, dict) else []:
        if isinstance(value, str) and value.startswith("native.cgroupdriver="):
            return value.partition("=")[2], str(config)
    return None, "default"


def _containerd_driver(argv: list[str], etc: Path) -> tuple[str | None, str]:
    config = Path(next(iter(_option(argv, "--config", "-c")), etc / "containerd/config.toml"))
    data = _toml(config)
    if data is None:
        return None, "default"
    for key in ("SystemdCgroup", "systemd_cgroup"):
        value = _find_key(data, key)
        if value is not None:
            return ("systemd" if value is True else "cgroupfs"), str(config)
    return None, "default"


def _podman_driver(etc: Path, usr: Path) -> tuple[str | None, str]:
    """containers.conf: the distribution's, then the administrator's (which wins)."""
    driver, source = None, "default"
    for config in (usr / "share/containers/containers.conf", etc / "containers/containers.conf"):
        data = _toml(config)
        engine = data.get("engine") if data else None
        if isinstance(engine, dict) and isinstance(engine.get("cgroup_manager"), str):
            driver, source = engine["cgroup_manager"], str(config)
    return driver, source


def _toml(path: Path) -> dict | None:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None


def _find_key(data: object, key: str) -> object:
    """The first value of `key` anywhere in a nested TOML document."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None
