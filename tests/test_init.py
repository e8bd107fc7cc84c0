"""`tiered-run init`: the user's three-tier shape scaled to a machine, or their own layout,
with reserves, timeouts and the reason for each value; written where runs find it, never
over a file without --force, in a form the trust check accepts. Then the user's command
works as written."""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ONLINE_CPUS, run_cli, table_row
from factories import V1_CAPS, V2_CAPS, GiB

from tiered_run.errors import UsageError
from tiered_run.inputs.config import parse_config
from tiered_run.model.host import Machine
from tiered_run.model.usage import Capability
from tiered_run.policy.layout import default_layout, parse_layout, plan
from tiered_run.policy.tiers import resolve_limits
from tiered_run.render.tier_config import render_tier_config

USER_MACHINE = Machine(tuple(range(20)), 23 * GiB)
USER_LAYOUT = "system=0-1,user=2-3,aimgr=4-19"
needs_two_cpus = pytest.mark.skipif(len(ONLINE_CPUS) < 2, reason="a layout needs two CPUs")


def values(planned_plan, name: str) -> dict[str, object]:
    tier = next(t for t in planned_plan.tiers if t.name == name)
    return {p.key: p.value for p in tier.values}


def init(*args: str, **kwargs):
    return run_cli(*args, command="init", report=False, text=True, **kwargs)


# -- layouts --------------------------------------------------------------------------------


