"""The built-in demo: a packaged ladder whose steps each meet one of the guard's ceilings,
so one command shows on any machine what the guard does, and that it works there."""

from __future__ import annotations

import sys
import tomllib
from importlib import resources

from tiered_run.inputs.ladder_file import Ladder, parse_ladder

DEMO_FILE = "demo.toml"
PYTHON = "{python}"


def demo_ladder(python: str = sys.executable) -> Ladder:
    """The packaged demo ladder, with `{python}` in commands replaced by `python`.

    The running interpreter is used rather than `python3` on PATH, which may be missing
    or another version where the demo is run from a virtual environment.
    """
    text = resources.files("tiered_run").joinpath("data", DEMO_FILE).read_text()
    data = tomllib.loads(text)
    for step in data.get("step", []):
        command = step.get("command")
        if isinstance(command, list):
            step["command"] = [python if arg == PYTHON else arg for arg in command]
    return parse_ladder(data, f"{DEMO_FILE} (built in)")
