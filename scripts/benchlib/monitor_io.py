"""Monitor cost under I/O: tiered-run's own CPU while its tree writes to disk against a write
ceiling, next to the same window with an idle tree. Every sample reads the cgroup's I/O
counters (io.stat, blkio.throttle.*) and the run's PSI; this row shows that reading
changing counters costs the monitor no more than reading still ones."""

from __future__ import annotations

import time

from .context import Bench
from .figures import Figure, fmt
from .guards import PY
from .launch import wait_for_pids
from .monitor import OwnCpu
from .procs import identities, kill_survivors
from .sampling import SampleError, interleave, log, median, ratio
from .workloads import HOLD

WRITE_CEILING = "4M"  # bytes/s: 30 s write 120 MiB, over the same 8 MiB of one file

# argv: file, seconds, ready. Writes 1 MiB blocks with O_DIRECT (so each one reaches the
# disk, and its counters, at once) over the first 8 MiB of `file` until `seconds` pass.
WRITER = """
import mmap, os, sys, time
path, life, ready = sys.argv[1], float(sys.argv[2]), sys.argv[3]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
block = mmap.mmap(-1, 1 << 20)
block.write(b"x" * (1 << 20))
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
end, i = time.monotonic() + life, 0
while time.monotonic() < end:
    os.pwrite(fd, block, (i % 8) << 20)
    i += 1
os.close(fd)
os.unlink(path)
"""


def monitor_io(bench: Bench) -> None:
    s = bench.settings
    hold = s.monitor_s
    log(f"monitor cost under I/O: a writer held to {WRITE_CEILING}/s against 10 idle processes")
    failures: list[str] = []

    def cost(kind: str) -> float:
        ready = bench.path("ready")
        if kind == "writer":
            workload = [PY, "-c", WRITER, str(bench.path("written")), f"{hold + 1:g}", str(ready)]
            expected = 1
        else:
            workload = [PY, "-c", HOLD, "10", f"{hold + 1:g}", str(ready)]
            expected = 10
        argv = bench.argv("tiered-run", workload, timeout=hold + 60)
        at = argv.index("run") + 1
        argv[at:at] = ["--io-write-max", WRITE_CEILING, "--io-device", str(bench.workdir)]
        tracked: dict[int, int] = {}
        with bench.launch(argv) as run:
            try:
                tracked = identities(wait_for_pids(ready, run, 30))
                if len(tracked) != expected:
                    raise SampleError(f"{len(tracked)} of {expected} processes up")
                t0, cpu = time.perf_counter(), OwnCpu(run.pid)
                time.sleep(hold)
                used, _source = cpu.since()
                t1 = time.perf_counter()
                run.wait(hold + 90)
            finally:
                kill_survivors(tracked)
        if run.returncode != 0:
            raise run.failure()
        return 100 * used / (t1 - t0)

    samplers = {kind: (lambda kind=kind: cost(kind)) for kind in ("idle", "writer")}
    got = interleave(s.monitor_rounds, samplers, failures)
    pct = {key: median(values) for key, values in got.items()}
    value = ratio(pct.get("writer"), pct.get("idle"))
    figure = Figure(
        key="monitor_io",
        label=f"monitor CPU, writer / idle tree, {hold:g} s ({bench.backend()})",
        value=value,
        unit="x",
        shown=fmt(value, "x", 2),
        target="<= 1.5x",
        measured={"writer_pct": pct.get("writer"), "idle_pct": pct.get("idle")},
        note=f"writer {fmt(pct.get('writer'), ' %', 3)}, idle {fmt(pct.get('idle'), ' %', 3)}"
        f" of one core; median of {len(got.get('writer', []))}",
        samples=dict(got),
        failures=failures,
    )
    bench.add(figure.judged(1.5, "x"))
