"""--container: a real podman container inside the run's cgroups, under its ceilings, and
nothing of it left behind on any outcome. The image is built here, offline, from the
static busybox of Debian's busybox-static package (`podman import`), and removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import ONLINE_CPUS, SPAWNED, dead_pid, run_cli, wait_for

from tiered_run.backends import select_backend
from tiered_run.backends.cgroupfs import system_mounts
from tiered_run.host.runtimes import probe_docker, probe_podman
from tiered_run.policy.exit_codes import EXIT_MEMORY, EXIT_TASKS, EXIT_TIMEOUT, EXIT_TOOL

V1 = any(m.version == 1 and m.controllers - {"name=systemd"} for m in system_mounts())
PODMAN = probe_podman(V1)
BUSYBOX = shutil.which("busybox")
APPLETS = ("sh", "cat", "sleep", "dd", "ls", "grep", "echo", "pwd", "wc", "touch")


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the run's cgroups and a rootful podman"
    if select_backend()[0].name == "plain":
        return "no cgroup backend here: a container cannot be placed in a run"
    if not PODMAN.usable:
        return f"podman is not usable here: {PODMAN.reason}"
    if BUSYBOX is None:
        return "no busybox to build the test image from (apt-get install busybox-static)"
    if "statically linked" not in subprocess.run(
        ["file", "-L", BUSYBOX], capture_output=True, text=True, check=False
    ).stdout and shutil.which("file"):
        return f"{BUSYBOX} is not static (apt-get install busybox-static)"
    return None


pytestmark = pytest.mark.skipif(_problem() is not None, reason=str(_problem()))


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--cgroup-manager", "cgroupfs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A two-megabyte image: busybox and its applets, imported from a tarball."""
    root = tmp_path_factory.mktemp("rootfs")
    for sub in ("bin", "tmp", "proc", "sys", "dev", "etc"):
        (root / sub).mkdir()
    assert BUSYBOX is not None
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    tarball = root.parent / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(root, arcname=".")
    name = f"localhost/tiered-run-test-{uuid.uuid4().hex[:8]}:1"
    done = podman("import", "--change", "ENV=PATH=/bin", str(tarball), name)
    assert done.returncode == 0, done.stderr
    yield name
    podman("rmi", "--force", name)


def containers() -> list[str]:
    """The containers of runs (named tiered-run-...), running or stopped."""
    done = podman("ps", "--all", "--format", "{{.Names}}")
    return [n for n in done.stdout.split() if n.startswith("tiered-run-")]


def cgroups_named(fragment: str) -> list[str]:
    return [
        str(Path(root) / d)
        for root, dirs, _ in os.walk("/sys/fs/cgroup")
        for d in dirs
        if fragment in d
    ]


def overlay_mounts() -> int:
    return Path("/proc/mounts").read_text().count("overlay-containers")


def nothing_left(run_id: str) -> None:
    assert containers() == []
    assert cgroups_named(run_id) == []
    assert cgroups_named("libpod-") == []


def test_container_runs_in_the_runs_cgroups_on_the_tiers_cpus(image: str, tmp_path: Path):
    (tmp_path / "note.txt").write_text("from the host\n")
    cpu = ONLINE_CPUS[-1]
    script = (
        "cat /proc/self/cgroup; grep Cpus_allowed_list /proc/self/status; pwd; "
        "cat note.txt; echo greeting=$GREETING; ls /sys/class/net"
    )
    result = run_cli(
        "--cpus", str(cpu), "--env", "GREETING=hi", "--container", image, "--",
        "sh", "-c", script,
        tmp_path=tmp_path, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = result.report
    assert report["outcome"] == "exited"
    assert "podman" in report["backend_reason"] and "auto" in report["backend_reason"]
    lines = result.stdout.splitlines()
    groups = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in lines if line[:1].isdigit()}
    # Every hierarchy the run has: the container's process is in the run's group, nested.
    for key in ("cpuset", "memory", "pids", "freezer", ""):
        assert f"/tiered-run-{report['run_id']}/" in groups[key] + "/", (key, groups)
        assert "libpod-" in groups[key], (key, groups)
    assert f"Cpus_allowed_list:\t{cpu}" in lines
    assert str(tmp_path.resolve()) in lines  # the working directory, mounted at its path
    assert "from the host" in lines
    assert "greeting=hi" in lines
    assert lines[-1] == "lo"  # --network none: loopback only
    nothing_left(report["run_id"])


