"""One guarded run, start to finish: container, watchdog, spawn, monitor, cleanup, report.

Cleanup runs in a fixed order whatever happened: stop the monitor, kill what is left,
close outputs, read the final counters, remove the container, release the watchdog.
Nothing that goes wrong around the run (a log that fills the disk, a watchdog that was
killed, a cgroup that cannot be removed yet) costs the result: it becomes a warning in
the report, and the run's own exit code stands.

The monitor owns sampling and enforcement and hands back an immutable `Accounting`; the
supervisor owns everything around it (signals with their sender, the terminal and Ctrl-Z,
the watchdog, the subreaper, the log's tee) and assembles the `RunReport` from that record
and its own facts: how the main process ended, and the warnings.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tiered_run import __version__
from tiered_run.backends import select_backend
from tiered_run.backends.base import Backend
from tiered_run.backends.cgroupfs import new_run_id
from tiered_run.engine.accounting import Accounting, RusageFloor
from tiered_run.engine.before_kill import expand, look
from tiered_run.engine.ending import Ending
from tiered_run.engine.jobcontrol import StopWithTree, Terminal
from tiered_run.engine.launch import spawn
from tiered_run.engine.monitor import Monitor
from tiered_run.engine.watchdog import Sentinel
from tiered_run.errors import BackendError, SpawnError
from tiered_run.host import signals
from tiered_run.host.machine import HostReader, own_resident_bytes
from tiered_run.host.outputs import open_log
from tiered_run.host.reaper import reap_orphans, set_child_subreaper
from tiered_run.inputs.units import plural
from tiered_run.model.report import (
    BeforeKill,
    Event,
    Outcome,
    RunReport,
    TimelinePoint,
    signal_name,
)
from tiered_run.model.spec import RunSpec
from tiered_run.model.usage import Usage, io_source, memory_method, memory_source
from tiered_run.policy.breaches import Breach, kernel_enforced, not_enforced
from tiered_run.policy.exit_codes import EXIT_TOOL, exit_code_for, signal_exit

if TYPE_CHECKING:
    from tiered_run.engine.container import ContainerRun
    from tiered_run.engine.tee import Tee

# Signals a terminal sends to its whole foreground process group.
_TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
_STOP_CAUSES = {
    signal.SIGTSTP: "SIGTSTP (Ctrl-Z)",
    signal.SIGTTIN: "SIGTTIN (a read from the terminal in the background)",
    signal.SIGTTOU: "SIGTTOU (a write to the terminal in the background)",
}


def run(
    spec: RunSpec,
    on_event: Callable[[Event], None] | None = None,
    on_sample: Callable[[TimelinePoint], None] | None = None,
) -> RunReport:
    """One guarded run. `on_event` and `on_sample` get the monitor's events and every
    sample as they happen (see `Monitor`); they must never block."""
    backend, reason = select_backend(spec.backend, spec.tier)
    return Supervisor(spec, backend, reason, on_event, on_sample).run()


@dataclass(frozen=True)
class _End:
    """How the run ended, before the cleanup's warnings are known."""

    outcome: Outcome
    message: str
    exit_code: int
    returncode: int | None = None
    signum: int | None = None


