"""Which way a command's figures go over its recent runs: one reading says little, the
trend says whether a test suite is growing toward its ceiling.

The change is the median of the newer half of the runs against the median of the older
half (with an odd count the middle run is left out), so one odd run moves neither side
much. Fewer than `MIN_RUNS` figures give no trend.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_RUNS = 4


@dataclass(frozen=True)
class Trend:
    """`figure` ("peak memory", "wall time") changed by `change_pct` percent over `runs`
    runs (None: too few runs with the figure, or an older median of 0)."""

    figure: str
    runs: int
    change_pct: float | None

    def describe(self) -> str:
        if self.change_pct is None:
            return f"{self.figure}: no trend yet (needs {MIN_RUNS} runs with it, has {self.runs})"
        return f"{self.figure} {round(self.change_pct):+d} % over the last {self.runs} runs"

    def to_dict(self) -> dict[str, object]:
        change = None if self.change_pct is None else round(self.change_pct, 1)
        return {"figure": self.figure, "runs": self.runs, "change_pct": change}


def trend(figure: str, values: Sequence[float | None]) -> Trend:
    """The trend of `values`, oldest first; runs without the figure (None) are left out."""
    known = [value for value in values if value is not None]
    if len(known) < MIN_RUNS:
        return Trend(figure, len(known), None)
    half = len(known) // 2
    older = statistics.median(known[:half])
    newer = statistics.median(known[-half:])
    if older == 0:
        return Trend(figure, len(known), None)
    return Trend(figure, len(known), (newer - older) / older * 100)
