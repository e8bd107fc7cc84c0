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

The walk holds each directory open as it goes (`openat` style) and judges what it
opened, not what a name pointed to a moment earlier: a path is a string another user can
change between a check and a use, a descriptor is not. `open_parent` hands the last
directory over as a descriptor, so that the caller opens, renames and removes relative to
it (with O_NOFOLLOW for the name) and a directory of another user's swapped for a symlink
after the walk changes nothing. `resolve` gives only the names, for messages and for
checks that look again at what they open.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from tiered_run.errors import UsageError

_MAX_LINKS = 40  # the kernel's own limit (ELOOP)
# A directory or entry held as a place, not opened for reading or writing: no permission
# is needed on it, and opening a FIFO or device this way has no effect on it.
_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_ENTRY = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(Exception):
    """The path cannot be walked safely, or not at all; the message says why and how to fix."""

    def said_of(self, path: str | os.PathLike[str]) -> str:
        """`PATH: why`, naming the path once where the message starts with it already."""
        text, why = os.fspath(path), str(self)
        return why if why.startswith(text + ":") else f"{text}: {why}"


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


@dataclass(frozen=True)
class Opened(Resolved):
    """A Resolved whose directory is held open: `dir_fd` is an O_PATH descriptor of the
    directory the walk checked, for `os.open(name, dir_fd=...)` and the like."""

    dir_fd: int


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
    found = open_parent(path, euid)
    os.close(found.dir_fd)
    return Resolved(found.directory, found.name, found.stat)


def open_parent(path: str, euid: int | None = None) -> Opened:
    """`resolve`, holding on to the directory: the result's `dir_fd` (the caller's to
    close) is the directory the walk checked, whatever is renamed or swapped on the way
    afterwards, so what is then done relative to it happens there and nowhere else.

    Each step opens the next name with O_PATH and O_NOFOLLOW and looks at what it got
    (`fstat`), so the check and the step are one: a directory swapped for a symlink between
    the two is seen as the symlink and judged as one. `..` goes back to the directory the
    walk came through, as the kernel's lexical walk of a resolved path would.
    """
    euid = os.geteuid() if euid is None else euid
    start = "/" if path.startswith("/") else os.getcwd()
    # The directories walked through, innermost last: (real path, O_PATH descriptor).
    stack = [(start, os.open("/" if start == "/" else ".", _DIRECTORY))]
    try:
        return _walk(path, stack, euid)
    finally:
        for _, fd in stack:
            os.close(fd)


def _walk(path: str, stack: list[tuple[str, int]], euid: int) -> Opened:
    """The walk itself; the descriptor it returns is taken off `stack`, the rest the
    caller closes."""
    parts = deque(path.split("/"))
    links = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            _up(stack)
            continue
        current, dir_fd = stack[-1]
        candidate = os.path.join(current, part)
        last = not any(p not in ("", ".") for p in parts)
        final = last and "" not in parts  # a trailing slash asks for a directory
        try:
            fd = os.open(part, _ENTRY, dir_fd=dir_fd)
        except FileNotFoundError:
            if final:
                stack.pop()
                return Opened(current, part, None, dir_fd)
            raise UnsafePath(f"directory {candidate} does not exist") from None
        except OSError as err:
            raise UnsafePath(f"cannot look at {candidate} ({err.strerror})") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode) and not final:
                stack.append((candidate, fd))
                fd = -1
                continue
            # The very link that is judged below, not whatever the name holds by then.
            link = os.readlink("", dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
        finally:
            if fd >= 0:
                os.close(fd)
        if link is not None:
            links += 1
            if links > _MAX_LINKS:
                raise UnsafePath(f"too many levels of symlinks at {candidate}")
            problem = follow_problem(candidate, st, os.fstat(dir_fd), euid)
            if problem is not None:
                raise UnsafePath(f"{candidate}: not followed: {problem}")
            if link.startswith("/"):
                _restart(stack)
            parts.extendleft(reversed(link.split("/")))
            continue
        if final:
            stack.pop()
            return Opened(current, part, st, dir_fd)
        raise UnsafePath(f"{candidate} is not a directory")
    # The path ends at a directory ("/", "..", or a trailing slash): its parent and name.
    current, dir_fd = stack[-1]
    st = os.fstat(dir_fd)
    if len(stack) == 1:  # where the walk began: its parent is opened now
        stack.insert(0, (os.path.dirname(current) or "/", os.open("..", _DIRECTORY, dir_fd=dir_fd)))
    return Opened(os.path.dirname(current) or "/", os.path.basename(current), st, stack.pop(-2)[1])


def _up(stack: list[tuple[str, int]]) -> None:
    """`..`: back to the directory the walk came from; above where it began, the parent."""
    if len(stack) > 1:
        os.close(stack.pop()[1])
        return
    current, fd = stack[0]
    if current != "/":
        stack[0] = (os.path.dirname(current) or "/", os.open("..", _DIRECTORY, dir_fd=fd))
        os.close(fd)


def _restart(stack: list[tuple[str, int]]) -> None:
    """An absolute symlink: the walk goes on from /."""
    root = os.open("/", _DIRECTORY)
    for _, fd in stack:
        os.close(fd)
    stack[:] = [("/", root)]


def ancestors(directory: str) -> list[str]:
    """`directory` and every directory above it, up to /."""
    chain = [directory]
    while chain[-1] != "/":
        chain.append(os.path.dirname(chain[-1]) or "/")
    return chain


def make_directories(path: Path, option: str, mode: int = 0o755) -> None:
    """Create the directory `path` and the directories above it that are missing, each made
    in its parent as the careful walk (`safepath.open_parent`) found it, so a symlink
    another user planted on the way is refused, not followed."""
    text = os.path.abspath(os.fsdecode(path))
    chain = [text]
    while chain[-1] != "/":
        chain.append(os.path.dirname(chain[-1]))
    for directory in reversed(chain[:-1]):
        try:
            target = open_parent(directory)
        except UnsafePath as err:
            raise UsageError(f"{option} {err.said_of(path)}; choose another path") from None
        try:
            if target.stat is None:
                os.mkdir(target.name, mode, dir_fd=target.dir_fd)
            elif not stat.S_ISDIR(target.stat.st_mode):
                raise UsageError(f"{option} {path}: {directory} is not a directory")
        except OSError as err:
            raise UsageError(
                f"{option} {path}: cannot create {directory} ({err.strerror})"
            ) from err
        finally:
            os.close(target.dir_fd)