class Supervisor:
    def __init__(
        self,
        spec: RunSpec,
        backend: Backend,
        backend_reason: str,
        on_event: Callable[[Event], None] | None = None,
        on_sample: Callable[[TimelinePoint], None] | None = None,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.backend_reason = backend_reason
        self.on_event = on_event
        self.on_sample = on_sample
        self.run_id = new_run_id()
        self.warnings: list[str] = []
        self._signal: signals.Received | None = None
        self._monitor: Monitor | None = None  # set while the run is live
        self._notes: Monitor | None = None  # the run's monitor, from before the spawn
        self._terminal: Terminal | None = None
        self._main_pid: int | None = None
        self._held = signals.Held()  # during the spawn: the main pid is not known yet
        self._container: ContainerRun | None = None

    # -- signals to tiered-run --------------------------------------------------------------

    def _on_signal(self, received: signals.Received) -> None:
        """From the signal thread: end the run, unless the run itself sent the signal."""
        if self._held.took(received):
            return
        if self._sent_by_the_run(received):
            # At a terminal the workload shares tiered-run's process group, so its own
            # `kill 0` (a common `trap 'kill 0' EXIT`) reaches tiered-run too; it is the
            # workload's business, not a request to end the run.
            if self._notes is not None:
                self._notes.note(
                    "signal",
                    f"{received.name} from pid {received.sender} of the run itself "
                    "(kill 0?): not taken as an interruption",
                )
            return
        self._signal = self._signal or received
        if self._monitor is not None:
            self._deliver(received)

    def _sent_by_the_run(self, received: signals.Received) -> bool:
        sender = received.sender
        if sender is None or sender == os.getpid() or self._main_pid is None:
            return False
        if sender == self._main_pid:
            return True
        try:
            return sender in self.backend.pids()
        except BackendError:
            return False

    def _deliver(self, received: signals.Received) -> None:
        """End the run; the signal is passed on as itself, a second one skips the grace."""
        assert self._monitor is not None
        spare = None
        if received.from_kernel and received.signum in _TERMINAL_SIGNALS:
            spare = os.getpgrp()  # the terminal sent it to our whole group already
        self._monitor.request(
            Breach(Outcome.INTERRUPTED, f"tiered-run received {received.name}"),
            Ending(received.signum, spare),
        )

    def _stop_tree(self, signum: int) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        why = _STOP_CAUSES.get(signum, signal_name(signum))
        monitor.suspend(f"tiered-run got {why}: whole tree stopped, timeout paused")
        try:
            self.backend.freeze(True)
        except BackendError:
            self.backend.kill(signal.SIGSTOP)

    def _continue_tree(self) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        if not monitor.load_paused:
            try:
                self.backend.freeze(False)
            finally:
                self.backend.kill(signal.SIGCONT)  # those a terminal's stop signal stopped
        monitor.resume("tiered-run got SIGCONT (fg or bg)")

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> RunReport:
        signals.claim()
        with signals.listening(self._on_signal):
            return self._run()

    def _run(self) -> RunReport:
        spec, backend = self.spec, self.backend
        log_fd = open_log(spec.log) if spec.log is not None else None
        backend.cleanup_stale()  # what runs whose tiered-run died left behind; never fails
        if spec.container is not None:
            from tiered_run.engine.container import ContainerRun, sweep_stale

            sweep_stale(spec.container, backend.stale_parents())
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        tee = _tee(log_fd) if log_fd is not None else None
        host = HostReader()
        sentinel: Sentinel | None = None
        self._terminal = Terminal.controlling()
        try:
            backend.create(self.run_id, spec.limits)
            if spec.container is not None:
                self._container = ContainerRun.prepare(spec.container, self.run_id, backend)
            # After create: a backend may have moved tiered-run into a leaf cgroup first.
            sentinel = Sentinel(backend, self._container.remove if self._container else None)
            backend.report_tree(sentinel.track)
            # After the watchdog forked: it must not become one of our orphans.
            set_child_subreaper(True)
            monitor = self._notes = Monitor(
                backend,
                spec.limits,
                spec.interval,
                host,
                spec.protected_cpus,
                self.on_event,
                before_kill=self._look if spec.before_kill else None,
                on_sample=self.on_sample,
                # A container's runtime makes groups below the run and removes them before
                # tiered-run does: on cgroup v1 the forks refused there are counted only there.
                every_sample=spec.container is not None,
            )
            with StopWithTree(self._stop_tree, self._continue_tree):
                end, accounting = self._supervise(monitor, tee, sentinel)
        finally:
            self._monitor = None
            self._clean_up(tee, sentinel)
            host.close()
            if self._terminal is not None:
                self._terminal.close()
        return self._report(started_at, accounting, end)

    def _supervise(
        self, monitor: Monitor, tee: Tee | None, sentinel: Sentinel
    ) -> tuple[_End, Accounting]:
        spec, backend = self.spec, self.backend
        pending = self._signal or signals.first()
        if pending is not None:
            self._signal = pending
            message = f"tiered-run received {pending.name} before the start"
            return _End(Outcome.INTERRUPTED, message, signal_exit(pending.signum)), monitor.finish()
        pre_exec = own_resident_bytes()
        launched = self._container.launched(spec) if self._container is not None else spec
        self._held.hold()
        try:
            child = spawn(
                launched,
                backend,
                tee.child_fds if tee else None,
                own_session=self._terminal is None,
            )
        except SpawnError as err:
            return _End(Outcome.ERROR, str(err), err.exit_code), monitor.finish()
        else:
            self._main_pid = child.pid
        finally:
            for received in self._held.release():  # judged now that the main pid is known
                self._on_signal(received)
        try:
            backend.started(child.pid)
        except BackendError:
            child.popen.kill()
            child.popen.wait()
            raise
        if self._container is not None:
            self._container.started(child.pid)
        monitor.start(child.pid)
        self._monitor = monitor
        if not _tell(sentinel.watch, child.pid):
            self.warnings.append(
                "watchdog lost: it was killed before the run started; had tiered-run been "
                "killed too, nothing would have ended the tree"
            )
        if tee is not None:
            tee.start()
        if self._signal is not None:
            self._deliver(self._signal)
        _, status, rusage = os.wait4(child.pid, 0)
        child.popen.returncode = os.waitstatus_to_exitcode(status)
        monitor.stop()
        monitor.end_leftovers()
        if tee is not None:
            # The log gets the last look's output too, after the workload's last words.
            looked = monitor.looked
            tee.close(trailer=looked.framed().encode(errors="surrogateescape") if looked else b"")
            self.warnings.extend(tee.warnings)
        floor = RusageFloor.from_wait4(rusage, pre_exec)
        if monitor.failed:
            accounting = monitor.finish(None, floor)
            message = f"the monitor failed, so the run was ended: {accounting.failure}"
            return _End(Outcome.ERROR, message, EXIT_TOOL), accounting
        try:
            final = backend.sample()
        except Exception as err:  # the run is over; its result stands
            self.warnings.append(f"the final counters could not be read: {err}")
            final = Usage()
        accounting = monitor.finish(final, floor)
        return self._classify(accounting, status), accounting

    def _look(self, hurry: threading.Event) -> BeforeKill:
        """--before-kill, from the monitor at a breach: its placeholders filled in now."""
        cgroup = self.backend.cgroup_path()
        command = expand(self.spec.before_kill, self._main_pid, str(cgroup) if cgroup else None)
        return look(command, hurry)

    def _clean_up(self, tee: Tee | None, sentinel: Sentinel | None) -> None:
        """Kill what is left, close outputs, remove the container, release the watchdog.

        Each step runs even if one before it failed; failures become warnings."""
        backend = self.backend
        try:
            if backend.pids():
                backend.kill(signal.SIGKILL)
        except BackendError as err:
            self.warnings.append(f"cleanup: {err}")
        if tee is not None:
            tee.close()
        if self._container is not None:
            self.warnings.extend(self._container.remove())
        try:
            backend.remove()
        except BackendError as err:
            self.warnings.append(f"cleanup: {err}; the next start of tiered-run retries it")
        keep = () if self._main_pid is None else (self._main_pid,)
        reap_orphans(keep)
        set_child_subreaper(False)
        if sentinel is not None and not _tell(sentinel.release):
            self.warnings.append("watchdog lost: it was killed during the run")

    def _classify(self, accounting: Accounting, status: int) -> _End:
        """The outcome of a run whose main process was waited for, and its exit code."""
        returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        breach = accounting.breach
        if breach is not None:
            outcome, message = breach.outcome, breach.message
            if accounting.sigkilled:
                message += f"; {plural(accounting.sigkilled, 'process')} needed SIGKILL"
        elif signum is not None:
            outcome, message = Outcome.SIGNAL, f"died of {signal_name(signum)}"
        else:
            outcome, message = Outcome.EXITED, f"exited with code {returncode}"
        if accounting.leftovers:
            message += f"; {plural(accounting.leftovers, 'leftover process')} killed"
        if outcome is Outcome.INTERRUPTED:
            code = signal_exit(self._signal.signum if self._signal else signal.SIGINT)
        else:
            code = exit_code_for(outcome, returncode, signum)
        return _End(outcome, message, code, returncode, signum)

    def _report(self, started_at: str, accounting: Accounting, end: _End) -> RunReport:
        spec, peaks, caps = self.spec, accounting.peaks, self.backend.capabilities
        message = end.message
        if end.outcome not in (Outcome.EXITED, Outcome.SIGNAL):
            # "exited with code 3" and "died of SIGSEGV" say how the run ended; every other
            # message is a detail that needs its outcome in front to stand alone.
            message = f"{end.outcome.value}: {message}"
        memory = peaks.memory or None
        reason = self.backend_reason + (self._container.reason if self._container else "")
        return RunReport(
            run_id=self.run_id,
            command=spec.command,
            tier=spec.tier,
            backend=self.backend.name,
            backend_reason=reason,
            outcome=end.outcome,
            exit_code=end.exit_code,
            returncode=end.returncode,
            signal=end.signum,
            message=message,
            started_at=started_at,
            wall_s=round(accounting.wall_s, 4),
            cpu_s=None if peaks.cpu_s is None else round(peaks.cpu_s, 4),
            peak_memory_bytes=memory,
            peak_memory_source=None if memory is None else memory_source(caps),
            peak_tasks=peaks.tasks,
            cpus=spec.limits.cpus,
            cpus_seen=tuple(sorted(peaks.cpus_seen)) if peaks.cpus_known else None,
            leftover_killed=accounting.leftovers,
            limits=spec.limits.as_dict(),
            enforced_by_kernel=kernel_enforced(spec.limits, caps),
            memory_high_exceeded=peaks.memory_high_exceeded,
            host=accounting.host_summary(spec.protected_cpus),
            log=str(spec.log) if spec.log is not None else None,
            warnings=(*spec.warnings, *self.warnings),
            not_enforced=not_enforced(spec.limits, caps),
            ended_at=datetime.now(UTC).isoformat(timespec="seconds"),
            hostname=os.uname().nodename,
            tiered_run_version=__version__,
            peak_memory_method=None if memory is None else memory_method(caps, spec.interval),
            peak_memory_unreclaimable_bytes=peaks.unreclaimable,
            memory_split=None if peaks.split is None else peaks.split.to_dict(),
            io=None if peaks.io is None else peaks.io.to_dict(),
            io_source=None if peaks.io is None else io_source(caps),
            cpu_throttled_s=_rounded(peaks.cpu_throttled_s),
            pressure_stall=None if peaks.stalls is None else peaks.stalls.to_dict(),
            events=accounting.events,
            timeline=accounting.timeline,
            before_kill=accounting.before_kill,
        )


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


def _tell(call: Callable[..., object], *args: object) -> bool:
    """A message to the watchdog; False when it is gone (its pipe is broken)."""
    try:
        result = call(*args)
    except OSError:
        return False
    return result is not False


def _tee(log_fd: int) -> Tee:
    from tiered_run.engine.tee import Tee  # only with --log

    return Tee(log_fd)
