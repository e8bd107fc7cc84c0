"""What click lets through on a command line and a user would not mean: an option given
twice (click keeps the last: `--report a.json --report b.json` wrote only b.json), two
flags for one choice (`init --system --user-config`), an empty value (`--tier ''` ran
in the default tier). Each is refused in one line before anything starts."""

from __future__ import annotations

import click

from tiered_run.errors import UsageError


def check_line(command: click.Command, args: list[str]) -> None:
    """Refuse (UsageError) a repeated option, two options of one setting, or an empty
    option value in `args`, the words after the subcommand's name. The scan ends where
    click's does: at `--`, or at the first argument of a command that takes no options
    after its arguments (`run`'s COMMAND)."""
    options = {
        name: param
        for param in command.params
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }
    interspersed = command.context_settings.get("allow_interspersed_args", True)
    given: dict[str, str] = {}  # a parameter's name -> the option that first set it
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if word == "--":
            return
        if not word.startswith("-") or word == "-":
            if not interspersed:
                return
            continue
        name, equals, value = word.partition("=")
        param = options.get(name)
        if param is None:
            continue  # click says what is wrong with it
        if not (param.is_flag or param.count):
            if not equals:
                if index >= len(args):
                    return  # click says that the value is missing
                value = args[index]
                index += 1
            if value == "":
                raise UsageError(
                    f"{name}: empty value; give one (see tiered-run {command.name} --help)",
                    key=name,
                )
        if param.multiple or param.count or param.name is None:
            continue
        first = given.get(param.name)
        if first == name:
            raise UsageError(f"{name} given twice; give it once", key=name)
        if first is not None:
            raise UsageError(f"{first} and {name} both given; give one of them", key=name)
        given[param.name] = name
