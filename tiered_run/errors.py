"""Errors that carry data, and their exit code; only the CLI turns them into a process exit.

Each error says what went wrong and how to fix it in its message, and keeps the facts it
was made from (the file, the key, the operation, the errno) as attributes, so that a
caller can react to them and a test can check them without parsing text. The entry point
(`cli.entry`) prints `tiered-run: error: MESSAGE` and exits with `exit_code`, in one
place, for every command.
"""

from __future__ import annotations

from pathlib import Path

EXIT_TOOL = 125  # policy.exit_codes.EXIT_TOOL; here so that errors import nothing


class TieredRunError(Exception):
    """tiered-run itself could not do its job (exit 125)."""

    exit_code = EXIT_TOOL

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        operation: str | None = None,
        errno: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.operation = operation
        self.errno = errno


class UsageError(TieredRunError):
    """Bad input: nothing was started. Exit 125, as for `timeout`, `env` and `nice`, so
    it cannot be mistaken for a workload's own 2. The message says what and how to fix it.

    `source` is where the input came from (a config or ladder file, or the command line)
    and `key` the setting in the user's own terms (`memory_high` in a file,
    `--memory-high` on the command line)."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        key: str | None = None,
        path: str | Path | None = None,
        operation: str | None = None,
        errno: int | None = None,
    ) -> None:
        super().__init__(message, path=path, operation=operation, errno=errno)
        self.source = source
        self.key = key


class BackendError(TieredRunError):
    """A containment backend could not be set up or used on this machine; `path`,
    `operation` and `errno` name the cgroup file and what failed on it."""


class SpawnError(TieredRunError):
    """The workload could not be started; `exit_code` is 127 (not found), 126 (not
    executable) or 125 (anything else before exec), as a shell would give."""

    def __init__(self, message: str, exit_code: int, *, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.exit_code = exit_code
