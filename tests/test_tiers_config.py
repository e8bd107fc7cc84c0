"""From the host and the config file to a checked RunSpec: tiers, config search, plan_run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine, read_machine
from tiered_run.inputs.config import Config, load_config, parse_config
from tiered_run.inputs.plan import RunOptions, plan_run
from tiered_run.inputs.units import NO_CEILING, format_cpus
from tiered_run.model.spec import OnLoad
from tiered_run.policy.tiers import (
    DEFAULT_TASKS_MAX,
    Tier,
    check_cpus,
    default_tiers,
    memory_reserve,
    resolve_limits,
)

MiB, GiB = 1024**2, 1024**3
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "user-20cpu.toml"
ETC_CONFIG = Path("/etc/tiered-run/config.toml")


def machine(n_cpus: int, memory: int = 32 * GiB) -> Machine:
    return Machine(cpus=tuple(range(n_cpus)), memory_total=memory)


# -- reading the host (fake /sys and /proc) ---------------------------------------------


def test_read_machine_uses_online_cpus_we_may_run_on_and_memtotal(tmp_path):
    allowed = sorted(os.sched_getaffinity(0))
    sys_root, proc_root = tmp_path / "sys", tmp_path / "proc"
    (sys_root / "devices/system/cpu").mkdir(parents=True)
    proc_root.mkdir()
    # Two CPUs beyond our affinity are online but must not be offered to tiers.
    extra = [max(allowed) + 1, max(allowed) + 2]
    (sys_root / "devices/system/cpu/online").write_text(format_cpus(allowed + extra) + "\n")
    (proc_root / "meminfo").write_text(
        "MemTotal:       16384000 kB\nMemFree:         1000 kB\nMemAvailable:    8192000 kB\n"
    )
    found = read_machine(sys_root, proc_root)
    assert found.cpus == tuple(allowed)
    assert found.memory_total == 16384000 * 1024


# -- default tiers ----------------------------------------------------------------------


def test_default_tiers_on_20_cpus_follow_the_documented_layout():
    tiers = default_tiers(machine(20))
    assert tiers["system"].cpus == (0, 1)
    assert tiers["system"].protected
    assert tiers["user"].cpus == (2, 3)
    assert tiers["batch"].cpus == tuple(range(4, 20))
    assert not tiers["user"].protected and not tiers["batch"].protected


def test_default_tiers_on_2_cpus_keep_cpu0_for_the_system():
    tiers = default_tiers(machine(2))
    assert tiers["system"].cpus == (0,)
    assert tiers["user"].cpus == (1,)
    assert tiers["batch"].cpus == (1,)


def test_default_tiers_on_1_cpu_share_it():
    tiers = default_tiers(machine(1))
    assert {name: t.cpus for name, t in tiers.items()} == {
        "system": (0,),
        "user": (0,),
        "batch": (0,),
    }


def test_default_tiers_on_3_and_4_cpus():
    three = default_tiers(machine(3))
    assert three["system"].cpus == (0,)
    assert three["user"].cpus == three["batch"].cpus == (1, 2)
    four = default_tiers(machine(4))
    assert four["system"].cpus == (0,)
    assert four["user"].cpus == (1,)
    assert four["batch"].cpus == (2, 3)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 15, 20, 64])
def test_every_default_tier_has_cpus_of_the_machine(n):
    host = machine(n)
    for tier in default_tiers(host).values():
        assert tier.cpus, tier.name
        assert set(tier.cpus) <= set(host.cpus), tier.name


def test_default_tiers_on_a_machine_with_offline_cpus_use_only_online_ones():
    host = Machine(cpus=(0, 2, 3, 5, 6, 7), memory_total=8 * GiB)
    for tier in default_tiers(host).values():
        assert tier.cpus and set(tier.cpus) <= set(host.cpus)


def test_from_4_cpus_workload_tiers_do_not_overlap_the_system_tier():
    for n in (4, 8, 20, 64):
        tiers = default_tiers(machine(n))
        system = set(tiers["system"].cpus)
        assert not system & set(tiers["user"].cpus)
        assert not system & set(tiers["batch"].cpus)
        assert not set(tiers["user"].cpus) & set(tiers["batch"].cpus)


@pytest.mark.parametrize("memory", [2 * GiB, 4 * GiB, 32 * GiB, 256 * GiB])
def test_memory_ceiling_leaves_a_reserve_to_the_host(memory):
    host = machine(20, memory)
    reserve = memory_reserve(host)
    assert reserve >= 512 * MiB
    assert reserve >= memory // 10
    tiers = default_tiers(host)
    for name in ("user", "batch"):
        assert tiers[name].memory == memory - reserve
        assert tiers[name].tasks_max == DEFAULT_TASKS_MAX


def test_memory_reserve_values():
    assert memory_reserve(machine(4, 2 * GiB)) == 512 * MiB
    assert memory_reserve(machine(4, 64 * GiB)) == 64 * GiB // 10


# -- resolve_limits ---------------------------------------------------------------------


def test_protected_tier_is_refused():
    host = machine(20)
    with pytest.raises(UsageError, match="protected") as excinfo:
        resolve_limits(default_tiers(host)["system"], host, {})
    assert excinfo.value.exit_code == 125
    assert "'system'" in str(excinfo.value)


def test_tier_cpus_not_online_are_refused_naming_missing_and_online_cpus():
    tier = Tier("aimgr", cpus=tuple(range(4, 20)))
    with pytest.raises(UsageError) as excinfo:
        resolve_limits(tier, machine(2), {})
    message = str(excinfo.value)
    assert "4-19" in message
    assert "online: 0-1" in message
    assert "'aimgr'" in message


def test_cpus_override_not_online_is_refused_naming_the_option():
    tier = default_tiers(machine(2))["batch"]
    with pytest.raises(UsageError) as excinfo:
        resolve_limits(tier, machine(2), {"cpus": (1, 5, 6)})
    message = str(excinfo.value)
    assert "--cpus" in message
    assert "5-6" in message and "online: 0-1" in message


def test_empty_cpu_list_is_refused():
    with pytest.raises(UsageError, match="empty CPU list"):
        check_cpus((), machine(2), "--cpus")


def test_overrides_win_over_tier_values():
    tier = Tier(
        "t", cpus=(2, 3), memory=4 * GiB, timeout=8.0, kill_after=5.0, tasks_max=100, nice=5
    )
    limits = resolve_limits(
        tier,
        machine(20),
        {
            "cpus": (4, 5),
            "memory": 1 * GiB,
            "timeout": 3.0,
            "kill_after": 0.5,
            "tasks_max": 10,
            "nice": 10,
            "load_max": 6.0,
            "pressure_max": 40.0,
            "on_load": OnLoad.KILL,
        },
    )
    assert limits.cpus == (4, 5)
    assert limits.memory == 1 * GiB
    assert limits.timeout == 3.0
    assert limits.kill_after == 0.5
    assert limits.tasks_max == 10
    assert limits.nice == 10
    assert limits.load_max == 6.0
    assert limits.pressure_max == 40.0
    assert limits.on_load is OnLoad.KILL


def test_overrides_left_none_keep_tier_values():
    tier = Tier("t", cpus=(2, 3), memory=4 * GiB, timeout=8.0, tasks_max=100)
    limits = resolve_limits(
        tier, machine(20), {"cpus": None, "memory": None, "timeout": None, "tasks_max": None}
    )
    assert limits.cpus == (2, 3)
    assert limits.memory == 4 * GiB
    assert limits.timeout == 8.0
    assert limits.tasks_max == 100
    assert limits.on_load is OnLoad.WARN


def test_tier_without_cpus_runs_on_the_whole_machine():
    assert resolve_limits(Tier("t"), machine(6), {}).cpus == tuple(range(6))


def test_timeout_zero_override_means_no_timeout():
    limits = resolve_limits(Tier("t", timeout=8.0), machine(4), {"timeout": 0})
    assert limits.timeout is None


def test_kill_after_defaults_to_two_seconds_and_zero_is_kept():
    assert resolve_limits(Tier("t"), machine(4), {}).kill_after == 2.0
    assert resolve_limits(Tier("t", kill_after=7.0), machine(4), {}).kill_after == 7.0
    assert resolve_limits(Tier("t"), machine(4), {"kill_after": 0.0}).kill_after == 0.0


def test_memory_high_above_memory_is_refused():
    with pytest.raises(UsageError, match="--memory-high is above --memory"):
        resolve_limits(Tier("t"), machine(4), {"memory": GiB, "memory_high": 2 * GiB})
    # The tier's hard ceiling counts too.
    with pytest.raises(UsageError, match="--memory-high"):
        resolve_limits(Tier("t", memory=GiB), machine(4), {"memory_high": 2 * GiB})


def test_memory_high_at_or_below_memory_is_accepted():
    limits = resolve_limits(Tier("t"), machine(4), {"memory": GiB, "memory_high": GiB})
    assert limits.memory_high == limits.memory == GiB


def test_tasks_max_below_one_is_refused():
    with pytest.raises(UsageError, match="--tasks-max"):
        resolve_limits(Tier("t"), machine(4), {"tasks_max": 0})


# -- parsing a config -------------------------------------------------------------------

AIMGR_TOML = """\
default_tier = "aimgr"

