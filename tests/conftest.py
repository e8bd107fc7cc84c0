"""What every test shares: capabilities probed once, the `root` marker, isolation from the
developer's own config, one registry of spawned processes, one wait helper, one way to
run the CLI (and to run it as a user who cannot make cgroups), and a leak check."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from without_root import IS_ROOT, unprivileged_how

from tiered_run.backends import Cgroup1Backend, Cgroup2Backend, SystemdBackend, select_backend
from tiered_run.backends.cgroupfs import is_stale
from tiered_run.host.machine import Machine, read_machine

ROOT_REASON = "needs root (cgroups, --user)"
HAS_SYSTEMD = SystemdBackend.unusable_reason() is None
# Under systemd our own cgroup holds other processes; cgroup2 then needs what a user would
# give it: a delegated scope of its own.
DELEGATED = ["systemd-run", "--scope", "--quiet", "--collect", "-p", "Delegate=yes", "--"]


def _cgroup2_problem() -> str | None:
    if not HAS_SYSTEMD:
        return Cgroup2Backend.unusable_reason()
    probe = "from tiered_run.backends import Cgroup2Backend as B; print(B.unusable_reason() or '')"
    out = subprocess.run([*DELEGATED, sys.executable, "-c", probe], capture_output=True, text=True)
    return out.stdout.strip() or (out.stderr.strip() if out.returncode else None)


BACKEND_PROBLEMS = {
    "systemd": SystemdBackend.unusable_reason(),
    "cgroup1": Cgroup1Backend.unusable_reason(),
    "cgroup2": _cgroup2_problem(),
    "plain": None,
}
HAS_CPUSET = (
    HAS_SYSTEMD
    or BACKEND_PROBLEMS["cgroup1"] is None
    or (BACKEND_PROBLEMS["cgroup2"] is None and not Cgroup2Backend.missing_controllers())
)
ONLINE_CPUS = sorted(os.sched_getaffinity(0))


def backend_params(*names: str) -> list:
    """One pytest param per backend, skipped with the reason where it cannot work here."""
    return [
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                BACKEND_PROBLEMS[name] is not None, reason=f"{name}: {BACKEND_PROBLEMS[name]}"
            ),
            id=name,
        )
        for name in names
    ]


AUTO_BACKEND = select_backend()[0].name
ALL_BACKENDS = backend_params("systemd", "cgroup1", "cgroup2", "plain")


@functools.cache
def this_machine() -> Machine:
    """The CPUs and memory of this host, read on first use (not when a module is imported)."""
    return read_machine()


# -- markers and isolation ------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Signal dispositions as at a terminal, however the suite was started: a shell that
    starts it in the background without job control (`.ci/run &`) ignores SIGINT and
    SIGQUIT, and an ignored signal is inherited by every process the tests start, so
    tiered-run (rightly, as under nohup) would keep it ignored and every Ctrl-C test fail.
    Tests that need a signal ignored set that up for their own child."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGQUIT: signal.SIG_DFL}
    for signum, handler in defaults.items():
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.root` (optionally with `reason=`) skips a test unless we are root."""
    if IS_ROOT:
        return
    for item in items:
        marker = item.get_closest_marker("root")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=marker.kwargs.get("reason", ROOT_REASON)))


# What points tiered-run at the user's own files: their config, their history, the job
# summary of the CI step the suite runs in.
_USERS_OWN = (
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "TIERED_RUN_CONFIG",
    "TIERED_RUN_HISTORY",
    "GITHUB_STEP_SUMMARY",
)


def _isolate(patch: pytest.MonkeyPatch, home: Path, cwd: Path) -> None:
    patch.setenv("HOME", str(home))
    for name in _USERS_OWN:
        patch.delenv(name, raising=False)
    patch.chdir(cwd)


@pytest.fixture(scope="session", autouse=True)
def isolated_suite(tmp_path_factory: pytest.TempPathFactory):
    """The same isolation as `isolated`, for fixtures of a module or of the whole suite."""
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch):
    """No test sees the developer's own files: HOME is an empty directory of the test's,
    the variables that name their config, history or CI job summary are unset, and the
    working directory is the test's tmp_path; in-process code and every subprocess (which
    inherits it) alike."""
    _isolate(monkeypatch, tmp_path_factory.mktemp("home"), tmp_path)


