"""From what the user asked (options, config, tier) to a validated RunSpec."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tiered_run.config import Config
from tiered_run.errors import UsageError
from tiered_run.identity import check_variable_names, login_environment, resolve_user
from tiered_run.machine import Machine
from tiered_run.outputs import OutputKind, check_output
from tiered_run.spec import OnLoad, Privileges, RunSpec, UserSpec
from tiered_run.tiers import resolve_limits

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
    user: str | None = None
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    preserve_env: tuple[str, ...] = ()
    backend: str = "auto"
    interval: float = DEFAULT_INTERVAL
    log: Path | None = None
    no_new_privileges: bool = False
    drop_caps: bool = False


def plan_run(
    command: tuple[str, ...], options: RunOptions, config: Config, machine: Machine
) -> RunSpec:
    if not command:
        raise UsageError(
            "no command given; put it after --, e.g. tiered-run --timeout 8 -- make test"
        )
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
        )
    }
    limits = resolve_limits(tier, machine, overrides)
    if options.interval <= 0:
        raise UsageError("--interval must be above 0, e.g. 0.2s")
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
        from tiered_run.privileges import unsupported_reason

        if (problem := unsupported_reason(privileges)) is not None:
            raise UsageError(problem)
    protected = sorted({c for t in config.tiers.values() if t.protected for c in (t.cpus or ())})
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
    )


def _user(options: RunOptions, tier_user: str | None, tier_where: str) -> UserSpec | None:
    """`--user` if given (an empty one is refused, never read as "no user"), else the tier's."""
    if options.user is not None:
        return resolve_user(options.user, "--user")
    if tier_user is not None:
        return resolve_user(tier_user, tier_where)
    return None
