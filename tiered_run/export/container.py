"""Docker: `docker run` flags and a compose service with the tier's ceilings.

Docker has no run-time limit, no niceness and no memory.low; a cgroup v1 blkio weight
(10-1000) and CPU shares stand in for systemd's weights (1-10000, 100 each by default), and
`--cpus` for the CPU quota.
"""

from __future__ import annotations

import shlex
import signal

from tiered_run.export.sheet import Exported, Sheet, whole_seconds
from tiered_run.export.yaml import dump
from tiered_run.inputs.units import format_cpus

SHARES_PER_WEIGHT = 1024 / 100  # CPU shares 1024 = CPUWeight 100, both the default
BLKIO_PER_WEIGHT = 5  # blkio weight 500 = IOWeight 100, both the default
NETWORK_NOTE = "network none: the workload gets no network; drop it if it needs one"


def _container(sheet: Sheet) -> dict[str, object]:
    """The tier in Docker's terms, by compose key; the docker flags follow from it."""
    exported = sheet.exported
    values: dict[str, object] = {}
    cpus = sheet.take("cpus")
    values["cpuset"] = format_cpus(cpus)
    values["mem_limit"] = sheet.take("memory")
    values["mem_reservation"] = sheet.take("memory_high")
    values["pids_limit"] = sheet.take("tasks_max")
    values["stop_signal"] = signal.Signals(sheet.take("stop_signal")).name
    values["stop_grace_period"] = whole_seconds(sheet.take("kill_after"))
    if (weight := sheet.take("cpu_weight")) is not None:
        values["cpu_shares"] = max(2, round(weight * SHARES_PER_WEIGHT))
    if (quota := sheet.take("cpu_quota")) is not None:
        values["cpus"] = f"{quota / 100:g}"  # Docker's CFS quota, in CPUs
    values |= _throttles(sheet)
    if (weight := sheet.take("io_weight")) is not None:
        blkio = min(1000, max(10, round(weight * BLKIO_PER_WEIGHT)))
        if blkio != weight * BLKIO_PER_WEIGHT:
            sheet.note("io_weight", f"the blkio weight is {blkio}, the nearest Docker takes")
        values["blkio_weight"] = blkio
    user = exported.spec.user if sheet.take("user") else None
    values["user"] = None if user is None else f"{user.uid}:{user.gid}"
    values["working_dir"] = None if (cwd := sheet.take("cwd")) is None else str(cwd)
    values["environment"] = sheet.take("env")
    return {key: value for key, value in values.items() if value is not None}


# Docker's flag and compose's blkio_config key for each io.max key.
_THROTTLES = {
    "rbps": ("--device-read-bps", "device_read_bps"),
    "wbps": ("--device-write-bps", "device_write_bps"),
    "riops": ("--device-read-iops", "device_read_iops"),
    "wiops": ("--device-write-iops", "device_write_iops"),
}


def _throttles(sheet: Sheet) -> dict[str, object]:
    """The I/O throttles by compose key, each `(device node, rate)`."""
    for name in ("io_read_max", "io_write_max", "io_read_iops_max", "io_write_iops_max"):
        sheet.take(name)
    device, limits = sheet.take("io_device"), sheet.exported.spec.limits
    if device is None:
        return {}
    path = device.node
    return {_THROTTLES[key][1]: (path, value) for key, value in limits.io_max.items()}


_FLAGS = {
    "cpuset": "--cpuset-cpus",
    "mem_limit": "--memory",
    "mem_reservation": "--memory-reservation",
    "pids_limit": "--pids-limit",
    "stop_signal": "--stop-signal",
    "stop_grace_period": "--stop-timeout",
    "cpu_shares": "--cpu-shares",
    "blkio_weight": "--blkio-weight",
    "cpus": "--cpus",
    **{compose: flag for flag, compose in _THROTTLES.values()},
    "user": "--user",
    "working_dir": "--workdir",
}


def docker_run(exported: Exported) -> str:
    """A `docker run` command line, one flag a line."""
    sheet = Sheet(exported, "docker")
    values = _container(sheet)
    words = [["docker", "run", "--rm"], ["--network", "none"]]
    if "working_dir" in values:
        words.append(["--volume", f"{values['working_dir']}:{values['working_dir']}"])
    for key, value in values.items():
        if key == "environment":
            words += [["--env", f"{name}={text}"] for name, text in value.items()]  # type: ignore[union-attr]
        elif isinstance(value, tuple):
            words.append([_FLAGS[key], f"{value[0]}:{value[1]}"])
        else:
            words.append([_FLAGS[key], str(value)])
    words.append([exported.image, *exported.spec.command])
    lines = [shlex.join(group) for group in words]
    note = f"# {NETWORK_NOTE}\n"
    return sheet.header() + note + " \\\n  ".join(lines) + "\n"


def _literal(value: object) -> object:
    """A value compose takes as written: `$` starts an interpolation there, `$$` is one."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_literal(item) for item in value]
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    return value


def compose_service(exported: Exported) -> str:
    """A compose file with one service for the command."""
    sheet = Sheet(exported, "compose")
    values = _container(sheet)
    service: dict[str, object] = {"image": exported.image, "command": list(exported.spec.command)}
    for key, value in values.items():
        if key == "blkio_weight":
            blkio = service.setdefault("blkio_config", {})
            blkio["weight"] = value  # type: ignore[index]
        elif isinstance(value, tuple):
            blkio = service.setdefault("blkio_config", {})
            blkio[key] = [{"path": value[0], "rate": value[1]}]  # type: ignore[index]
        elif key == "stop_grace_period":
            service[key] = f"{value}s"
        else:
            service[key] = value
    service["network_mode"] = "none"
    if "working_dir" in values:
        path = str(values["working_dir"])
        service["volumes"] = [f"{path}:{path}"]
    name = exported.spec.tier or "workload"
    note = f"# {NETWORK_NOTE}\n"
    return sheet.header() + note + dump({"services": {name: _literal(service)}})
