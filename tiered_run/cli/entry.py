"""The process entry point, and the one place where a command's end becomes an exit code.

Order matters: standard streams and inherited descriptors are settled and signal handlers
installed before click or any other module is imported, so a signal in the first instant
is handled like one an hour later, and nothing opened later can take the number of a
closed stderr. Then the command runs; whatever it returns or raises becomes one exit code
and at most one line on stderr:

- the command's own code (a run: the report's);
- 125 for tiered-run's refusals (usage, configuration) and its own failures, with
  `tiered-run: error: ...`, never a traceback;
- 128 + N for an ending signal that nothing running had taken charge of.

A stdout or stderr that is gone never changes the code (see `streams`).
"""

from __future__ import annotations

import sys

from tiered_run.host import signals, stdio


def main() -> None:
    stdio.ensure_standard_streams()
    stdio.capture_inherited()
    signals.install()
    code = run_cli(sys.argv[1:])
    from tiered_run.host import streams

    streams.settle_before_exit()
    sys.exit(code)


def run_cli(args: list[str]) -> int:
    """Run one command line; returns the exit code (never raises, never prints a traceback)."""
    import click

    from tiered_run.errors import TieredRunError
    from tiered_run.host import streams
    from tiered_run.policy.exit_codes import EXIT_TOOL, signal_exit

    try:
        from tiered_run.cli.app import main as group

        result = group.main(args=args, prog_name="tiered-run", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as exit_:
        code = exit_.exit_code
    except click.ClickException as err:
        streams.err(f"tiered-run: error: {one_line(err.format_message())}")
        code = EXIT_TOOL
    except click.exceptions.Abort:
        first = signals.first()
        code = signal_exit(first.signum if first else 2)
    except TieredRunError as err:
        streams.err(f"tiered-run: error: {one_line(str(err))}")
        code = err.exit_code
    except Exception as err:  # a defect: still one line and a code CI can tell apart
        what = f"{type(err).__name__}: {one_line(str(err))}"
        streams.err(f"tiered-run: error: internal error: {what}")
        code = EXIT_TOOL
    unclaimed = signals.first() if not signals.claimed() else None
    if unclaimed is not None:
        code = signal_exit(unclaimed.signum)
    return code


def one_line(text: str) -> str:
    """One line, safe for a terminal: a path in a message may hold any byte."""
    from tiered_run.render.text import for_terminal

    return for_terminal(" ".join(text.split()))
