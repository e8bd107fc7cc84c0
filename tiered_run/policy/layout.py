"""The tiers `tiered-run init` writes for a machine: the user's three-tier shape (a
protected tier for the host, one for interactive programs, one for the heavy workload)
scaled to the online CPUs and memory, or an explicit layout; with memory reserves and
timeouts that leave the host alive, and the reason for each value. Pure: a described
machine and what the backend holds in, a plan out (`render.tier_config` writes it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tiered_run.errors import UsageError
from tiered_run.inputs.units import format_cpus, format_size, parse_cpus
from tiered_run.model.host import Machine
from tiered_run.model.usage import Capability
from tiered_run.policy.tiers import default_tiers, memory_reserve

GiB = 1024**3
MiB = 1024**2
_NAME = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)  # a TOML bare key: [tiers.NAME] as typed
WORKLOAD_TIMEOUT = 15 * 60.0
WORKLOAD_KILL_AFTER = 5.0
WORKLOAD_NICE = 5
USER_TASKS_MAX = 2048
RUN_WEIGHT = 50  # against the host's slices at systemd's default of 100


@dataclass(frozen=True)
class Planned:
    """One key of a planned tier: its TOML value and why it is what it is."""

    key: str
    value: object  # str, int or bool, written as TOML
    why: str = ""


@dataclass(frozen=True)
class PlannedTier:
    name: str
    role: str  # protected, interactive, workload
    cpus: tuple[int, ...]
    values: tuple[Planned, ...]
    left_out: tuple[str, ...] = ()  # keys not written, each with why (comments)


@dataclass(frozen=True)
class Plan:
    tiers: tuple[PlannedTier, ...]
    default: str
    notes: tuple[str, ...] = field(default=())  # said at the top of the file


def parse_layout(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """`system=0-1,user=2-3,aimgr=4-19` -> ((system, (0, 1)), ...). A word without `=`
    continues the CPU list before it, so `system=0,2,user=1` gives system CPUs 0 and 2."""
    entries: list[tuple[str, list[str]]] = []
    for word in text.split(","):
        name, sep, cpus = word.partition("=")
        if sep:
            entries.append((name.strip(), [cpus]))
        elif entries:
            entries[-1][1].append(word)
        else:
            raise UsageError(
                f"--layout {text!r}: start with a tier, e.g. system=0-1,user=2-3,batch=4-19",
                key="--layout",
            )
    layout = []
    for name, parts in entries:
        if not _NAME.fullmatch(name):
            raise UsageError(
                f"--layout: tier name {name!r} must be letters, digits, _ or -, e.g. aimgr",
                key="--layout",
            )
        try:
            layout.append((name, parse_cpus(",".join(parts))))
        except ValueError as err:
            raise UsageError(f"--layout: tier {name}: {err}", key="--layout") from err
    names = [name for name, _ in layout]
    if len(set(names)) != len(names):
        raise UsageError("--layout: each tier may be named once", key="--layout")
    if len(layout) < 2:
        raise UsageError(
            "--layout needs a protected tier for the host first and a workload tier last, "
            "e.g. system=0-1,user=2-3,batch=4-19",
            key="--layout",
        )
    return tuple(layout)


def default_layout(machine: Machine) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The built-in tiers' CPUs: system first, user next, batch on the rest (0-1, 2-3,
    4-19 on 20 CPUs)."""
    if len(machine.cpus) < 2:
        raise UsageError(
            f"only CPU {format_cpus(machine.cpus)} is ours here: none can be kept for the host, "
            "so there is no layout to write; the built-in tiers share it"
        )
    tiers = default_tiers(machine)
    return tuple((name, tiers[name].cpus or machine.cpus) for name in ("system", "user", "batch"))


def plan(
    machine: Machine,
    layout: tuple[tuple[str, tuple[int, ...]], ...],
    *,
    backend: str,
    capabilities: frozenset[Capability],
) -> Plan:
    """The first tier of `layout` is protected (the host keeps its CPUs), the last one is
    the default workload tier, any between are for interactive programs. `backend` and
    `capabilities`: what `--backend auto` gives here, which decides the keys worth writing."""
    protected_cpus = set(layout[0][1])
    online = set(machine.cpus)
    for name, cpus in layout:
        offline = sorted(set(cpus) - online)
        if offline:
            raise UsageError(
                f"--layout: tier {name}: CPUs {format_cpus(offline)} are not online here "
                f"(online and ours: {format_cpus(machine.cpus)})",
                key="--layout",
            )
    for name, cpus in layout[1:]:
        shared = sorted(set(cpus) & protected_cpus)
        if shared:
            raise UsageError(
                f"--layout: tier {name} shares CPUs {format_cpus(shared)} with the protected "
                f"tier {layout[0][0]}, where no run may go; give it other CPUs",
                key="--layout",
            )
    if len(layout[0][1]) == len(machine.cpus):
        raise UsageError(
            f"--layout: the protected tier {layout[0][0]} takes every CPU; leave some for runs",
            key="--layout",
        )
    tiers = [_protected(*layout[0])]
    tiers += [_interactive(name, cpus, machine) for name, cpus in layout[1:-1]]
    tiers.append(_workload(*layout[-1], machine, backend, capabilities))
    reserve = memory_reserve(machine)
    notes = (
        f"{format_size(machine.memory_total)} of memory; the host keeps a reserve of "
        f"{format_size(reserve)} (10 % of RAM, at least 512 MiB) that no tier's ceiling "
        "reaches into",
    )
    return Plan(tuple(tiers), layout[-1][0], notes)


