"""Runs as Slurm jobs: each run (a `run`, a ladder step, a calibration attempt) is a job
whose allocation comes from its ceilings, with tiered-run guarding the command on the
node; the run's report comes back through a directory both sides see, so ladders and
calibrations decide and render as they do for local runs.

The job is the batch script of `export --format slurm`, with the tier file and the report
in a job directory of its own (`~/.cache/tiered-run/slurm/...`, or
`$TIERED_RUN_SLURM_DIR`: it must be on a file system the nodes share). The workload's
output is relayed to ours as the job writes it. A signal to tiered-run is passed on to
tiered-run in each job (`scancel --batch --signal`), which ends its run its own way and
writes the report; jobs still there after the grace, or a second signal, are cancelled.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tiered_run import __version__
from tiered_run.errors import TieredRunError, UsageError
from tiered_run.export.slurm import allocation, guarded_argv, tier_config
from tiered_run.host import signals
from tiered_run.inputs.identity import LOGIN_NAMES
from tiered_run.model.report import Event, Outcome, RunReport
from tiered_run.model.spec import RunSpec
from tiered_run.policy.exit_codes import EXIT_TOOL, signal_exit

# Job states after which a job runs no more (squeue's %T).
ENDED = frozenset(
    {
        "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
        "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT",
    }
)  # fmt: skip
REPORT_WAIT_S = 5.0  # for a report written on the node to show on the shared file system
CANCEL_AFTER_S = 30.0  # beyond the runs' grace: time for tiered-run in a job to report


class SlurmError(TieredRunError):
    """A Slurm command failed (not a run: a run that fails is a report)."""


def work_root() -> Path:
    if env := os.environ.get("TIERED_RUN_SLURM_DIR"):
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tiered-run" / "slurm"


def check_slurm() -> None:
    """Refuse before anything runs where Slurm's commands are missing."""
    missing = [name for name in ("sbatch", "squeue", "scancel") if shutil.which(name) is None]
    if missing:
        raise UsageError(
            f"--executor slurm: {', '.join(missing)} not found; install Slurm's client "
            "commands (e.g. apt-get install slurm-client) or drop --executor slurm"
        )


@dataclass
class _Job:
    spec: RunSpec
    directory: Path
    id: str = ""
    state: str = "PENDING"
    node: str = ""
    problem: str = ""  # why it could not be submitted
    offsets: dict[str, int] = field(default_factory=lambda: {"out": 0, "err": 0})

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ended(self) -> bool:
        return self.state in ENDED or bool(self.problem)


@dataclass
class _Ending:
    """How far the jobs of one `run_many` are in being ended by a signal to tiered-run."""

    seen: int  # signals received when last looked
    passed_on: bool = False
    cancel_at: float | None = None
    give_up_at: float | None = None  # after a second signal: stop waiting for Slurm