def test_a_layout_names_tiers_and_their_cpus():
    assert parse_layout(USER_LAYOUT) == (
        ("system", (0, 1)),
        ("user", (2, 3)),
        ("aimgr", tuple(range(4, 20))),
    )
    assert parse_layout("host=0,2,batch=1,3") == (("host", (0, 2)), ("batch", (1, 3)))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0-1,user=2", "start with a tier"),
        ("sys tem=0,user=1", "letters, digits"),
        ("a=0,a=1", "named once"),
        ("system=0-1", "a protected tier for the host first"),
        ("system=0,user=x", "tier user: malformed CPU list"),
    ],
)
def test_a_bad_layout_is_refused_with_how_to_fix_it(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_layout(text)


def test_the_default_layout_is_the_built_in_tiers():
    assert default_layout(USER_MACHINE) == (
        ("system", (0, 1)),
        ("user", (2, 3)),
        ("batch", tuple(range(4, 20))),
    )
    assert default_layout(Machine((0, 1), 4 * GiB)) == (
        ("system", (0,)),
        ("user", (1,)),
        ("batch", (1,)),
    )
    with pytest.raises(UsageError, match="none can be kept for the host"):
        default_layout(Machine((0,), 4 * GiB))


@pytest.mark.parametrize(
    ("layout", "needle"),
    [
        ("system=0-1,aimgr=4-23", "CPUs 20-23 are not online"),
        ("system=0-1,aimgr=1-19", "shares CPUs 1 with the protected tier system"),
        ("system=0-19,aimgr=19", "shares CPUs 19"),
    ],
)
def test_a_layout_this_machine_cannot_take_is_refused(layout, needle):
    with pytest.raises(UsageError, match=needle):
        plan(USER_MACHINE, parse_layout(layout), backend="cgroup1", capabilities=V1_CAPS)


# -- the plan for the user's machine ---------------------------------------------------------


def test_the_user_s_machine_on_cgroup_v1():
    made = plan(USER_MACHINE, parse_layout(USER_LAYOUT), backend="cgroup1", capabilities=V1_CAPS)
    assert made.default == "aimgr"
    assert values(made, "system") == {
        "cpus": "0-1",
        "protected": True,
        "description": "host and desktop: no run may use these CPUs",
    }
    assert values(made, "user")["memory"] == "4G"
    aimgr = values(made, "aimgr")
    # 23 GiB less the 2.3 GiB reserve, rounded down: where the user's 20G passed.
    assert aimgr["memory"] == "20G" and aimgr["tasks_max"] == 4096
    assert (aimgr["timeout"], aimgr["signal"], aimgr["kill_after"]) == ("15min", "INT", "5s")
    assert "memory_high" not in aimgr and "cpu_weight" not in aimgr
    left_out = next(t for t in made.tiers if t.name == "aimgr").left_out
    assert any(reason.startswith("memory_high: left out") for reason in left_out)


def test_with_systemd_on_cgroup_v2_the_soft_ceiling_and_weights_are_written():
    made = plan(USER_MACHINE, parse_layout(USER_LAYOUT), backend="systemd", capabilities=V2_CAPS)
    aimgr = values(made, "aimgr")
    assert aimgr["memory_high"] == "18G"
    assert aimgr["cpu_weight"] == aimgr["io_weight"] == 50


def test_a_weight_nothing_reads_is_left_out_and_said():
    caps = V2_CAPS - {Capability.IO_WEIGHT}  # no io.cost, no bfq
    made = plan(USER_MACHINE, parse_layout(USER_LAYOUT), backend="systemd", capabilities=caps)
    aimgr = values(made, "aimgr")
    assert aimgr["cpu_weight"] == 50 and "io_weight" not in aimgr
    left_out = next(t for t in made.tiers if t.name == "aimgr").left_out
    assert "io_weight: left out, nothing reads it here" in left_out
    made = plan(USER_MACHINE, parse_layout(USER_LAYOUT), backend="cgroup1", capabilities=V1_CAPS)
    left_out = next(t for t in made.tiers if t.name == "aimgr").left_out
    assert any("the run's siblings are other runs" in reason for reason in left_out)


def test_the_written_config_reads_back_as_planned_with_a_comment_for_each_value():
    made = plan(USER_MACHINE, parse_layout(USER_LAYOUT), backend="cgroup1", capabilities=V1_CAPS)
    text = render_tier_config(made, "a machine", "tiered-run --tier aimgr -- true")
    config = parse_config(tomllib.loads(text), USER_MACHINE, "t.toml")
    assert config.default_tier == "aimgr" and {"system", "user", "aimgr"} <= set(config.tiers)
    aimgr = config.tiers["aimgr"]
    assert (aimgr.cpus, aimgr.memory, aimgr.timeout) == (tuple(range(4, 20)), 20 * GiB, 900.0)
    assert config.tiers["system"].protected
    limits = resolve_limits(aimgr, USER_MACHINE, {}, protected={0: "system", 1: "system"})
    assert limits.memory == 20 * GiB
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(("memory", "tasks_max", "timeout", "protected")):
            assert lines[index - 1].startswith("# "), line  # says why


# -- writing it -----------------------------------------------------------------------------


@needs_two_cpus
def test_init_writes_a_config_a_run_reads_and_never_overwrites_it(tmp_path):
    result = init()
    assert result.returncode == 0, result.stderr
    path = tmp_path / "tiered-run.toml"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.geteuid()
    assert f"tiered-run: wrote {path}: system (" in result.stderr
    assert "warning" not in result.stderr
    tiers = run_cli(command="tiers", report=False, text=True)
    assert f"from {path}" in tiers.stdout
    before = path.read_text()
    again = init("--layout", "host=0,work=1")
    assert again.returncode == 125 and "--force replaces it" in again.stderr
    assert path.read_text() == before
    forced = init("--force", "--layout", "host=0,work=1")
    assert forced.returncode == 0 and 'default_tier = "work"' in path.read_text()


@needs_two_cpus
def test_print_writes_nothing(tmp_path):
    result = init("--print")
    assert result.returncode == 0 and result.stdout.startswith("# tiered-run tiers made by")
    assert not (tmp_path / "tiered-run.toml").exists()


@needs_two_cpus
def test_user_and_system_configs_go_where_runs_look_for_them(tmp_path):
    etc_before = Path("/etc/tiered-run").exists()
    result = init("--user-config")
    user = Path(os.environ["HOME"]) / ".config/tiered-run/config.toml"
    assert result.returncode == 0 and user.is_file(), result.stderr
    # Under --root, as for an image: /etc/tiered-run/config.toml below it.
    image = tmp_path / "image"
    missing = init("--system", "--root", str(image))  # a mistyped image is not made
    assert missing.returncode == 125 and "does not exist" in missing.stderr
    assert not image.exists()
    image.mkdir()
    result = init("--system", "--root", str(image))
    system = image / "etc/tiered-run/config.toml"
    assert result.returncode == 0 and system.is_file(), result.stderr
    assert f"--config {system}" in result.stderr  # runs do not look below an image
    assert Path("/etc/tiered-run").exists() == etc_before  # the real /etc is left alone
    refused = init("--root", str(image))
    assert refused.returncode == 125 and "--root goes with" in refused.stderr


@needs_two_cpus
def test_a_config_read_before_the_new_one_is_pointed_out(tmp_path):
    (tmp_path / "tiered-run.toml").write_text('default_tier = "batch"\n')
    result = init("--user-config")
    assert result.returncode == 0
    assert f"{tmp_path / 'tiered-run.toml'} is read before it" in result.stderr


@needs_two_cpus
def test_a_user_s_config_is_one_root_will_not_read(unprivileged):
    result = init(unprivileged=True)
    assert result.returncode == 0, result.stderr
    if os.geteuid() == 0:  # run as nobody, in nobody's own directory
        assert "run as root (sudo tiered-run ...), tiered-run will not read it" in result.stderr
        assert "sudo tiered-run init --system" in result.stderr


# -- the user's command, as written ---------------------------------------------------------


@needs_two_cpus
def test_the_user_s_command_works_as_written_after_init(tmp_path):
    host, work = ONLINE_CPUS[0], ONLINE_CPUS[-1]
    layout = f"system={host},user={work},aimgr={work}"
    assert init("--layout", layout).returncode == 0
    (tmp_path / "chat.py").write_text(
        "import os, subprocess, sys\n"
        "assert sys.argv[1:] == ['--test']\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'pass']) for _ in range(5)]\n"
        "assert all(kid.wait() == 0 for kid in kids)\n"
        "print('cpus', sorted(os.sched_getaffinity(0)))\n"
    )
    python3 = Path(sys.executable).parent / "python3"
    env = {"PATH": f"{python3.parent}{os.pathsep}{os.environ['PATH']}"}
    result = run_cli(
        "--tier", "aimgr", "--timeout", "8", "--", "python3", "chat.py", "--test",
        command=None, report=False, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cpus [{work}]"
    assert table_row(result.stderr, "tier") == "aimgr"


def test_a_symlink_at_the_config_s_place_is_not_written_through(tmp_path):
    """A dangling symlink counted as no file: init said it wrote ./tiered-run.toml and
    made the file wherever the link pointed."""
    elsewhere = tmp_path / "elsewhere.toml"
    (tmp_path / "tiered-run.toml").symlink_to(elsewhere)
    result = init()
    assert result.returncode == 125 and "never overwrites" in result.stderr
    assert not elsewhere.exists()
    assert (tmp_path / "tiered-run.toml").is_symlink()


def test_a_config_the_new_one_hides_is_pointed_out(tmp_path):
    """A pyproject.toml's [tool.tiered-run] stopped being read without a word."""
    (tmp_path / "pyproject.toml").write_text('[tool.tiered-run.tiers.x]\ncpus = "0"\n')
    result = init()
    assert result.returncode == 0, result.stderr
    assert f"instead of {tmp_path / 'pyproject.toml'} from now on" in result.stderr