[tiers.system]
cpus = "0-1"
protected = true
description = "desktop"

[tiers.aimgr]
cpus = "4-19"
memory = "20G"
timeout = "8s"
kill_after = "500ms"
tasks_max = 512
nice = 5
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_file_defines_tiers_and_default(tmp_path):
    path = write(tmp_path / "tiers.toml", AIMGR_TOML)
    config = load_config(machine(20), path)
    assert config.source == str(path)
    assert config.default_tier == "aimgr"
    aimgr = config.tier(None)
    assert aimgr.name == "aimgr"
    assert aimgr.cpus == tuple(range(4, 20))
    assert aimgr.memory == 20 * GiB
    assert aimgr.timeout == 8.0
    assert aimgr.kill_after == 0.5
    assert aimgr.tasks_max == 512
    assert aimgr.nice == 5
    assert config.tier("system").protected
    assert config.tier("system").cpus == (0, 1)
    # Built-in tiers the file does not mention are still there.
    assert config.tier("batch").cpus == tuple(range(4, 20))
    limits = resolve_limits(aimgr, machine(20), {})
    assert limits.cpus == tuple(range(4, 20))
    assert limits.timeout == 8.0


def test_config_without_default_tier_uses_batch():
    config = parse_config({"tiers": {"x": {"cpus": "1"}}}, machine(4), "test.toml")
    assert config.default_tier == "batch"
    assert config.tier(None).name == "batch"


