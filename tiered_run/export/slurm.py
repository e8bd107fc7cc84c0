"""Slurm: a batch script whose allocation comes from the tier's ceilings, and which runs
the command under tiered-run inside it, so that the tree is guarded on the node as it is
here and the run's report is written there.

Slurm allocates CPUs by count, memory in MiB and time in minutes, and signals a job
before its time limit (`--signal`); tiered-run inside enforces the rest (which CPUs, the
soft ceiling, tasks, the exact timeout, the ending signal and its grace, host load).
The `Executor` of `workflows.slurm` submits the same script.
"""

from __future__ import annotations

import math
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

from tiered_run.export.sheet import Exported, Sheet, exported_settings, whole_mib
from tiered_run.inputs.settings import SETTINGS, Where
from tiered_run.inputs.units import format_cpus
from tiered_run.model.spec import RunSpec

# Room for tiered-run itself (Python, the monitor) above the workload's memory ceiling, and
# time for it to start and to write its report after the workload's timeout and grace.
OWN_MEMORY = 128 * 1024**2
OWN_TIME_S = 60
TIER_FILE_VAR = "tier_config"


@dataclass(frozen=True)
class Allocation:
    """What a job asks Slurm for."""

    cpus: int
    memory_mib: int | None
    minutes: int | None
    signal_name: str
    signal_before_s: int

    def directives(self) -> list[str]:
        """`sbatch` options, as `--name=value`."""
        options = [f"--cpus-per-task={self.cpus}"]
        if self.memory_mib is not None:
            options.append(f"--mem={self.memory_mib}M")
        if self.minutes is not None:
            options.append(f"--time={self.minutes}")
        options.append(f"--signal=B:{self.signal_name}@{self.signal_before_s}")
        return options


def allocation(spec: RunSpec) -> Allocation:
    """The allocation a run needs: its CPUs by count, its memory ceiling plus room for
    tiered-run, its timeout and grace plus a minute, rounded up to whole minutes; the
    ending signal reaches tiered-run (the batch shell) a grace plus a minute before
    Slurm's own limit, so it ends the tree its way and writes the report."""
    limits = spec.limits
    memory = None if limits.memory is None else whole_mib(limits.memory + OWN_MEMORY)
    minutes = None
    if limits.timeout is not None:
        minutes = math.ceil((limits.timeout + limits.kill_after + OWN_TIME_S) / 60)
    before = math.ceil(limits.kill_after) + OWN_TIME_S
    name = signal.Signals(limits.stop_signal).name.removeprefix("SIG")
    return Allocation(len(limits.cpus), memory, minutes, name, before)


def tier_config(spec: RunSpec, protected: dict[int, str]) -> str:
    """A config file holding the run's tier, with every ceiling resolved here, and the
    protected tiers it was checked against: tiered-run on the node then plans the run
    exactly as this machine did, whatever that node's own config says."""
    from tiered_run.inputs.settings import SETTING

    lines = []
    for cpus, name in _by_tier(protected).items():
        lines += [f"[tiers.{_key(name)}]", f'cpus = "{cpus}"', "protected = true", ""]
    lines.append(f"[tiers.{_key(spec.tier or 'batch')}]")
    for setting in SETTINGS:
        if Where.TIER not in setting.where or not setting.limit:
            continue
        value = getattr(spec.limits, setting.name)
        if value is None:
            continue
        if setting.name == "io_device":
            # Disks are numbered by each node: there the working directory's is taken.
            lines.append("# io_device: the node's disk of the working directory")
            continue
        if setting.name == "cpus":
            value = format_cpus(value)
        elif setting.name == "stop_signal":
            value = signal.Signals(value).name.removeprefix("SIG")
        lines.append(f"{setting.key} = {_toml(value)}")
    if spec.user is not None:
        lines.append(f"{SETTING['user'].key} = {_toml(spec.user.name)}")
    return f"default_tier = {_toml(spec.tier or 'batch')}\n\n" + "\n".join(lines) + "\n"


def _by_tier(protected: dict[int, str]) -> dict[str, str]:
    tiers: dict[str, list[int]] = {}
    for cpu, name in sorted(protected.items()):
        tiers.setdefault(name, []).append(cpu)
    return {format_cpus(cpus): name for name, cpus in tiers.items()}


