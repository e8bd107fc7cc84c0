"""Resolving `--user NAME` into what `su - NAME` would give the workload."""

from __future__ import annotations

import grp
import os
import pwd

from tiered_run.errors import UsageError
from tiered_run.spec import UserSpec


def resolve_user(name: str) -> UserSpec:
    if os.geteuid() != 0:
        raise UsageError(f"--user {name} needs root; run tiered-run as root or drop --user")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(
            f"unknown user {name!r}; check the name with `getent passwd {name}`"
        ) from None
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return UserSpec(
        name=name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(sorted(groups)),
        home=entry.pw_dir,
        shell=entry.pw_shell or "/bin/sh",
    )


def user_environment(env: dict[str, str], user: UserSpec) -> dict[str, str]:
    return {**env, "HOME": user.home, "USER": user.name, "LOGNAME": user.name, "SHELL": user.shell}
