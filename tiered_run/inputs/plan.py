"""From what the user asked (options, config, tier) to a validated RunSpec."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.host.outputs import OutputKind, check_output
from tiered_run.inputs.config import Config
from tiered_run.inputs.identity import check_variable_names, login_environment, resolve_user
from tiered_run.inputs.units import MAX_INTERVAL
from tiered_run.model.spec import OnLoad, Privileges, RunSpec, UserSpec
from tiered_run.policy.tiers import (
    check_protected,
    protected_tiers,
    reserve_warning,
    resolve_limits,
)

DEFAULT_INTERVAL = 0.25


@dataclass(frozen=True)
class RunOptions:
    """Per-run choices that override the tier; None means 'as the tier says'."""

    tier: str | None = None
    cpus: tuple[int, ...] | None = None
    timeout: float | None = None
    kill_after: float | None = None
    stop_signal: int | None = None
    memory: int | None = None
    memory_high: int | None = None
    tasks_max: int | None = None
    load_max: float | None = None
    pressure_max: float | None = None
    on_load: OnLoad | None = None
    nice: int | None = None
    cpu_weight: int | None = None
    io_weight: int | None = None
    user: str | None = None
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    preserve_env: tuple[str, ...] = ()
    backend: str = "auto"
    interval: float = DEFAULT_INTERVAL
    log: Path | None = None
    no_new_privileges: bool = False
    drop_caps: bool = False
    allow_protected_cpus: bool = False


def plan_run(
    command: tuple[str, ...], options: RunOptions, config: Config, machine: Machine
) -> RunSpec:
    if not command:
        raise UsageError(
            "no command given; put it after --, e.g. tiered-run --timeout 8 -- make test "
            "(tiered-run --help lists the options)"
        )
    _check_text(command, options.env)
    tier = config.tier(options.tier)
    overrides = {
        name: getattr(options, name)
        for name in (
            "cpus",
            "timeout",
            "kill_after",
            "stop_signal",
            "memory",
            "memory_high",
            "tasks_max",
            "load_max",
            "pressure_max",
            "on_load",
            "nice",
            "cpu_weight",
            "io_weight",
        )
    }
    owners = protected_tiers(config.tiers)
    limits = resolve_limits(tier, machine, overrides, source=config.source, protected=owners)
    where = f"tier {tier.name!r} (from {config.source})" if options.cpus is None else "--cpus"
    warnings = [
        check_protected(limits.cpus, machine, owners, where, options.allow_protected_cpus),
        reserve_warning(tier, limits, machine),
    ]
    if not 0 < options.interval <= MAX_INTERVAL:
        raise UsageError(f"--interval must be above 0 and at most {MAX_INTERVAL:g} s, e.g. 0.25s")
    user = _user(options, tier.user, f"tier {tier.name!r} (from {config.source}): user")
    preserve = check_variable_names(options.preserve_env, "--preserve-env")
    if user is None:
        if preserve:
            raise UsageError(
                "--preserve-env only applies with --user: without it the workload inherits "
                "the whole environment; drop it or add --user"
            )
        env = {**os.environ, **options.env}
    else:
        env = login_environment(user, os.environ, preserve, options.env)
    check_output(options.log, "--log", OutputKind.STREAM)
    privileges = Privileges(options.no_new_privileges, options.drop_caps)
    if privileges:
        # Imported only when asked for: it loads ctypes, which every start-up would pay.
        from tiered_run.engine.privileges import unsupported_reason

        if (problem := unsupported_reason(privileges)) is not None:
            raise UsageError(problem)
    protected = sorted(owners)
    return RunSpec(
        command=command,
        limits=limits,
        tier=tier.name,
        user=user,
        cwd=options.cwd,
        env=env,
        backend=options.backend,
        interval=options.interval,
        log=options.log,
        protected_cpus=tuple(c for c in protected if c not in limits.cpus),
        privileges=privileges,
        warnings=tuple(warning for warning in warnings if warning),
    )


def _user(options: RunOptions, tier_user: str | None, tier_where: str) -> UserSpec | None:
    """`--user` if given (an empty one is refused, never read as "no user"), else the tier's."""
    if options.user is not None:
        return resolve_user(options.user, "--user")
    if tier_user is not None:
        return resolve_user(tier_user, tier_where)
    return None


def _check_text(command: tuple[str, ...], env: dict[str, str]) -> None:
    """What exec cannot take: a NUL byte in an argument, a key that is empty or holds `=`
    (found here, not when a later ladder step starts)."""
    if not command[0]:
        raise UsageError("the command is an empty string; give a program, e.g. -- make test")
    for index, arg in enumerate(command):
        if "\0" in arg:
            raise UsageError(f"command argument {index} {arg!r} holds a NUL byte; remove it")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            raise UsageError(
                f"environment key {key!r} must be non-empty, without = or NUL, e.g. LANG=C"
            )
        if "\0" in value:
            raise UsageError(f"environment value of {key} holds a NUL byte; remove it")
