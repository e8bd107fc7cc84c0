"""Walking a path the way a careful root must: which symlinks may be followed, and which
files and directories nobody else can change.

tiered-run usually runs as root and writes where it is told and reads configuration it
finds. The kernel's `fs.protected_symlinks` would stop root from following a symlink that
another user planted in a sticky world-writable directory like /tmp, but machines run
with it off, and it says nothing about a directory another user simply owns. So the walk
is done here, one component at a time, with the rule applied to every symlink on the way:

- a symlink is followed only in a directory that no other user can change entries in
  (owned by root or by us, and not writable by group or others), or, in a sticky
  directory, when the link belongs to us or to the directory's owner, as the kernel does.

The result is the real directory and name that the caller then opens with O_NOFOLLOW,
so a symlink swapped in after the walk is refused by the kernel, not followed.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections import deque
from dataclasses import dataclass

_MAX_LINKS = 40  # the kernel's own limit (ELOOP)


class UnsafePath(Exception):
    """The path cannot be walked safely, or not at all; the message says why and how to fix."""


@dataclass(frozen=True)
class Resolved:
    """Where a path really leads: a real directory, a name in it, and what is there now
    (`lstat`, None when nothing is)."""

    directory: str
    name: str
    stat: os.stat_result | None

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)


def trusted_owners(euid: int | None = None) -> frozenset[int]:
    """Whose files we may rely on: root's and our own."""
    return frozenset({0, os.geteuid() if euid is None else euid})


def owner_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def writable_by_others(mode: int) -> bool:
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))


def directory_problem(path: str, st: os.stat_result, owners: frozenset[int]) -> str | None:
    """Why other users could change what is in this directory, or None if they cannot.

    A sticky directory (like /tmp) owned by root or us is fine: others can add entries but
    cannot replace or remove ours.
    """
    if st.st_uid not in owners:
        return f"directory {path} is owned by {owner_name(st.st_uid)}"
    if writable_by_others(st.st_mode) and not st.st_mode & stat.S_ISVTX:
        return f"directory {path} is writable by group or others (mode {st.st_mode & 0o7777:04o})"
    return None


def follow_problem(
    link: str, link_st: os.stat_result, dir_st: os.stat_result, euid: int
) -> str | None:
    """Why the symlink `link` must not be followed, or None if it may be."""
    parent = os.path.dirname(link) or "/"
    owners = trusted_owners(euid)
    if dir_st.st_uid not in owners:
        return f"it is a symlink in {parent}, a directory owned by {owner_name(dir_st.st_uid)}"
    if not writable_by_others(dir_st.st_mode):
        return None
    if dir_st.st_mode & stat.S_ISVTX and link_st.st_uid in (euid, dir_st.st_uid):
        return None
    kind = "sticky " if dir_st.st_mode & stat.S_ISVTX else ""
    return (
        f"it is a symlink owned by {owner_name(link_st.st_uid)} in {parent}, "
        f"a {kind}directory others can write to"
    )


def resolve(path: str, euid: int | None = None) -> Resolved:
    """Walk `path` like the kernel would, refusing symlinks that are not safe to follow.

    Raises UnsafePath for a symlink that must not be followed, a missing directory on the
    way, a component that is not a directory, or a loop.
    """
    euid = os.geteuid() if euid is None else euid
    current = "/" if path.startswith("/") else os.getcwd()
    parts = deque(path.split("/"))
    links = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current) or "/"
            continue
        candidate = os.path.join(current, part)
        last = not any(p not in ("", ".") for p in parts)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            if last:
                return Resolved(current, part, None)
            raise UnsafePath(f"directory {candidate} does not exist") from None
        except OSError as err:
            raise UnsafePath(f"cannot look at {candidate} ({err.strerror})") from None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise UnsafePath(f"too many levels of symlinks at {candidate}")
            problem = follow_problem(candidate, st, os.stat(current), euid)
            if problem is not None:
                raise UnsafePath(f"{candidate}: not followed: {problem}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = "/"
            parts.extendleft(reversed(target.split("/")))
            continue
        if last and not any(p == "" for p in parts):
            return Resolved(current, part, st)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{candidate} is not a directory")
        current = candidate
    # The path ends at a directory ("/", "..", or a trailing slash).
    return Resolved(os.path.dirname(current) or "/", os.path.basename(current), os.lstat(current))


def ancestors(directory: str) -> list[str]:
    """`directory` and every directory above it, up to /."""
    chain = [directory]
    while chain[-1] != "/":
        chain.append(os.path.dirname(chain[-1]) or "/")
    return chain
