"""The local run history (`--history`, `history = true`): one SQLite database a user,
one row a run, so that `tiered-run history` can show a command's trend.

Where: `TIERED_RUN_HISTORY`, else `history.sqlite3` in the user's state directory
(platformdirs: `$XDG_STATE_HOME/tiered-run`, by default `~/.local/state/tiered-run`), a
0700 directory made on the careful walk of output files.

A history is a convenience, never a reason for a run to fail or wait long: concurrent
runs write in short `BEGIN IMMEDIATE` transactions and wait at most `BUSY_WAIT_S` for one
another (SQLite's own locking, WAL journal); a locked, broken or unsafe database gives a
warning (`record` returns it) and the run's result stands.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from tiered_run.errors import UsageError
from tiered_run.host.safepath import make_directories, owner_name
from tiered_run.model.report import RunReport

BUSY_WAIT_S = 5.0  # a loaded machine can deschedule a writer mid-transaction
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    command TEXT NOT NULL,
    tier TEXT,
    outcome TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    cpu_s REAL,
    peak_memory_bytes INTEGER,
    peak_memory_unreclaimable_bytes INTEGER,
    peak_tasks INTEGER,
    hostname TEXT NOT NULL,
    cwd TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_command ON runs (command, id);
"""
_COLUMNS = (
    "started_at, command, tier, outcome, exit_code, wall_s, cpu_s, peak_memory_bytes, "
    "peak_memory_unreclaimable_bytes, peak_tasks, hostname, cwd"
)


class HistoryError(Exception):
    """The history cannot be read or written; the message says why and where."""


@dataclass(frozen=True)
class Recorded:
    """One run as the history keeps it (`report` holds the whole JSON report)."""

    started_at: str
    command: str
    tier: str | None
    outcome: str
    exit_code: int
    wall_s: float
    cpu_s: float | None
    peak_memory_bytes: int | None
    peak_memory_unreclaimable_bytes: int | None
    peak_tasks: int | None
    hostname: str
    cwd: str

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def history_path() -> Path:
    if explicit := os.environ.get("TIERED_RUN_HISTORY"):
        return Path(explicit)
    from platformdirs import user_state_path  # only where a history is used

    return user_state_path("tiered-run") / "history.sqlite3"


def command_key(command: tuple[str, ...] | list[str]) -> str:
    """How runs of one command are found again: its argv as a shell would show it."""
    return shlex.join(command)


def record(report: RunReport, path: Path | None = None) -> str | None:
    """Add `report` to the history; None when it was, else a warning for the report."""
    where = path or history_path()
    row = (
        report.started_at, command_key(report.command), report.tier, report.outcome.value,
        report.exit_code, report.wall_s, report.cpu_s, report.peak_memory_bytes,
        report.peak_memory_unreclaimable_bytes, report.peak_tasks,
        report.hostname or socket.gethostname(), os.getcwd(), json.dumps(report.to_dict()),
    )  # fmt: skip
    try:
        with _connect(where, create=True) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"INSERT INTO runs ({_COLUMNS}, report) VALUES ({', '.join('?' * 13)})", row)
            db.execute("COMMIT")
    except HistoryError as err:
        return f"history: not recorded: {err}"
    except sqlite3.Error as err:
        return f"history: not recorded in {where} ({err})"
    return None


def runs_of(command: str, last: int, path: Path | None = None) -> list[Recorded]:
    """The last `last` runs of `command` (a `command_key`), oldest first."""
    query = f"SELECT {_COLUMNS} FROM runs WHERE command = ? ORDER BY id DESC LIMIT ?"
    return _read(path, query, (command, last))[::-1]


def latest_runs(last: int, path: Path | None = None) -> list[Recorded]:
    """The last `last` runs of each command, oldest first within a command."""
    query = (
        f"SELECT {_COLUMNS} FROM (SELECT *, ROW_NUMBER() OVER "
        "(PARTITION BY command ORDER BY id DESC) AS n FROM runs) WHERE n <= ? ORDER BY id"
    )
    return _read(path, query, (last,))


def _read(path: Path | None, query: str, args: tuple[object, ...]) -> list[Recorded]:
    where = path or history_path()
    if not os.path.lexists(where):
        return []
    try:
        with _connect(where, create=False) as db:
            return [Recorded(*row) for row in db.execute(query, args)]
    except sqlite3.Error as err:
        raise HistoryError(f"{where} cannot be read ({err})") from err


class _connect:
    """A connection to the history at `path`, after checking that it is ours: a symlink,
    something other than a file, or a file of another user is refused, not followed."""

    def __init__(self, path: Path, create: bool) -> None:
        # The state directory is made as needed; a directory TIERED_RUN_HISTORY names
        # must exist: a mistyped one is not made from the root down.
        if create and "TIERED_RUN_HISTORY" not in os.environ:
            try:
                make_directories(path.parent, "history", 0o700)
            except UsageError as err:
                raise HistoryError(str(err)) from err
        elif create and not path.parent.is_dir():
            raise HistoryError(f"{path}: directory {path.parent} does not exist")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as err:
            raise HistoryError(f"{path}: {err.strerror}") from err
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise HistoryError(f"{path} is not a regular file (a symlink is not followed)")
        if st is not None and st.st_uid != os.geteuid():
            raise HistoryError(f"{path} belongs to {owner_name(st.st_uid)}, not to us")
        self.db = sqlite3.connect(path, timeout=BUSY_WAIT_S, isolation_level=None)

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        except BaseException:
            self.db.close()
            raise
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()
