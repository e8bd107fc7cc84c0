"""`init`: a tier config made for this machine, written where runs will find it."""

from __future__ import annotations

from pathlib import Path

import click

from tiered_run.cli.options import stdout_or_error
from tiered_run.host import streams


@click.command()
@click.option(
    "--layout",
    metavar="NAME=CPUS,...",
    help="Tiers and their CPUs, e.g. system=0-1,user=2-3,aimgr=4-19: the first is protected "
    "for the host, the last is the default workload tier.",
)
@click.option(
    "--user-config", "place", flag_value="user", help="Write ~/.config/tiered-run/config.toml."
)
@click.option("--system", "place", flag_value="system", help="Write /etc/tiered-run/config.toml.")
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="With --user-config or --system: write below DIR as if it were / (an image).",
)
@click.option("--force", is_flag=True, help="Replace an existing config.")
@click.option("--print", "to_stdout", is_flag=True, help="Print the config instead of writing it.")
def init(
    layout: str | None, place: str | None, root: Path | None, force: bool, to_stdout: bool
) -> int:
    """Write a tier config for this machine (./tiered-run.toml unless told otherwise)."""
    from tiered_run.errors import UsageError
    from tiered_run.policy.tiers import cpu_list
    from tiered_run.workflows.init import Place, make_config, target, write_config

    where = Place(place or "here")
    if root is not None and where is Place.HERE:
        raise UsageError("--root goes with --user-config or --system", key="--root")
    made = make_config(layout, target(where, root))
    if to_stdout:
        streams.out(made.text)
        return stdout_or_error(0, "the config")
    warnings = write_config(made, force)
    tiers = ", ".join(
        f"{tier.name} ({cpu_list(tier.cpus)}"
        + (", protected" if tier.role == "protected" else "")
        + (", default" if tier.name == made.plan.default else "")
        + ")"
        for tier in made.plan.tiers
    )
    streams.err(f"tiered-run: wrote {made.path}: {tiers}")
    for warning in warnings:
        streams.err(f"tiered-run: warning: {warning}")
    streams.err(
        f"tiered-run: next: tiered-run doctor --tier {made.plan.default}, then "
        f"tiered-run --tier {made.plan.default} --timeout 8 -- COMMAND"
    )
    return 0
