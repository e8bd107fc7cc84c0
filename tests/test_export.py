"""`tiered-run export`: each format read back by the target's own tool or schema (systemd's
verifier, the docker CLI, docker-compose, the Kubernetes client's models), and what a target
cannot say listed, derived from the settings table. The Slurm script is checked by `sbatch
--test-only` in test_slurm.py, against a real controller."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ONLINE_CPUS, run_cli, this_machine
from without_root import IS_ROOT

from tiered_run.export.sheet import Exported, Sheet, asked, exported_settings, value_of
from tiered_run.export.systemd import quote
from tiered_run.export.yaml import dump
from tiered_run.host.blockdev import device_of
from tiered_run.inputs.config import parse_config
from tiered_run.model.spec import Limits, RunSpec

ME = pwd.getpwuid(os.getuid()).pw_name
CPU = str(ONLINE_CPUS[-1])  # never one the built-in system tier keeps
# A tier with every ceiling a tier can hold; the user only where --user is allowed.
TIER = f"""
[tiers.work]
cpus = "{CPU}"
memory = "300M"
memory_high = "200M"
tasks_max = 64
timeout = "90s"
kill_after = "5s"
signal = "INT"
nice = 5
cpu_weight = 50
io_weight = 300
cpu_quota = "150%"
io_write_max = "10M"
io_read_iops_max = 500
memory_low = "100M"
{'user = "' + ME + '"' if IS_ROOT else ""}
"""
COMMAND = ("python3", "-c", 'print("50% of $HOME", end="")')


def export(tmp_path: Path, fmt: str, *args: str, command=COMMAND) -> str:
    config = tmp_path / "tiers.toml"
    config.write_text(TIER)
    result = run_cli(
        "--format", fmt, "--config", str(config), "--tier", "work", "--env", "GREETING=a b%$",
        "--cwd", str(tmp_path), "--load-max", "6", *args, "--", *command,
        command="export", report=False, text=True, in_process=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def comments(text: str) -> list[str]:
    return [line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")]


def not_expressed(text: str) -> set[str]:
    """The settings an export lists as what its target cannot say."""
    lines = comments(text)
    start = next(i for i, line in enumerate(lines) if "cannot express" in line)
    return {line.split(" = ")[0] for line in lines[start + 1 :] if " = " in line}


# -- what a target cannot say, derived from the table ---------------------------------------


def test_a_target_that_says_nothing_lists_every_setting_with_a_value():
    limits = Limits(cpus=(0,), timeout=8.0, memory=1 << 30, tasks_max=9, nice=3, load_max=4.0)
    spec = RunSpec(command=("true",), limits=limits, tier="t", cwd=Path("/"))
    exported = Exported(spec, "here", env={"A": "1"})
    listed = {line.split(" = ")[0] for line in Sheet(exported, "nothing").untaken()}
    want = {
        setting.key
        for setting in exported_settings()
        if asked(setting, value_of(exported, setting.name))
    }
    assert listed == want
    assert {"cpus", "timeout", "memory", "tasks_max", "nice", "load_max", "cwd", "env"} <= want
    assert "kill_after" not in want and "signal" not in want  # defaults: said where possible


@pytest.mark.parametrize(
    "fmt, missing",
    [
        ("systemd", {"load_max"}),
        # blkio weight: 10-1000
        ("docker", {"timeout", "nice", "io_weight", "load_max", "memory_low"}),
        ("compose", {"timeout", "nice", "io_weight", "load_max", "memory_low"}),
        ("k8s", {"cpus", "memory_high", "tasks_max", "signal", "nice", "cpu_weight",
                 "io_weight", "load_max", "io_write_max", "io_read_iops_max", "io_device",
                 "memory_low"}),
        ("slurm", {"cpus"}),
    ],
)  # fmt: skip
def test_each_format_lists_what_it_cannot_express(tmp_path, fmt, missing):
    assert not_expressed(export(tmp_path, fmt)) == missing


# -- systemd -------------------------------------------------------------------------------

needs_verify = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def verify(*units: Path) -> None:
    """systemd's own reading of unit files: any complaint about them fails the test."""
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True, text=True, cwd=units[0].parent,
    )  # fmt: skip
    assert out.returncode == 0 and out.stderr == "", out.stderr


