"""From what the user asked (options, config, tier) to a validated RunSpec."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.host.blockdev import device_of
from tiered_run.host.machine import Machine
from tiered_run.host.outputs import OutputKind, check_output
from tiered_run.inputs.config import Config
from tiered_run.inputs.identity import check_variable_names, login_environment, resolve_user
from tiered_run.inputs.settings import LIMITS, Setting, Where, term, with_settings
from tiered_run.inputs.units import MAX_INTERVAL
from tiered_run.model.spec import (
    ContainerSpec,
    Limits,
    Privileges,
    RunSpec,
    Runtime,
    UserSpec,
)
from tiered_run.policy.tiers import (
    check_protected,
    protected_tiers,
    reserve_warning,
    resolve_limits,
)


def _unset_unless_run_only(setting: Setting) -> object:
    """None ('as the tier says') for a setting a tier has or that reaches the limits,
    whose default the tier merge applies; the table's default for the rest."""
    return None if setting.limit or Where.TIER in setting.where else setting.default


@dataclass(frozen=True)
@with_settings(Where.RUN | Where.LADDER | Where.STEP, _unset_unless_run_only)
class RunOptions:
    """Per-run choices: a field for every setting of the table that a command line or a
    ladder step gives (None: as the tier says), and the command's own flags below."""

    log: Path | None = None
    no_new_privileges: bool = False
    drop_caps: bool = False
    allow_protected_cpus: bool = False
    # Given in a ladder file: messages name its keys (`memory_high`), not flags.
    from_file: bool = False


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
    overrides = {setting.name: getattr(options, setting.name) for setting in LIMITS}
    owners = protected_tiers(config.tiers)
    limits = resolve_limits(
        tier,
        machine,
        overrides,
        source=config.source,
        protected=owners,
        from_file=options.from_file,
    )
    limits = _with_io_device(limits, options.cwd, options.from_file)
    where = f"tier {tier.name!r} (from {config.source})"
    if options.cpus is not None:
        where = term("cpus", options.from_file)
    warnings = [
        check_protected(
            limits.cpus, machine, owners, where, options.allow_protected_cpus, options.from_file
        ),
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
    private_tmp = bool(options.private_tmp if options.private_tmp is not None else tier.private_tmp)
    if private_tmp and options.container is None and os.geteuid() != 0:
        raise UsageError(
            f"{term('private_tmp', options.from_file)} needs root (it mounts a private /tmp "
            "and /dev/shm in a mount namespace of the workload's); run tiered-run as root or "
            "drop it",
            key=term("private_tmp", options.from_file),
        )
    container = None
    if options.container is not None:
        container = _container(options, user, private_tmp)
        user, env, private_tmp = None, {**os.environ}, False  # the client runs as we do
    elif options.runtime != "auto" or options.network or options.mount_cwd is False:
        raise UsageError(
            f"{term('runtime', options.from_file)}, {term('network', options.from_file)} and "
            f"--no-mount-cwd apply to a container; add {term('container', options.from_file)} "
            "IMAGE or drop them",
            key=term("container", options.from_file),
        )
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
        before_kill=options.before_kill or (),
        container=container,
        private_tmp=private_tmp,
        warnings=tuple(warning for warning in warnings if warning),
    )


def _container(options: RunOptions, user: UserSpec | None, private_tmp: bool) -> ContainerSpec:
    """--container: a runtime that can put the container in the run's cgroups, with a
    backend that has cgroups to put it in; refused before anything starts otherwise."""
    from tiered_run.backends import choose
    from tiered_run.backends.cgroupfs import own_cgroups, system_mounts
    from tiered_run.backends.plain import PlainBackend
    from tiered_run.backends.systemd import SystemdBackend
    from tiered_run.host.runtimes import select_runtime

    flag = term("container", options.from_file)
    if choose(options.backend).backend is PlainBackend:
        raise UsageError(
            f"{flag} needs cgroups to hold the container, and the backend here is plain; "
            "run tiered-run where it can make cgroups (as root; see tiered-run doctor)",
            key=flag,
        )
    v1 = any(m.version == 1 and m.controllers - {"name=systemd"} for m in system_mounts())
    probe, reason = select_runtime(options.runtime, v1)
    if probe is None or probe.binary is None:
        raise UsageError(reason, key=term("runtime", options.from_file))
    if probe.runtime is Runtime.DOCKER and choose(options.backend).backend is not SystemdBackend:
        # Runs go below tiered-run's own groups: where those differ, so will the run's.
        from tiered_run.engine.container import HELD, docker_refusal

        own = own_cgroups()
        paths = sorted({own[key] for key in (*HELD, "") if key in own})
        if len(paths) > 1:
            raise UsageError(
                docker_refusal(f"tiered-run's own is at {', '.join(paths)}"),
                key=term("runtime", options.from_file),
            )
    return ContainerSpec(
        image=options.container,
        runtime=probe.runtime,
        runtime_reason=reason,
        binary=probe.binary,
        oci_runtime=probe.oci_runtime,
        network=bool(options.network),
        mount_cwd=options.mount_cwd is not False,
        env=dict(options.env),
        user=user,
        cwd=options.cwd.resolve() if options.cwd is not None else None,
        private_tmp=private_tmp,
    )


def _with_io_device(limits: Limits, cwd: Path | None, from_file: bool) -> Limits:
    """I/O ceilings without io_device apply to the disk of the working directory, where a
    build or a test suite does its I/O."""
    if limits.io_device is not None or not limits.io_max:
        return limits
    try:
        return replace(limits, io_device=device_of(cwd or Path.cwd()))
    except ValueError as err:
        key = term("io_device", from_file)
        raise UsageError(
            f"the I/O ceilings apply to the working directory's disk: {err} (with {key})",
            key=key,
        ) from err


def _user(options: RunOptions, tier_user: str | None, tier_where: str) -> UserSpec | None:
    """`--user` if given (an empty one is refused, never read as "no user"), else the tier's."""
    if options.user is not None:
        return resolve_user(options.user, term("user", options.from_file))
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
