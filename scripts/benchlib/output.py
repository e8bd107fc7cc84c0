"""Output: what relaying a flood of stdout, and copying it to a log, costs against the
workload writing straight to /dev/null."""

from __future__ import annotations

from functools import partial

from .context import Bench, MiB
from .figures import Figure, fmt
from .guards import PY
from .sampling import SampleError, interleave, log, median, ratio
from .workloads import FLOOD, FLOOD_MIB


def output(bench: Bench) -> None:
    rounds = bench.settings.output_rounds
    log(f"output: {FLOOD_MIB} MiB to stdout (/dev/null), {rounds} rounds")
    failures: list[str] = []

    def flood_under(guard: str, with_log: bool, code: str) -> float:
        log_file = bench.path("flood-log") if with_log else None
        out = bench.path("runexec-flood")
        argv = bench.argv(guard, [PY, "-c", code], timeout=60, log_file=log_file, output=out)
        try:
            wall = bench.wall_ms(argv, 120)
            if log_file is not None and log_file.stat().st_size != FLOOD_MIB * MiB:
                raise SampleError(f"--log holds {log_file.stat().st_size} bytes")
        finally:
            for path in (log_file, out):
                if path is not None:
                    path.unlink(missing_ok=True)
        return wall

    samplers = {
        g: partial(flood_under, g, False, FLOOD)
        for g in bench.guards("bare", "tiered-run", "runexec")
    }
    samplers["tiered-run --log"] = partial(flood_under, "tiered-run", True, FLOOD)
    if bench.has("timeout"):
        samplers["timeout"] = partial(flood_under, "timeout", False, FLOOD)
    samplers["tiered-run, no output"] = partial(flood_under, "tiered-run", False, "pass")
    samplers["bare, no output"] = partial(flood_under, "bare", False, "pass")
    got = interleave(rounds, samplers, failures, warmup=True)
    wall = {name: median(values) for name, values in got.items()}
    bare, rx = wall.get("bare"), wall.get("runexec")
    mine_true, bare_true = wall.get("tiered-run, no output"), wall.get("bare, no output")
    start_cost = None
    if mine_true is not None and bare_true is not None:
        start_cost = mine_true - bare_true
    peers = bench.cells(wall, " ms", runexec=0, timeout=0, bare=0)
    peers["runexec"] += " (to a file)"
    for key, name in (("output_plain", "tiered-run"), ("output_log", "tiered-run --log")):
        mine = wall.get(name)
        value = ratio(mine, bare)
        notes = []
        if mine is not None and rx is not None:
            notes.append(f"{mine / rx:.2f}x runexec")
        if mine is not None and bare and start_cost is not None:
            notes.append(f"net of start-up {(mine - start_cost) / bare:.2f}x bare")
        figure = Figure(
            key=key,
            label=f"output: {FLOOD_MIB} MiB to stdout"
            + (", with --log" if "log" in name else "")
            + ", wall / bare",
            value=value,
            unit="x bare",
            shown=f"{value:.2f}x bare ({fmt(mine, ' ms', 0)})"
            if value is not None
            else fmt(mine, " ms", 0),
            target="<= 1.2x bare",
            peers=dict(peers),
            measured={
                "wall_ms": wall,
                "ratio_to_runexec": ratio(mine, rx),
                "startup_cost_ms": start_cost,
            },
            note="; ".join(notes),
            samples=got if key == "output_plain" else {},
            failures=failures if key == "output_plain" else [],
        )
        bench.add(figure.judged(1.2, "x"))
