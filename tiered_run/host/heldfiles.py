"""Kernel interface files (cgroup counters, /proc) kept open for cheap repeated reads."""

from __future__ import annotations

import os
from pathlib import Path


def parse_keyed(text: str) -> dict[str, int]:
    result = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


class HeldFiles:
    """Files held open and re-read with pread, so that a monitor sample costs one system
    call per file: no path lookup, no open, no close. Files that are missing or cannot be
    read read as None: a monitor reports what it cannot measure instead of failing."""

    def __init__(self, directory: Path, names: tuple[str, ...]) -> None:
        self._fds: dict[str, int] = {}
        for name in names:
            try:
                self._fds[name] = os.open(directory / name, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue

    def text(self, name: str) -> str | None:
        fd = self._fds.get(name)
        if fd is None:
            return None
        try:
            return os.pread(fd, 65536, 0).decode()
        except OSError:  # a cgroup removed under us; PSI switched off at boot (EOPNOTSUPP)
            return None

    def int(self, name: str) -> int | None:
        text = self.text(name)
        try:
            return None if text is None else int(text)
        except ValueError:  # "max"
            return None

    def keyed(self, name: str) -> dict[str, int]:
        text = self.text(name)
        return {} if text is None else parse_keyed(text)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