def test_config_timeout_zero_means_no_timeout():
    config = parse_config({"tiers": {"x": {"timeout": "0"}}}, machine(4), "test.toml")
    assert config.tier("x").timeout is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('defualt_tier = "batch"\n', "defualt_tier"),
        ('[tiers.aimgr]\ncpu = "4-19"\n', "cpu"),
        ('[tiers.aimgr]\nmemory = "20X"\n', "memory"),
        ('[tiers.aimgr]\ntimeout = "5x"\n', "timeout"),
        ('[tiers.aimgr]\nkill_after = "-1"\n', "kill_after"),
        ('[tiers.aimgr]\ncpus = "19-4"\n', "cpus"),
        ("[tiers.aimgr]\ntasks_max = true\n", "tasks_max"),
        ('default_tier = "nosuch"\n', "default_tier"),
        ('tiers = { aimgr = "4-19" }\n', "aimgr"),
        ('tiers = "aimgr"\n', "tiers"),
    ],
)
def test_config_problem_names_the_file_and_the_key(tmp_path, text, key):
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(UsageError) as excinfo:
        load_config(machine(20), path)
    message = str(excinfo.value)
    assert str(path) in message
    assert key in message
    assert excinfo.value.exit_code == 125


def test_protected_given_as_a_string_is_not_silently_true(tmp_path):
    # A string is not a TOML boolean: `protected = "false"` must not protect the tier.
    path = write(tmp_path / "tiers.toml", '[tiers.aimgr]\ncpus = "1"\nprotected = "false"\n')
    try:
        config = load_config(machine(4), path)
    except UsageError as err:
        assert "protected" in str(err) and str(path) in str(err)
    else:
        assert not config.tier("aimgr").protected


