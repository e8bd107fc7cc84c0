"""Resolving `--user NAME|UID` into what `su - NAME` would give the workload.

The workload of a root tiered-run switched to another account must not inherit root's
environment: every process of that account can read it from /proc/PID/environ, and it
holds what root keeps there (tokens, SSH_AUTH_SOCK, cloud credentials, root's PATH). So
the environment is built like `su -` builds it: TERM, then HOME, SHELL, USER, LOGNAME
and the login PATH of login.defs, then the variables named with --preserve-env, then
--env, which wins over everything.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping, Sequence
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.model.spec import UserSpec

LOGIN_DEFS = Path("/etc/login.defs")
# util-linux su's defaults, used where login.defs does not set ENV_PATH / ENV_SUPATH.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_SUPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEPT_FROM_CALLER = ("TERM",)
LOGIN_NAMES = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")


def resolve_user(name: str, where: str = "--user") -> UserSpec:
    """An account by name or by numeric uid, with its groups resolved like initgroups."""
    if not name:
        raise UsageError(
            f"{where}: empty user name; give an account (e.g. nobody or 65534), "
            "or leave it out to run as the invoking user"
        )
    if os.geteuid() != 0:
        raise UsageError(f"{where} {name} needs root; run tiered-run as root or drop it")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _by_uid(name, where)
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return UserSpec(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(sorted(set(groups))),
        home=entry.pw_dir,
        shell=entry.pw_shell or "/bin/sh",
    )


def _by_uid(name: str, where: str) -> pwd.struct_passwd:
    """`--user 65534`: like chown, a name first, then a number."""
    if name.isdigit():
        try:
            return pwd.getpwuid(int(name))
        except (KeyError, OverflowError):
            raise UsageError(
                f"{where} {name}: no account has uid {name}; check it with `getent passwd {name}`"
            ) from None
    raise UsageError(f"unknown user {name!r}; check the name with `getent passwd {name}`")


def login_environment(
    user: UserSpec,
    caller: Mapping[str, str],
    preserve: Sequence[str] = (),
    extra: Mapping[str, str] | None = None,
    login_defs: Path = LOGIN_DEFS,
) -> dict[str, str]:
    """The environment `su - NAME` would start with, plus what the caller asked to keep.

    `caller` is tiered-run's own environment; only TERM and the names in `preserve` are
    taken from it. `extra` (--env) is applied last and wins, HOME and PATH included.
    """
    env = {name: caller[name] for name in KEPT_FROM_CALLER if name in caller}
    env.update(
        HOME=user.home,
        SHELL=user.shell,
        USER=user.name,
        LOGNAME=user.name,
        PATH=login_path(user.uid, login_defs),
    )
    env.update({name: caller[name] for name in preserve if name in caller})
    env.update(extra or {})
    return env


def login_path(uid: int, login_defs: Path = LOGIN_DEFS) -> str:
    """PATH for a login of `uid`: ENV_SUPATH for root, ENV_PATH otherwise (login.defs)."""
    key, default = ("ENV_SUPATH", DEFAULT_SUPATH) if uid == 0 else ("ENV_PATH", DEFAULT_PATH)
    try:
        text = login_defs.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return default
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == key:
            value = fields[1].removeprefix("PATH=")
            return value or default
    return default


def check_variable_names(names: Sequence[str], option: str) -> tuple[str, ...]:
    """Names for --preserve-env: what `env` could set (no '=', no NUL, not empty)."""
    for name in names:
        if not name or "=" in name or "\0" in name:
            raise UsageError(
                f"{option}: {name!r} is not a variable name; give names, e.g. {option} LANG,CI"
            )
    return tuple(names)