def _protected(name: str, cpus: tuple[int, ...]) -> PlannedTier:
    return PlannedTier(
        name,
        "protected",
        cpus,
        (
            Planned(
                "cpus",
                format_cpus(cpus),
                "kept for the host: the kernel's own work, systemd, the desktop, your shell",
            ),
            Planned(
                "protected",
                True,
                "no run may use these CPUs, so the host and desktop stay responsive whatever "
                "runs elsewhere (isolcpus= would take them from the host instead)",
            ),
            Planned("description", "host and desktop: no run may use these CPUs"),
        ),
    )


def _interactive(name: str, cpus: tuple[int, ...], machine: Machine) -> PlannedTier:
    memory = _rounded(max(GiB, machine.memory_total // 5))
    return PlannedTier(
        name,
        "interactive",
        cpus,
        (
            Planned("cpus", format_cpus(cpus)),
            Planned(
                "memory",
                _size(memory),
                f"a fifth of RAM ({format_size(machine.memory_total)}): one program cannot "
                "take the workload's or the host's memory",
            ),
            Planned("tasks_max", USER_TASKS_MAX, "editors and browsers stay far below this"),
            Planned("description", "interactive programs started through tiered-run"),
        ),
        ("timeout: none, interactive programs run as long as they are used",),
    )


def _workload(
    name: str,
    cpus: tuple[int, ...],
    machine: Machine,
    backend: str,
    capabilities: frozenset[Capability],
) -> PlannedTier:
    reserve = memory_reserve(machine)
    memory = _rounded(max(GiB // 4, machine.memory_total - reserve))
    tasks = min(8192, max(1024, 256 * len(cpus)))
    values = [
        Planned("cpus", format_cpus(cpus), "every CPU the other tiers do not keep"),
        Planned(
            "memory",
            _size(memory),
            f"all of RAM ({format_size(machine.memory_total)}) but the host's reserve: the "
            "kernel OOM-kills the run here, before the host freezes",
        ),
    ]
    left_out = []
    if Capability.MEMORY_HIGH in capabilities:
        values.append(
            Planned(
                "memory_high",
                _size(_rounded(memory * 9 // 10)),
                "90 % of memory: the kernel throttles the tree here first, and the report "
                "warns, before the hard ceiling kills it",
            )
        )
    else:
        left_out.append(
            f"memory_high: left out, with {backend} nothing throttles at it (it would only warn)"
        )
    values += [
        Planned(
            "tasks_max",
            tasks,
            "256 per CPU (at least 1024): a parallel test suite fits, a fork bomb is held",
        ),
        Planned(
            "timeout",
            "15min",
            "a run that hangs is ended with its whole tree; --timeout on the command line "
            "overrides it",
        ),
        Planned("signal", "INT", "as Ctrl-C: pytest prints its summary before it ends"),
        Planned("kill_after", "5s", "then SIGKILL for whatever is left"),
        Planned("nice", WORKLOAD_NICE, "where it shares a CPU, the workload yields"),
    ]
    # A weight shares with siblings: only systemd's scope has the host's slices beside it;
    # below tiered-run's own cgroup its siblings are other runs.
    weights = {"cpu_weight": Capability.CPU_WEIGHT, "io_weight": Capability.IO_WEIGHT}
    held = [name for name, cap in weights.items() if cap in capabilities]
    if backend == "systemd" and held:
        why = "systemd gives the run's scope this weight against the host's slices (100)"
        values += [Planned(name, RUN_WEIGHT, why) for name in held]
    if backend != "systemd":
        left_out.append(
            f"cpu_weight, io_weight: left out, with {backend} the run's siblings are other "
            "runs, not the host's slices (the systemd backend's scope has those)"
        )
    elif missing := [name for name in weights if name not in held]:
        left_out.append(f"{', '.join(missing)}: left out, nothing reads it here")
    values.append(Planned("description", "the heavy workload: test suites and stress steps"))
    return PlannedTier(name, "workload", cpus, tuple(values), tuple(left_out))


def _rounded(size: int) -> int:
    """Down to whole GiB above 4 GiB, else to 256 MiB: a value people read at a glance."""
    step = GiB if size > 4 * GiB else 256 * MiB
    return max(step, size - size % step)


def _size(size: int) -> str:
    return f"{size // GiB}G" if size % GiB == 0 else f"{size // MiB}M"