def _key(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else _toml(name)


def _toml(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def guarded_argv(
    tiered_run: tuple[str, ...],
    spec: RunSpec,
    env: dict[str, str],
    config: str,
    report: str,
    *,
    allow_protected: bool = False,
    own: bool = False,
) -> list[str]:
    """tiered-run's command line inside the job: the tier from `config`, then every run
    setting a tier cannot hold (the host load ceilings, cwd, the environment added),
    quiet, with its report to `report`. `own`: also how this tiered-run watches (backend,
    interval, what the workload gives up), for a job of the executor."""
    argv = [*tiered_run, "run", "--config", config, "--tier", spec.tier or "batch"]
    for setting in SETTINGS:
        if Where.RUN not in setting.where or Where.TIER in setting.where:
            continue
        if setting.name in ("tier", "backend", "interval", "preserve_env"):
            continue
        value = env if setting.name == "env" else getattr(spec.limits, setting.name, None)
        if setting.name == "cwd":
            value = spec.cwd
        if value is None or value == setting.default or value == {}:
            continue
        if isinstance(value, dict):
            for key, text in value.items():
                argv += [setting.flag, f"{key}={text}"]
        else:
            argv += [setting.flag, str(getattr(value, "value", value))]
    if own:
        argv += ["--backend", spec.backend, "--interval", f"{spec.interval:g}"]
        if spec.privileges.no_new_privileges:
            argv.append("--no-new-privileges")
        if spec.privileges.drop_caps:
            argv.append("--drop-caps")
        if spec.log is not None:
            argv += ["--log", str(spec.log)]
        if spec.before_kill:
            argv += ["--before-kill", shlex.join(spec.before_kill)]
    if allow_protected:
        argv.append("--allow-protected-cpus")
    return [*argv, "-q", "--report", report, "--", *spec.command]


def batch_script(exported: Exported) -> str:
    """An sbatch script: the allocation as #SBATCH lines, the tier as a config file, and
    tiered-run guarding the command inside the job."""
    sheet = Sheet(exported, "slurm")
    spec = exported.spec
    for name in _CARRIED:  # tiered-run inside says them all
        sheet.take(name)
    sheet.note(
        "cpus",
        f"Slurm allocates {len(spec.limits.cpus)} CPU(s) by count; tiered-run keeps the tree on "
        "these CPU numbers, which the node must have (where Slurm binds jobs to CPUs, the "
        "ones it gives)",
    )
    job = allocation(spec)
    name = f"tiered-run-{spec.tier}"
    # Next to the report, where the user finds it with it: a temporary file would be left
    # behind on the node, since the script hands its process to tiered-run (exec).
    config = '"tiered-run-$SLURM_JOB_ID.toml"'
    report = "tiered-run-$SLURM_JOB_ID.json"
    argv = guarded_argv(("tiered-run",), spec, exported.env, "@CONFIG@", "@REPORT@")
    command = shlex.join(argv)
    command = command.replace("@CONFIG@", f'"${TIER_FILE_VAR}"').replace("@REPORT@", report)
    lines = ["#!/bin/sh", f"#SBATCH --job-name={name}"]
    lines += [f"#SBATCH {option}" for option in job.directives()]
    if spec.cwd is not None:
        lines.append(f"#SBATCH --chdir={Path(spec.cwd)}")
    lines += [
        "# tiered-run on the node guards the tree: CPUs "
        f"{format_cpus(spec.limits.cpus)}, every ceiling below, the report in {report}",
        f"# the tier it runs in: {config.strip(chr(34))}",
        f"{TIER_FILE_VAR}={config}",
        f"cat > \"${TIER_FILE_VAR}\" <<'TIERED_RUN_TIER'",
        tier_config(spec, exported.protected).rstrip("\n"),
        "TIERED_RUN_TIER",
        f"exec {command}",
    ]
    return lines[0] + "\n" + sheet.header() + "\n".join(lines[1:]) + "\n"


# Everything a tier or a run carries: the tier file holds the ceilings and the user, the
# command line the rest.
_CARRIED = tuple(s.name for s in exported_settings())
