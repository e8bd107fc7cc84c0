"""Start-up: what a guard costs before the workload runs at all, and where tiered-run's
part of it goes (its imports)."""

from __future__ import annotations

import subprocess
from collections import Counter
from functools import partial

from .context import Bench
from .figures import Figure, fmt
from .guards import GUARDS, PY, per_guard
from .sampling import SampleError, interleave, log, median, ratio


def startup(bench: Bench) -> None:
    rounds = bench.settings.startup_rounds
    log(f"start-up: `GUARD -- true`, {rounds} interleaved rounds")
    failures: list[str] = []

    def true_under(guard: str) -> dict[str, float]:
        """Wall, and CPU (user + system of the guard and of everything it waited for,
        from wait4), of one `GUARD -- true`."""
        with bench.launch(bench.argv(guard, ["true"], timeout=60, quiet=False)) as run:
            run.wait(60)
        if run.returncode != 0:
            raise run.failure()
        assert run.wall is not None and run.rusage is not None
        cpu = run.rusage.ru_utime + run.rusage.ru_stime
        return {"wall": run.wall * 1000, "cpu": cpu * 1000}

    samplers = {g: partial(true_under, g) for g in bench.guards(*GUARDS)}
    got = interleave(rounds, samplers, failures, warmup=True)
    missing = bench.missing["runexec"] or "runexec failed"
    for key, what, must, aim in (
        ("wall", "wall", 0.5, 0.35),
        ("cpu", "CPU (user+sys, wait4)", 0.8, 0.5),
    ):
        med = per_guard(got, key)
        value = ratio(med["tiered-run"], med["runexec"])
        shown = (
            f"{value:.2f}x runexec ({fmt(med['tiered-run'], ' ms', 1)})"
            if value is not None
            else fmt(med["tiered-run"], " ms", 1)
        )
        pairs = [
            t / r
            for t, r in zip(
                (s[key] for s in got.get("tiered-run", [])),
                (s[key] for s in got.get("runexec", [])),
                strict=False,
            )
            if r
        ]
        note = f"paired median {median(pairs):.2f}x" if pairs else ""
        if med["tiered-run"] is not None and med["bare"] is not None:
            note += f"{'; ' if note else ''}{med['tiered-run'] - med['bare']:.1f} ms over bare"
        figure = Figure(
            key="startup" if key == "wall" else "startup_cpu",
            label=f"start-up: {what} of `GUARD -- true`",
            value=value,
            unit="x runexec",
            shown=shown,
            target=f"<= {must}x runexec (aim {aim}x)",
            peers=bench.cells(med, " ms", runexec=1, timeout=1, bare=1),
            measured={f"{g}_ms": med[g] for g in GUARDS},
            note=note,
            samples={f"{g}_ms": [s[key] for s in got.get(g, [])] for g in GUARDS},
            failures=failures,
        )
        bench.add(figure.judged(must, "x", f"runexec {missing}"))
    imports(bench)


def imports(bench: Bench) -> None:
    rounds = bench.settings.import_rounds
    log(f"imports: -X importtime and --version walls, {rounds} rounds")
    failures: list[str] = []
    breakdown: dict[str, dict[str, float]] = {}

    def importtime(argv: list[str], keep: str) -> float:
        proc = subprocess.run(
            [PY, "-X", "importtime", *argv],
            capture_output=True,
            env=bench.env,
            cwd=bench.workdir,
            timeout=60,
        )
        if proc.returncode != 0:
            raise SampleError(proc.stderr.decode(errors="replace")[-300:])
        total, per_package = parse_importtime(proc.stderr.decode(errors="replace"))
        breakdown[keep] = per_package
        return total

    version_argv = {
        "tiered-run": [PY, "-m", "tiered_run", "--version"],
        "runexec": [*(bench.runexec or []), "--version"],
        "timeout": ["timeout", "--version"],
        "bare": [PY, "-c", "pass"],
    }
    samplers = {
        "import-none": partial(importtime, ["-c", "pass"], "none"),
        "import-cli": partial(importtime, ["-c", "import tiered_run.cli.app"], "cli"),
        "import-run": partial(
            importtime,
            ["-m", "tiered_run", "-q", "--cpus", str(bench.cpu), "--", "true"],
            "run",
        ),
    }
    samplers |= {
        f"version-{g}": partial(bench.wall_ms, version_argv[g]) for g in bench.guards(*GUARDS)
    }
    got = interleave(rounds, samplers, failures, warmup=True)
    cli, run_path = median(got["import-cli"]), median(got["import-run"])
    baseline = median(got["import-none"])
    site = breakdown.get("none", {})
    added = {k: v - site.get(k, 0.0) for k, v in breakdown.get("run", {}).items()}
    top = sorted(added.items(), key=lambda kv: -kv[1])[:6]
    over_bare = run_path - baseline if run_path is not None and baseline is not None else None
    figure = Figure(
        key="import_time",
        label="import of the run path: `-X importtime -m tiered_run -q -- true`, self times summed",
        value=run_path,
        unit="ms",
        shown=fmt(run_path, " ms"),
        target="<= 45 ms (aim 30 ms)",
        peers={"runexec": "-", "timeout": "-", "bare": fmt(baseline, " ms") + " (pass)"},
        measured={
            "run_path_ms": run_path,
            "over_python_pass_ms": over_bare,
            "cli_ms": cli,
            "python_pass_ms": baseline,
            "run_path_by_package_ms": dict(sorted(added.items(), key=lambda kv: -kv[1])[:20]),
        },
        note=f"{fmt(over_bare, ' ms')} over `python -c pass`; with click (help, other "
        f"commands) {fmt(cli, ' ms')}; " + ", ".join(f"{name} {ms:.0f}" for name, ms in top),
        samples={
            "cli_ms": got["import-cli"],
            "run_path_ms": got["import-run"],
            "python_pass_ms": got["import-none"],
        },
        failures=failures,
    )
    bench.add(figure.judged(45, " ms"))
    walls = per_guard(got, name="version-{}")
    bench.add(
        Figure(
            key="version_wall",
            label="wall of `GUARD --version` (bare: `python -c pass`)",
            value=walls["tiered-run"],
            unit="ms",
            shown=fmt(walls["tiered-run"], " ms", 0),
            peers=bench.cells(walls, " ms", runexec=0, timeout=1, bare=0),
            measured={f"{g}_ms": walls[g] for g in GUARDS},
            samples={f"{g}_ms": got.get(f"version-{g}", []) for g in GUARDS},
        )
    )


def parse_importtime(text: str) -> tuple[float, dict[str, float]]:
    """Total of the `self` column of -X importtime, in ms, and its split by top-level name."""
    total_us = 0
    per_name: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3:
            continue
        try:
            self_us = int(parts[0])
        except ValueError:
            continue  # the header line
        total_us += self_us
        per_name[parts[2].strip().split(".")[0]] += self_us
    return total_us / 1000, {name: us / 1000 for name, us in per_name.items()}
