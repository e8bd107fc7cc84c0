"""`export`: the tier in the terms of systemd, Docker, compose, Kubernetes or Slurm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tiered_run.cli.options import given, run_options, stdout_or_error
from tiered_run.export import FORMATS
from tiered_run.host import streams
from tiered_run.host.machine import read_machine
from tiered_run.inputs.config import load_config


@click.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), required=True, help="The target's terms."
)
@click.option(
    "--image",
    metavar="IMAGE",
    default="debian:12",
    show_default=True,
    help="Image (docker, compose, k8s).",
)
@click.option(
    "--slices",
    is_flag=True,
    help="systemd: the slices that keep the tiers for the whole machine, instead of a unit.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --slices: write the files below DIR (e.g. /etc/systemd/system).",
)
@run_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def export(
    command: tuple[str, ...],
    fmt: str,
    image: str,
    slices: bool,
    directory: Path | None,
    config_path: Path | None,
    **options: Any,
) -> int:
    """Print the tier's ceilings in a target's own terms: a systemd service unit (or,
    with --slices, the slices that make the tiers persistent), `docker run` flags, a
    compose service, a Kubernetes Job, or a Slurm batch script that runs COMMAND under
    tiered-run in the allocation. What the target cannot express is a comment.

    \b
    tiered-run export --format k8s --tier batch -- python3 chat.py --test
    tiered-run export --format systemd --slices --dir /etc/systemd/system
    """
    from tiered_run.errors import UsageError
    from tiered_run.export import renderer
    from tiered_run.export.sheet import Exported
    from tiered_run.inputs.plan import RunOptions, plan_run
    from tiered_run.policy.tiers import protected_tiers

    here = read_machine()
    config = load_config(here, config_path)
    asked = RunOptions(**given(options))
    machine = _anywhere(here, config, asked)
    image_given = click.get_current_context().get_parameter_source("image") is (
        click.core.ParameterSource.COMMANDLINE
    )
    if image_given and fmt not in ("docker", "compose", "k8s"):
        raise UsageError(f"--image goes with --format docker, compose or k8s, not {fmt}")
    if slices or directory is not None:
        if command:
            raise UsageError(
                "--slices exports the tiers for the whole machine, not a unit for a command; "
                "leave out -- COMMAND, or --slices"
            )
        return _slices(fmt, slices, directory, config, machine)
    spec = plan_run(tuple(command) or ("true",), asked, config, machine)
    if image.strip() != image or not image:
        raise UsageError(f"--image {image!r}: give an image name, e.g. --image python:3.11")
    exported = Exported(
        spec=spec,
        source=config.source,
        env=dict(asked.env),
        protected=protected_tiers(config.tiers),
        image=image,
        command_given=bool(command),
    )
    streams.out(renderer(fmt)(exported))
    return stdout_or_error(0, f"the {fmt} export")


def _anywhere(machine: Any, config: Any, asked: Any) -> Any:
    """The machine a tier is exported for: this one, widened to every CPU and amount of
    memory the config's tiers and the command line name, so a tier for a larger machine
    exports here (its ceilings are still checked against each other)."""
    from dataclasses import replace

    cpus = set(machine.cpus)
    memory = machine.memory_total
    for tier in [*config.tiers.values(), asked]:
        cpus.update(tier.cpus or ())
        memory = max(memory, tier.memory or 0, tier.memory_high or 0)
    return replace(machine, cpus=tuple(sorted(cpus)), memory_total=memory)


def _slices(fmt: str, slices: bool, directory: Path | None, config: Any, machine: Any) -> int:
    from tiered_run.errors import UsageError
    from tiered_run.export.systemd import slice_files, write_files

    if fmt != "systemd":
        raise UsageError(
            "--slices and --dir go with --format systemd, e.g. --format systemd --slices"
        )
    if not slices:
        raise UsageError("--dir goes with --slices: it is where the slice files are written")
    files = slice_files(config.tiers, machine, config.source)
    if directory is None:
        for index, (path, text) in enumerate(files):
            streams.out(("\n" if index else "") + f"# ==> {path} <==\n{text}")
        return stdout_or_error(0, "the slices")
    try:
        written = write_files(files, directory)
    except OSError as err:
        raise UsageError(
            f"--dir {directory}: {err.strerror}; give a directory you can write"
        ) from err
    for path in written:
        streams.out(f"{path}\n")
    streams.out("# then: systemctl daemon-reload\n")
    return stdout_or_error(0, "the list of slice files")