def test_bad_tier_value_names_tier_and_key_together(tmp_path):
    path = write(tmp_path / "bad.toml", '[tiers.aimgr]\nmemory = "lots"\n')
    with pytest.raises(UsageError, match=r"tiers\.aimgr\.memory: malformed size"):
        load_config(machine(20), path)


def test_unknown_tier_key_lists_allowed_keys(tmp_path):
    path = write(tmp_path / "bad.toml", '[tiers.aimgr]\ncpu = "1"\n')
    with pytest.raises(UsageError, match=r"allowed: .*cpus"):
        load_config(machine(20), path)


def test_invalid_toml_is_a_usage_error_naming_the_file(tmp_path):
    path = write(tmp_path / "broken.toml", "[tiers.aimgr\ncpus = 4-19\n")
    with pytest.raises(UsageError, match="not valid TOML") as excinfo:
        load_config(machine(20), path)
    assert str(path) in str(excinfo.value)


def test_explicit_config_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_config(machine(20), tmp_path / "missing.toml")


def test_unknown_tier_lists_the_known_ones():
    config = parse_config({"tiers": {"aimgr": {"cpus": "4-19"}}}, machine(20), "my.toml")
    with pytest.raises(UsageError) as excinfo:
        config.tier("nosuch")
    message = str(excinfo.value)
    assert "'nosuch'" in message
    assert "aimgr, batch, system, user" in message
    assert "my.toml" in message


# -- where the config is found ----------------------------------------------------------


def _tier_file(name: str) -> str:
    return f'default_tier = "{name}"\n[tiers.{name}]\ncpus = "1"\n'


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A project directory as cwd and an empty home; every config location populated."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TIERED_RUN_CONFIG", raising=False)
    files = {
        "explicit": write(tmp_path / "explicit.toml", _tier_file("from_explicit")),
        "env": write(tmp_path / "env.toml", _tier_file("from_env")),
        "cwd": write(project / "tiered-run.toml", _tier_file("from_cwd")),
        "pyproject": write(
            project / "pyproject.toml",
            '[project]\nname = "x"\n\n[tool.tiered-run]\n'
            'default_tier = "from_pyproject"\n[tool.tiered-run.tiers.from_pyproject]\n'
            'cpus = "1"\n',
        ),
        "home": write(home / ".config/tiered-run/config.toml", _tier_file("from_home")),
    }
    monkeypatch.setenv("TIERED_RUN_CONFIG", str(files["env"]))
    return files


def test_explicit_config_wins_over_everything(places):
    config = load_config(machine(4), places["explicit"])
    assert config.default_tier == "from_explicit"


def test_environment_variable_comes_next(places):
    config = load_config(machine(4))
    assert config.default_tier == "from_env"
    assert config.source == str(places["env"])


def test_project_file_comes_after_the_environment(places, monkeypatch):
    monkeypatch.delenv("TIERED_RUN_CONFIG")
    config = load_config(machine(4))
    assert config.default_tier == "from_cwd"
    assert config.source.endswith("tiered-run.toml")


def test_pyproject_section_comes_after_the_project_file(places, monkeypatch):
    monkeypatch.delenv("TIERED_RUN_CONFIG")
    places["cwd"].unlink()
    config = load_config(machine(4))
    assert config.default_tier == "from_pyproject"
    assert config.source.endswith("pyproject.toml [tool.tiered-run]")