@pytest.fixture
def open_dir():
    """A temporary directory every user can walk through (pytest's own are root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="tiered-run-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


# -- processes a test starts -----------------------------------------------------------------


class Spawned(list):
    """Every process a test starts: its Popen, or the pid of a fork. At the test's end
    whatever still runs is SIGKILLed by pid (never by name) and reaped."""

    def __init__(self) -> None:
        super().__init__()
        self.forks: list[int] = []

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, **kwargs)
        self.append(proc)
        return proc

    def adopt_fork(self, pid: int) -> int:
        """A child of os.fork() that this registry kills and reaps."""
        self.forks.append(pid)
        return pid

    def reap(self) -> None:
        for proc in self:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass  # uninterruptible: left to init, reported by the leak check if it matters
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for pid in self.forks:  # ours and not yet reaped, so the pid cannot have been reused
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.clear()
        self.forks.clear()


SPAWNED = Spawned()


@pytest.fixture(autouse=True)
def reap_spawned():
    yield
    SPAWNED.reap()


@pytest.fixture
def spawned() -> Spawned:
    """The registry, for tests that start processes of their own."""
    return SPAWNED


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody has reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def wait_for(condition: Callable[[], object], within: float = 10.0, step: float = 0.01) -> bool:
    """Poll `condition` until it holds or `within` seconds pass; whether it held at the end.
    Callers assert on it: `assert wait_for(lambda: gone(pid))`."""
    deadline = time.monotonic() + within
    while not (ok := condition()) and time.monotonic() < deadline:
        time.sleep(step)
    return bool(ok)


def table_row(table: str, key: str) -> str | None:
    """The value of `key` in the end-of-run table, whatever width the keys of that run
    (a VM's table has rows this machine's has not) give its first column."""
    for line in table.splitlines():
        if line.startswith(key + "  ") or line == key:
            return line[len(key) :].strip()
    return None


def written_pid(path: Path, within: float = 20.0) -> int:
    """The pid a workload writes to `path`, once it is there in full.

    A file can exist before its writer has written it: waiting on `exists()` alone read an
    empty file under load."""
    assert wait_for(lambda: path.exists() and path.read_text().split(), within=within), path
    return int(path.read_text().split()[0])


def leaked_cgroups() -> list[str]:
    """Run cgroups whose tiered-run is gone; live runs of other programs are not leaks."""
    return [
        str(p)
        for root, dirs, _ in os.walk("/sys/fs/cgroup")
        for p in (Path(root) / d for d in dirs)
        if is_stale(p)
    ]


@pytest.fixture(scope="session", autouse=True)
def no_leftovers():
    before = set(leaked_cgroups())
    yield
    leaked = set(leaked_cgroups()) - before
    assert not leaked, f"cgroups left behind by the suite: {sorted(leaked)}"


def python_cmd(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# -- running the CLI -------------------------------------------------------------------------


def guard_argv(*args: str) -> list[str]:
    """`python -m tiered_run ARGS`, in a delegated scope where cgroup2 needs one; for tests
    that hand the command line to another program (a shell, a reaper, a terminal)."""
    argv = [sys.executable, "-m", "tiered_run", *args]
    if HAS_SYSTEMD and "--backend" in args and args[args.index("--backend") + 1] == "cgroup2":
        return [*DELEGATED, *argv]
    return argv


@dataclass
class Result:
    returncode: int
    stdout: bytes | str  # str with text=True; empty where stdout was not captured
    stderr: str
    report: dict | None


def run_cli(
    *args: str,
    tmp_path: Path | None = None,
    command: str | None = "run",
    report: bool | Path = True,
    quiet: bool = False,
    text: bool = False,
    env: dict[str, str] | None = None,
    unprivileged: bool = False,
    in_process: bool = False,
    wait: bool = True,
    timeout: float = 90,
    wrap: list[str] | None = None,
    **popen,
) -> Result | subprocess.Popen:
    """`tiered-run [-q] [COMMAND] [--report FILE] ARGS...`, the one way tests run the CLI.

    - `report`: True for a new report file in `tmp_path` (default: the working directory),
      a path, or False for none; the Result holds the parsed report.
    - `text`: stdout as str (stderr always is); `env`: variables set over ours;
      `unprivileged`: as a user who cannot make cgroups (see without_root.py);
      `in_process`: the entry point in this process (only its fd-level output is caught).
    - `wait=False`: the Popen, started in the background and registered in SPAWNED.
    - `wrap`: a command that runs tiered-run (`nsenter --net=... --`).
    - `popen`: passed on to subprocess (stdin, stdout, stderr, cwd, preexec_fn, pass_fds).
    """
    report_path = None
    if report is True:
        where = tmp_path or Path.cwd()
        report_path = where / f"report-{len(list(where.glob('report-*')))}.json"
    elif report:
        report_path = Path(report)
    cli_args = [
        *(["-q"] if quiet else []),
        *([command] if command else []),
        *(["--report", str(report_path)] if report_path else []),
        *args,
    ]
    if env is not None:
        popen["env"] = {**os.environ, **env}
    if unprivileged:
        how = unprivileged_how()
        if how.problem:
            pytest.skip(how.problem)
        argv = [how.python, "-m", "tiered_run", *cli_args]
        popen["env"] = {**popen.get("env", os.environ), **how.env}
        popen.update(how.popen_kwargs())
    else:
        argv = guard_argv(*cli_args)
    argv = [*(wrap or ()), *argv]
    if not wait:
        return SPAWNED.popen(argv, **popen)
    if in_process:
        code, out, err = _in_process(cli_args)
    else:
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.run(argv, timeout=timeout, **popen)
        code, out, err = proc.returncode, proc.stdout or b"", proc.stderr or b""
    data = json.loads(report_path.read_text()) if report_path and report_path.exists() else None
    stdout = out.decode(errors="replace") if text else out
    return Result(code, stdout, err.decode(errors="replace"), data)


def _in_process(args: list[str]) -> tuple[int, bytes, bytes]:
    """The entry point's run_cli in this process, its stdout and stderr (descriptors 1 and
    2, where tiered-run writes everything of its own) caught in files."""
    from tiered_run.cli.entry import run_cli as entry

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            code = entry(args)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()


@pytest.fixture
def unprivileged(open_dir: Path, monkeypatch) -> Path:
    """The working directory and HOME of a test that runs tiered-run with
    `run_cli(..., unprivileged=True)`: owned by that user and made the cwd. Skipped, with
    the reason, where no such user can run tiered-run here."""
    how = unprivileged_how()
    if how.problem:
        pytest.skip(how.problem)
    home = open_dir / "home"
    home.mkdir()
    if how.user is not None:
        for path in (open_dir, home):
            os.chown(path, how.user.pw_uid, how.user.pw_gid)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(open_dir)
    return open_dir
