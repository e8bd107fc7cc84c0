"""Reports for machines: JSON whose keys are a contract guarded by `schema_version`."""

from __future__ import annotations

import json

from tiered_run.model.report import RunReport
from tiered_run.render.text import printable


def render_json(report: RunReport) -> str:
    """The machine-readable run report."""
    return render_dict_json(report.to_dict())


def render_dict_json(data: dict[str, object]) -> str:
    """JSON for run, ladder and calibration reports: valid Unicode, undecodable bytes as
    `\\xNN` (a lone surrogate escape would break strict JSON readers)."""
    return json.dumps(_printable_tree(data), indent=2, sort_keys=False) + "\n"


def _printable_tree(value: object) -> object:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _printable_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable_tree(item) for item in value]
    return value
