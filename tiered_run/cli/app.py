"""The click group: `tiered-run [run] ...`, `tiers`, `ladder`, `demo`, `calibrate`, `doctor`,
`init`, `export`, `report`, `history`, `plot`.

The commands import the heavy parts (supervisor, renderers) only when they run, so
`--help` and `--version` stay fast.
"""

from __future__ import annotations

import click

from tiered_run import __version__
from tiered_run.cli import calibrate, doctor, export, history, init, ladder, plot, report, run
from tiered_run.cli.line import check_line


class DefaultRunGroup(click.Group):
    """`tiered-run [OPTIONS] -- CMD` means `tiered-run run [OPTIONS] -- CMD`.

    A subcommand name after options is still that subcommand (`tiered-run --config
    mine.toml tiers` lists tiers); `--` ends the options, so `tiered-run --timeout 5 --
    tiers` runs a program called tiers.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:
            args = ["run"]  # refused there in one line: no command given
        elif args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            index = self._subcommand_index(args)
            if index is None:
                args = ["run", *args]
            else:
                args = [args[index], *args[:index], *args[index + 1 :]]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            check_line(command, rest)
        return name, command, rest

    def _subcommand_index(self, args: list[str]) -> int | None:
        """Where the first word that is not an option or an option's value names a
        subcommand; None when the words mean `run` (a program, `--`, or nothing)."""
        takes_value = {
            name
            for param in self.commands["run"].params
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for name in param.opts
        }
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "--" or not arg.startswith("-") or arg == "-":
                return index if arg in self.commands else None
            if arg in takes_value:
                index += 1  # its value follows, whatever it looks like
            index += 1
        return None


@click.group(cls=DefaultRunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tiered-run")
def main() -> None:
    """Run a workload in a CPU tier under time, memory and task ceilings for its whole
    process tree, kill all of it on a breach, and report what happened.

    \b
    tiered-run --tier batch --timeout 8 --memory 2G -- python3 chat.py --test
    tiered-run tiers
    tiered-run doctor
    """


main.add_command(run.run)
main.add_command(run.tiers)
main.add_command(ladder.ladder)
main.add_command(ladder.demo)
main.add_command(calibrate.calibrate)
main.add_command(export.export)
main.add_command(doctor.doctor)
main.add_command(init.init)
main.add_command(report.report)
main.add_command(history.history)
main.add_command(plot.plot)
