"""Smoke test of scripts/bench.py: it runs and writes its figures. No speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
STARTUP_FIGURES = ("startup", "startup_cpu", "import_time", "version_wall")


def run_bench(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--only", "startup", "--json", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "start-up" in proc.stdout  # the table
    return json.loads(out.read_text())


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def test_startup_figures_are_written(tmp_path: Path) -> None:
    data = run_bench(tmp_path)
    figures = data["figures"]
    assert set(STARTUP_FIGURES) <= set(figures)
    for name in STARTUP_FIGURES:
        figure = figures[name]
        for key in ("label", "value", "target", "verdict", "peers", "measured"):
            assert key in figure, (name, key)
    assert is_number(figures["startup"]["measured"]["tiered-run_ms"])
    assert is_number(figures["startup"]["measured"]["bare_ms"])
    assert is_number(figures["startup_cpu"]["measured"]["tiered-run_ms"])
    assert is_number(figures["import_time"]["value"])
    assert is_number(figures["import_time"]["measured"]["run_path_ms"])
    assert is_number(figures["version_wall"]["value"])
    assert data["meta"]["quick"] is True
    assert data["meta"]["sections"] == ["startup"]
    assert data["meta"]["leaked_cgroups"] == []


def test_without_runexec_the_column_says_so(tmp_path: Path) -> None:
    data = run_bench(tmp_path, "--runexec", "none")
    startup = data["figures"]["startup"]
    assert startup["peers"]["runexec"] == "not installed"
    assert startup["value"] is None  # the target is relative to runexec
    assert "not installed" in startup["verdict"]
    assert is_number(startup["measured"]["tiered-run_ms"])
    assert data["meta"]["runexec"]["version"] == "not installed"
