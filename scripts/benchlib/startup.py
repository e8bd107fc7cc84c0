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

    def true_under(guard: str) -> float:
        return bench.wall_ms(bench.argv(guard, ["true"], timeout=60, quiet=False))

    samplers = {g: partial(true_under, g) for g in bench.guards(*GUARDS)}
    walls = interleave(rounds, samplers, failures, warmup=True)
    med = per_guard(walls)
    value = ratio(med["tiered-run"], med["runexec"])
    missing = bench.missing["runexec"] or "runexec failed"
    shown = (
        f"{value:.2f}x runexec ({fmt(med['tiered-run'], ' ms', 0)})"
        if value is not None
        else fmt(med["tiered-run"], " ms", 0)
    )
    note = ""
    if med["tiered-run"] is not None and med["bare"] is not None:
        note = f"{med['tiered-run'] - med['bare']:.0f} ms over bare"
    figure = Figure(
        key="startup",
        label="start-up: wall of `GUARD -- true`",
        value=value,
        unit="x runexec",
        shown=shown,
        target="<= 0.35x runexec",
        peers=bench.cells(med, " ms", runexec=0, timeout=1, bare=1),
        measured={f"{g}_ms": med[g] for g in GUARDS},
        note=note,
        samples={f"{g}_ms": walls.get(g, []) for g in GUARDS},
        failures=failures,
    )
    bench.add(figure.judged(0.35, "x", f"runexec {missing}"))
    imports(bench)


def imports(bench: Bench) -> None:
    rounds = bench.settings.import_rounds
    log(f"imports: -X importtime and --version walls, {rounds} rounds")
    failures: list[str] = []
    breakdown: dict[str, dict[str, float]] = {}

    def importtime(statement: str, keep: str) -> float:
        proc = subprocess.run(
            [PY, "-X", "importtime", "-c", statement],
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
        "import-none": partial(importtime, "pass", "none"),
        "import-cli": partial(importtime, "import tiered_run.cli.app", "cli"),
        "import-run": partial(
            importtime,
            "import tiered_run.cli.app, tiered_run.render.run, tiered_run.render.json, "
            "tiered_run.engine.supervisor",
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
    bench.add(
        Figure(
            key="import_time",
            label="import time of tiered_run.cli.app (-X importtime, self times summed)",
            value=cli,
            unit="ms",
            shown=fmt(cli, " ms"),
            peers={"runexec": "-", "timeout": "-", "bare": fmt(baseline, " ms") + " (pass)"},
            measured={
                "cli_ms": cli,
                "run_path_ms": run_path,
                "python_pass_ms": baseline,
                "run_path_by_package_ms": dict(sorted(added.items(), key=lambda kv: -kv[1])[:20]),
            },
            note=f"run path (cli+render+supervisor) {fmt(run_path, ' ms')}; "
            + ", ".join(f"{name} {ms:.0f}" for name, ms in top),
            samples={
                "cli_ms": got["import-cli"],
                "run_path_ms": got["import-run"],
                "python_pass_ms": got["import-none"],
            },
            failures=failures,
        )
    )
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
