#!/usr/bin/env python3
"""Measure tiered-run against its real alternatives, on the same workloads, in the same run.

Guards compared (all pinned to the same CPU):

- tiered-run, as `python -m tiered_run run --cpus CPU ...` (works from a checkout);
- runexec from BenchExec, `--no-container` (its container mode needs an overlay or
  read-only root), with `--walltimelimit`, `--memlimit`, `--cores` and `--output`;
- GNU `timeout` + `taskset` + `prlimit` (the naive baseline; `prlimit --as` bounds
  address space, not memory in use);
- bare: the workload alone, where that makes sense.

Every figure is a median over samples taken in interleaved rounds (A B C A B C ..., the
order rotated each round). A failed sample is recorded and reported, never fatal. Every
workload stops by itself; whatever a guard leaves alive is killed by pid afterwards.

    python scripts/bench.py                  # full run, several minutes
    python scripts/bench.py --quick          # about a minute, fewer and shorter samples
    python scripts/bench.py --only startup,kill --json bench.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import psutil
from tabulate import tabulate

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
HZ = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20

SECTIONS = ("startup", "monitor", "kill", "precision", "memory", "output")
GUARDS = ("tiered-run", "runexec", "timeout", "bare")
PEER_COLUMNS = ("runexec", "timeout", "bare")

T = TypeVar("T")

# -- workloads: `python -c` programs, each stops by itself -----------------------------------

# argv: N, seconds, ready file. Holds N processes (itself and N-1 idle children) for
# `seconds` after writing every pid to the ready file; children give up after 20 s more.
HOLD = """
import os, signal, sys, time
n, hold, ready = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
kids = []
for _ in range(n - 1):
    pid = os.fork()
    if pid == 0:
        time.sleep(hold + 20)
        os._exit(0)
    kids.append(pid)
with open(ready + ".tmp", "w") as f:
    f.write(" ".join(map(str, [os.getpid(), *kids])))
os.rename(ready + ".tmp", ready)
time.sleep(hold)
for pid in kids:
    os.kill(pid, signal.SIGTERM)
for pid in kids:
    os.waitpid(pid, 0)
"""

# argv: pid file, N, daemons, seconds. A tree of N processes: itself, `daemons` setsid'd
# double-forked daemons and sleeping children; every pid goes to the pid file once all
# are started. Everything sleeps `seconds` at most.
TREE = """
import os, sys, time
path, n, daemons, life = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
r, w = os.pipe()
pids = [os.getpid()]
for _ in range(daemons):
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, f"{os.getpid()}\\n".encode())
            time.sleep(life)
        os._exit(0)
    os.waitpid(middle, 0)
for _ in range(n - 1 - daemons):
    pid = os.fork()
    if pid == 0:
        time.sleep(life)
        os._exit(0)
    pids.append(pid)
data = b""
while data.count(b"\\n") < daemons:
    data += os.read(r, 4096)
pids += [int(p) for p in data.split()]
with open(path + ".tmp", "w") as f:
    f.write(" ".join(map(str, pids)))
os.rename(path + ".tmp", path)
time.sleep(life)
"""

# argv: pid file. Sleeps 30 s.
SLEEPER = """
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(30)
"""

# argv: pid file. Ignores SIGTERM, sleeps 30 s.
IGNORER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(30)
"""

# Touches 64 MiB at a time with short sleeps (about 1 GiB/s); stops by itself at 3 GiB.
HOG = """
import time
chunks = []
for _ in range(48):
    chunks.append(b"\\x01" * (64 << 20))
    time.sleep(0.06)
"""

FLOOD_MIB = 200
# 200 MiB to stdout in 1 MiB writes.
FLOOD = f"""
import sys
block = bytes(range(256)) * 4096
out = sys.stdout.buffer
for _ in range({FLOOD_MIB}):
    out.write(block)
out.flush()
"""


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    quick: bool
    startup_rounds: int
    import_rounds: int
    monitor_s: float
    monitor_ns: tuple[int, ...]
    monitor_peer_ns: tuple[int, ...]
    monitor_rounds: int
    kill_rounds: int
    kill_timeout: float
    tree_size: int = 500
    tree_daemons: int = 10
    precision_rounds: int = 10
    precision_timeout: float = 1.0
    precision_kill_after: float = 1.0
    memory_rounds: int = 5
    memory_ceiling: int = 300 * MiB
    output_rounds: int = 10

    @classmethod
    def full(cls) -> Settings:
        return cls(
            quick=False,
            startup_rounds=30,
            import_rounds=10,
            monitor_s=30.0,
            monitor_ns=(10, 100, 500),
            monitor_peer_ns=(10, 500),
            monitor_rounds=3,
            kill_rounds=5,
            kill_timeout=3.0,
        )

    @classmethod
    def smoke(cls) -> Settings:
        return cls(
            quick=True,
            startup_rounds=5,
            import_rounds=3,
            monitor_s=5.0,
            monitor_ns=(10, 500),
            monitor_peer_ns=(500,),
            monitor_rounds=1,
            kill_rounds=1,
            kill_timeout=2.0,
            precision_rounds=2,
            memory_rounds=1,
            output_rounds=3,
        )


# -- small helpers ----------------------------------------------------------------------------


