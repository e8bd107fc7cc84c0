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
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchlib.context import Bench, Settings
from benchlib.guards import find_runexec
from benchlib.kill import kill, precision
from benchlib.memory import memory
from benchlib.monitor import monitor
from benchlib.monitor_io import monitor_io
from benchlib.output import output
from benchlib.report import Start, print_results, write_json
from benchlib.startup import startup

# In the order they run, whatever the order given to --only.
SECTIONS: dict[str, Callable[[Bench], None]] = {
    "startup": startup,
    "monitor": monitor,
    "monitor_io": monitor_io,
    "kill": kill,
    "precision": precision,
    "memory": memory,
    "output": output,
}


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
            parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {tuple(SECTIONS)}")
    else:
        args.sections = list(SECTIONS)
    return args


def interrupted(signum: int, _frame: object) -> None:
    """SIGTERM ends the run as Ctrl-C does: the guards still running are stopped."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.smoke() if args.quick else Settings.full()
    runexec = find_runexec(args.runexec)
    signal.signal(signal.SIGTERM, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="bench-tiered-"))
    start = Start.now()
    bench = Bench(settings, runexec, args.cpu, workdir)
    try:
        bench.probe()
        for name, section in SECTIONS.items():
            if name in args.sections:
                section(bench)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    leaked = bench.leaked()
    print_results(bench, leaked)
    if args.json is not None:
        command = " ".join(["python", "scripts/bench.py", *(argv or sys.argv[1:])])
        write_json(args.json, bench, start, command, args.sections, leaked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
