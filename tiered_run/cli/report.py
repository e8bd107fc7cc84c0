"""`report`: a saved run or ladder report (`--report FILE`) shown again, in any of the
forms a run can write: the table, Markdown, JUnit or JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tiered_run.cli.options import stdout_or_error
from tiered_run.errors import UsageError
from tiered_run.host import streams

FORMATS = ("table", "markdown", "junit", "json")


@click.command()
@click.argument("report_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="How to show it.",
)
def report(report_file: Path, fmt: str) -> int:
    """Show REPORT_FILE, a run's or a ladder's JSON report, again: as the table printed at
    the end of the run, as Markdown for a CI page, as JUnit XML, or as JSON. Exits 0 when
    it was shown, whatever the run's own outcome.

    \b
    tiered-run report run.json --format markdown >> "$GITHUB_STEP_SUMMARY"
    """
    text = _shown(read_report(report_file), report_file, fmt)
    streams.out(text)
    return stdout_or_error(0, "the report")


def read_report(path: Path) -> dict:
    """The JSON object in a report file (`-`: stdin, as `... | tiered-run report -`), for
    `report` and `plot`; UsageError for a file that cannot be read or holds no object."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        data = json.loads(raw)
    except OSError as err:
        raise UsageError(f"{path}: cannot be read ({err.strerror}); give a report file") from err
    except ValueError as err:
        raise UsageError(f"{path}: not JSON ({err}); give a file --report wrote") from err
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a tiered-run report; give a file --report wrote")
    return data


def _shown(data: dict, path: Path, fmt: str) -> str:
    """The report in `data` (a run's or a ladder's, told apart as their writers wrote
    them) in the format `fmt`."""
    from tiered_run.model.report import SCHEMA_VERSION, RunReport
    from tiered_run.render import junit, ladder, markdown, run
    from tiered_run.render.json import render_dict_json, render_json
    from tiered_run.workflows.ladder import LADDER_SCHEMA_VERSION, LadderReport

    if data.get("kind") == "ladder":
        kind, read, known = "ladder", LadderReport.from_dict, LADDER_SCHEMA_VERSION
        renderers = {
            "table": ladder.render_ladder_table,
            "markdown": markdown.render_ladder_markdown,
            "junit": junit.render_ladder_junit,
            "json": lambda r: render_dict_json(r.to_dict()),
        }
    elif "run_id" in data:
        kind, read, known = "run", RunReport.from_dict, SCHEMA_VERSION
        renderers = {
            "table": run.render_table,
            "markdown": markdown.render_run_markdown,
            "junit": lambda r: junit.render_junit([r]),
            "json": render_json,
        }
    elif "kind" in data:
        raise UsageError(
            f"{path}: a {data['kind']} report; `report` shows run and ladder reports "
            "(written by --report)"
        )
    else:
        raise UsageError(f"{path}: not a tiered-run run or ladder report (no run_id, no kind)")
    version = data.get("schema_version")
    if isinstance(version, int) and version > known:
        streams.err(
            f"tiered-run: warning: {path} is a schema {version} {kind} report, newer than "
            f"this tiered-run's {known}: what it does not know is left out"
        )
    try:
        return renderers[fmt](read(data))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        # A field missing or of another type, found in reading it or in showing it.
        raise UsageError(
            f"{path}: not a {kind} report this version can read "
            f"({type(err).__name__}: {err}); give a file --report wrote"
        ) from err
