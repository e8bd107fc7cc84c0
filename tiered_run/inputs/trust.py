"""Which config and ladder files tiered-run may act on, and the one reader of them.

A config file decides which account a workload runs as and under which ceilings; a ladder
file decides which commands run. tiered-run usually runs as root, so a file that another
user could have written is a way to run their commands as root, or to hand root's job to
their account. Like ssh with its config and sudo with sudoers, tiered-run reads such a
file only if no other user could have changed it:

- the file is owned by root or by us, and is not writable by group or others;
- every directory on its real path is owned by root or by us and is not writable by group
  or others, except a sticky one (like /tmp), where others cannot replace our file;
- no symlink on the way was followed where another user could have planted it.

Root trusts only root's files; another user trusts root's and their own. The checks are
made on the descriptor that is then read, so a file swapped in after the check is not
read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from tiered_run.errors import UsageError
from tiered_run.host.safepath import (
    UnsafePath,
    ancestors,
    directory_problem,
    owner_name,
    resolve,
    trusted_owners,
    writable_by_others,
)


def open_trusted(path: Path, what: str = "config file") -> BinaryIO:
    """Open `path` for reading; UsageError (one line: why, and how to fix it) when another
    user could have written it. A missing file raises FileNotFoundError."""
    euid = os.geteuid()
    try:
        target = resolve(os.fspath(path), euid)
    except UnsafePath as err:
        raise UsageError(
            f"{what} {path}: {err}; check the path, or give the file's real path in a "
            f"directory that only {_trusted(euid)} can change"
        ) from None
    if target.stat is None:
        raise FileNotFoundError(2, "No such file or directory", str(path))
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK
    fd = os.open(target.path, flags)
    try:
        problem = file_problem(target.path, os.fstat(fd), euid) or path_problem(
            target.directory, euid
        )
        if problem is not None:
            raise UsageError(f"{what} {path}: {problem}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_toml(path: Path, what: str = "config file", *, trusted: bool = True) -> dict[str, Any]:
    """The TOML document of a config or ladder file, read only if it is trusted (see
    above); every way it cannot be read is one UsageError naming the file and the fix.
    `trusted=False` reads without the checks, to see whether a pyproject.toml holds our
    section at all before it is read again, trusted."""
    import tomllib  # only where there is a file to read

    try:
        with open_trusted(path, what) if trusted else open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as err:
        raise _unreadable(f"{what} {path} does not exist; check the path", path, err) from err
    except tomllib.TOMLDecodeError as err:
        raise _unreadable(f"{path}: not valid TOML ({err}); fix the file", path, err) from err
    except UnicodeDecodeError as err:
        message = f"{path}: not UTF-8 text, as TOML must be; fix the file"
        raise _unreadable(message, path, err) from err
    except RecursionError as err:
        message = f"{path}: nested too deeply to be a {what}; fix the file"
        raise _unreadable(message, path, err) from err
    except OSError as err:
        raise _unreadable(f"{path}: cannot read ({err.strerror})", path, err) from err


def _unreadable(message: str, path: Path, err: Exception) -> UsageError:
    errno = err.errno if isinstance(err, OSError) else None
    return UsageError(message, source=str(path), path=path, operation="read", errno=errno)


def file_problem(path: str, st: os.stat_result, euid: int) -> str | None:
    """Why the file itself cannot be trusted (with the fix), or None."""
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file; give a file"
    if st.st_uid not in trusted_owners(euid):
        fix = f"chown root {path}" if euid == 0 else f"copy it to a file of your own ({path})"
        return f"is owned by {owner_name(st.st_uid)}, who could change it{_as_root(euid)}; {fix}"
    if writable_by_others(st.st_mode):
        return (
            f"is writable by group or others (mode {st.st_mode & 0o7777:04o}), so another user "
            f"could change it{_as_root(euid)}; chmod go-w {path}"
        )
    return None


def path_problem(directory: str, euid: int) -> str | None:
    """Why a directory on the file's real path lets other users swap the file, or None."""
    owners = trusted_owners(euid)
    for parent in ancestors(directory):
        try:
            st = os.lstat(parent)
        except OSError as err:
            return f"cannot check directory {parent} ({err.strerror})"
        if not stat.S_ISDIR(st.st_mode):
            return f"{parent} changed while it was being read; try again"
        if (problem := directory_problem(parent, st, owners)) is not None:
            return (
                f"{problem}, so another user could replace the file{_as_root(euid)}; "
                f"{_fix_for_path(euid)}"
            )
    return None


def _as_root(euid: int) -> str:
    return " (as root, tiered-run reads only files no other user can change)" if euid == 0 else ""


def _trusted(euid: int) -> str:
    return "root" if euid == 0 else "you or root"


def _fix_for_path(euid: int) -> str:
    example = "/etc/tiered-run/" if euid == 0 else "~/.config/tiered-run/"
    return f"move the file to a directory that only {_trusted(euid)} can change, e.g. {example}"
