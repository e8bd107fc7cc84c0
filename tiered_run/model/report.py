"""The one result type of a run (exit codes: policy.exit_codes)."""

from __future__ import annotations

import enum
import shlex
import signal as signal_module
from dataclasses import asdict, dataclass, field, fields

# 2: one unit convention (`_bytes`, `_s`, `_pct` percentages), ended_at, hostname,
# tiered_run_version, not_enforced; enforced_by_kernel lists only ceilings that are set.
# 3: before_kill, what --before-kill ran and printed.
# 4: io, io_source, cpu_throttled_s, pressure_stall; the timeline's io_*_bps; the limits'
# weights, cpu_quota_pct, I/O throttles and memory_low_bytes.
SCHEMA_VERSION = 4


class Outcome(enum.Enum):
    EXITED = "exited"  # the workload ended by itself with a return code
    TIMEOUT = "timeout"
    MEMORY = "memory"
    TASKS = "tasks"
    LOAD = "load"
    SIGNAL = "signal"  # the workload died of a signal nobody here sent
    INTERRUPTED = "interrupted"  # tiered-run itself got SIGINT/SIGTERM/SIGHUP
    ERROR = "error"  # the workload could not be started


def signal_name(signum: int | None) -> str | None:
    if not signum:
        return None
    try:
        return signal_module.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


@dataclass(frozen=True)
class TimelinePoint:
    t: float
    memory_bytes: int | None
    tasks: int | None
    cpu_s: float | None
    load1: float | None  # None where the host was not read at this sample
    pressure_pct: float | None
    # Bytes/s the tree read and wrote since the sample before (None: not measured).
    io_read_bps: float | None = None
    io_write_bps: float | None = None


@dataclass(frozen=True)
class Event:
    """Something the monitor noticed or did, at `t` seconds into the run."""

    t: float
    kind: str
    message: str


