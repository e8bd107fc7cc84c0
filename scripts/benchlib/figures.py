"""The figures: one table row each, tiered-run's value judged against its target, with
the peers' values beside it for comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

PEER_COLUMNS = ("runexec", "timeout", "bare")
HEADERS = ["figure", "tiered-run", "target", "result", *PEER_COLUMNS, "notes"]


@dataclass(kw_only=True)
class Figure:
    """One row of the table: tiered-run's figure against its target, and the peers'."""

    key: str
    label: str
    value: float | str | None
    unit: str
    shown: str
    target: str = "-"
    passed: bool | None = None
    verdict: str = "-"
    peers: dict[str, str] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    samples: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def judged(self, limit: float, unit: str, missing: str = "no data") -> Figure:
        """Sets passed and verdict for an upper-bound target; a miss says by how much."""
        value = self.value
        assert not isinstance(value, str)
        if value is None:
            self.passed, self.verdict = None, f"n/a: {missing}"
        elif value <= limit:
            self.passed, self.verdict = True, "pass"
        else:
            self.passed, self.verdict = False, f"MISS (+{value - limit:.3g}{unit})"
        return self


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "failed"
    return f"{value:.{digits}f}{unit}"


def table(figures: list[Figure]) -> str:
    rows = [
        [
            f.label,
            f.shown,
            f.target,
            f.verdict,
            *(f.peers.get(p, "-") for p in PEER_COLUMNS),
            f.note,
        ]
        for f in figures
    ]
    return tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True)
