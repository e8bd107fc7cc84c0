"""What every export shares: the run a tier describes, and a sheet that hands its settings
to a target and lists, as comments, the ones the target did not take.

The settings come from the one table (`inputs.settings`): every setting that reaches a run
(its ceilings, the user, the working directory, the environment). A target takes the ones
it can say in its own terms; whatever holds a value and was not taken becomes a comment
naming the setting, its value and what it is for, so a new ceiling added to the table shows
up in every export as not expressed until a target learns to say it. Nothing is dropped
silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tiered_run import __version__
from tiered_run.inputs.settings import SETTING, SETTINGS, Setting, Where, shown
from tiered_run.inputs.units import format_cpus, format_size
from tiered_run.model.spec import RunSpec

MiB = 1024**2

# Settings of a run that are not about the workload itself: how tiered-run watches it.
# How tiered-run itself runs the workload; a container export names its image (--image)
# and has no network of its own anyway.
_OWN = frozenset(
    {"tier", "backend", "interval", "preserve_env", "container", "runtime", "network", "mount_cwd"}
)


@dataclass(frozen=True)
class Exported:
    """A planned run of the tier, and what only an export needs."""

    spec: RunSpec
    source: str  # where the tier came from: the config file, or the built-in defaults
    env: dict[str, str] = field(default_factory=dict)  # only what the user added (--env)
    protected: dict[int, str] = field(default_factory=dict)  # CPU -> the tier keeping it
    image: str = "debian:12"
    command_given: bool = True


def exported_settings() -> tuple[Setting, ...]:
    """The settings an export carries: every one that reaches a run, in the table's order."""
    reach = Where.RUN | Where.TIER | Where.STEP
    return tuple(s for s in SETTINGS if s.where & reach and s.name not in _OWN)


def value_of(exported: Exported, name: str) -> Any:
    """A setting's value for this run: a ceiling from the limits, the rest from the spec."""
    spec = exported.spec
    if hasattr(spec.limits, name):
        return getattr(spec.limits, name)
    if name == "user":
        return None if spec.user is None else spec.user.name
    if name == "env":
        return exported.env or None
    if name in ("protected", "description"):
        return None  # about the tier, not the run
    return getattr(spec, name)


def asked(setting: Setting, value: Any) -> bool:
    """A value the user would miss if a target dropped it: set, and not the table's
    default (the default ending signal and grace go where a target has them anyway)."""
    return value not in (None, "", (), {}) and value != setting.default


class Sheet:
    """The settings of one export, handed to a target one by one (`take`), and the
    comments for the rest (`untaken`)."""

    def __init__(self, exported: Exported, target: str) -> None:
        self.exported = exported
        self.target = target
        self._taken: set[str] = set()
        self._notes: list[str] = []

    def take(self, name: str) -> Any:
        """The value of setting `name` (None if unset); the target now says it."""
        self._taken.add(name)
        return value_of(self.exported, name)

    def note(self, name: str, why: str) -> None:
        """Setting `name` was taken but said only in part: why."""
        value = value_of(self.exported, name)
        self._notes.append(f"{SETTING[name].key} = {described(SETTING[name], value)}: {why}")

    def untaken(self) -> list[str]:
        """A comment line for each setting with a value that the target did not say."""
        lines = list(self._notes)
        for setting in exported_settings():
            value = value_of(self.exported, setting.name)
            if setting.name not in self._taken and asked(setting, value):
                what = setting.help.split(", e.g.")[0].split(" (")[0].rstrip(".")
                lines.append(
                    f"{setting.key} = {described(setting, value)}: {self.target} has no "
                    f"setting for it ({what})"
                )
        return lines

    def header(self, comment: str = "#") -> str:
        """Where this came from, and what the target cannot express, as comment lines."""
        spec = self.exported.spec
        lines = [
            f"tier {spec.tier} (from {self.exported.source}) as {self.target},"
            f" exported by tiered-run {__version__}"
        ]
        if not self.exported.command_given:
            lines.append("no command was given: replace `true` with yours (export ... -- CMD)")
        if untaken := self.untaken():
            lines.append(f"{self.target} cannot express, or only in part:")
            lines += [f"  {line}" for line in untaken]
        return "".join(f"{comment} {line}\n" for line in lines)


def described(setting: Setting, value: Any) -> str:
    if setting.name == "cpus":
        return format_cpus(value)
    if setting.unit == "bytes":
        return format_size(value)
    if setting.unit == "bytes_per_s":
        return f"{format_size(value)}/s"
    if setting.unit == "pct":
        return f"{value:g} %"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return shown(setting, value)


def whole_seconds(seconds: float) -> int:
    """Seconds rounded up: targets count whole ones, and a ceiling must not shrink."""
    return max(1, math.ceil(seconds))


def whole_mib(size: int) -> int:
    return max(1, math.ceil(size / MiB))
