"""Monitor cost: the CPU a guard itself burns while it watches idle processes, and how
that grows with their number."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial

import psutil

from .context import Bench
from .figures import Figure, fmt
from .guards import CEILING_GUARDS, PY
from .launch import wait_for_pids
from .procs import identities, kill_survivors
from .sampling import SampleError, interleave, log, median, ratio
from .workloads import HOLD


def monitor(bench: Bench) -> None:
    s = bench.settings
    hold = s.monitor_s
    log(
        f"monitor cost: guard's own CPU while it holds N idle processes for {hold:g} s, "
        f"N = {', '.join(map(str, s.monitor_ns))}"
    )
    failures: list[str] = []

    def cost(guard: str, n: int) -> float:
        ready = bench.path("hold")
        workload = [PY, "-c", HOLD, str(n), f"{hold + 1:g}", str(ready)]
        argv = bench.argv(guard, workload, timeout=hold + 60)
        tracked: dict[int, int] = {}
        with bench.launch(argv) as run:
            try:
                tracked = identities(wait_for_pids(ready, run, 30))
                if len(tracked) != n:
                    raise SampleError(f"{len(tracked)} of {n} processes up")
                t0, cpu = time.perf_counter(), OwnCpu(run.pid)
                time.sleep(hold)
                used, _source = cpu.since()
                t1 = time.perf_counter()
                if run.poll():
                    raise SampleError("the guard returned before the window closed")
                run.wait(hold + 90)
            finally:
                kill_survivors(tracked)
        if run.returncode != 0:
            raise run.failure()
        return 100 * used / (t1 - t0)

    samplers: dict[str, Callable[[], float]] = {}
    for n in sorted(set(s.monitor_ns) | set(s.monitor_peer_ns)):
        for guard in bench.guards(*CEILING_GUARDS):
            ns = s.monitor_ns if guard == "tiered-run" else s.monitor_peer_ns
            if n in ns:
                samplers[f"{guard}@{n}"] = partial(cost, guard, n)
    peers_once = {key: 1 for key in samplers if not key.startswith("tiered-run@")}
    got = interleave(s.monitor_rounds, samplers, failures, rounds_of=peers_once)
    pct = {key: median(values) for key, values in got.items()}

    def cell(guard: str, n: int) -> str:
        if not bench.has(guard):
            return bench.peer(guard, "")
        if f"{guard}@{n}" not in pct:
            return "not run"
        return fmt(pct[f"{guard}@{n}"], " %", 3)

    backend = bench.backend()
    for n in s.monitor_ns:
        value = pct.get(f"tiered-run@{n}")
        figure = Figure(
            key=f"monitor_n{n}",
            label=f"monitor CPU, {n} idle processes, {hold:g} s ({backend})",
            value=value,
            unit="% of one core",
            shown=fmt(value, " %", 3),
            target="<= 0.5 % of one core (aim: runexec's)",
            peers={"runexec": cell("runexec", n), "timeout": cell("timeout", n)},
            measured={g: pct.get(f"{g}@{n}") for g in CEILING_GUARDS},
            note="user+sys of the guard process alone, default interval; median of "
            f"{len(got.get(f'tiered-run@{n}', []))}"
            + (f"; {value * hold / 100:.3f} s of CPU in {hold:g} s" if value is not None else ""),
            samples={g: got.get(f"{g}@{n}", []) for g in ("tiered-run", "runexec")},
            failures=[f for f in failures if f.endswith(f"@{n}") or f"@{n}," in f],
        )
        bench.add(figure.judged(0.5, " %"))
    low, high = min(s.monitor_ns), max(s.monitor_ns)

    def scaling(guard: str) -> float | None:
        return ratio(pct.get(f"{guard}@{high}"), pct.get(f"{guard}@{low}"))

    peers = {}
    for guard in ("runexec", "timeout"):
        both = f"{guard}@{low}" in pct and f"{guard}@{high}" in pct
        text = fmt(scaling(guard), "x", 2) if both else "not run"
        if both and scaling(guard) is None:
            text = "n/a (no CPU used)"
        peers[guard] = bench.peer(guard, text)
    value = scaling("tiered-run")
    figure = Figure(
        key="monitor_scaling",
        label=f"monitor CPU, N={high} / N={low} ({backend})",
        value=value,
        unit="x",
        shown=fmt(value, "x", 2),
        target="<= 1.5x (aim 1.2x)",
        peers=peers,
        measured={g: scaling(g) for g in CEILING_GUARDS},
    )
    bench.add(figure.judged(1.5, "x"))


def thread_runtimes(pid: int) -> dict[int, int]:
    """Nanoseconds on CPU of each live thread of `pid` (/proc/PID/task/TID/schedstat)."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                times[int(tid)] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return times


class OwnCpu:
    """CPU time of one process itself (all its threads, none of its children).

    Per-thread schedstat runtimes are exact to the nanosecond; if a thread ended inside
    the window its time is lost there, so the tick-rounded total of /proc/PID/stat
    (psutil, 10 ms steps) is used instead."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self._threads = self._read_threads()
        self._ticks = self._read_ticks()

    def _read_threads(self) -> dict[int, int] | None:
        try:
            return thread_runtimes(self._proc.pid)
        except OSError:
            return None

    def _read_ticks(self) -> float:
        times = self._proc.cpu_times()
        return times.user + times.system

    def since(self) -> tuple[float, str]:
        """Seconds used since construction, and which counter gave them."""
        threads, ticks = self._read_threads(), self._read_ticks()
        before = self._threads
        if before is not None and threads is not None and set(before) <= set(threads):
            return sum(threads[t] - before.get(t, 0) for t in threads) / 1e9, "schedstat"
        return ticks - self._ticks, "stat ticks"
