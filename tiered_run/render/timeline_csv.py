"""`--timeline-csv`: every sample of a run as CSV, for a spreadsheet or pandas.

The report's `timeline` is thinned to a few hundred buckets so that a long run keeps a
small report; the CSV has every sample the monitor took, with the report's column names
and units. A cell is empty where there was no reading (the host is read less often than
the run, and a backend may not see a figure at all): none is made up.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import astuple, fields

from tiered_run.model.report import TimelinePoint

COLUMNS = tuple(f.name for f in fields(TimelinePoint))


def render_timeline_csv(points: Iterable[TimelinePoint]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for point in points:
        writer.writerow("" if value is None else value for value in astuple(point))
    return out.getvalue()
