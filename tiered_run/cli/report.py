"""`report`: a saved run or ladder report (`--report FILE`) shown again, in any of the
forms a run can write: the table, Markdown, JUnit or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tiered_run.cli.options import stdout_or_error
from tiered_run.errors import UsageError
from tiered_run.host import streams

FORMATS = ("table", "markdown", "junit", "json")


@click.command()
@click.argument("report_file", type=click.Path(dir_okay=False, path_type=Path))
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
    data = _read(report_file)
    if data.get("kind") == "ladder":
        text = _ladder(data, report_file, fmt)
    elif "run_id" in data:
        text = _run(data, report_file, fmt)
    else:
        kind = data.get("kind", "unknown")
        raise UsageError(
            f"{report_file}: a {kind} report; `report` shows run and ladder reports "
            "(written by --report)"
        )
    streams.out(text)
    return stdout_or_error(0, "the report")


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except OSError as err:
        raise UsageError(f"{path}: cannot be read ({err.strerror}); give a report file") from err
    except ValueError as err:
        raise UsageError(f"{path}: not JSON ({err}); give a file --report wrote") from err
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a tiered-run report; give a file --report wrote")
    return data


def _run(data: dict, path: Path, fmt: str) -> str:
    from tiered_run.model.report import RunReport
    from tiered_run.render.json import render_json
    from tiered_run.render.junit import render_junit
    from tiered_run.render.markdown import render_run_markdown
    from tiered_run.render.run import render_table

    try:
        run = RunReport.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        raise UsageError(f"{path}: not a run report this version can read ({err!r})") from err
    renderers = {
        "table": render_table,
        "markdown": render_run_markdown,
        "junit": lambda r: render_junit([r]),
        "json": render_json,
    }
    return renderers[fmt](run)


def _ladder(data: dict, path: Path, fmt: str) -> str:
    from tiered_run.render.json import render_dict_json
    from tiered_run.render.junit import render_ladder_junit
    from tiered_run.render.ladder import render_ladder_table
    from tiered_run.render.markdown import render_ladder_markdown
    from tiered_run.workflows.ladder import LadderReport

    try:
        ladder = LadderReport.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        raise UsageError(f"{path}: not a ladder report this version can read ({err!r})") from err
    renderers = {
        "table": render_ladder_table,
        "markdown": render_ladder_markdown,
        "junit": render_ladder_junit,
        "json": lambda r: render_dict_json(r.to_dict()),
    }
    return renderers[fmt](ladder)
