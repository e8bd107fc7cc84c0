"""How each guard runs a workload: pinned to the same CPU, under the same ceilings, from a
checkout; and which guards are missing here, so that their column says so."""

from __future__ import annotations

import compileall
import itertools
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .figures import fmt
from .launch import Launch
from .procs import leaked_cgroups
from .sampling import median

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
GUARDS = ("tiered-run", "runexec", "timeout", "bare")
CEILING_GUARDS = ("tiered-run", "runexec", "timeout")  # all but bare: they end a workload


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


def parse_runexec(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def per_guard(
    got: Mapping[str, list[Any]], field: str | None = None, name: str = "{}"
) -> dict[str, float | None]:
    """Each guard's median sample (of `field` in each sample, if given) from the samplers
    named `name` with the guard filled in; None for a guard without samples."""
    return {
        g: median(s if field is None else s[field] for s in got.get(name.format(g), []))
        for g in GUARDS
    }


class Guards:
    """The guards as this run invokes them, in a scratch directory, with this checkout's
    tiered_run importable and no user configuration."""

    def __init__(self, runexec: list[str] | None, cpu: int, workdir: Path) -> None:
        self.runexec = runexec
        self.cpu = cpu
        self.workdir = workdir
        env = dict(os.environ)
        env.pop("TIERED_RUN_CONFIG", None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        self.env = env
        # As `pip install` does: otherwise, under PYTHONDONTWRITEBYTECODE, every start
        # would compile the modules changed since their bytecode was last written.
        compileall.compile_dir(REPO / "tiered_run", quiet=1)
        self._ids = itertools.count()
        tools = all(shutil.which(t) for t in ("timeout", "taskset", "prlimit"))
        self.missing = {
            "runexec": None if runexec else "not installed",
            "timeout": None if tools else "not installed",
        }
        self.tiered_run_pids: list[int] = []

    def has(self, guard: str) -> bool:
        return self.missing.get(guard) is None

    def guards(self, *names: str) -> list[str]:
        return [g for g in names if self.has(g)]

    def path(self, stem: str) -> Path:
        return self.workdir / f"{stem}-{next(self._ids)}"

    def peer(self, guard: str, text: str) -> str:
        return self.missing.get(guard) or text

    def cells(self, values: Mapping[str, float | None], unit: str, **digits: int) -> dict[str, str]:
        """Peer columns: each named guard's value with that many digits, or why it is missing."""
        return {g: self.peer(g, fmt(values.get(g), unit, d)) for g, d in digits.items()}

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

    def wall_ms(self, argv: list[str], limit: float = 60) -> float:
        """Wall time of one run of `argv`, in ms; a run that does not exit 0 is no sample."""
        with self.launch(argv) as run:
            run.wait(limit)
        if run.returncode != 0:
            raise run.failure()
        assert run.wall is not None
        return run.wall * 1000

    def leaked(self) -> list[str]:
        """cgroups of the tiered-run processes this benchmark started that are still there."""
        prefixes = tuple(f"tiered-run-{pid}-" for pid in self.tiered_run_pids)
        return [path for path in leaked_cgroups() if Path(path).name.startswith(prefixes)]