def test_pyproject_without_the_section_is_skipped_for_the_home_config(places, monkeypatch):
    monkeypatch.delenv("TIERED_RUN_CONFIG")
    places["cwd"].unlink()
    places["pyproject"].write_text('[project]\nname = "x"\n\n[tool.ruff]\nline-length = 100\n')
    config = load_config(machine(4))
    assert config.default_tier == "from_home"
    assert config.source == str(places["home"])


def test_no_config_anywhere_gives_the_built_in_tiers(places, monkeypatch):
    monkeypatch.delenv("TIERED_RUN_CONFIG")
    for key in ("cwd", "pyproject", "home"):
        places[key].unlink()
    if ETC_CONFIG.is_file():
        pytest.skip(f"{ETC_CONFIG} exists on this machine and would be read")
    config = load_config(machine(20))
    assert config.source == "built-in defaults"
    assert config.default_tier == "batch"
    assert config.tiers == default_tiers(machine(20))


def test_problem_in_a_found_pyproject_section_names_it(places, monkeypatch):
    monkeypatch.delenv("TIERED_RUN_CONFIG")
    places["cwd"].unlink()
    places["pyproject"].write_text('[tool.tiered-run]\ndefault_tier = "nosuch"\n')
    with pytest.raises(UsageError) as excinfo:
        load_config(machine(4))
    assert "pyproject.toml [tool.tiered-run]" in str(excinfo.value)
    assert "default_tier" in str(excinfo.value)


# -- the shipped example ----------------------------------------------------------------


@pytest.fixture
def example_config():
    if not EXAMPLE.is_file():
        pytest.skip(f"{EXAMPLE} is not in this checkout")
    return EXAMPLE


def test_example_runs_aimgr_on_cpus_4_to_19_of_a_20_cpu_machine(example_config):
    host = machine(20, 64 * GiB)
    config = load_config(host, example_config)
    limits = resolve_limits(config.tier("aimgr"), host, {})
    assert limits.cpus == tuple(range(4, 20))


def test_example_is_refused_on_a_2_cpu_machine_naming_cpus(example_config):
    host = machine(2, 4 * GiB)
    config = load_config(host, example_config)
    with pytest.raises(UsageError) as excinfo:
        resolve_limits(config.tier("aimgr"), host, {})
    assert excinfo.value.exit_code == 125
    message = str(excinfo.value)
    assert "CPUs" in message
    assert "online: 0-1" in message


# -- plan_run ---------------------------------------------------------------------------


def built_in(host: Machine) -> Config:
    return Config(default_tiers(host), "batch", "built-in defaults")


def test_plan_without_command_says_to_use_double_dash():
    with pytest.raises(UsageError, match="--"):
        plan_run((), RunOptions(), built_in(machine(4)), machine(4))


def test_plan_resolves_tier_and_overrides():
    host = machine(20)
    spec = plan_run(("true",), RunOptions(timeout=3.0), built_in(host), host)
    assert spec.command == ("true",)
    assert spec.tier == "batch"
    assert spec.limits.cpus == tuple(range(4, 20))
    assert spec.limits.timeout == 3.0


def test_plan_in_protected_tier_is_refused():
    host = machine(20)
    with pytest.raises(UsageError, match="protected"):
        plan_run(("true",), RunOptions(tier="system"), built_in(host), host)


@pytest.mark.parametrize("interval", [0, -0.2])
def test_plan_refuses_non_positive_interval(interval):
    host = machine(4)
    with pytest.raises(UsageError, match="--interval"):
        plan_run(("true",), RunOptions(interval=interval), built_in(host), host)


def test_plan_refuses_log_in_a_missing_directory(tmp_path):
    host = machine(4)
    log = tmp_path / "missing" / "run.log"
    with pytest.raises(UsageError, match="does not exist") as excinfo:
        plan_run(("true",), RunOptions(log=log), built_in(host), host)
    assert str(tmp_path / "missing") in str(excinfo.value)


