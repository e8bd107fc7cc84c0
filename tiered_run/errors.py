"""Errors that carry their exit code; only the CLI turns them into a process exit."""

from __future__ import annotations

EXIT_TOOL = 125  # policy.exit_codes.EXIT_TOOL; here so that errors import nothing


class TieredRunError(Exception):
    """tiered-run itself could not do its job (exit 125)."""

    exit_code = EXIT_TOOL


class UsageError(TieredRunError):
    """Bad input: nothing was started. Exit 125, as for `timeout`, `env` and `nice`, so
    it cannot be mistaken for a workload's own 2. The message says what and how to fix it."""

    exit_code = EXIT_TOOL


class BackendError(TieredRunError):
    """A containment backend could not be set up or used on this machine."""
