"""Kill latency and timeout precision: how soon after its deadline a guard has ended a
whole process tree, daemons included, and a single sleeper or SIGTERM ignorer."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from .context import Bench
from .figures import Figure, fmt
from .guards import CEILING_GUARDS, GUARDS, PY, parse_runexec, per_guard
from .launch import Launch, wait_for_pids
from .procs import HZ, alive, boot_now, identities, kill_survivors, sleep_until
from .sampling import SampleError, interleave, log
from .workloads import IGNORER, SLEEPER, TREE


def kill(bench: Bench) -> None:
    s = bench.settings
    limit, n, daemons = s.kill_timeout, s.tree_size, s.tree_daemons
    log(
        f"kill: {n}-process tree ({daemons} setsid'd daemons) at a {limit:g} s timeout, "
        f"{s.kill_rounds} rounds"
    )
    failures: list[str] = []

    def tree_under(guard: str) -> dict[str, Any]:
        pidfile, report = bench.path("tree"), bench.path("report")
        result = bench.path("runexec-result") if guard == "runexec" else None
        workload = [PY, "-c", TREE, str(pidfile), str(n), str(daemons), "40"]
        argv = bench.argv(guard, workload, timeout=limit, kill_after=2, report=report)
        ids: dict[int, int] = {}
        with bench.launch(argv, stdout=result) as run:
            try:
                pids = wait_for_pids(pidfile, run, limit)
                ids = identities(pids)
                if len(ids) != n:
                    raise SampleError(f"{len(ids)} of {n} processes up at the deadline")
                deadline = ids[pids[0]] / HZ + limit
                last_death, survivors = watch_deaths(ids, run, deadline)
            finally:
                kill_survivors(ids)
            run.wait(60)
        assert run.end_boot is not None
        out: dict[str, Any] = {
            "latency_ms": None if survivors else ms_after(last_death, deadline),
            "gone_ms": ms_after(last_death, deadline),
            "survivors": survivors,
            "returned_ms": ms_after(run.end_boot, deadline),
            "exit_code": run.returncode,
        }
        if guard == "tiered-run" and report.exists():
            data = json.loads(report.read_text())
            out["outcome"] = data["outcome"]
            out["leftover_killed"] = data["leftover_killed"]
        if result is not None:
            out["outcome"] = parse_runexec(result).get("terminationreason")
        return out

    samplers = {g: partial(tree_under, g) for g in bench.guards(*CEILING_GUARDS)}
    got = interleave(s.kill_rounds, samplers, failures)
    latency, gone = per_guard(got, "latency_ms"), per_guard(got, "gone_ms")
    survive = {g: max((x["survivors"] for x in got.get(g, [])), default=None) for g in GUARDS}
    returned = per_guard(got, "returned_ms")

    def latency_cell(guard: str) -> str:
        if not got.get(guard):
            return bench.peer(guard, "failed")
        if latency[guard] is not None:
            return fmt(latency[guard], " ms", 0)
        return f"{survive[guard]} survive (the rest {fmt(gone[guard], ' ms', 0)})"

    def count(value: int | None) -> str:
        return "failed" if value is None else str(value)

    figure = Figure(
        key="kill_latency",
        label=f"kill: {n}-process tree ({daemons} daemons), deadline -> last one gone",
        value=latency["tiered-run"],
        unit="ms",
        shown=latency_cell("tiered-run"),
        target="<= 150 ms (aim 100 ms)",
        peers={"runexec": latency_cell("runexec"), "timeout": latency_cell("timeout")},
        measured={"latency_ms": latency, "returned_ms": returned, "gone_ms": gone},
        note=f"tiered-run returned {fmt(returned['tiered-run'], ' ms', 0)} after the "
        "deadline; deadline = the tree's start + timeout",
        samples={g: got.get(g, []) for g in GUARDS if g in got},
        failures=failures,
    )
    bench.add(figure.judged(150, " ms"))
    figure = Figure(
        key="kill_survivors",
        label="kill: processes of the tree alive 1 s after the guard returned",
        value=survive["tiered-run"],
        unit="processes",
        shown=count(survive["tiered-run"]),
        target="0",
        peers={g: bench.peer(g, count(survive[g])) for g in ("runexec", "timeout")},
        measured={"survivors_max": survive},
        note="worst round",
    )
    bench.add(figure.judged(0, ""))


def precision(bench: Bench) -> None:
    s = bench.settings
    limit, grace = s.precision_timeout, s.precision_kill_after
    log(
        f"timeout precision: sleeper and SIGTERM ignorer at --timeout {limit:g} "
        f"--kill-after {grace:g}, {s.precision_rounds} rounds"
    )
    failures: list[str] = []

    def under(guard: str, kind: str) -> dict[str, float]:
        code = SLEEPER if kind == "sleeper" else IGNORER
        # runexec has no grace: it sends SIGKILL at its wall-time limit.
        extra = grace if kind == "ignorer" and guard != "runexec" else 0.0
        pidfile = bench.path("pid")
        workload = [PY, "-c", code, str(pidfile)]
        argv = bench.argv(guard, workload, timeout=limit, kill_after=grace)
        ids: dict[int, int] = {}
        with bench.launch(argv) as run:
            try:
                pid = wait_for_pids(pidfile, run, limit)[0]
                ids = identities([pid])
                if pid not in ids:
                    raise SampleError("the workload was gone before its deadline")
                deadline = ids[pid] / HZ + limit + extra
                sleep_until(deadline - 0.1)
                while alive(pid, ids[pid]):
                    if run.poll() and boot_now() > (run.end_boot or 0) + 1:
                        raise SampleError("the guard returned; the workload lives on")
                    if boot_now() > deadline + 40:
                        raise SampleError("the workload was never ended")
                    time.sleep(0.001)
                gone = boot_now()
            finally:
                kill_survivors(ids)
            run.wait(60)
        assert run.end_boot is not None
        return {
            "gone_ms": (gone - deadline) * 1000,
            "returned_ms": (run.end_boot - deadline) * 1000,
        }

    samplers = {
        f"{g}/{kind}": partial(under, g, kind)
        for kind in ("sleeper", "ignorer")
        for g in bench.guards(*CEILING_GUARDS)
    }
    got = interleave(s.precision_rounds, samplers, failures)
    for kind in ("sleeper", "ignorer"):
        gone = per_guard(got, "gone_ms", "{}/" + kind)
        back = per_guard(got, "returned_ms", "{}/" + kind)
        what = "sleeper" if kind == "sleeper" else "SIGTERM ignorer"
        past = f"{limit:g} s" + (f" + kill-after {grace:g} s" if kind == "ignorer" else "")
        note = f"tiered-run returned {fmt(back['tiered-run'], ' ms', 0)} past it"
        if kind == "ignorer":
            note += "; runexec: past the limit alone (it has no grace, SIGKILL at once)"
        figure = Figure(
            key=f"overshoot_{kind}",
            label=f"timeout overshoot, {what}: workload gone, past {past}",
            value=gone["tiered-run"],
            unit="ms",
            shown=fmt(gone["tiered-run"], " ms", 0),
            target="<= 25 ms (aim 10 ms)",
            peers=bench.cells(gone, " ms", runexec=0, timeout=0),
            measured={"gone_ms": gone, "returned_ms": back},
            note=note,
            samples={g: got.get(f"{g}/{kind}", []) for g in GUARDS},
            failures=[f for f in failures if f"/{kind}," in f],
        )
        bench.add(figure.judged(25, " ms"))


def watch_deaths(
    ids: dict[int, int], run: Launch, deadline: float, grace: float = 1.0
) -> tuple[float | None, int]:
    """Polls the processes from just before the deadline until all are gone, or `grace`
    after the guard returned. Returns when the last one was seen gone, and how many live."""
    root = next(iter(ids))
    sleep_until(deadline - 0.2)
    while alive(root, ids[root]) and boot_now() < deadline and not run.poll():
        time.sleep(0.001)
    living = dict(ids)
    last_death: float | None = None
    while living:
        for pid, start in list(living.items()):
            if not alive(pid, start):
                del living[pid]
                last_death = boot_now()
        if not living:
            break
        if run.poll() and boot_now() > (run.end_boot or 0) + grace:
            break
        if boot_now() > deadline + 60:
            break
        time.sleep(0.002)
    return last_death, len(living)


def ms_after(moment: float | None, deadline: float) -> float | None:
    return None if moment is None else (moment - deadline) * 1000
