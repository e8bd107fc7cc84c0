"""The click group: `tiered-run [run] ...`, `tiers`, `ladder`, `demo`, `calibrate`, `doctor`,
`init`, `export`, `report`, `history`, `plot`.

Each command's module is imported only when that command is named (or listed by
`--help`), so a run loads none of the others' code; and the commands import the heavy
parts (supervisor, renderers) only when they run, so `--help` and `--version` stay fast.
"""

from __future__ import annotations

import importlib

import click

from tiered_run import __version__
from tiered_run.cli.line import check_line

# Command name -> "module:attribute" below tiered_run.cli, in the order --help lists them.
COMMANDS = {
    "run": "run:run",
    "tiers": "run:tiers",
    "ladder": "ladder:ladder",
    "demo": "ladder:demo",
    "calibrate": "calibrate:calibrate",
    "export": "export:export",
    "doctor": "doctor:doctor",
    "init": "init:init",
    "report": "report:report",
    "history": "history:history",
    "plot": "plot:plot",
}


class DefaultRunGroup(click.Group):
    """`tiered-run [OPTIONS] -- CMD` means `tiered-run run [OPTIONS] -- CMD`.

    A subcommand name after options is still that subcommand (`tiered-run --config
    mine.toml tiers` lists tiers); `--` ends the options, so `tiered-run --timeout 5 --
    tiers` runs a program called tiers.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name].split(":")
            loaded = importlib.import_module(f"tiered_run.cli.{module}")
            self.add_command(getattr(loaded, attribute), cmd_name)
        return self.commands[cmd_name]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:
            args = ["run"]  # refused there in one line: no command given
        elif args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version"):
            index = self._subcommand_index(ctx, args)
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

    def _subcommand_index(self, ctx: click.Context, args: list[str]) -> int | None:
        """Where the first word that is not an option or an option's value names a
        subcommand; None when the words mean `run` (a program, `--`, or nothing)."""
        takes_value = {
            name
            for param in self.get_command(ctx, "run").params  # type: ignore[union-attr]
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for name in param.opts
        }
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "--" or not arg.startswith("-") or arg == "-":
                return index if arg in COMMANDS else None
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