@needs_verify
def test_the_service_unit_passes_systemd_analyze_verify(tmp_path):
    text = export(tmp_path, "systemd")
    unit = tmp_path / "work.service"
    unit.write_text(text)
    verify(unit)
    service = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"
    )
    assert service["AllowedCPUs"] == service["CPUAffinity"] == CPU
    assert service["MemoryMax"] == str(300 << 20) and service["MemoryHigh"] == str(200 << 20)
    assert service["TasksMax"] == "64" and service["RuntimeMaxSec"] == "90"
    assert service["CPUQuota"] == "150%" and service["MemoryLow"] == str(100 << 20)
    disk = device_of(tmp_path).node
    assert service["IOWriteBandwidthMax"] == f"{disk} {10 << 20}"
    assert service["IOReadIOPSMax"] == f"{disk} 500"
    assert service["KillSignal"] == "SIGINT" and service["TimeoutStopSec"] == "5"
    assert service["CPUWeight"] == "50" and service["IOWeight"] == "300"
    assert service["Nice"] == "5" and service["Slice"] == "tiered-work.slice"
    assert service.get("User") == (ME if IS_ROOT else None)


@needs_verify
def test_the_command_runs_as_given_through_systemd_quoting(tmp_path):
    """What systemd makes of ExecStart= and Environment=: `systemd-analyze` has no way to
    show the argv, so the unit's quoting is checked against a reading of the same rules."""
    text = export(tmp_path, "systemd")
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert line == "ExecStart=" + " ".join(quote(arg) for arg in COMMAND)
    assert 'Environment="GREETING=a b%%$"' in text
    assert quote("a b") == '"a b"' and quote("$X") == '"$$X"' and quote("50%") == "50%%"


