"""`doctor`: what this machine can enforce, what stands in the way, and how to fix it."""

from __future__ import annotations

from pathlib import Path

import click

from tiered_run.cli.options import config_option, stdout_or_error
from tiered_run.host import streams


@click.command()
@click.option("--tier", metavar="NAME", help="Check this tier (default: the config's default).")
@config_option
@click.option("--json", "as_json", is_flag=True, help="JSON for machines instead of the table.")
def doctor(tier: str | None, config_path: Path | None, as_json: bool) -> int:
    """Show what this machine can enforce, what stands in the way, and how to fix it.

    Exit 0 when the tier can be guarded with every ceiling it sets, 1 when one is only
    monitored, not applied, or a run could not start, 125 when doctor itself fails.
    """
    from tiered_run.render.doctor import render_doctor, render_doctor_json
    from tiered_run.workflows.doctor import run_doctor

    if config_path is not None and not config_path.is_file():
        from tiered_run.errors import UsageError

        raise UsageError(
            f"config file {config_path} does not exist or cannot be read; check the --config path",
            key="--config",
        )
    diagnosis = run_doctor(tier, config_path)
    streams.out(render_doctor_json(diagnosis) if as_json else render_doctor(diagnosis))
    return stdout_or_error(diagnosis.exit_code, "the diagnosis")