def test_memory_ceiling_ends_the_container_as_a_plain_run(image: str, tmp_path: Path):
    mounts = overlay_mounts()
    # dd's buffer is bs: a 1 GiB block against a 300 MiB ceiling, stopped after one block.
    result = run_cli(
        "--memory", "300M", "--timeout", "30", "--container", image, "--",
        "dd", "if=/dev/zero", "of=/dev/null", "bs=1G", "count=1",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.report["outcome"] == "memory", result.stderr
    assert result.returncode == EXIT_MEMORY
    assert "OOM-killed" in result.stderr
    nothing_left(result.report["run_id"])
    assert overlay_mounts() == mounts


def test_tasks_ceiling_refuses_forks_in_the_container_as_in_a_plain_run(image: str, tmp_path: Path):
    """cgroup v1 counts a fork refused at the run's ceiling in the container's own group;
    the run still sees it. The storm is bounded (200 sleepers of 10 s, killed at once)."""
    storm = "(i=0; while [ $i -lt 200 ]; do sleep 10 & i=$((i+1)); done 2>/dev/null); sleep 2"
    result = run_cli(
        "--tasks-max", "40", "--timeout", "30", "--kill-after", "0.5",
        "--container", image, "--", "sh", "-c", storm,
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.report["outcome"] == "tasks", result.stderr
    assert result.returncode == EXIT_TASKS
    nothing_left(result.report["run_id"])


def test_timeout_kills_the_container_and_leaves_nothing(image: str, tmp_path: Path):
    mounts = overlay_mounts()
    result = run_cli(
        "--timeout", "2", "--kill-after", "0.5", "--container", image, "--", "sleep", "50",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.report["outcome"] == "timeout", result.stderr
    assert result.returncode == EXIT_TIMEOUT
    assert result.report["wall_s"] < 15
    nothing_left(result.report["run_id"])
    assert overlay_mounts() == mounts


def test_sigkill_of_tiered_run_still_removes_the_container(image: str, tmp_path: Path):
    """The watchdog kills the tree, removes the container and the cgroups."""
    proc = run_cli(
        "--timeout", "50", "--kill-after", "0.5", "--container", image, "--",
        "sh", "-c", "touch started; sleep 50",
        tmp_path=tmp_path, wait=False,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert wait_for(lambda: (tmp_path / "started").exists(), within=30)
    assert len(containers()) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wait_for(lambda: not containers(), within=30), containers()
    assert wait_for(lambda: not cgroups_named("tiered-run-"), within=15), cgroups_named(
        "tiered-run-"
    )
    assert cgroups_named("libpod-") == []
    SPAWNED.reap()


def test_private_tmp_without_a_container_goes_with_the_run(tmp_path: Path):
    marker = f"tiered-run-test-{uuid.uuid4().hex[:8]}"
    script = f"echo x > /dev/shm/{marker}; echo y > /tmp/{marker}; ls /dev/shm | wc -l"
    result = run_cli("--private-tmp", "--", "sh", "-c", script, tmp_path=tmp_path, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]  # its own /dev/shm: only what it wrote
    assert not Path("/dev/shm", marker).exists()
    assert not Path("/tmp", marker).exists()


def test_shared_memory_left_at_a_memory_kill_goes_with_a_private_tmp(tmp_path: Path):
    """/dev/shm is charged to the run as memory and outlives its killed writer; in the
    run's own /dev/shm it goes with the run."""
    marker = f"tiered-run-test-{uuid.uuid4().hex[:8]}"
    result = run_cli(
        "--private-tmp", "--memory", "200M", "--timeout", "30", "--",
        "dd", "if=/dev/zero", f"of=/dev/shm/{marker}", "bs=1M", "count=400",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.report["outcome"] == "memory", result.stderr
    assert result.returncode == EXIT_MEMORY
    assert not Path("/dev/shm", marker).exists()


def test_refused_before_anything_starts(image: str, tmp_path: Path):
    plain = run_cli("--backend", "plain", "--container", image, "--", "true", tmp_path=tmp_path)
    assert plain.returncode == EXIT_TOOL
    assert plain.stderr.count("\n") == 1 and "backend here is plain" in plain.stderr
    network = run_cli("--network", "--", "true", tmp_path=tmp_path)
    assert network.returncode == EXIT_TOOL and "add --container IMAGE" in network.stderr
    empty = tmp_path / "bin"
    empty.mkdir()
    missing = run_cli(
        "--container", image, "--", "true", tmp_path=tmp_path, env={"PATH": str(empty)}
    )
    assert missing.returncode == EXIT_TOOL
    assert "needs a container runtime" in missing.stderr
    assert missing.report is None and containers() == []


@pytest.fixture(scope="module")
def docker_env() -> Iterator[dict[str, str]]:
    """A Docker daemon to test against: the machine's, or one started for these tests
    (cgroupfs driver, no network set-up, its state in a temporary directory) and stopped
    after them; skipped, saying why, where neither can be had."""
    if probe_docker().usable:
        yield {}
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.skip("DOCKER NOT TESTED: no daemon answers and dockerd is not installed")
    state = Path(tempfile.mkdtemp(prefix="tiered-run-test-dockerd-"))
    env = {"DOCKER_HOST": f"unix://{state}/docker.sock"}
    made_run_dir = not Path("/run/docker").exists()
    daemon = subprocess.Popen(
        [
            dockerd, "--data-root", f"{state}/data", "--exec-root", f"{state}/exec",
            "--host", env["DOCKER_HOST"], "--pidfile", f"{state}/docker.pid",
            "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--exec-opt", "native.cgroupdriver=cgroupfs",
        ],
        stdout=subprocess.DEVNULL, stderr=(state / "log").open("wb"),
    )  # fmt: skip
    try:
        answered = wait_for(
            lambda: probe_docker_at(env) == "cgroupfs" or daemon.poll() is not None, within=30
        )
        if not answered or daemon.poll() is not None:
            log = (state / "log").read_text(errors="replace").strip().splitlines()[-3:]
            pytest.skip(f"DOCKER NOT TESTED: dockerd did not start here: {' | '.join(log)}")
        yield env
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(state, ignore_errors=True)
        if made_run_dir:  # dockerd makes /run/docker/plugins whatever its exec-root
            for leftover in (Path("/run/docker/plugins"), Path("/run/docker")):
                with contextlib.suppress(OSError):
                    leftover.rmdir()


def probe_docker_at(env: dict[str, str]) -> str:
    done = subprocess.run(
        ["docker", "info", "--format", "{{.CgroupDriver}}"],
        env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=10,
    )  # fmt: skip
    return done.stdout.strip()


def test_docker_places_the_container_in_the_run_or_refuses_where_it_cannot(
    docker_env: dict[str, str], tmp_path: Path
):
    """dockerd makes the container: it lands in the run only where one absolute
    --cgroup-parent names the run's group in every hierarchy; elsewhere exit 125 and
    nothing starts."""
    docker = {**os.environ, **docker_env}
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    assert BUSYBOX is not None
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "cat").symlink_to("busybox")
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(root, arcname=".")
    name = f"tiered-run-test-{uuid.uuid4().hex[:8]}:1"
    imported = subprocess.run(
        ["docker", "import", str(tarball), name], env=docker, capture_output=True, check=False
    )
    assert imported.returncode == 0, imported.stderr
    try:
        result = run_cli(
            "--runtime", "docker", "--container", name, "--", "/bin/cat", "/proc/self/cgroup",
            tmp_path=tmp_path, text=True, env=docker_env,
        )  # fmt: skip
        listed = subprocess.run(
            ["docker", "ps", "--all", "--quiet"], env=docker, capture_output=True, text=True
        )
    finally:
        subprocess.run(["docker", "rmi", "--force", name], env=docker, capture_output=True)
    assert listed.stdout == ""
    if result.returncode == EXIT_TOOL:
        assert "the run's cgroup is not at one path in every hierarchy" in result.stderr
        assert result.stderr.count("\n") == 1 and result.report is None
        return
    assert result.returncode == 0, result.stderr
    run_id = result.report["run_id"]
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines and all(f"tiered-run-{run_id}/" in line for line in lines), lines
    assert cgroups_named(run_id) == []


def test_a_container_whose_tiered_run_and_watchdog_died_is_removed_at_the_next_start(
    image: str, tmp_path: Path
):
    stale = f"tiered-run-p{dead_pid()}-0000aa"
    made = podman("create", "--name", stale, image, "sleep", "1")
    assert made.returncode == 0, made.stderr
    try:
        result = run_cli("--container", image, "--", "sh", "-c", ":", tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        assert stale not in containers()
    finally:
        podman("rm", "--force", stale)


def _started(image: str, tmp_path: Path, report: Path):
    proc = run_cli(
        "--timeout", "50", "--kill-after", "0.5", "--container", image, "--",
        "sh", "-c", "touch started; sleep 50",
        tmp_path=tmp_path, report=report, wait=False,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert wait_for(lambda: (tmp_path / "started").exists(), within=30)
    return proc


def test_ctrl_c_ends_and_removes_the_container(image: str, tmp_path: Path):
    report = tmp_path / "report.json"
    proc = _started(image, tmp_path, report)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 128 + signal.SIGINT
    data = json.loads(report.read_text())
    assert data["outcome"] == "interrupted"
    nothing_left(data["run_id"])


def test_a_container_that_outlives_its_client_is_killed_and_removed(image: str, tmp_path: Path):
    """The client (the run's main process) dies; conmon and the container live on in the
    run's cgroups, so they are the run's leftovers: killed, and the container removed."""
    report = tmp_path / "report.json"
    proc = _started(image, tmp_path, report)
    client = next(
        child for child in psutil.Process(proc.pid).children() if child.name() == "podman"
    )
    os.kill(client.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == 128 + signal.SIGKILL
    data = json.loads(report.read_text())
    assert data["outcome"] == "signal"
    assert data["leftover_killed"] >= 2  # conmon, the container's sleep
    nothing_left(data["run_id"])


def test_docker_without_a_daemon_is_refused_before_anything_starts(image: str, tmp_path: Path):
    result = run_cli(
        "--runtime", "docker", "--container", image, "--", "true",
        tmp_path=tmp_path, env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
    )  # fmt: skip
    assert result.returncode == EXIT_TOOL
    assert result.stderr.startswith("tiered-run: error: --runtime docker: the Docker daemon")
    assert result.stderr.count("\n") == 1 and result.report is None