@needs_verify
def test_the_slices_pass_systemd_analyze_verify(tmp_path):
    config = tmp_path / "tiers.toml"
    config.write_text('[tiers.system]\ncpus = "0"\nprotected = true\n' + TIER)
    out = tmp_path / "units"
    out.mkdir()
    result = run_cli(
        "--format", "systemd", "--slices", "--config", str(config), "--dir", str(out),
        command="export", report=False, text=True, in_process=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    drop_in = (out / "system.slice.d/50-tiered-run.conf").read_text()
    assert "AllowedCPUs=0" in drop_in and "CPUWeight=800" in drop_in
    assert "IOWeight=800" in drop_in and "MemoryLow=" in drop_in
    assert (out / "user.slice.d/50-tiered-run.conf").read_text() == drop_in
    # A drop-in is not a unit of its own: systemd reads it as the [Slice] of one.
    host = tmp_path / "units/tiered-run-host.slice"
    host.write_text(drop_in)
    verify(host, out / "tiered-work.slice")
    assert "CPUWeight=50" in (out / "tiered-work.slice").read_text()
    printed = run_cli(
        "--format", "systemd", "--slices", "--config", str(config),
        command="export", report=False, text=True, in_process=True,
    ).stdout  # fmt: skip
    sections = printed.split("# ==> ")[1:]
    assert [s.split(" <==")[0] for s in sections] == [
        "system.slice.d/50-tiered-run.conf", "user.slice.d/50-tiered-run.conf",
        "tiered-user.slice", "tiered-batch.slice", "tiered-work.slice",
    ]  # fmt: skip
    assert sections[0].split(" <==\n", 1)[1].strip() == drop_in.strip()


def _slices_to(directory: Path, tmp_path: Path):
    config = tmp_path / "tiers.toml"
    config.write_text('[tiers.system]\ncpus = "0"\nprotected = true\n' + TIER)
    return run_cli(
        "--format", "systemd", "--slices", "--config", str(config), "--dir", str(directory),
        command="export", report=False, text=True,
    )  # fmt: skip


def _refused(result, needle: str) -> None:
    assert result.returncode == 125, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_slices_replace_an_earlier_export_but_not_a_hand_written_unit(tmp_path):
    out = tmp_path / "units"
    out.mkdir()
    assert _slices_to(out, tmp_path).returncode == 0
    first = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    assert _slices_to(out, tmp_path).returncode == 0  # its own files: replaced
    assert {p: p.read_text() for p in out.rglob("*") if p.is_file()} == first
    mine = out / "tiered-batch.slice"
    mine.write_text("[Slice]\nCPUWeight=1\n")  # edited by hand
    (out / "user.slice.d/50-tiered-run.conf").unlink()
    _refused(_slices_to(out, tmp_path), "no export wrote it")
    assert mine.read_text() == "[Slice]\nCPUWeight=1\n"
    assert not (out / "user.slice.d/50-tiered-run.conf").exists()  # nothing written


def test_slices_need_an_existing_directory(tmp_path):
    _refused(_slices_to(tmp_path / "no" / "such", tmp_path), "no such directory")
    assert not (tmp_path / "no").exists()


@pytest.mark.skipif(not IS_ROOT, reason="the attack is on a root tiered-run")
def test_slices_do_not_follow_a_symlink_another_user_planted(tmp_path):
    nobody = pwd.getpwnam("nobody")
    out = tmp_path / "units"
    out.mkdir()
    os.chown(out, nobody.pw_uid, nobody.pw_gid)
    victim = tmp_path / "victim"
    victim.write_text("root's\n")
    victim.chmod(0o600)
    link = out / "tiered-user.slice"
    link.symlink_to(victim)
    os.lchown(link, nobody.pw_uid, nobody.pw_gid)
    _refused(_slices_to(out, tmp_path), "not followed")
    assert victim.read_text() == "root's\n"
    assert sorted(p.name for p in out.iterdir()) == ["tiered-user.slice"]


# -- docker and compose --------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
def test_docker_flags_are_accepted_by_the_docker_cli(tmp_path):
    """The docker CLI parses and checks every flag before it talks to a daemon: pointed
    at one that does not exist, it gets as far as connecting, and no further."""
    text = export(tmp_path, "docker", "--image", "python:3.11-slim")
    argv = shlex.split(" ".join(line.rstrip("\\") for line in text.splitlines() if line[0] != "#"))
    assert argv[:3] == ["docker", "run", "--rm"]
    flags = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert flags["--cpuset-cpus"] == CPU and flags["--memory"] == str(300 << 20)
    assert flags["--memory-reservation"] == str(200 << 20) and flags["--pids-limit"] == "64"
    assert flags["--stop-timeout"] == "5" and flags["--network"] == "none"
    assert argv[-len(COMMAND) :] == list(COMMAND)
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert "Cannot connect to the Docker daemon" in out.stderr, out.stderr
    bad = subprocess.run(
        [*argv[:3], "--memory", "2Q", "x"], capture_output=True, text=True, env=env
    )
    assert "invalid argument" in bad.stderr  # the check above would see a bad flag


def test_the_compose_service_is_yaml_with_the_ceilings(tmp_path):
    service = yaml.safe_load(export(tmp_path, "compose"))["services"]["work"]
    assert service["command"] == [arg.replace("$", "$$") for arg in COMMAND]  # as written
    assert service["cpuset"] == CPU and service["mem_limit"] == 300 << 20
    assert service["mem_reservation"] == 200 << 20 and service["pids_limit"] == 64
    assert service["stop_grace_period"] == "5s" and service["stop_signal"] == "SIGINT"
    assert service["network_mode"] == "none" and service["environment"] == {"GREETING": "a b%$$"}


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed"
)
def test_the_compose_file_passes_docker_compose_config(tmp_path):
    path = tmp_path / "compose.yaml"
    path.write_text(export(tmp_path, "compose"))
    out = subprocess.run(
        ["docker-compose", "-f", str(path), "config"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    normalized = yaml.safe_load(out.stdout)["services"]["work"]
    assert normalized["cpuset"] == CPU and normalized["pids_limit"] == 64
    path.write_text(path.read_text().replace("pids_limit", "pid_limit"))
    bad = subprocess.run(["docker-compose", "-f", str(path), "config"], capture_output=True)
    assert bad.returncode != 0  # the schema is really checked


# -- Kubernetes ----------------------------------------------------------------------------


def test_the_job_is_a_valid_kubernetes_job(tmp_path):
    """Read into the Kubernetes client's V1Job model and written back: a key the model does
    not know would be dropped (and the round trip differ), a missing required one refused;
    quantities are parsed as the client parses them."""
    client = pytest.importorskip("kubernetes.client", reason="pip install '.[k8s]'")
    from kubernetes.utils import parse_quantity

    manifest = yaml.safe_load(export(tmp_path, "k8s"))
    api = client.ApiClient()

    # What `deserialize` does with a response's parsed body, in every client version (the
    # public method's signature changed between them).
    job = api._ApiClient__deserialize(manifest, "V1Job")
    assert isinstance(job, client.V1Job)
    assert api.sanitize_for_serialization(job) == manifest
    pod = job.spec.template.spec
    resources = pod.containers[0].resources
    assert parse_quantity(resources.limits["memory"]) == 300 << 20
    assert parse_quantity(resources.requests["memory"]) == 200 << 20
    assert parse_quantity(resources.limits["cpu"]) == 1
    assert job.spec.active_deadline_seconds == 90 and pod.termination_grace_period_seconds == 5
    assert pod.restart_policy == "Never" and job.spec.backoff_limit == 0
    if IS_ROOT:
        assert pod.security_context.run_as_user == os.getuid()
    with pytest.raises(ValueError):
        client.V1Container(name=None)  # the models do check what they are given


def test_yaml_dump_reads_back_as_written():
    data = {"a": [{"b": "x: y", "c": ["1", 2]}, "#z"], "d": {}, "e": [], "f": True, "g": "ü"}
    assert yaml.safe_load(dump(data)) == data


# -- slurm ---------------------------------------------------------------------------------


def test_the_batch_script_carries_the_tier_to_tiered_run_inside(tmp_path):
    """The script is valid sh, its #SBATCH lines ask for the tier's resources, and the tier
    file it writes plans to the same ceilings here (sbatch --test-only: test_slurm.py)."""
    text = export(tmp_path, "slurm")
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    sbatch = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    assert "--cpus-per-task=1" in sbatch and f"--mem={300 + 128}M" in sbatch
    assert "--time=3" in sbatch and "--signal=B:INT@65" in sbatch
    tier_file = text.split("<<'TIERED_RUN_TIER'\n")[1].split("TIERED_RUN_TIER")[0]
    tier = parse_config(tomllib.loads(tier_file), this_machine(), "job").tiers["work"]
    assert tier.memory == 300 << 20 and tier.tasks_max == 64 and tier.stop_signal == 2
    assert tier.cpu_weight == 50 and tier.io_weight == 300
    last = shlex.split(text.rstrip().splitlines()[-1])
    assert last[:4] == ["exec", "tiered-run", "run", "--config"]
    assert last[last.index("--load-max") + 1] == "6.0"
    assert last[-len(COMMAND) :] == list(COMMAND)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--format", "systemd", "--image", "foo"], "--image goes with --format docker"),
        (["--format", "systemd", "--slices", "--", "true"], "leave out -- COMMAND"),
        (["--format", "systemd", "--dir", "x"], "--dir goes with --slices"),
        (["--format", "docker", "--slices"], "go with --format systemd"),
    ],
)
def test_options_an_export_would_ignore_are_refused(args, needle, tmp_path):
    result = run_cli(*args, command="export", report=False, text=True, cwd=tmp_path)
    _refused(result, needle)
    assert list(tmp_path.iterdir()) == []


def test_a_tier_for_a_larger_machine_exports_from_the_command_line_too(tmp_path):
    """--cpus 4-19 was refused as not online here, while the same CPUs from a config
    exported: the node the export is for is not this machine."""
    result = run_cli(
        "--format", "slurm", "--cpus", "4-19", "--memory", "100G", "--", "true",
        command="export", report=False, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --cpus-per-task=16" in result.stdout
    assert "#SBATCH --mem=" in result.stdout