class SampleError(Exception):
    """One sample could not be taken; the run goes on."""


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def boot_now() -> float:
    """CLOCK_BOOTTIME, the clock of a process's start time in /proc/PID/stat."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def sleep_until(boot_time: float) -> None:
    remaining = boot_time - boot_now()
    if remaining > 0:
        time.sleep(remaining)


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot), or None when there is no pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[19])


def alive(pid: int, start: int) -> bool:
    """Still the same process and not dead: a zombie, or a reused pid, counts as gone."""
    state = proc_state(pid)
    return state is not None and state[1] == start and state[0] not in ("Z", "X")


def identities(pids: Iterable[int]) -> dict[int, int]:
    """pid -> start time, for the pids that exist now."""
    found = {}
    for pid in pids:
        state = proc_state(pid)
        if state is not None and state[0] not in ("Z", "X"):
            found[pid] = state[1]
    return found


def kill_survivors(procs: dict[int, int], limit: float = 5.0) -> int:
    """SIGKILL whatever of `procs` (pid -> start time) is still alive; returns how many."""
    living = {pid: start for pid, start in procs.items() if alive(pid, start)}
    for pid in living:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + limit
    while any(alive(p, s) for p, s in living.items()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(living)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "failed"
    return f"{value:.{digits}f}{unit}"


def leaked_cgroups() -> list[str]:
    return sorted(
        str(Path(root) / d)
        for root, dirs, _ in os.walk("/sys/fs/cgroup")
        for d in dirs
        if d.startswith("tiered-run")
    )


def interleave(
    rounds: int,
    samplers: dict[str, Callable[[], T]],
    failures: list[str],
    warmup: bool = False,
    rounds_of: dict[str, int] | None = None,
) -> dict[str, list[T]]:
    """Each round calls every sampler once, in an order rotated by one each round; a
    sampler named in `rounds_of` takes part in that many rounds only."""
    names = list(samplers)
    results: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds + int(warmup)):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if rounds_of and r - int(warmup) >= rounds_of.get(name, rounds):
                continue
            try:
                value = samplers[name]()
            except (
                SampleError,
                OSError,
                subprocess.SubprocessError,
                ValueError,
                KeyError,
                psutil.Error,
            ) as err:
                label = "warm-up" if warmup and r == 0 else f"round {r + 1 - int(warmup)}"
                failures.append(f"{name}, {label}: {err}")
                log(f"  sample failed: {name}, {label}: {err}")
                continue
            if not (warmup and r == 0):
                results[name].append(value)
    return results


# -- launching a guard ------------------------------------------------------------------------


class Launch:
    """A guard started in its own session; reaped with wait4 (for its rusage and a precise
    wall time), SIGTERMed and then SIGKILLed by pid if it outlives its limit."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        stderr: Path,
        stdout: Path | None = None,
    ) -> None:
        self.stderr = stderr
        with open(stderr, "wb") as err:
            if stdout is None:
                self._start(argv, env, cwd, subprocess.DEVNULL, err)
            else:
                with open(stdout, "wb") as out:
                    self._start(argv, env, cwd, out, err)
        self.argv = argv
        try:  # signals through a pidfd can never reach a reused pid
            self._pidfd: int | None = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self._pidfd = None
        self.status: int | None = None
        self.rusage: Any = None
        self.wall: float | None = None
        self.end_boot: float | None = None
        self.expired = False
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def _start(
        self, argv: list[str], env: dict[str, str], cwd: Path, out: IO[bytes] | int, err: IO[bytes]
    ) -> None:
        self.start_boot = boot_now()
        self._t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int:
        assert self.status is not None
        return os.waitstatus_to_exitcode(self.status)

    def failure(self, what: str = "") -> SampleError:
        """A SampleError with the exit code and the guard's last line on stderr."""
        try:
            lines = self.stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        said = f": {lines[-1][:200]}" if lines else ""
        return SampleError(f"{what + ', ' if what else ''}exit code {self.returncode}{said}")

    def _done(self, status: int, rusage: Any) -> None:
        self.wall = time.perf_counter() - self._t0
        self.end_boot = boot_now()
        with self._lock:
            self.status = status
        self.rusage = rusage
        self.proc.returncode = os.waitstatus_to_exitcode(status)

    def poll(self) -> bool:
        if self.status is None:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid == 0:
                return False
            self._done(status, rusage)
        return True

    def wait(self, limit: float) -> Launch:
        if self.status is None:
            timer = threading.Timer(limit, self._expire)
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
            try:
                _, status, rusage = os.wait4(self.pid, 0)
            finally:
                for t in self._timers:
                    t.cancel()
            self._done(status, rusage)
        if self.expired:
            raise SampleError(f"{self.argv[0]} still running after {limit:g} s: killed")
        return self

    def _signal(self, sig: int) -> None:
        with self._lock:
            if self.status is None:
                try:
                    if self._pidfd is not None:
                        signal.pidfd_send_signal(self._pidfd, sig)
                    else:
                        os.kill(self.pid, sig)
                except OSError:
                    pass

    def _expire(self) -> None:
        self.expired = True
        self._signal(signal.SIGTERM)
        timer = threading.Timer(10, self._signal, (signal.SIGKILL,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def __enter__(self) -> Launch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.status is None:
                self._signal(signal.SIGTERM)
                self.wait(15)
        except SampleError:
            pass
        finally:
            with self._lock:
                if self._pidfd is not None:
                    os.close(self._pidfd)
                    self._pidfd = None


def wait_for_pids(path: Path, launch: Launch, limit: float) -> list[int]:
    """The pids a workload wrote to `path` (atomically) once it had started them all."""
    deadline = time.monotonic() + limit
    while not path.exists():
        if launch.poll():
            raise SampleError(f"guard exited with {launch.returncode} before the workload was up")
        if time.monotonic() > deadline:
            raise SampleError(f"workload not up after {limit:g} s")
        time.sleep(0.005)
    return [int(p) for p in path.read_text().split()]


def parse_runexec(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def find_runexec(choice: str | None) -> list[str] | None:
    """runexec's own console script (next to this Python first); None if not installed."""
    if choice == "none":
        return None
    if choice:
        found = shutil.which(choice)
        return [found] if found else None
    beside = Path(sys.executable).parent / "runexec"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("runexec")
    return [found] if found else None


# -- figures ----------------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the table: tiered-run's figure against its target, and the peers'."""

    key: str
    label: str
    value: float | str | None
    unit: str
    shown: str
    target: str
    passed: bool | None
    verdict: str
    peers: dict[str, str] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    samples: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def judge(value: float | None, limit: float, unit: str, missing: str = "no data") -> tuple:
    """(passed, verdict) for an upper-bound target."""
    if value is None:
        return None, f"n/a: {missing}"
    if value <= limit:
        return True, "pass"
    over = value - limit
    return False, f"MISS (+{over:.3g}{unit})"


# -- the benchmark ----------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, runexec: list[str] | None, cpu: int, workdir: Path):
        self.s = settings
        self.runexec = runexec
        self.cpu = cpu
        self.workdir = workdir
        env = dict(os.environ)
        env.pop("TIERED_RUN_CONFIG", None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        self.env = env
        self._ids = itertools.count()
        tools = all(shutil.which(t) for t in ("timeout", "taskset", "prlimit"))
        self.missing = {
            "runexec": None if runexec else "not installed",
            "timeout": None if tools else "not installed",
        }
        self.figures: list[Figure] = []
        self.probe_report: dict[str, Any] = {}
        self.tiered_run_pids: list[int] = []
        self.probe_failures: list[str] = []

    def has(self, guard: str) -> bool:
        return self.missing.get(guard) is None

    def guards(self, *names: str) -> list[str]:
        return [g for g in names if self.has(g)]

    def path(self, stem: str) -> Path:
        return self.workdir / f"{stem}-{next(self._ids)}"

    def peer(self, guard: str, text: str) -> str:
        return self.missing.get(guard) or text

    def argv(
        self,
        guard: str,
        workload: list[str],
        *,
        timeout: float | None = None,
        kill_after: float | None = None,
        memory: int | None = None,
        report: Path | None = None,
        log_file: Path | None = None,
        output: Path | None = None,
        quiet: bool = True,
    ) -> list[str]:
        """The command line of `workload` under `guard`, with the same ceilings for each."""
        if guard == "bare":
            return workload
        if guard == "tiered-run":
            cmd = [PY, "-m", "tiered_run", "run", "--cpus", str(self.cpu)]
            if timeout is not None:
                cmd += ["--timeout", f"{timeout:g}"]
            if kill_after is not None:
                cmd += ["--kill-after", f"{kill_after:g}"]
            if memory is not None:
                cmd += ["--memory", str(memory)]
            if report is not None:
                cmd += ["--report", str(report)]
            if log_file is not None:
                cmd += ["--log", str(log_file)]
            if quiet:
                cmd.append("-q")
            return [*cmd, "--", *workload]
        if guard == "runexec":
            assert self.runexec is not None
            out = output or self.workdir / "runexec-output.log"
            cmd = [*self.runexec, "--no-container", "--quiet", "--cores", str(self.cpu)]
            cmd += ["--output", str(out)]
            if timeout is not None:
                cmd += ["--walltimelimit", f"{timeout:g}"]
            if memory is not None:
                cmd += ["--memlimit", str(memory)]
            return [*cmd, "--", *workload]
        if guard == "timeout":
            cmd = ["timeout"]
            if kill_after is not None:
                cmd += ["-k", f"{kill_after:g}"]
            cmd += [f"{timeout:g}" if timeout else "0", "taskset", "-c", str(self.cpu)]
            cmd += ["prlimit", "--nproc=8192"]
            if memory is not None:
                cmd.append(f"--as={memory}")
            return [*cmd, "--", *workload]
        raise ValueError(f"unknown guard {guard}")

    def launch(self, argv: list[str], stdout: Path | None = None) -> Launch:
        run = Launch(argv, self.env, self.workdir, self.path("stderr"), stdout)
        if argv[:3] == [PY, "-m", "tiered_run"]:
            self.tiered_run_pids.append(run.pid)
        return run

    def leaked(self) -> list[str]:
        """cgroups of the tiered-run processes this benchmark started that are still there."""
        prefixes = tuple(f"tiered-run-{pid}-" for pid in self.tiered_run_pids)
        return [path for path in leaked_cgroups() if Path(path).name.startswith(prefixes)]

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)

    # -- 1. start-up ------------------------------------------------------------------------

    def startup(self) -> None:
        log(f"start-up: `GUARD -- true`, {self.s.startup_rounds} interleaved rounds")
        failures: list[str] = []

        def true_under(guard: str) -> Callable[[], float]:
            def sample() -> float:
                argv = self.argv(guard, ["true"], timeout=60, quiet=False)
                with self.launch(argv) as run:
                    run.wait(60)
                if run.returncode != 0:
                    raise run.failure()
                assert run.wall is not None
                return run.wall * 1000

            return sample

        guards = self.guards(*GUARDS)
        walls = interleave(
            self.s.startup_rounds, {g: true_under(g) for g in guards}, failures, warmup=True
        )
        med = {g: median(walls.get(g, [])) for g in GUARDS}
        value = ratio(med["tiered-run"], med["runexec"])
        missing = self.missing["runexec"] or "runexec failed"
        passed, verdict = judge(value, 0.35, "x", f"runexec {missing}")
        shown = (
            f"{value:.2f}x runexec ({fmt(med['tiered-run'], ' ms', 0)})"
            if value is not None
            else fmt(med["tiered-run"], " ms", 0)
        )
        note = ""
        if med["tiered-run"] is not None and med["bare"] is not None:
            note = f"{med['tiered-run'] - med['bare']:.0f} ms over bare"
        self.add(
            Figure(
                key="startup",
                label="start-up: wall of `GUARD -- true`",
                value=value,
                unit="x runexec",
                shown=shown,
                target="<= 0.35x runexec",
                passed=passed,
                verdict=verdict,
                peers={
                    "runexec": self.peer("runexec", fmt(med["runexec"], " ms", 0)),
                    "timeout": self.peer("timeout", fmt(med["timeout"], " ms", 1)),
                    "bare": fmt(med["bare"], " ms", 1),
                },
                measured={f"{g}_ms": med[g] for g in GUARDS},
                note=note,
                samples={f"{g}_ms": walls.get(g, []) for g in GUARDS},
                failures=failures,
            )
        )
        self._imports()

    def _imports(self) -> None:
        log(f"imports: -X importtime and --version walls, {self.s.import_rounds} rounds")
        failures: list[str] = []
        breakdown: dict[str, dict[str, float]] = {}

        def importtime(statement: str, keep: str) -> Callable[[], float]:
            def sample() -> float:
                proc = subprocess.run(
                    [PY, "-X", "importtime", "-c", statement],
                    capture_output=True,
                    env=self.env,
                    cwd=self.workdir,
                    timeout=60,
                )
                if proc.returncode != 0:
                    raise SampleError(proc.stderr.decode(errors="replace")[-300:])
                total, per_package = parse_importtime(proc.stderr.decode(errors="replace"))
                breakdown[keep] = per_package
                return total

            return sample

        def version(guard: str) -> Callable[[], float]:
            argv = {
                "tiered-run": [PY, "-m", "tiered_run", "--version"],
                "runexec": [*(self.runexec or []), "--version"],
                "timeout": ["timeout", "--version"],
                "bare": [PY, "-c", "pass"],
            }[guard]

            def sample() -> float:
                with self.launch(argv) as run:
                    run.wait(60)
                if run.returncode != 0:
                    raise run.failure()
                assert run.wall is not None
                return run.wall * 1000

            return sample

        samplers: dict[str, Callable[[], float]] = {
            "import-none": importtime("pass", "none"),
            "import-cli": importtime("import tiered_run.cli", "cli"),
            "import-run": importtime(
                "import tiered_run.cli, tiered_run.render, tiered_run.supervisor", "run"
            ),
        }
        samplers |= {f"version-{g}": version(g) for g in self.guards(*GUARDS)}
        got = interleave(self.s.import_rounds, samplers, failures, warmup=True)
        cli, run_path = median(got["import-cli"]), median(got["import-run"])
        baseline = median(got["import-none"])
        site = breakdown.get("none", {})
        added = {k: v - site.get(k, 0.0) for k, v in breakdown.get("run", {}).items()}
        top = sorted(added.items(), key=lambda kv: -kv[1])[:6]
        self.add(
            Figure(
                key="import_time",
                label="import time of tiered_run.cli (-X importtime, self times summed)",
                value=cli,
                unit="ms",
                shown=fmt(cli, " ms"),
                target="-",
                passed=None,
                verdict="-",
                peers={"runexec": "-", "timeout": "-", "bare": fmt(baseline, " ms") + " (pass)"},
                measured={
                    "cli_ms": cli,
                    "run_path_ms": run_path,
                    "python_pass_ms": baseline,
                    "run_path_by_package_ms": dict(
                        sorted(added.items(), key=lambda kv: -kv[1])[:20]
                    ),
                },
                note=f"run path (cli+render+supervisor) {fmt(run_path, ' ms')}; "
                + ", ".join(f"{name} {ms:.0f}" for name, ms in top),
                samples={
                    "cli_ms": got["import-cli"],
                    "run_path_ms": got["import-run"],
                    "python_pass_ms": got["import-none"],
                },
                failures=failures,
            )
        )
        walls = {g: median(got.get(f"version-{g}", [])) for g in GUARDS}
        self.add(
            Figure(
                key="version_wall",
                label="wall of `GUARD --version` (bare: `python -c pass`)",
                value=walls["tiered-run"],
                unit="ms",
                shown=fmt(walls["tiered-run"], " ms", 0),
                target="-",
                passed=None,
                verdict="-",
                peers={
                    "runexec": self.peer("runexec", fmt(walls["runexec"], " ms", 0)),
                    "timeout": self.peer("timeout", fmt(walls["timeout"], " ms", 1)),
                    "bare": fmt(walls["bare"], " ms", 0),
                },
                measured={f"{g}_ms": walls[g] for g in GUARDS},
                samples={f"{g}_ms": got.get(f"version-{g}", []) for g in GUARDS},
            )
        )

    # -- 2. monitor cost --------------------------------------------------------------------

    def monitor(self) -> None:
        hold = self.s.monitor_s
        log(
            f"monitor cost: guard's own CPU while it holds N idle processes for {hold:g} s, "
            f"N = {', '.join(map(str, self.s.monitor_ns))}"
        )
        failures: list[str] = []

        def cost(guard: str, n: int) -> Callable[[], float]:
            def sample() -> float:
                ready = self.path("hold")
                workload = [PY, "-c", HOLD, str(n), f"{hold + 1:g}", str(ready)]
                argv = self.argv(guard, workload, timeout=hold + 60)
                tracked: dict[int, int] = {}
                with self.launch(argv) as run:
                    try:
                        tracked = identities(wait_for_pids(ready, run, 30))
                        if len(tracked) != n:
                            raise SampleError(f"{len(tracked)} of {n} processes up")
                        t0, cpu = time.perf_counter(), OwnCpu(run.pid)
                        time.sleep(hold)
                        used, _source = cpu.since()
                        t1 = time.perf_counter()
                        if run.poll():
                            raise SampleError("the guard returned before the window closed")
                        run.wait(hold + 90)
                    finally:
                        kill_survivors(tracked)
                if run.returncode != 0:
                    raise run.failure()
                return 100 * used / (t1 - t0)

            return sample

        samplers: dict[str, Callable[[], float]] = {}
        for n in sorted(set(self.s.monitor_ns) | set(self.s.monitor_peer_ns)):
            for guard in self.guards("tiered-run", "runexec", "timeout"):
                ns = self.s.monitor_ns if guard == "tiered-run" else self.s.monitor_peer_ns
                if n in ns:
                    samplers[f"{guard}@{n}"] = cost(guard, n)
        peers_once = {key: 1 for key in samplers if not key.startswith("tiered-run@")}
        got = interleave(self.s.monitor_rounds, samplers, failures, rounds_of=peers_once)
        pct = {key: median(values) for key, values in got.items()}

        def cell(guard: str, n: int) -> str:
            if not self.has(guard):
                return self.peer(guard, "")
            if f"{guard}@{n}" not in pct:
                return "not run"
            return fmt(pct[f"{guard}@{n}"], " %", 3)

        backend = self.meta_backend()
        for n in self.s.monitor_ns:
            value = pct.get(f"tiered-run@{n}")
            passed, verdict = judge(value, 0.5, " %")
            self.add(
                Figure(
                    key=f"monitor_n{n}",
                    label=f"monitor CPU, {n} idle processes, {hold:g} s ({backend})",
                    value=value,
                    unit="% of one core",
                    shown=fmt(value, " %", 3),
                    target="<= 0.5 % of one core",
                    passed=passed,
                    verdict=verdict,
                    peers={"runexec": cell("runexec", n), "timeout": cell("timeout", n)},
                    measured={g: pct.get(f"{g}@{n}") for g in ("tiered-run", "runexec", "timeout")},
                    note="user+sys of the guard process alone, default interval; median of "
                    f"{len(got.get(f'tiered-run@{n}', []))}",
                    samples={g: got.get(f"{g}@{n}", []) for g in ("tiered-run", "runexec")},
                    failures=[f for f in failures if f.endswith(f"@{n}") or f"@{n}," in f],
                )
            )
        low, high = min(self.s.monitor_ns), max(self.s.monitor_ns)

        def scaling(guard: str) -> float | None:
            return ratio(pct.get(f"{guard}@{high}"), pct.get(f"{guard}@{low}"))

        value = scaling("tiered-run")
        passed, verdict = judge(value, 1.5, "x")
        peers = {}
        for guard in ("runexec", "timeout"):
            both = f"{guard}@{low}" in pct and f"{guard}@{high}" in pct
            text = fmt(scaling(guard), "x", 2) if both else "not run"
            if both and scaling(guard) is None:
                text = "n/a (no CPU used)"
            peers[guard] = self.peer(guard, text)
        self.add(
            Figure(
                key="monitor_scaling",
                label=f"monitor CPU, N={high} / N={low} ({backend})",
                value=value,
                unit="x",
                shown=fmt(value, "x", 2),
                target="<= 1.5x",
                passed=passed,
                verdict=verdict,
                peers=peers,
                measured={g: scaling(g) for g in ("tiered-run", "runexec", "timeout")},
            )
        )

    def meta_backend(self) -> str:
        return str(self.probe_report.get("backend", "?")) + " backend"

    # -- 3. kill latency --------------------------------------------------------------------

    def kill(self) -> None:
        limit, n, daemons = self.s.kill_timeout, self.s.tree_size, self.s.tree_daemons
        log(
            f"kill: {n}-process tree ({daemons} setsid'd daemons) at a {limit:g} s timeout, "
            f"{self.s.kill_rounds} rounds"
        )
        failures: list[str] = []

        def tree_under(guard: str) -> Callable[[], dict[str, Any]]:
            def sample() -> dict[str, Any]:
                pidfile, report = self.path("tree"), self.path("report")
                result = self.path("runexec-result") if guard == "runexec" else None
                workload = [PY, "-c", TREE, str(pidfile), str(n), str(daemons), "40"]
                argv = self.argv(guard, workload, timeout=limit, kill_after=2, report=report)
                ids: dict[int, int] = {}
                with self.launch(argv, stdout=result) as run:
                    try:
                        pids = wait_for_pids(pidfile, run, limit)
                        ids = identities(pids)
                        if len(ids) != n:
                            raise SampleError(f"{len(ids)} of {n} processes up at the deadline")
                        deadline = ids[pids[0]] / HZ + limit
                        last_death, survivors = watch_deaths(ids, run, deadline)
                    finally:
                        kill_survivors(ids)
                    run.wait(60)
                assert run.end_boot is not None
                out: dict[str, Any] = {
                    "latency_ms": None if survivors else ms_after(last_death, deadline),
                    "gone_ms": ms_after(last_death, deadline),
                    "survivors": survivors,
                    "returned_ms": ms_after(run.end_boot, deadline),
                    "exit_code": run.returncode,
                }
                if guard == "tiered-run" and report.exists():
                    data = json.loads(report.read_text())
                    out["outcome"] = data["outcome"]
                    out["leftover_killed"] = data["leftover_killed"]
                if result is not None:
                    out["outcome"] = parse_runexec(result).get("terminationreason")
                return out

            return sample

        got = interleave(
            self.s.kill_rounds,
            {g: tree_under(g) for g in self.guards("tiered-run", "runexec", "timeout")},
            failures,
        )
        latency = {g: median(s["latency_ms"] for s in got.get(g, [])) for g in GUARDS}
        gone = {g: median(s["gone_ms"] for s in got.get(g, [])) for g in GUARDS}
        survive = {g: max((s["survivors"] for s in got.get(g, [])), default=None) for g in GUARDS}
        returned = {g: median(s["returned_ms"] for s in got.get(g, [])) for g in GUARDS}

        def latency_cell(guard: str) -> str:
            if not got.get(guard):
                return self.peer(guard, "failed")
            if latency[guard] is not None:
                return fmt(latency[guard], " ms", 0)
            return f"{survive[guard]} survive (the rest {fmt(gone[guard], ' ms', 0)})"

        value = latency["tiered-run"]
        passed, verdict = judge(value, 200, " ms")
        self.add(
            Figure(
                key="kill_latency",
                label=f"kill: {n}-process tree ({daemons} daemons), deadline -> last one gone",
                value=value,
                unit="ms",
                shown=latency_cell("tiered-run"),
                target="<= 200 ms",
                passed=passed,
                verdict=verdict,
                peers={"runexec": latency_cell("runexec"), "timeout": latency_cell("timeout")},
                measured={"latency_ms": latency, "returned_ms": returned, "gone_ms": gone},
                note=f"tiered-run returned {fmt(returned['tiered-run'], ' ms', 0)} after the "
                "deadline; deadline = the tree's start + timeout",
                samples={g: got.get(g, []) for g in GUARDS if g in got},
                failures=failures,
            )
        )
        value_s = survive["tiered-run"]
        self.add(
            Figure(
                key="kill_survivors",
                label="kill: processes of the tree alive 1 s after the guard returned",
                value=value_s,
                unit="processes",
                shown="failed" if value_s is None else str(value_s),
                target="0",
                passed=None if value_s is None else value_s == 0,
                verdict="n/a: no data"
                if value_s is None
                else ("pass" if value_s == 0 else f"MISS (+{value_s})"),
                peers={
                    g: self.peer(g, "failed" if survive[g] is None else str(survive[g]))
                    for g in ("runexec", "timeout")
                },
                measured={"survivors_max": survive},
                note="worst round",
            )
        )

    # -- 4. timeout precision ---------------------------------------------------------------

    def precision(self) -> None:
        limit, grace = self.s.precision_timeout, self.s.precision_kill_after
        log(
            f"timeout precision: sleeper and SIGTERM ignorer at --timeout {limit:g} "
            f"--kill-after {grace:g}, {self.s.precision_rounds} rounds"
        )
        failures: list[str] = []

        def under(guard: str, kind: str) -> Callable[[], dict[str, float]]:
            code = SLEEPER if kind == "sleeper" else IGNORER
            # runexec has no grace: it sends SIGKILL at its wall-time limit.
            extra = grace if kind == "ignorer" and guard != "runexec" else 0.0

            def sample() -> dict[str, float]:
                pidfile = self.path("pid")
                workload = [PY, "-c", code, str(pidfile)]
                argv = self.argv(guard, workload, timeout=limit, kill_after=grace)
                ids: dict[int, int] = {}
                with self.launch(argv) as run:
                    try:
                        pid = wait_for_pids(pidfile, run, limit)[0]
                        ids = identities([pid])
                        if pid not in ids:
                            raise SampleError("the workload was gone before its deadline")
                        deadline = ids[pid] / HZ + limit + extra
                        sleep_until(deadline - 0.1)
                        while alive(pid, ids[pid]):
                            if run.poll() and boot_now() > (run.end_boot or 0) + 1:
                                raise SampleError("the guard returned; the workload lives on")
                            if boot_now() > deadline + 40:
                                raise SampleError("the workload was never ended")
                            time.sleep(0.001)
                        gone = boot_now()
                    finally:
                        kill_survivors(ids)
                    run.wait(60)
                assert run.end_boot is not None
                return {
                    "gone_ms": (gone - deadline) * 1000,
                    "returned_ms": (run.end_boot - deadline) * 1000,
                }

            return sample

        samplers = {
            f"{g}/{kind}": under(g, kind)
            for kind in ("sleeper", "ignorer")
            for g in self.guards("tiered-run", "runexec", "timeout")
        }
        got = interleave(self.s.precision_rounds, samplers, failures)
        for kind in ("sleeper", "ignorer"):
            gone = {g: median(s["gone_ms"] for s in got.get(f"{g}/{kind}", [])) for g in GUARDS}
            back = {g: median(s["returned_ms"] for s in got.get(f"{g}/{kind}", [])) for g in GUARDS}
            value = gone["tiered-run"]
            passed, verdict = judge(value, 50, " ms")
            what = "sleeper" if kind == "sleeper" else "SIGTERM ignorer"
            past = f"{limit:g} s" + (f" + kill-after {grace:g} s" if kind == "ignorer" else "")
            note = f"tiered-run returned {fmt(back['tiered-run'], ' ms', 0)} past it"
            if kind == "ignorer":
                note += "; runexec: past the limit alone (it has no grace, SIGKILL at once)"
            self.add(
                Figure(
                    key=f"overshoot_{kind}",
                    label=f"timeout overshoot, {what}: workload gone, past {past}",
                    value=value,
                    unit="ms",
                    shown=fmt(value, " ms", 0),
                    target="<= 50 ms",
                    passed=passed,
                    verdict=verdict,
                    peers={g: self.peer(g, fmt(gone[g], " ms", 0)) for g in ("runexec", "timeout")},
                    measured={"gone_ms": gone, "returned_ms": back},
                    note=note,
                    samples={g: got.get(f"{g}/{kind}", []) for g in GUARDS},
                    failures=[f for f in failures if f"/{kind}," in f],
                )
            )

    # -- 5. memory ceiling ------------------------------------------------------------------

    def memory(self) -> None:
        ceiling = self.s.memory_ceiling
        log(
            f"memory: a hog at about 1 GiB/s against a {ceiling // MiB} MiB ceiling, "
            f"{self.s.memory_rounds} rounds"
        )
        failures: list[str] = []

        def hog_under(guard: str) -> Callable[[], dict[str, Any]]:
            def sample() -> dict[str, Any]:
                report = self.path("report")
                result = self.path("runexec-result") if guard == "runexec" else None
                argv = self.argv(guard, [PY, "-c", HOG], timeout=60, memory=ceiling, report=report)
                with self.launch(argv, stdout=result) as run:
                    run.wait(120)
                if guard == "tiered-run":
                    if not report.exists():
                        raise run.failure("no report")
                    data = json.loads(report.read_text())
                    return {
                        "peak": data["peak_memory_bytes"],
                        "source": data["peak_memory_source"],
                        "outcome": f"{data['outcome']} (exit {data['exit_code']})",
                        "stopped": data["outcome"] == "memory" and data["exit_code"] == 122,
                    }
                if result is not None:
                    values = parse_runexec(result)
                    raw = values.get("memory", "").removesuffix("B")
                    reason = values.get("terminationreason")
                    return {
                        "peak": int(raw) if raw.isdigit() else None,
                        "source": "runexec memory=",
                        "outcome": reason or f"exit {values.get('returnvalue')}",
                        "stopped": reason == "memory",
                    }
                return {
                    "peak": run.rusage.ru_maxrss * 1024,
                    "source": "wait4 ru_maxrss",
                    "outcome": exit_text(run.returncode),
                    "stopped": run.returncode != 0,
                }

            return sample

        got = interleave(
            self.s.memory_rounds,
            {g: hog_under(g) for g in self.guards("tiered-run", "runexec", "timeout")},
            failures,
        )
        peak = {g: median(s["peak"] for s in got.get(g, [])) for g in GUARDS}
        rel = {g: ratio(peak[g], ceiling) for g in GUARDS}

        def peak_cell(guard: str) -> str:
            if peak[guard] is None:
                return self.peer(guard, "failed")
            source = got[guard][0]["source"]
            return f"{rel[guard]:.2f} ({peak[guard] / MiB:.0f} MiB, {source})"

        passed, verdict = judge(rel["tiered-run"], 1.0, "x")
        self.add(
            Figure(
                key="memory_peak",
                label=f"memory: reported peak / {ceiling // MiB} MiB ceiling "
                f"({self.meta_backend()})",
                value=rel["tiered-run"],
                unit="x ceiling",
                shown=peak_cell("tiered-run"),
                target="<= 1.0",
                passed=passed,
                verdict=verdict,
                peers={g: peak_cell(g) for g in ("runexec", "timeout")},
                measured={"peak_bytes": peak, "peak_over_ceiling": rel},
                note="timeout: prlimit --as bounds address space, not memory in use",
                samples={g: got.get(g, []) for g in GUARDS if g in got},
                failures=failures,
            )
        )

        def outcomes(guard: str) -> str:
            counts = Counter(s["outcome"] for s in got.get(guard, []))
            if not counts:
                return self.peer(guard, "failed")
            return ", ".join(o if c == 1 else f"{o} x{c}" for o, c in counts.items())

        runs = got.get("tiered-run", [])
        ok = all(s["stopped"] for s in runs) if runs else None
        self.add(
            Figure(
                key="memory_outcome",
                label="memory: the outcome reported",
                value=outcomes("tiered-run"),
                unit="",
                shown=outcomes("tiered-run"),
                target="memory (exit 122)",
                passed=ok,
                verdict="n/a: no data" if ok is None else "pass" if ok else "MISS",
                peers={g: outcomes(g) for g in ("runexec", "timeout")},
            )
        )

    # -- 6. output --------------------------------------------------------------------------

    def output(self) -> None:
        log(f"output: {FLOOD_MIB} MiB to stdout (/dev/null), {self.s.output_rounds} rounds")
        failures: list[str] = []

        def flood_under(guard: str, with_log: bool, code: str) -> Callable[[], float]:
            def sample() -> float:
                log_file = self.path("flood-log") if with_log else None
                out = self.path("runexec-flood")
                argv = self.argv(guard, [PY, "-c", code], timeout=60, log_file=log_file, output=out)
                try:
                    with self.launch(argv) as run:
                        run.wait(120)
                    if run.returncode != 0:
                        raise run.failure()
                    if log_file is not None and log_file.stat().st_size != FLOOD_MIB * MiB:
                        raise SampleError(f"--log holds {log_file.stat().st_size} bytes")
                finally:
                    for path in (log_file, out):
                        if path is not None:
                            path.unlink(missing_ok=True)
                assert run.wall is not None
                return run.wall * 1000

            return sample

        samplers = {
            g: flood_under(g, False, FLOOD) for g in self.guards("bare", "tiered-run", "runexec")
        }
        samplers["tiered-run --log"] = flood_under("tiered-run", True, FLOOD)
        if self.has("timeout"):
            samplers["timeout"] = flood_under("timeout", False, FLOOD)
        samplers["tiered-run, no output"] = flood_under("tiered-run", False, "pass")
        samplers["bare, no output"] = flood_under("bare", False, "pass")
        got = interleave(self.s.output_rounds, samplers, failures, warmup=True)
        wall = {name: median(values) for name, values in got.items()}
        bare, rx = wall.get("bare"), wall.get("runexec")
        mine_true, bare_true = wall.get("tiered-run, no output"), wall.get("bare, no output")
        start_cost = None
        if mine_true is not None and bare_true is not None:
            start_cost = mine_true - bare_true
        for key, name in (("output_plain", "tiered-run"), ("output_log", "tiered-run --log")):
            mine = wall.get(name)
            value = ratio(mine, bare)
            passed, verdict = judge(value, 1.2, "x")
            notes = []
            if mine is not None and rx is not None:
                notes.append(f"{mine / rx:.2f}x runexec")
            if mine is not None and bare and start_cost is not None:
                notes.append(f"net of start-up {(mine - start_cost) / bare:.2f}x bare")
            self.add(
                Figure(
                    key=key,
                    label=f"output: {FLOOD_MIB} MiB to stdout"
                    + (", with --log" if "log" in name else "")
                    + ", wall / bare",
                    value=value,
                    unit="x bare",
                    shown=f"{value:.2f}x bare ({fmt(mine, ' ms', 0)})"
                    if value is not None
                    else fmt(mine, " ms", 0),
                    target="<= 1.2x bare",
                    passed=passed,
                    verdict=verdict,
                    peers={
                        "runexec": self.peer("runexec", fmt(rx, " ms", 0)) + " (to a file)",
                        "timeout": self.peer("timeout", fmt(wall.get("timeout"), " ms", 0)),
                        "bare": fmt(bare, " ms", 0),
                    },
                    measured={
                        "wall_ms": wall,
                        "ratio_to_runexec": ratio(mine, rx),
                        "startup_cost_ms": start_cost,
                    },
                    note="; ".join(notes),
                    samples=got if key == "output_plain" else {},
                    failures=failures if key == "output_plain" else [],
                )
            )

    # -- the probe run ----------------------------------------------------------------------

    def probe(self) -> None:
        """One `tiered-run -- true` up front: it works here, and which backend it picks.
        Three tries, so that one failed start does not stop the benchmark."""
        errors = []
        for _ in range(3):
            report = self.path("probe")
            with self.launch(self.argv("tiered-run", ["true"], report=report)) as run:
                run.wait(60)
            if run.returncode == 0 and report.exists():
                self.probe_report = json.loads(report.read_text())
                self.probe_failures = errors
                for error in errors:
                    log(f"  probe failed: {error}")
                return
            errors.append(str(run.failure()))
        raise SystemExit(f"bench: `tiered-run -- true` failed 3 times: {errors[-1]}")


def thread_runtimes(pid: int) -> dict[int, int]:
    """Nanoseconds on CPU of each live thread of `pid` (/proc/PID/task/TID/schedstat)."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                times[int(tid)] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return times


class OwnCpu:
    """CPU time of one process itself (all its threads, none of its children).

    Per-thread schedstat runtimes are exact to the nanosecond; if a thread ended inside
    the window its time is lost there, so the tick-rounded total of /proc/PID/stat
    (psutil, 10 ms steps) is used instead."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self._threads = self._read_threads()
        self._ticks = self._read_ticks()

    def _read_threads(self) -> dict[int, int] | None:
        try:
            return thread_runtimes(self._proc.pid)
        except OSError:
            return None

    def _read_ticks(self) -> float:
        times = self._proc.cpu_times()
        return times.user + times.system

    def since(self) -> tuple[float, str]:
        """Seconds used since construction, and which counter gave them."""
        threads, ticks = self._read_threads(), self._read_ticks()
        before = self._threads
        if before is not None and threads is not None and set(before) <= set(threads):
            return sum(threads[t] - before.get(t, 0) for t in threads) / 1e9, "schedstat"
        return ticks - self._ticks, "stat ticks"


def watch_deaths(
    ids: dict[int, int], run: Launch, deadline: float, grace: float = 1.0
) -> tuple[float | None, int]:
    """Polls the processes from just before the deadline until all are gone, or `grace`
    after the guard returned. Returns when the last one was seen gone, and how many live."""
    root = next(iter(ids))
    sleep_until(deadline - 0.2)
    while alive(root, ids[root]) and boot_now() < deadline and not run.poll():
        time.sleep(0.001)
    living = dict(ids)
    last_death: float | None = None
    while living:
        for pid, start in list(living.items()):
            if not alive(pid, start):
                del living[pid]
                last_death = boot_now()
        if not living:
            break
        if run.poll() and boot_now() > (run.end_boot or 0) + grace:
            break
        if boot_now() > deadline + 60:
            break
        time.sleep(0.002)
    return last_death, len(living)


def ms_after(moment: float | None, deadline: float) -> float | None:
    return None if moment is None else (moment - deadline) * 1000


def exit_text(code: int) -> str:
    if code < 0:
        return f"{signal.Signals(-code).name}"
    if code > 128 and code - 128 in signal.valid_signals():
        return f"exit {code} ({signal.Signals(code - 128).name})"
    return f"exit {code}"


def parse_importtime(text: str) -> tuple[float, dict[str, float]]:
    """Total of the `self` column of -X importtime, in ms, and its split by top-level name."""
    total_us = 0
    per_name: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3:
            continue
        try:
            self_us = int(parts[0])
        except ValueError:
            continue  # the header line
        total_us += self_us
        per_name[parts[2].strip().split(".")[0]] += self_us
    return total_us / 1000, {name: us / 1000 for name, us in per_name.items()}


# -- output -----------------------------------------------------------------------------------


HEADERS = ["figure", "tiered-run", "target", "result", *PEER_COLUMNS, "notes"]


def table(figures: list[Figure]) -> str:
    rows = [
        [
            f.label,
            f.shown,
            f.target,
            f.verdict,
            *(f.peers.get(p, "-") for p in PEER_COLUMNS),
            f.note,
        ]
        for f in figures
    ]
    return tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True)


def first_line(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark tiered-run against runexec (BenchExec) and timeout+taskset+prlimit."
    )
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer, shorter runs")
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the results as JSON")
    parser.add_argument(
        "--runexec",
        metavar="CMD",
        help="runexec to use (default: beside this Python, then PATH); `none` = leave it out",
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=max(os.sched_getaffinity(0)),
        help="the CPU every guard pins the workload to (default: the last one allowed)",
    )
    args = parser.parse_args(argv)
    if args.only:
        args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(args.sections) - set(SECTIONS))
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {SECTIONS}")
    else:
        args.sections = list(SECTIONS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.smoke() if args.quick else Settings.full()
    runexec = find_runexec(args.runexec)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="bench-tiered-"))
    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = os.getloadavg()
    bench = Bench(settings, runexec, args.cpu, workdir)
    try:
        bench.probe()
        for section in SECTIONS:
            if section in args.sections:
                getattr(bench, section)()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    leaked = bench.leaked()
    failures = [f"probe: {msg}" for msg in bench.probe_failures]
    failures += [msg for f in bench.figures for msg in f.failures]

    print(table(bench.figures))
    if failures:
        print(f"\n{len(failures)} failed sample(s):")
        for message in failures:
            print(f"  - {message}")
    if leaked:
        print(f"\nWARNING: cgroups left behind: {', '.join(leaked)}")

    if args.json is not None:
        probe = bench.probe_report
        meta = {
            "command": " ".join(["python", "scripts/bench.py", *(argv or sys.argv[1:])]),
            "date": started_at,
            "duration_s": round(time.monotonic() - started, 1),
            "quick": settings.quick,
            "sections": args.sections,
            "settings": asdict(settings),
            "cpu": args.cpu,
            "host": {
                "kernel": platform.release(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_start": load_start,
                "load_end": os.getloadavg(),
            },
            "tiered_run": {
                "command": [PY, "-m", "tiered_run"],
                "version": first_line([PY, "-m", "tiered_run", "--version"]),
                "backend": probe.get("backend"),
                "backend_reason": probe.get("backend_reason"),
            },
            "runexec": {
                "command": runexec,
                "version": first_line([*runexec, "--version"]) if runexec else "not installed",
                "mode": "--no-container",
            },
            "timeout": first_line(["timeout", "--version"]),
            "leaked_cgroups": leaked,
        }
        data = {
            "meta": meta,
            "figures": {f.key: asdict(f) for f in bench.figures},
            "table": table(bench.figures),
        }
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
