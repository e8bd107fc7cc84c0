"""systemd: a service unit for the command, and the slices that make the tiers persistent
for the whole machine (`--slices`)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from tiered_run.backends.shares import IO_PROPERTIES
from tiered_run.export.sheet import Exported, Sheet, whole_seconds
from tiered_run.inputs.units import format_cpus
from tiered_run.model.host import Machine
from tiered_run.policy.tiers import Tier, memory_reserve

# The header that says a slice file is an earlier export's, which another may replace.
_EXPORTED = "by tiered-run export --format systemd --slices"

# The protections the host keeps against the tiers (the user story's system side).
HOST_CPU_WEIGHT = 800
HOST_IO_WEIGHT = 800
HOST_SLICES = ("system.slice", "user.slice")
DROP_IN = "50-tiered-run.conf"

_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def quote(arg: str, variables: bool = True) -> str:
    """One argument of ExecStart= as systemd reads it: `%` doubled (specifiers) and `$`
    too where systemd would expand a variable (`variables`: not in Environment=), C-style
    quoting where a word would split or be read as an escape."""
    arg = arg.replace("%", "%%")
    if variables:
        arg = arg.replace("$", "$$")
    if _PLAIN.fullmatch(arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def slice_name(tier: str) -> str:
    """The slice the systemd backend puts a tier's runs in."""
    return f"tiered-{tier}.slice"


def service_unit(exported: Exported) -> str:
    """A service unit that runs the command under the tier's ceilings."""
    sheet = Sheet(exported, "systemd")
    spec = exported.spec
    service: list[str] = ["Type=exec"]

    def put(key: str, value: object) -> None:
        if value is not None:
            service.append(f"{key}={value}")

    cpus = sheet.take("cpus")
    put("AllowedCPUs", format_cpus(cpus))  # the cpuset, on the unified hierarchy
    put("CPUAffinity", format_cpus(cpus))  # the same CPUs where the cpuset is not systemd's
    put("MemoryMax", sheet.take("memory"))
    put("MemoryHigh", sheet.take("memory_high"))
    put("TasksMax", sheet.take("tasks_max"))
    timeout = sheet.take("timeout")
    put("RuntimeMaxSec", None if timeout is None else whole_seconds(timeout))
    put("KillSignal", signal.Signals(sheet.take("stop_signal")).name)
    put("TimeoutStopSec", whole_seconds(sheet.take("kill_after")))
    service.append("KillMode=control-group")  # the ending signal reaches the whole tree
    put("Nice", sheet.take("nice"))
    put("CPUWeight", sheet.take("cpu_weight"))
    quota = sheet.take("cpu_quota")
    put("CPUQuota", None if quota is None else f"{quota:g}%")
    put("IOWeight", sheet.take("io_weight"))
    for key, line in io_properties(sheet).items():
        put(key, line)
    put("MemoryLow", sheet.take("memory_low"))
    put("User", sheet.take("user"))
    put("WorkingDirectory", sheet.take("cwd"))
    for key, value in (sheet.take("env") or {}).items():
        service.append(f"Environment={quote(f'{key}={value}', variables=False)}")
    service.append(f"Slice={slice_name(spec.tier or 'batch')}")
    service.append("ExecStart=" + " ".join(quote(arg) for arg in spec.command))
    shown = " ".join(spec.command).replace("%", "%%")
    unit = [
        "[Unit]",
        f"Description=tiered-run tier {spec.tier}: {shown[:60]}",
        "",
        "[Service]",
        *service,
    ]
    return sheet.header() + "\n".join(unit) + "\n"


def io_properties(sheet: Sheet) -> dict[str, str]:
    """IOReadBandwidthMax= and the like for the run's disk, by its device node, in the
    order of io.max's keys."""
    for name in ("io_read_max", "io_write_max", "io_read_iops_max", "io_write_iops_max"):
        sheet.take(name)
    device, limits = sheet.take("io_device"), sheet.exported.spec.limits
    if device is None:
        return {}
    path = device.node
    return {IO_PROPERTIES[key]: f"{path} {value}" for key, value in limits.io_max.items()}


