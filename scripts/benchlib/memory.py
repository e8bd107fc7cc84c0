"""Memory ceiling: how far past it a fast-growing workload gets under each guard, and what
each guard says happened."""

from __future__ import annotations

import json
import signal
from collections import Counter
from functools import partial
from typing import Any

from .context import Bench, MiB
from .figures import Figure
from .guards import CEILING_GUARDS, GUARDS, PY, parse_runexec, per_guard
from .sampling import interleave, log, ratio
from .workloads import HOG


def memory(bench: Bench) -> None:
    ceiling = bench.settings.memory_ceiling
    log(
        f"memory: a hog at about 1 GiB/s against a {ceiling // MiB} MiB ceiling, "
        f"{bench.settings.memory_rounds} rounds"
    )
    failures: list[str] = []

    def hog_under(guard: str) -> dict[str, Any]:
        report = bench.path("report")
        result = bench.path("runexec-result") if guard == "runexec" else None
        argv = bench.argv(guard, [PY, "-c", HOG], timeout=60, memory=ceiling, report=report)
        with bench.launch(argv, stdout=result) as run:
            run.wait(120)
        if guard == "tiered-run":
            if not report.exists():
                raise run.failure("no report")
            data = json.loads(report.read_text())
            return {
                "peak": data["peak_memory_bytes"],
                "source": data["peak_memory_source"],
                "outcome": f"{data['outcome']} (exit {data['exit_code']})",
                "stopped": data["outcome"] == "memory" and data["exit_code"] == 122,
            }
        if result is not None:
            values = parse_runexec(result)
            raw = values.get("memory", "").removesuffix("B")
            reason = values.get("terminationreason")
            return {
                "peak": int(raw) if raw.isdigit() else None,
                "source": "runexec memory=",
                "outcome": reason or f"exit {values.get('returnvalue')}",
                "stopped": reason == "memory",
            }
        return {
            "peak": run.rusage.ru_maxrss * 1024,
            "source": "wait4 ru_maxrss",
            "outcome": exit_text(run.returncode),
            "stopped": run.returncode != 0,
        }

    samplers = {g: partial(hog_under, g) for g in bench.guards(*CEILING_GUARDS)}
    got = interleave(bench.settings.memory_rounds, samplers, failures)
    peak = per_guard(got, "peak")
    rel = {g: ratio(peak[g], ceiling) for g in GUARDS}

    def peak_cell(guard: str) -> str:
        if peak[guard] is None:
            return bench.peer(guard, "failed")
        source = got[guard][0]["source"]
        return f"{rel[guard]:.2f} ({peak[guard] / MiB:.0f} MiB, {source})"

    figure = Figure(
        key="memory_peak",
        label=f"memory: reported peak / {ceiling // MiB} MiB ceiling ({bench.backend()})",
        value=rel["tiered-run"],
        unit="x ceiling",
        shown=peak_cell("tiered-run"),
        target="<= 1.0",
        peers={g: peak_cell(g) for g in ("runexec", "timeout")},
        measured={"peak_bytes": peak, "peak_over_ceiling": rel},
        note="timeout: prlimit --as bounds address space, not memory in use",
        samples={g: got.get(g, []) for g in GUARDS if g in got},
        failures=failures,
    )
    bench.add(figure.judged(1.0, "x"))

    def outcomes(guard: str) -> str:
        counts = Counter(s["outcome"] for s in got.get(guard, []))
        if not counts:
            return bench.peer(guard, "failed")
        return ", ".join(o if c == 1 else f"{o} x{c}" for o, c in counts.items())

    runs = got.get("tiered-run", [])
    ok = all(s["stopped"] for s in runs) if runs else None
    bench.add(
        Figure(
            key="memory_outcome",
            label="memory: the outcome reported",
            value=outcomes("tiered-run"),
            unit="",
            shown=outcomes("tiered-run"),
            target="memory (exit 122)",
            passed=ok,
            verdict="n/a: no data" if ok is None else "pass" if ok else "MISS",
            peers={g: outcomes(g) for g in ("runexec", "timeout")},
        )
    )


def exit_text(code: int) -> str:
    if code < 0:
        return f"{signal.Signals(-code).name}"
    if code > 128 and code - 128 in signal.valid_signals():
        return f"exit {code} ({signal.Signals(code - 128).name})"
    return f"exit {code}"
