"""Choosing a container runtime, and the client's command line, without starting one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiered_run.engine.container import ContainerRun
from tiered_run.host import runtimes
from tiered_run.model.spec import ContainerSpec, Limits, Runtime, UserSpec


@pytest.fixture
def answers(monkeypatch):
    """What the runtimes' clients answer, by client name; all of them installed."""
    replies: dict[str, tuple[int, str]] = {}
    monkeypatch.setattr(runtimes.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(runtimes, "_ask", lambda argv: replies[Path(argv[0]).name])
    return replies


def test_auto_prefers_podman_and_says_why(answers):
    answers.update(podman=(0, "4.3.1"), docker=(0, "cgroupfs"))
    probe, reason = runtimes.select_runtime("auto", cgroup_v1=True)
    assert probe is not None and probe.runtime is Runtime.PODMAN
    assert probe.oci_runtime == "/usr/bin/runc"  # crun refuses hybrid hierarchies
    assert "auto: podman first" in reason


def test_docker_with_the_systemd_driver_is_refused_with_the_fix(answers):
    answers.update(podman=(1, "broken"), docker=(0, "systemd"))
    probe, reason = runtimes.select_runtime("docker", cgroup_v1=False)
    assert probe is None
    assert reason.startswith("--runtime docker: the Docker daemon uses the systemd cgroup driver")
    assert "native.cgroupdriver=cgroupfs" in reason


def test_auto_falls_back_to_docker_and_names_what_podman_lacked(answers):
    answers.update(podman=(125, "Error: no storage"), docker=(0, "cgroupfs"))
    probe, reason = runtimes.select_runtime("auto", cgroup_v1=False)
    assert probe is not None and probe.runtime is Runtime.DOCKER
    assert "podman is not usable (podman does not work here: Error: no storage)" in reason


def test_the_tier_maps_onto_the_container(tmp_path):
    builder = UserSpec("builder", 1003, 1003, (1003, 27), "/home/builder", "/bin/sh")
    spec = ContainerSpec(
        image="debian:12",
        runtime=Runtime.PODMAN,
        runtime_reason="",
        binary="/usr/bin/podman",
        oci_runtime="/usr/sbin/runc",
        env={"LANG": "C"},
        user=builder,
    )
    run = ContainerRun(spec, "tiered-run-p1-x", "tiered-run-p1-x", tmp_path)
    argv = run.argv(("python3", "chat.py"), Limits(cpus=(6, 7, 8), memory=20 << 30), Path("/w"))
    text = " ".join(argv)
    assert argv[-3:] == ("debian:12", "python3", "chat.py")
    for part in (
        "--cgroup-manager cgroupfs --runtime /usr/sbin/runc run --rm --name tiered-run-p1-x",
        "--cgroup-parent tiered-run-p1-x --cpuset-cpus 6-8",
        "--cgroups no-conmon --pids-limit -1",
        "--network none --user 1003:1003 --group-add 27 --volume /w:/w --workdir /w --env LANG=C",
    ):
        assert part in text
    assert "--memory" not in text  # the run's cgroup, above the container's, holds it


def _finding(facts, id_):
    from tiered_run.policy.doctor.containers import runtime_findings

    return next(f for f in runtime_findings(facts) if f.id == id_)


def test_doctor_says_which_runtimes_land_in_the_tier():
    from factories import make_facts

    from tiered_run.model.facts import RuntimeProbe
    from tiered_run.model.findings import Severity

    probes = (
        RuntimeProbe(Runtime.PODMAN, True, "podman 4.3.1 with /usr/sbin/runc"),
        RuntimeProbe(Runtime.DOCKER, True, "docker with the cgroupfs driver"),
    )
    facts = make_facts(runtimes=probes)
    podman = _finding(facts, "containers.runtime.podman")
    assert podman.severity is Severity.OK and "lands inside the run" in podman.consequence
    docker = _finding(facts, "containers.runtime.docker")
    # The hybrid machine of the factory has a memory group of its own: no single parent.
    own = {path for key, path in facts.cgroups.own.items() if "=" not in key}
    expected = "lands inside the run" if len(own) == 1 else "refused here"
    assert expected in docker.consequence
    plain = _finding(make_facts(runtimes=probes, backend="plain"), "containers.runtime.podman")
    assert plain.severity is Severity.NOTE and "--container is refused" in plain.consequence


def test_doctor_names_an_unusable_runtime_and_its_fix():
    from factories import make_facts

    from tiered_run.model.facts import RuntimeProbe

    probe = RuntimeProbe(Runtime.DOCKER, False, "the Docker daemon uses the systemd cgroup driver")
    found = _finding(make_facts(runtimes=(probe,)), "containers.runtime.docker")
    assert "not usable: the Docker daemon uses the systemd" in found.summary
    assert "exit 125" in found.consequence


def _fake_mounts(root: Path) -> list:
    from tiered_run.backends.cgroupfs import Mount

    return [
        Mount(root / "cpuset", 1, frozenset({"cpuset"})),
        Mount(root / "memory", 1, frozenset({"memory"})),
        Mount(root / "pids", 1, frozenset({"pids"})),
        Mount(root / "devices", 1, frozenset({"devices"})),
        Mount(root / "unified", 2, frozenset()),
    ]


def test_docker_parent_names_the_run_where_it_is_one_path_everywhere(tmp_path):
    from tiered_run.engine.container import docker_parent

    mounts = _fake_mounts(tmp_path)
    for mount in mounts[:3] + mounts[4:]:  # devices: the run has no group there
        (mount.path / "ci/tiered-run-p1-x").mkdir(parents=True)
    anchor = tmp_path / "memory/ci/tiered-run-p1-x"
    assert docker_parent(anchor, mounts) == "/ci/tiered-run-p1-x"


def test_docker_parent_refuses_a_run_at_different_paths(tmp_path):
    from tiered_run.engine.container import docker_parent
    from tiered_run.errors import BackendError

    mounts = _fake_mounts(tmp_path)
    (tmp_path / "memory/job/tiered-run-p1-x").mkdir(parents=True)  # a memory group of its own
    for name in ("cpuset", "pids", "unified"):
        (tmp_path / name / "tiered-run-p1-x").mkdir(parents=True)
    with pytest.raises(BackendError, match="not at one path in every hierarchy"):
        docker_parent(tmp_path / "memory/job/tiered-run-p1-x", mounts)


def test_podman_parent_for_hybrid_pure_v1_and_pure_v2(tmp_path):
    from tiered_run.backends.cgroupfs import Mount
    from tiered_run.engine.container import cgroup_parent

    hybrid = _fake_mounts(tmp_path)
    run = tmp_path / "unified/a/tiered-run-p1-x"
    assert cgroup_parent(run, hybrid) == "a/tiered-run-p1-x"  # runc: from cgroup2's root
    assert cgroup_parent(None, hybrid[:4]) == "."  # v1: below the client's own groups
    v2 = [Mount(tmp_path / "unified", 2, frozenset())]
    assert cgroup_parent(run, v2) == "tiered-run-p1-x"  # runc: from its own group's parent
