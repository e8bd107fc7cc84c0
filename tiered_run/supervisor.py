"""One guarded run, start to finish: container, watchdog, spawn, monitor, cleanup, report.

Cleanup runs in a fixed order whatever happened: stop the monitor, kill what is left,
close outputs, read the final counters, remove the container, release the watchdog.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from tiered_run.backends import select_backend
from tiered_run.backends.base import Backend, Capability
from tiered_run.backends.cgroupfs import new_run_id
from tiered_run.errors import BackendError
from tiered_run.launch import SpawnError, spawn
from tiered_run.machine import HostReader
from tiered_run.monitor import Monitor, terminate_tree
from tiered_run.outputs import open_log
from tiered_run.policy import Breach, find_breach
from tiered_run.report import (
    Event,
    HostSummary,
    Outcome,
    RunReport,
    exit_code_for,
    signal_name,
)
from tiered_run.sentinel import Sentinel
from tiered_run.spec import RunSpec
from tiered_run.tee import Tee

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
KERNEL_ENFORCED = (
    Capability.CPUSET,
    Capability.MEMORY_LIMIT,
    Capability.MEMORY_HIGH,
    Capability.TASKS_LIMIT,
)


def run(spec: RunSpec, on_event: Callable[[Event], None] | None = None) -> RunReport:
    backend, reason = select_backend(spec.backend, spec.tier)
    return Supervisor(spec, backend, reason, on_event).run()


class Supervisor:
    def __init__(
        self,
        spec: RunSpec,
        backend: Backend,
        backend_reason: str,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.backend_reason = backend_reason
        self.on_event = on_event
        self.run_id = new_run_id()
        self._signum: int | None = None
        self._monitor: Monitor | None = None
        self.warnings: list[str] = []  # cleanup and watchdog trouble: the result stands

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signum = self._signum or signum
        self._deliver(signum)

    def _deliver(self, signum: int) -> None:
        """Turn a signal to tiered-run into the run's end; a second one skips the grace."""
        if self._monitor is not None:
            self._monitor.request(
                Breach(Outcome.INTERRUPTED, f"tiered-run received {signal_name(signum)}")
            )

    def run(self) -> RunReport:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in HANDLED_SIGNALS}
        try:
            report = self._run()
            return replace(report, warnings=(*report.warnings, *self.warnings))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> RunReport:
        spec, backend = self.spec, self.backend
        backend.cleanup_stale()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        tee = Tee(open_log(spec.log)) if spec.log is not None else None
        host = HostReader()
        sentinel: Sentinel | None = None
        try:
            backend.create(self.run_id, spec.limits)
            # After create: a backend may have moved tiered-run into a leaf cgroup first.
            sentinel = Sentinel(backend)
            monitor = Monitor(
                backend,
                spec.limits,
                spec.interval,
                host,
                spec.protected_cpus,
                self.on_event,
            )
            if self._signum is not None:
                message = f"tiered-run received {signal_name(self._signum)} before the start"
                return self._report(
                    started_at, monitor, Outcome.INTERRUPTED, message, 128 + self._signum
                )
            try:
                child = spawn(spec, backend, tee.child_fds if tee else None)
            except SpawnError as err:
                return self._report(started_at, monitor, Outcome.ERROR, str(err), err.exit_code)
            try:
                backend.started(child.pid)
            except BackendError:
                child.popen.kill()
                child.popen.wait()
                raise
            monitor.start()
            self._monitor = monitor
            sentinel.watch(child.pid)
            if tee is not None:
                tee.start()
            if self._signum is not None:
                self._deliver(self._signum)
            _, status, rusage = os.wait4(child.pid, 0)
            child.popen.returncode = os.waitstatus_to_exitcode(status)
            monitor.stop()
            leftovers = self._end_leftovers(monitor)
            wall = monitor.elapsed()
            if tee is not None:
                tee.close()
                tee = None
            final = backend.sample()
            monitor.peaks.add_usage(final)
            cpu_rusage = rusage.ru_utime + rusage.ru_stime
            monitor.peaks.cpu_s = max(monitor.peaks.cpu_s or 0.0, cpu_rusage)
            breach = monitor.breach or find_breach(spec.limits, final, None, backend.capabilities)
            return self._classify(started_at, monitor, breach, status, leftovers, wall)
        finally:
            self._monitor = None
            try:
                if backend.pids():
                    backend.kill(signal.SIGKILL)
                if tee is not None:
                    tee.close()
                backend.remove()
            except BackendError as err:
                self.warnings.append(f"cleanup: {err}; the next start retries")
            finally:
                host.close()
                if sentinel is not None and not sentinel.release():
                    self.warnings.append("watchdog lost: it was killed during the run")

    def _end_leftovers(self, monitor: Monitor) -> int:
        """Processes still in the tree after the main one ended by itself: count, then kill."""
        remaining = self.backend.pids()
        if not remaining:
            return 0
        if monitor.breach is None:
            monitor.note("leftovers", f"{len(remaining)} process(es) outlived the main process")
        terminate_tree(self.backend, self.spec.limits.kill_after)
        return len(remaining) if monitor.breach is None else 0

    def _classify(
        self,
        started_at: str,
        monitor: Monitor,
        breach: Breach | None,
        status: int,
        leftovers: int,
        wall: float,
    ) -> RunReport:
        returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if breach is not None:
            outcome, message = breach.outcome, breach.message
            if monitor.killed_by_sigkill:
                message += f"; {monitor.killed_by_sigkill} process(es) needed SIGKILL"
        elif signum is not None:
            outcome, message = Outcome.SIGNAL, f"died of {signal_name(signum)}"
        else:
            outcome, message = Outcome.EXITED, f"exited with code {returncode}"
        if leftovers:
            message += f"; {leftovers} leftover process(es) killed"
        if outcome is Outcome.INTERRUPTED:
            code = 128 + (self._signum or signal.SIGINT)
        else:
            code = exit_code_for(outcome, returncode, signum)
        return self._report(
            started_at, monitor, outcome, message, code, returncode, signum, leftovers, wall
        )

    def _report(
        self,
        started_at: str,
        monitor: Monitor,
        outcome: Outcome,
        message: str,
        exit_code: int,
        returncode: int | None = None,
        signum: int | None = None,
        leftovers: int = 0,
        wall: float | None = None,
    ) -> RunReport:
        spec, peaks, caps = self.spec, monitor.peaks, self.backend.capabilities
        host_end = monitor.host_last
        return RunReport(
            run_id=self.run_id,
            command=spec.command,
            tier=spec.tier,
            backend=self.backend.name,
            backend_reason=self.backend_reason,
            outcome=outcome,
            exit_code=exit_code,
            returncode=returncode,
            signal=signum,
            message=message,
            started_at=started_at,
            wall_s=round(wall if wall is not None else monitor.elapsed(), 4),
            cpu_s=None if peaks.cpu_s is None else round(peaks.cpu_s, 4),
            peak_memory_bytes=peaks.memory or None,
            peak_memory_source=(
                None
                if not peaks.memory
                else "kernel"
                if Capability.MEMORY_PEAK in caps
                else "sampled"
            ),
            peak_tasks=peaks.tasks,
            cpus=spec.limits.cpus,
            cpus_seen=tuple(sorted(peaks.cpus_seen)) if peaks.cpus_known else None,
            leftover_killed=leftovers,
            limits=spec.limits.as_dict(),
            enforced_by_kernel=tuple(c.value for c in KERNEL_ENFORCED if c in caps),
            memory_high_exceeded=peaks.memory_high_exceeded,
            host=HostSummary(
                load1_start=monitor.host_start.load1,
                load1_peak=max(peaks.load1, monitor.host_start.load1),
                load1_end=host_end.load1,
                pressure_peak=peaks.pressure,
                memory_available_min=peaks.memory_available_min
                or monitor.host_start.memory_available,
                protected_cpus=spec.protected_cpus,
                protected_cpu_busy_peak=peaks.protected_busy,
            ),
            log=str(spec.log) if spec.log is not None else None,
            events=tuple(monitor.events),
            timeline=tuple(monitor.timeline.points),
        )
