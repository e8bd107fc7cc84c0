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
    samplers["tee"] = partial(tee_flood, bench)
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
    tee_figure(bench, wall, got)
    log_memory(bench)


def tee_flood(bench: Bench) -> float:
    """The same flood through `CMD | tee FILE`, tee's stdout to /dev/null as the guards'."""
    log_file = bench.path("tee-log")
    argv = ["sh", "-c", '"$0" -c "$1" | tee "$2"', PY, FLOOD, str(log_file)]
    try:
        wall = bench.wall_ms(argv, 120)
        if log_file.stat().st_size != FLOOD_MIB * MiB:
            raise SampleError(f"tee's file holds {log_file.stat().st_size} bytes")
    finally:
        log_file.unlink(missing_ok=True)
    return wall


def tee_figure(bench: Bench, wall: dict[str, float | None], got: dict[str, list[float]]) -> None:
    mine, tee = wall.get("tiered-run --log"), wall.get("tee")
    mine_s, tee_s = got.get("tiered-run --log", []), got.get("tee", [])
    pairs = [m / t for m, t in zip(mine_s, tee_s, strict=False) if t]
    value = ratio(mine, tee)
    figure = Figure(
        key="output_log_vs_tee",
        label=f"output: {FLOOD_MIB} MiB through --log, wall / tee (`CMD` piped to `tee FILE`)",
        value=value,
        unit="x tee",
        shown=f"{value:.2f}x tee ({fmt(mine, ' ms', 0)})" if value is not None else "failed",
        target="<= 1.2x tee (aim 1.0x)",
        peers={"runexec": "-", "timeout": "-", "bare": f"tee {fmt(tee, ' ms', 0)}"},
        measured={"tiered_run_log_ms": mine, "tee_ms": tee},
        note=f"paired median {median(pairs):.2f}x" if pairs else "",
        samples={"tee_ms": got.get("tee", [])},
    )
    bench.add(figure.judged(1.2, "x"))


LOG_MIB = 1024


def log_memory(bench: Bench) -> None:
    """tiered-run's peak RSS while 1 GiB passes through --log: ru_maxrss from wait4, the
    largest of tiered-run and the processes it waited for (the workload, a small Python)."""
    rounds = max(1, bench.settings.output_rounds // 3)
    log(f"output: {LOG_MIB} MiB through --log, peak RSS, {rounds} rounds")
    failures: list[str] = []
    code = FLOOD.replace(f"range({FLOOD_MIB})", f"range({LOG_MIB})")

    def peak_kib() -> float:
        log_file = bench.path("rss-log")
        argv = bench.argv("tiered-run", [PY, "-c", code], timeout=120, log_file=log_file)
        try:
            with bench.launch(argv) as run:
                run.wait(180)
            if run.returncode != 0:
                raise run.failure()
            if log_file.stat().st_size != LOG_MIB * MiB:
                raise SampleError(f"--log holds {log_file.stat().st_size} bytes")
        finally:
            log_file.unlink(missing_ok=True)
        return float(run.rusage.ru_maxrss)

    got = interleave(rounds, {"tiered-run": peak_kib}, failures)
    peak = median(got["tiered-run"])
    value = peak / 1024 if peak is not None else None
    figure = Figure(
        key="log_peak_rss",
        label=f"peak RSS of tiered-run, {LOG_MIB} MiB through --log (wait4 ru_maxrss)",
        value=value,
        unit="MiB",
        shown=fmt(value, " MiB"),
        target="<= 40 MiB (aim 30 MiB)",
        measured={"peak_kib": peak},
        note="the largest of tiered-run and the processes it waited for",
        samples={"peak_kib": got["tiered-run"]},
        failures=failures,
    )
    bench.add(figure.judged(40, " MiB"))
