"""The kernel's side of `doctor`: version, command line, PSI, swap, the vm sysctls that
decide what happens when memory runs out, and CPU isolation. Reads /proc and /sys only;
what cannot be read is None or empty, never an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiered_run.host.kernel_files import read_int, read_text
from tiered_run.inputs.units import parse_cpus
from tiered_run.model.facts import CpuFacts, KernelFacts

PSI_RESOURCES = ("cpu", "memory", "io")


def read_kernel_facts(proc_root: Path = Path("/proc")) -> KernelFacts:
    vm = proc_root / "sys/vm"
    psi, problem = _psi(proc_root)
    return KernelFacts(
        release=(read_text(proc_root / "sys/kernel/osrelease") or os.uname().release).strip(),
        cmdline=(read_text(proc_root / "cmdline") or "").strip(),
        psi=psi,
        psi_problem=problem,
        swap_total=_swap_total(proc_root),
        overcommit_memory=read_int(vm / "overcommit_memory"),
        overcommit_ratio=read_int(vm / "overcommit_ratio"),
        overcommit_kbytes=read_int(vm / "overcommit_kbytes"),
        panic_on_oom=read_int(vm / "panic_on_oom"),
    )


def read_cpu_facts(
    sys_root: Path = Path("/sys"), cmdline: str = "", allowed: tuple[int, ...] | None = None
) -> CpuFacts:
    """Online, allowed to us, isolated (isolcpus=), nohz_full and rcu_nocbs CPUs. The
    kernel lists the isolated and nohz_full CPUs in sysfs; rcu_nocbs only on its command
    line."""
    cpu_dir = sys_root / "devices/system/cpu"
    online = _cpus(read_text(cpu_dir / "online")) or ()
    if allowed is None:
        allowed = tuple(sorted(os.sched_getaffinity(0)))
    params = kernel_parameters(cmdline)
    isolcpus = params.get("isolcpus", "")
    isolated = _cpus(read_text(cpu_dir / "isolated"))
    if isolated is None:
        isolated = _cpus(",".join(p for p in isolcpus.split(",") if p[:1].isdigit())) or ()
    nohz = _cpus(read_text(cpu_dir / "nohz_full"))
    if nohz is None:
        nohz = _cpus(params.get("nohz_full")) or ()
    return CpuFacts(
        online=online,
        allowed=allowed,
        isolated=isolated,
        nohz_full=nohz,
        # A bare rcu_nocbs (Linux 5.12+) offloads every CPU.
        rcu_nocbs=online if params.get("rcu_nocbs") == "" else _cpus(params.get("rcu_nocbs")) or (),
        isolcpus=params.get("isolcpus"),
    )


def kernel_parameters(cmdline: str) -> dict[str, str]:
    """`key=value` words of the kernel command line, up to `--` (what follows is init's)."""
    params = {}
    for word in cmdline.split():
        if word == "--":
            break
        key, _, value = word.partition("=")
        params[key] = value
    return params


def _cpus(text: str | None) -> tuple[int, ...] | None:
    """A CPU list; None where the file is missing or holds something else (`(null)`)."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return ()
    try:
        return parse_cpus(text)
    except ValueError:
        return None


def _psi(proc_root: Path) -> tuple[tuple[str, ...], str | None]:
    """The resources whose pressure can be read. A kernel built with PSI but booted with
    psi=0 has the files, and reading them fails (EOPNOTSUPP)."""
    directory = proc_root / "pressure"
    if not directory.is_dir():
        return (), "no /proc/pressure: the kernel was built without PSI (CONFIG_PSI)"
    readable = []
    problem = None
    for name in PSI_RESOURCES:
        try:
            (directory / name).read_text()
        except OSError as err:
            problem = f"/proc/pressure/{name} cannot be read ({err.strerror})"
            continue
        readable.append(name)
    return tuple(readable), problem


def _swap_total(proc_root: Path) -> int | None:
    for line in (read_text(proc_root / "meminfo") or "").splitlines():
        if line.startswith("SwapTotal:"):
            return int(line.split()[1]) * 1024
    return None