def test_plan_accepts_log_in_an_existing_directory(tmp_path):
    host = machine(4)
    spec = plan_run(("true",), RunOptions(log=tmp_path / "run.log"), built_in(host), host)
    assert spec.log == tmp_path / "run.log"


def test_protected_cpus_are_watched_unless_the_run_uses_them():
    host = machine(20)
    config = parse_config(
        {"tiers": {"desktop": {"cpus": "2", "protected": True}}}, host, "test.toml"
    )
    spec = plan_run(("true",), RunOptions(), config, host)
    assert spec.protected_cpus == (0, 1, 2)
    spec = plan_run(("true",), RunOptions(cpus=(1, 5), allow_protected_cpus=True), config, host)
    assert spec.protected_cpus == (0, 2)
    assert spec.warnings == (
        "--cpus runs on CPU 1 of protected tier 'system', allowed by --allow-protected-cpus",
    )


def test_plan_merges_env_overrides_over_the_environment(monkeypatch):
    monkeypatch.setenv("TR_TEST_REPLACED", "from-environment")
    monkeypatch.setenv("TR_TEST_KEPT", "kept")
    host = machine(4)
    options = RunOptions(env={"TR_TEST_REPLACED": "override", "TR_TEST_NEW": "new"})
    spec = plan_run(("true",), options, built_in(host), host)
    assert spec.env["TR_TEST_REPLACED"] == "override"
    assert spec.env["TR_TEST_KEPT"] == "kept"
    assert spec.env["TR_TEST_NEW"] == "new"
    assert spec.env["PATH"] == os.environ["PATH"]
    assert os.environ["TR_TEST_REPLACED"] == "from-environment"
    assert "TR_TEST_NEW" not in os.environ


@pytest.mark.root(reason="user lookup happens only as root")
def test_plan_refuses_unknown_user():
    host = machine(4)
    with pytest.raises(UsageError, match="unknown user 'no-such-user-tr'"):
        plan_run(("true",), RunOptions(user="no-such-user-tr"), built_in(host), host)


@pytest.mark.root(reason="user lookup happens only as root")
def test_plan_refuses_unknown_user_named_by_the_tier():
    host = machine(4)
    config = parse_config(
        {"default_tier": "svc", "tiers": {"svc": {"user": "no-such-user-tr"}}}, host, "t.toml"
    )
    with pytest.raises(UsageError, match="unknown user"):
        plan_run(("true",), RunOptions(), config, host)


@pytest.mark.root(reason="user lookup happens only as root")
def test_plan_with_user_sets_their_login_environment(monkeypatch):
    import pwd

    monkeypatch.setenv("HOME", "/somewhere/else")
    host = machine(4)
    spec = plan_run(("true",), RunOptions(user="root"), built_in(host), host)
    assert spec.user is not None and spec.user.uid == 0
    assert spec.env["HOME"] == pwd.getpwnam("root").pw_dir
    assert spec.env["USER"] == spec.env["LOGNAME"] == "root"


def test_plan_with_user_needs_root(monkeypatch):
    monkeypatch.setattr("tiered_run.inputs.identity.os.geteuid", lambda: 1000)
    host = machine(4)
    with pytest.raises(UsageError, match="needs root"):
        plan_run(("true",), RunOptions(user="root"), built_in(host), host)


# -- protected CPUs, memory against the machine, values that exec cannot take -----------


def test_cpus_override_on_the_protected_system_cpu_is_refused_with_a_usable_list():
    # `--cpus 0` ran on the protected system CPU without a word.
    host = machine(2, 4 * GiB)
    with pytest.raises(UsageError) as excinfo:
        plan_run(("true",), RunOptions(cpus=(0,)), built_in(host), host)
    message = str(excinfo.value)
    assert "protected tier 'system'" in message
    assert "--cpus 1" in message and "--allow-protected-cpus" in message


