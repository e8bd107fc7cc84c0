"""A real one-node Slurm for the tests: munged, slurmctld and slurmd from the distribution,
with a generated slurm.conf and all their state in a temporary directory, in a network
namespace of their own so that nothing they open is reachable from outside this machine.

Slurm resolves the addresses in its config with AI_ADDRCONFIG, which finds nothing in a
namespace that has only loopback; a veth pair whose both ends stay in the namespace gives
it an address (from TEST-NET-1) that leads nowhere. Process tracking is proctrack/linuxproc
and task/none, so Slurm makes no cgroups of its own and tiered-run's, below the job's, are
the only ones; no accounting daemon: job states come from the controller.

Everything a `Cluster` starts is stopped by `stop()`: jobs cancelled, daemons ended by pid,
and any process left in the namespace (a job step whose daemon went first) killed by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo")
NODE = "tiered-node"
PARTITION = "tiered"


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "a test Slurm needs root (munged, slurmd, a network namespace)"
    absent = [name for name in (*DAEMONS, *CLIENTS, "unshare", "nsenter", "ip", "mungekey")
              if shutil.which(name) is None]  # fmt: skip
    if absent:
        return f"not installed: {', '.join(absent)} (.ci/run installs slurmctld slurmd munge)"
    return None


class Cluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tiered-run-slurm-"))
        self.dir.chmod(0o755)  # munged wants its socket's directory searchable by all
        self.processes: dict[str, subprocess.Popen] = {}
        self.netns: int | None = None
        self.conf = self.dir / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def prefix(self) -> list[str]:
        """Run a command in the cluster's network namespace."""
        return ["nsenter", f"--net=/proc/{self.processes['netns'].pid}/ns/net", "--"]

    def run(self, *argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.prefix, *argv], env=self.env, capture_output=True, text=True,
            check=check, timeout=60, **kwargs,
        )  # fmt: skip

    def start(self) -> None:
        # The namespace lives as long as this bounded sleep, which stop() ends.
        setup = (
            "ip link set lo up && ip link add tr0 type veth peer name tr1 && "
            "ip addr add 192.0.2.1/32 dev tr0 && ip link set tr0 up && ip link set tr1 up && "
            "exec sleep 3600"
        )
        self._spawn("netns", ["unshare", "--net", "--", "sh", "-c", setup], prefix=False)
        deadline = time.monotonic() + 10
        while b"tr0" not in self._ns_links() and time.monotonic() < deadline:
            if self.processes["netns"].poll() is not None:
                raise RuntimeError(f"no network namespace: {self._log('netns')}")
            time.sleep(0.05)
        self.netns = os.stat(f"/proc/{self.processes['netns'].pid}/ns/net").st_ino
        subprocess.run(["mungekey", "-c", "-k", str(self.dir / "munge.key")], check=True)
        self.conf.write_text(self._config())
        (self.dir / "state").mkdir()
        (self.dir / "spool").mkdir()
        d = self.dir
        self._spawn("munged", [
            "munged", "-F", "-f", f"--socket={d}/munge.socket", f"--key-file={d}/munge.key",
            f"--pid-file={d}/munged.pid", f"--seed-file={d}/munge.seed",
            f"--log-file={d}/munged.log",
        ])  # fmt: skip
        self._wait_for(lambda: (d / "munge.socket").exists(), "munged")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait_for(lambda: self.run("sinfo", check=False).returncode == 0, "slurmctld")
        self._spawn("slurmd", ["slurmd", "-D", "-N", NODE])
        self._wait_for(self._idle, "slurmd")

    def _idle(self) -> bool:
        out = self.run("sinfo", "--noheader", "--format=%T", check=False).stdout.split()
        return out == ["idle"]

    def _config(self) -> str:
        d = self.dir
        host = socket.gethostname().split(".")[0]
        cpus = os.cpu_count() or 1
        memory_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
        return f"""\
ClusterName=tiered
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
KillWait=5
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mib * 9 // 10} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""

    def _spawn(self, name: str, argv: list[str], prefix: bool = True) -> None:
        log = open(self.dir / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [*self.prefix, *argv] if prefix else argv,
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

    def _log(self, name: str) -> str:
        path = self.dir / f"{name}.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _wait_for(self, condition, name: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {self._log(name)}")
            time.sleep(0.2)

    def _ns_links(self) -> bytes:
        proc = self.processes["netns"]
        out = subprocess.run(
            ["nsenter", f"--net=/proc/{proc.pid}/ns/net", "--", "ip", "-o", "link"],
            capture_output=True,
        )
        return out.stdout

    def jobs(self) -> list[str]:
        """Jobs the controller still has pending or running."""
        out = self.run("squeue", "--noheader", "--format=%i %T", check=False).stdout
        return [line for line in out.splitlines() if line.strip()]

    def in_namespace(self) -> list[int]:
        """Processes in the cluster's network namespace: only ever ones this Cluster
        started, or their descendants."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.stat(entry / "ns/net").st_ino == self.netns:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    def stop(self) -> list[int]:
        """Cancel every job, end the daemons (slurmd first), then the namespace; returns
        the pids of processes that were still in the namespace and had to be killed."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.run("scancel", f"--partition={PARTITION}", check=False)
            deadline = time.monotonic() + 20
            while self.jobs() and time.monotonic() < deadline:
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        left = [pid for pid in self.in_namespace() if pid != self._pid("netns")]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        holder = self.processes.get("netns")
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
        return left

    def _pid(self, name: str) -> int | None:
        proc = self.processes.get(name)
        return None if proc is None else proc.pid
