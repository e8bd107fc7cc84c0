"""The results: the table and failed samples on stdout, and optionally a JSON file with the
figures and enough about the host and the tools to tell one run from another."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .context import Bench
from .figures import table
from .guards import PY
from .sampling import log


@dataclass(frozen=True)
class Start:
    """When the run began and under what load, for the JSON meta."""

    monotonic: float
    date: str
    load: tuple[float, float, float]

    @classmethod
    def now(cls) -> Start:
        return cls(time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), os.getloadavg())


def first_line(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def print_results(bench: Bench, leaked: list[str]) -> None:
    failures = [f"probe: {msg}" for msg in bench.probe_failures]
    failures += [msg for f in bench.figures for msg in f.failures]
    print(table(bench.figures))
    if failures:
        print(f"\n{len(failures)} failed sample(s):")
        for message in failures:
            print(f"  - {message}")
    if leaked:
        print(f"\nWARNING: cgroups left behind: {', '.join(leaked)}")


def write_json(
    path: Path, bench: Bench, start: Start, command: str, sections: list[str], leaked: list[str]
) -> None:
    probe, runexec = bench.probe_report, bench.runexec
    meta = {
        "command": command,
        "date": start.date,
        "duration_s": round(time.monotonic() - start.monotonic, 1),
        "quick": bench.settings.quick,
        "sections": sections,
        "settings": asdict(bench.settings),
        "cpu": bench.cpu,
        "host": {
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_start": start.load,
            "load_end": os.getloadavg(),
        },
        "tiered_run": {
            "command": [PY, "-m", "tiered_run"],
            "version": first_line([PY, "-m", "tiered_run", "--version"]),
            "backend": probe.get("backend"),
            "backend_reason": probe.get("backend_reason"),
        },
        "runexec": {
            "command": runexec,
            "version": first_line([*runexec, "--version"]) if runexec else "not installed",
            "mode": "--no-container",
        },
        "timeout": first_line(["timeout", "--version"]),
        "leaked_cgroups": leaked,
    }
    data = {
        "meta": meta,
        "figures": {f.key: asdict(f) for f in bench.figures},
        "table": table(bench.figures),
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    log(f"results written to {path}")