def test_protected_cpus_may_be_used_loudly_with_the_flag():
    host = machine(2, 4 * GiB)
    options = RunOptions(cpus=(0,), allow_protected_cpus=True)
    spec = plan_run(("true",), options, built_in(host), host)
    assert spec.limits.cpus == (0,)
    assert any("protected tier 'system'" in warning for warning in spec.warnings)


def test_default_run_on_two_cpus_stays_off_the_system_cpu_without_warnings():
    host = machine(2, 4 * GiB)
    spec = plan_run(("true",), RunOptions(), built_in(host), host)
    assert spec.limits.cpus == (1,)
    assert spec.warnings == ()


def test_default_run_on_one_cpu_still_works():
    host = machine(1, 4 * GiB)
    spec = plan_run(("true",), RunOptions(), built_in(host), host)
    assert spec.limits.cpus == (0,)
    assert not default_tiers(host)["system"].protected


def test_tier_inside_a_protected_tier_is_refused_naming_the_config():
    host = machine(2, 4 * GiB)
    config = parse_config(
        {
            "default_tier": "w",
            "tiers": {"system": {"cpus": "0-1", "protected": True}, "w": {"cpus": "1"}},
        },
        host,
        "mine.toml",
    )
    with pytest.raises(UsageError) as excinfo:
        plan_run(("true",), RunOptions(), config, host)
    message = str(excinfo.value)
    assert "tier 'w' (from mine.toml)" in message and "protected tier 'system'" in message
    assert "no online CPU here (0-1) is outside the protected tiers" in message


def test_tier_without_cpus_runs_on_the_unprotected_cpus():
    host = machine(4)
    config = parse_config({"default_tier": "any", "tiers": {"any": {}}}, host, "t.toml")
    assert plan_run(("true",), RunOptions(), config, host).limits.cpus == (1, 2, 3)


def test_example_on_two_cpus_refuses_the_merged_built_in_batch(example_config):
    # The built-in batch (CPU 1 here) was merged in inside the example's protected 0-1.
    host = machine(2, 4 * GiB)
    config = load_config(host, example_config)
    with pytest.raises(UsageError, match="protected tier 'system'"):
        plan_run(("true",), RunOptions(tier="batch"), config, host)


def test_example_tier_not_online_names_the_file_and_says_no_cpu_is_usable(example_config):
    host = machine(2, 4 * GiB)
    config = load_config(host, example_config)
    with pytest.raises(UsageError) as excinfo:
        plan_run(("true",), RunOptions(tier="aimgr"), config, host)
    message = str(excinfo.value)
    assert "CPUs 4-19 are not online" in message
    assert str(example_config) in message
    assert "no online CPU here (0-1) is outside the protected tiers" in message


def test_cpus_not_online_suggests_unprotected_cpus():
    host = machine(4)
    with pytest.raises(UsageError, match=r"unprotected CPUs here: 1-3, e\.g\. --cpus 1-3"):
        plan_run(("true",), RunOptions(cpus=(7,)), built_in(host), host)


@pytest.mark.parametrize("key", ["memory", "memory_high"])
def test_ceiling_above_the_machine_memory_is_refused(key):
    host = machine(4, 8 * GiB)
    with pytest.raises(UsageError, match=r"above this machine's 8\.0 GiB"):
        plan_run(("true",), RunOptions(**{key: 9 * GiB}), built_in(host), host)


def test_no_ceiling_lifts_the_tier_ceiling_and_says_it_overrides_the_reserve():
    host = machine(4, 8 * GiB)
    spec = plan_run(("true",), RunOptions(memory=NO_CEILING), built_in(host), host)
    assert spec.limits.memory is None
    assert spec.warnings == (
        "memory: no memory ceiling overrides the host reserve of tier 'batch'; the host may be left"
        " less than 819.2 MiB",
    )


def test_ceiling_into_the_host_reserve_is_said_and_one_within_it_is_not():
    host = machine(4, 8 * GiB)
    spec = plan_run(("true",), RunOptions(memory=8 * GiB), built_in(host), host)
    assert "overrides the host reserve of tier 'batch'" in spec.warnings[0]
    assert plan_run(("true",), RunOptions(memory=GiB), built_in(host), host).warnings == ()