def slice_files(tiers: dict[str, Tier], machine: Machine, source: str) -> list[tuple[str, str]]:
    """The files that make the tiers persistent, as (path below /etc/systemd/system, text):
    a drop-in for system.slice and user.slice that keeps the host on the protected CPUs
    with the protections of the user story (CPUWeight, IOWeight, MemoryLow: the memory
    the tiers leave to the host), and a slice for each tier a workload may run in."""
    protected = sorted(
        {cpu for tier in tiers.values() if tier.protected for cpu in tier.cpus or ()}
    )
    workloads = [tier for tier in tiers.values() if not tier.protected]
    ceilings = [tier.memory for tier in workloads if tier.memory]
    low = machine.memory_total - max(ceilings) if ceilings else memory_reserve(machine)
    low = max(low, 0)
    head = f"# from {source}, {_EXPORTED}\n"
    host = ["[Slice]"]
    if protected:
        host.append(f"AllowedCPUs={format_cpus(protected)}")
    else:
        head_note = "# no protected tier: the host keeps no CPUs of its own\n"
        head += head_note
    host += [f"CPUWeight={HOST_CPU_WEIGHT}", f"IOWeight={HOST_IO_WEIGHT}", f"MemoryLow={low}"]
    files = [(f"{name}.d/{DROP_IN}", head + "\n".join(host) + "\n") for name in HOST_SLICES]
    for tier in workloads:
        cpus = tier.cpus or tuple(c for c in machine.cpus if c not in protected) or machine.cpus
        body = ["[Unit]", f"Description=tiered-run tier {tier.name}", "", "[Slice]"]
        body.append(f"AllowedCPUs={format_cpus(cpus)}")
        if tier.cpu_weight:
            body.append(f"CPUWeight={tier.cpu_weight}")
        if tier.io_weight:
            body.append(f"IOWeight={tier.io_weight}")
        note = (
            "# the slice holds the tier's CPUs and weights; memory, tasks and time are each"
            " run's own ceilings (tiered-run --tier, or the service unit of --format systemd)\n"
        )
        files.append((slice_name(tier.name), head + note + "\n".join(body) + "\n"))
    return files


def write_files(files: list[tuple[str, str]], directory: Path) -> list[Path]:
    """Write the slice files below `directory` (e.g. /etc/systemd/system), which must
    exist: a mistyped directory is not made from the root down. Every file is checked
    before any is written. A file there already is replaced only if an earlier export
    wrote it (its header says so): a hand-written unit is not lost. Files are written as
    reports are (`host.outputs`): a symlink another user planted is not followed, a file
    of another user not replaced, and a reader never sees half a file.
    UsageError when a file cannot or must not be written."""
    from tiered_run.errors import UsageError
    from tiered_run.host.outputs import check_output, write_atomically, write_new
    from tiered_run.host.safepath import make_directories

    if not directory.is_dir():
        raise UsageError(
            f"--dir {directory}: no such directory; give an existing one, e.g. "
            "--dir /etc/systemd/system"
        )
    targets = [(directory / relative, text) for relative, text in files]
    for path, _ in targets:
        if os.path.lexists(path):
            check_output(path, "--dir")
            if _EXPORTED not in _first_line(path):
                raise UsageError(
                    f"--dir {directory}: {path} is there and no export wrote it; move it "
                    "away (or merge it by hand with what --slices prints)"
                )
    for path, text in targets:
        make_directories(path.parent, "--dir")
        if os.path.lexists(path):
            write_atomically(path, text, "--dir", 0o644)
        else:
            write_new(path, text, "--dir", 0o644)
    return [path for path, _ in targets]


def _first_line(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as file:
        return file.readline(4096).decode("utf-8", "replace")