@dataclass
class SlurmExecutor:
    """A runner (`RunSpec, on_event -> RunReport`) that runs each spec as a Slurm job, and
    `run_many` for runs that do not depend on each other, submitted together."""

    remote = True  # runs on another machine: this host's load says nothing about them

    protected: dict[int, str] = field(default_factory=dict)
    partition: str | None = None
    say: Callable[[str], None] | None = None
    poll_s: float = 0.5
    tiered_run: tuple[str, ...] = (sys.executable, "-m", "tiered_run")

    def __call__(self, spec: RunSpec, on_event: Callable[[Event], None] | None = None) -> RunReport:
        runs = self.run_many([spec])
        try:
            return next(runs)
        finally:
            runs.close()

    def run_many(self, specs: Iterable[RunSpec]) -> Iterator[RunReport]:
        """Submit every spec at once and yield their reports in order; closing the
        iterator early cancels the jobs it has not yielded."""
        signals.claim()  # a signal now ends the jobs, and their reports say so
        root = work_root()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        jobs = [_Job(spec, Path(tempfile.mkdtemp(prefix="job-", dir=root))) for spec in specs]
        done = 0
        ending = _Ending(signals.count())
        try:
            for job in jobs:
                try:
                    self._submit(job)
                except SlurmError as err:
                    job.state, job.problem = "NOT_SUBMITTED", str(err)
            while done < len(jobs):
                self._wait(jobs, jobs[done], ending)
                yield self._collect(jobs[done])
                done += 1
        finally:
            left = [job for job in jobs[done:] if job.id and not job.ended]
            if left:
                _scancel([job.id for job in left])
            for job in jobs[done:]:
                shutil.rmtree(job.directory, ignore_errors=True)

    # -- one job -----------------------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        spec = job.spec
        job.path("tier.toml").write_text(tier_config(spec, self.protected))
        argv = guarded_argv(
            self.tiered_run, spec, _added_env(spec), str(job.path("tier.toml")),
            str(job.path("report.json")), allow_protected=bool(set(spec.limits.cpus) &
            set(self.protected)), own=True,
        )  # fmt: skip
        job.path("job.sh").write_text(f"#!/bin/sh\nexec {shlex.join(argv)}\n")
        options = [
            f"--job-name=tiered-run-{spec.tier}",
            *allocation(spec).directives(),
            f"--output={job.path('out')}",
            f"--error={job.path('err')}",
            f"--chdir={spec.cwd or os.getcwd()}",
            *([f"--partition={self.partition}"] if self.partition else []),
        ]
        out = _slurm(["sbatch", "--parsable", *options, str(job.path("job.sh"))])
        job.id = out.strip().split(";")[0]
        if self.say:
            self.say(f"slurm job {job.id}: {' '.join(allocation(spec).directives())}")

    def _wait(self, jobs: list[_Job], job: _Job, ending: _Ending) -> None:
        """Poll until `job` has ended, relaying output and passing signals on meanwhile."""
        while True:
            self._poll([j for j in jobs if j.id and not j.ended])
            for each in jobs:
                _relay(each)
            if job.ended:
                return
            live = [j.id for j in jobs if j.id and not j.ended]
            if signals.count() > ending.seen:
                ending.seen = signals.count()
                received = signals.first()
                if ending.passed_on or received is None:  # a second one: no more grace
                    _scancel(live)
                    ending.give_up_at = time.monotonic() + CANCEL_AFTER_S
                else:
                    self._pass_on(jobs, received.name)
                    grace = max(j.spec.limits.kill_after for j in jobs)
                    ending.cancel_at = time.monotonic() + grace + CANCEL_AFTER_S
                    ending.passed_on = True
            if ending.cancel_at is not None and time.monotonic() > ending.cancel_at:
                _scancel(live)
                ending.cancel_at = None
            if ending.give_up_at is not None and time.monotonic() > ending.give_up_at:
                for each in jobs:
                    if each.id and not each.ended:
                        each.state = "CANCELLED"  # as far as we know: Slurm did not answer
                return
            if ending.passed_on:
                time.sleep(self.poll_s)  # signals.wait returns at once from now on
            else:
                signals.wait(self.poll_s)

    def _poll(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        ids = ",".join(job.id for job in jobs)
        try:
            out = _slurm(
                ["squeue", "--noheader", "--states=all", f"--jobs={ids}", "--format=%i %T %N"]
            )
        except SlurmError as err:
            if "Invalid job id" not in str(err):
                return  # the controller did not answer: ask again at the next poll
            out = ""  # jobs it has forgotten (after MinJobAge) read as ended below
        states = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
        for job in jobs:
            state, node = states.get(job.id, ("COMPLETED", ""))
            job.state, job.node = state, node or job.node

    def _pass_on(self, jobs: list[_Job], name: str) -> None:
        """The signal tiered-run got, to tiered-run in each running job (the batch shell:
        the script execs it); jobs not started yet are cancelled."""
        running = [job.id for job in jobs if job.id and job.state == "RUNNING"]
        waiting = [job.id for job in jobs if job.id and not job.ended and job.state != "RUNNING"]
        if running:
            _scancel(running, "--batch", f"--signal={name.removeprefix('SIG')}")
        if waiting:
            _scancel(waiting)

    def _collect(self, job: _Job) -> RunReport:
        deadline = time.monotonic() + REPORT_WAIT_S
        report_path = job.path("report.json")
        while not job.problem and not report_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        _relay(job)
        try:
            report = RunReport.from_dict(json.loads(report_path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            return self._missing(job, err)
        shutil.rmtree(job.directory, ignore_errors=True)
        if self.say:
            self.say(f"slurm job {job.id} on {job.node or 'its node'}: {job.state.lower()}")
        return report

    def _missing(self, job: _Job, err: Exception) -> RunReport:
        """A job that ended without a report (cancelled before it started, killed by Slurm,
        a node that failed): an interruption if tiered-run got a signal, else an error;
        the job directory stays, for its output."""
        received = signals.first()
        if received is not None:
            outcome, code = Outcome.INTERRUPTED, signal_exit(received.signum)
            message = f"interrupted: tiered-run received {received.name}; "
        else:
            outcome, code = Outcome.ERROR, EXIT_TOOL
            message = "error: "
        if job.problem:
            message += f"no slurm job could be submitted: {job.problem}"
            shutil.rmtree(job.directory, ignore_errors=True)
        else:
            why = getattr(err, "strerror", None) or str(err)
            message += f"slurm job {job.id} ended {job.state} without a report ({why}); "
            message += f"its output: {job.directory}"
        now = datetime.now(UTC).isoformat(timespec="seconds")
        spec = job.spec
        return RunReport(
            run_id=f"slurm-{job.id}", command=spec.command, tier=spec.tier,
            backend="slurm", backend_reason=f"slurm job {job.id}", outcome=outcome,
            exit_code=code, returncode=None,
            signal=received.signum if received is not None else None, message=message,
            started_at=now, wall_s=0.0, cpu_s=None, peak_memory_bytes=None,
            peak_memory_source=None, peak_tasks=None, cpus=spec.limits.cpus, cpus_seen=None,
            leftover_killed=0, limits=spec.limits.as_dict(), enforced_by_kernel=(),
            memory_high_exceeded=False, host=None, log=None, warnings=spec.warnings,
            ended_at=now, hostname=job.node, tiered_run_version=__version__,
        )  # fmt: skip


def _added_env(spec: RunSpec) -> dict[str, str]:
    """What the run's environment adds to ours, which the job inherits (sbatch exports
    it); under --user, what it adds to a login environment."""
    if spec.user is not None:
        return {key: value for key, value in spec.env.items() if key not in LOGIN_NAMES}
    return {key: value for key, value in spec.env.items() if os.environ.get(key) != value}


def _relay(job: _Job) -> None:
    """What the job wrote to its output files since the last look, to our stdout/stderr."""
    for name, fd in (("out", 1), ("err", 2)):
        try:
            with open(job.path(name), "rb") as file:
                file.seek(job.offsets[name])
                data = file.read()
        except OSError:
            continue
        job.offsets[name] += len(data)
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            pass  # our own output gone: the run goes on, as for a local run


def _scancel(ids: list[str], *options: str) -> None:
    try:
        _slurm(["scancel", *options, *ids])
    except SlurmError:
        pass  # a job that has just ended cannot be signalled: nothing to do


def _slurm(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmError(f"{argv[0]}: {err}", operation=argv[0]) from err
    if out.returncode != 0:
        detail = " ".join(out.stderr.split()) or f"exit code {out.returncode}"
        raise SlurmError(f"{argv[0]} failed: {detail}", operation=argv[0])
    return out.stdout