@dataclass(frozen=True)
class BeforeKill:
    """What `--before-kill` ran when a ceiling or the timeout was breached, before the first
    ending signal, and what it printed (stdout and stderr together).

    `returncode` is None when it was killed (it ran past its time, or a second signal
    hurried the end) or could not be started (`error` says why). `output` is cut to its
    first bytes, and `truncated` says so: a dump must not swell the report.
    """

    command: tuple[str, ...]
    returncode: int | None
    duration_s: float
    output: str
    truncated: bool = False
    timed_out: bool = False
    error: str | None = None

    def summary(self) -> str:
        """One line: how it ended and how much it said."""
        if self.error is not None:
            how = f"could not be started ({self.error})"
        elif self.timed_out:
            how = f"killed after {self.duration_s:.1f} s, its time limit"
        elif self.returncode is None:
            how = f"killed after {self.duration_s:.1f} s to hurry the end"
        else:
            how = f"exited with code {self.returncode} after {self.duration_s:.1f} s"
        size = len(self.output.encode(errors="surrogateescape"))
        said = f"{size} bytes of output" + (" (cut)" if self.truncated else "")
        return f"{shlex.join(self.command)}: {how}, {said}"

    def framed(self) -> str:
        """The output between two marker lines, as the log and the terminal show it."""
        body = self.output if not self.output or self.output.endswith("\n") else self.output + "\n"
        return (
            f"tiered-run: before-kill: {self.summary()}\n{body}"
            "tiered-run: before-kill: end of output\n"
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "command": list(self.command)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BeforeKill:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["command"] = tuple(values.get("command") or ())  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class HostSummary:
    """The host around the run. Pressure is PSI `some avg10`, the highest of cpu, memory
    and io, in percent, like every share in the reports."""

    load1_start: float
    load1_peak: float
    load1_end: float
    pressure_peak_pct: float | None
    memory_available_min_bytes: int
    protected_cpus: tuple[int, ...] = ()
    protected_cpu_busy_peak_pct: float | None = None


@dataclass(frozen=True)
class RunReport:
    """Everything a user or a CI job needs to know about one run."""

    run_id: str
    command: tuple[str, ...]
    tier: str | None
    backend: str
    backend_reason: str
    outcome: Outcome
    exit_code: int
    returncode: int | None
    signal: int | None
    message: str
    started_at: str
    wall_s: float
    cpu_s: float | None
    peak_memory_bytes: int | None
    peak_memory_source: str | None
    peak_tasks: int | None
    cpus: tuple[int, ...]
    cpus_seen: tuple[int, ...] | None
    leftover_killed: int
    limits: dict[str, object]
    enforced_by_kernel: tuple[str, ...]
    memory_high_exceeded: bool
    host: HostSummary | None
    log: str | None
    # Things that went wrong around the run without changing its outcome: a log that
    # could not be written, a watchdog that was killed, a cgroup that could not be removed.
    warnings: tuple[str, ...] = ()
    # Ceilings that were asked for but that only the kernel can hold and this backend has no
    # controller for (weights, a CPU quota, I/O throttles, memory_low): listed, never
    # dropped silently.
    not_enforced: tuple[str, ...] = ()
    ended_at: str | None = None
    hostname: str = ""
    tiered_run_version: str = ""
    # How peak_memory_bytes was obtained (a kernel peak counter, or sampled, and how often).
    peak_memory_method: str | None = None
    # The highest the part that cannot be reclaimed (anon + shmem + kernel memory) was, and
    # the split of the memory at that moment: the peak above also counts page cache.
    peak_memory_unreclaimable_bytes: int | None = None
    memory_split: dict[str, int | None] | None = None
    # Block I/O of the whole tree (read/write bytes and operations), and where it was read:
    # `kernel` (the cgroup's counters) or `sampled` (/proc/PID/io of the live processes,
    # a floor; no operations).
    io: dict[str, int | None] | None = None
    io_source: str | None = None
    # Time the CPU quota held the tree back (cpu.stat throttled_usec / throttled_time).
    cpu_throttled_s: float | None = None
    # Seconds some task of the run stalled for cpu, memory and io (PSI of its own cgroup).
    pressure_stall: dict[str, float | None] | None = None
    events: tuple[Event, ...] = ()
    timeline: tuple[TimelinePoint, ...] = field(default=(), repr=False)
    # What --before-kill ran at the breach, and its output; None when nothing ran.
    before_kill: BeforeKill | None = None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["command"] = list(self.command)
        data["cpus"] = list(self.cpus)
        data["cpus_seen"] = None if self.cpus_seen is None else list(self.cpus_seen)
        data["signal_name"] = signal_name(self.signal)
        data["enforced_by_kernel"] = list(self.enforced_by_kernel)
        data["warnings"] = list(self.warnings)
        data["not_enforced"] = list(self.not_enforced)
        if self.host is not None:
            data["host"]["protected_cpus"] = list(self.host.protected_cpus)
        if self.before_kill is not None:
            data["before_kill"] = self.before_kill.to_dict()
        return {"schema_version": SCHEMA_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RunReport:
        """A report read back from its JSON (`to_dict`), as one written by another
        tiered-run (a Slurm job's) is collected: keys this version does not know are left
        out, and the ones it needs must be there (KeyError, TypeError otherwise)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["outcome"] = Outcome(data["outcome"])
        for key in ("command", "cpus", "enforced_by_kernel", "warnings", "not_enforced"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])  # type: ignore[arg-type]
        if values.get("cpus_seen") is not None:
            values["cpus_seen"] = tuple(values["cpus_seen"])  # type: ignore[arg-type]
        host = data.get("host")
        if isinstance(host, dict):
            host = {**host, "protected_cpus": tuple(host.get("protected_cpus", ()))}
            values["host"] = HostSummary(**host)
        values["events"] = tuple(Event(**event) for event in data.get("events", ()))  # type: ignore[union-attr]
        values["timeline"] = tuple(
            TimelinePoint(**point)
            for point in data.get("timeline", ())  # type: ignore[union-attr]
        )
        hook = data.get("before_kill")
        values["before_kill"] = BeforeKill.from_dict(hook) if isinstance(hook, dict) else None
        return cls(**values)  # type: ignore[arg-type]
