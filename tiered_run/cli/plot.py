"""`plot`: a saved report (a run's or a ladder's) as a picture of its timeline.

matplotlib is an optional extra (`pip install 'tiered-run[plot]'`) and is imported only
here, once the command runs: a run never pays for it, and without it this command says
what to install in one line.
"""

from __future__ import annotations

from pathlib import Path

import click

from tiered_run.cli.report import read_report
from tiered_run.errors import UsageError
from tiered_run.host.outputs import check_distinct, check_output, write_atomically

INSTALL = "pip install 'tiered-run[plot]'"


@click.command()
@click.argument("report_file", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    required=True,
    help="The picture to write: FILE.png or FILE.svg.",
)
def plot(report_file: Path, output: str) -> int:
    """Draw REPORT.json's timeline: memory against its ceilings, tasks, CPUs busy and host
    load over time, with the breaches and pauses marked; a ladder's report gets a panel
    for each step.

    \b
    tiered-run --report run.json -- make test; tiered-run plot run.json -o run.png
    """
    fmt = Path(output).suffix.lower().removeprefix(".")
    if fmt not in ("png", "svg"):
        raise UsageError(f"-o {output}: give a .png or a .svg file, e.g. -o run.png")
    data = read_report(report_file)
    check_output(output, "-o")
    check_distinct([("-o", output)], reads=[("the report", report_file)])
    try:
        from tiered_run.render.plot import panels_of, render_plot
    except ImportError as err:
        raise UsageError(f"plot needs matplotlib ({err}); install it: {INSTALL}") from None
    try:
        panels = panels_of(data)
    except (KeyError, TypeError, ValueError) as err:
        raise UsageError(
            f"{report_file} is not a tiered-run run or ladder report ({type(err).__name__}: "
            f"{err}); give the file --report wrote"
        ) from None
    drawn = [panel for panel in panels if panel.report.timeline]
    if not drawn:
        raise UsageError(f"{report_file} has no timeline to draw: no workload ran")
    picture = render_plot(drawn, fmt)
    try:
        write_atomically(Path(output), picture, "-o")
    except OSError as err:
        raise UsageError(f"-o {output}: not written ({err.strerror})") from None
    return 0
