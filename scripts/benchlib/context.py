"""What one benchmark run shares between its sections: the settings, the guards, the
figures gathered so far, and what the probe run found out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .figures import Figure
from .guards import Guards
from .sampling import log

MiB = 1 << 20


@dataclass(frozen=True)
class Settings:
    """Rounds and sizes of a run: full, or quick enough for a smoke test."""

    quick: bool
    startup_rounds: int
    import_rounds: int
    monitor_s: float
    monitor_ns: tuple[int, ...]
    monitor_peer_ns: tuple[int, ...]
    monitor_rounds: int
    kill_rounds: int
    kill_timeout: float
    tree_size: int = 500
    tree_daemons: int = 10
    precision_rounds: int = 10
    precision_timeout: float = 1.0
    precision_kill_after: float = 1.0
    memory_rounds: int = 5
    memory_ceiling: int = 300 * MiB
    output_rounds: int = 10

    @classmethod
    def full(cls) -> Settings:
        return cls(
            quick=False,
            startup_rounds=30,
            import_rounds=10,
            monitor_s=30.0,
            monitor_ns=(10, 100, 500),
            monitor_peer_ns=(10, 500),
            monitor_rounds=3,
            kill_rounds=5,
            kill_timeout=3.0,
        )

    @classmethod
    def smoke(cls) -> Settings:
        return cls(
            quick=True,
            startup_rounds=5,
            import_rounds=3,
            monitor_s=5.0,
            monitor_ns=(10, 500),
            monitor_peer_ns=(500,),
            monitor_rounds=1,
            kill_rounds=1,
            kill_timeout=2.0,
            precision_rounds=2,
            memory_rounds=1,
            output_rounds=3,
        )


class Bench(Guards):
    """The guards of this run, with its settings and the figures the sections add."""

    def __init__(
        self, settings: Settings, runexec: list[str] | None, cpu: int, workdir: Path
    ) -> None:
        super().__init__(runexec, cpu, workdir)
        self.settings = settings
        self.figures: list[Figure] = []
        self.probe_report: dict[str, Any] = {}
        self.probe_failures: list[str] = []

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)

    def backend(self) -> str:
        return str(self.probe_report.get("backend", "?")) + " backend"

    def probe(self) -> None:
        """One `tiered-run -- true` up front: it works here, and which backend it picks.
        Three tries, so that one failed start does not stop the benchmark."""
        errors = []
        for _ in range(3):
            report = self.path("probe")
            with self.launch(self.argv("tiered-run", ["true"], report=report)) as run:
                run.wait(60)
            if run.returncode == 0 and report.exists():
                self.probe_report = json.loads(report.read_text())
                self.probe_failures = errors
                for error in errors:
                    log(f"  probe failed: {error}")
                return
            errors.append(str(run.failure()))
        raise SystemExit(f"bench: `tiered-run -- true` failed 3 times: {errors[-1]}")