def test_weights_reach_the_limits():
    host = machine(4)
    spec = plan_run(("true",), RunOptions(cpu_weight=100, io_weight=50), built_in(host), host)
    assert (spec.limits.cpu_weight, spec.limits.io_weight) == (100, 50)


@pytest.mark.parametrize("interval", [1e10, 61.0])
def test_plan_refuses_an_interval_above_a_minute(interval):
    host = machine(4)
    with pytest.raises(UsageError, match="at most 60 s"):
        plan_run(("true",), RunOptions(interval=interval), built_in(host), host)


@pytest.mark.parametrize(
    ("command", "env", "needle"),
    [
        (("echo", "a\0b"), {}, "NUL"),
        (("true",), {"A=B": "1"}, "without ="),
        (("true",), {"": "1"}, "non-empty"),
        (("true",), {"A\0": "1"}, "without = or NUL"),
        (("true",), {"A": "1\0"}, "NUL"),
    ],
)
def test_plan_refuses_what_exec_cannot_take(command, env, needle):
    host = machine(4)
    with pytest.raises(UsageError, match=needle):
        plan_run(command, RunOptions(env=env), built_in(host), host)


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"nice": 100}, "from -20 to 19"),
        ({"tasks_max": 2**40}, "from 1 to 4194304"),
        ({"memory": 1.5}, "fraction of a byte"),
        ({"memory": 2**64}, "too large"),
        ({"memory": 100}, "did you mean 100M"),
        ({"memory": "1" * 310}, "too large"),
        ({"cpus": "0-5000000"}, "8191"),
        ({"timeout": 1e300}, "365d"),
        ({"timeout": float("nan")}, "finite"),
        ({"kill_after": "2h"}, "at most 1 h"),
        ({"cpu_weight": 0}, "from 1 to 10000"),
    ],
)
def test_config_values_are_range_checked_at_parse_time(tmp_path, table, needle):
    with pytest.raises(UsageError, match=needle):
        parse_config({"tiers": {"t": table}}, machine(4), "t.toml")


@pytest.mark.parametrize("word", ["none", "infinity"])
def test_config_none_lifts_a_ceiling(word):
    config = parse_config({"tiers": {"t": {"memory": word, "timeout": word}}}, machine(4), "t.toml")
    limits = resolve_limits(config.tier("t"), machine(4), {})
    assert limits.memory is None and limits.timeout is None


@pytest.mark.parametrize("value", [[], 1, {"a": 1}])
def test_default_tier_that_is_not_a_name_is_refused(value):
    with pytest.raises(UsageError, match="default_tier must be a tier name"):
        parse_config({"default_tier": value}, machine(4), "t.toml")


@pytest.mark.parametrize(
    "content",
    [b'default_tier = "caf\xe9"\n', b"a = " + b"[" * 500 + b"]" * 500 + b"\n"],
    ids=["not UTF-8", "nested 500 deep"],
)
def test_config_that_cannot_be_read_as_toml_is_one_usage_error(tmp_path, content):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="fix the file") as excinfo:
        load_config(machine(4), path)
    assert str(path) in str(excinfo.value)


def test_pyproject_whose_tool_is_not_a_table_is_skipped(places, monkeypatch):
    monkeypatch.delenv("TIERED_RUN_CONFIG")
    places["cwd"].unlink()
    places["pyproject"].write_text("tool = 1\n")
    assert load_config(machine(4)).source == str(places["home"])


def test_pyproject_section_that_is_not_a_table_is_refused(places, monkeypatch):
    monkeypatch.delenv("TIERED_RUN_CONFIG")
    places["cwd"].unlink()
    places["pyproject"].write_text('[tool]\ntiered-run = "batch"\n')
    with pytest.raises(UsageError, match="must be a table"):
        load_config(machine(4))
