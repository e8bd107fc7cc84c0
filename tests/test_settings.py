"""The settings table: what is derived from it agrees with it (the click options, the file
keys, the records, the report's `limits`, what enforces each ceiling), converters leave
naming the setting to the caller, and messages name a setting as the user gave it."""

from __future__ import annotations

import dataclasses
import signal

import click
import pytest

from tiered_run.backends.base import Capability
from tiered_run.cli.app import main
from tiered_run.errors import UsageError
from tiered_run.host.machine import Machine
from tiered_run.inputs.config import parse_config
from tiered_run.inputs.ladder_file import DEFAULT_KEYS, parse_ladder, plan_ladder
from tiered_run.inputs.plan import RunOptions, plan_run
from tiered_run.inputs.settings import (
    DEFAULT_INTERVAL,
    LIMITS,
    SETTING,
    SETTINGS,
    Where,
    read_value,
    term,
)
from tiered_run.model.spec import BlockDevice, Limits, OnLoad, RunSpec
from tiered_run.policy.breaches import kernel_enforced, not_enforced
from tiered_run.policy.tiers import TIER_KEYS, Tier, resolve_limits

GiB = 1024**3
MiB = 1024**2
HOST = Machine(cpus=(0, 1, 2, 3), memory_total=8 * GiB)


def _options(command: click.Command) -> dict[str, str]:
    """Flag -> parameter name of a command's options."""
    return {
        opt: param.name
        for param in command.params
        if isinstance(param, click.Option)
        for opt in param.opts
        if param.name
    }


# -- what is derived agrees with the table --------------------------------------------------


def test_limits_has_one_field_per_limit_setting_with_the_tables_default():
    fields = dataclasses.fields(Limits)
    assert [f.name for f in fields] == [s.name for s in LIMITS]
    for f, setting in zip(fields[1:], LIMITS[1:], strict=True):  # cpus: no default, given
        assert f.default == setting.default, f.name


def test_one_default_for_the_interval():
    assert DEFAULT_INTERVAL == 0.25
    assert RunSpec.__dataclass_fields__["interval"].default == DEFAULT_INTERVAL
    assert RunOptions().interval == DEFAULT_INTERVAL


def test_report_limits_keys_come_with_their_units():
    data = Limits(cpus=(1, 2), timeout=8.0, memory=GiB, stop_signal=signal.SIGINT).as_dict()
    assert data == {
        "cpus": [1, 2],
        "timeout_s": 8.0,
        "kill_after_s": 2.0,
        "stop_signal": "SIGINT",
        "memory_bytes": GiB,
        "memory_high_bytes": None,
        "tasks_max": None,
        "load_max": None,
        "pressure_max_pct": None,
        "on_load": "warn",
        "nice": None,
        "cpu_weight": None,
        "cpu_quota_pct": None,
        "io_weight": None,
        "io_read_max_bytes_per_s": None,
        "io_write_max_bytes_per_s": None,
        "io_read_iops_max": None,
        "io_write_iops_max": None,
        "io_device": None,
        "memory_low_bytes": None,
    }


def _command(name: str) -> click.Command:
    command = main.get_command(click.Context(main), name)
    assert command is not None, name
    return command


def test_run_and_calibrate_have_an_option_for_every_run_setting():
    for command in (_command("run"), _command("calibrate")):
        options = _options(command)
        for setting in SETTINGS:
            assert (setting.flag in options) == (Where.RUN in setting.where), setting.name
            if Where.RUN in setting.where:
                assert options[setting.flag] == setting.name
    assert _options(_command("run"))["--signal"] == "stop_signal"
    assert _options(_command("run"))["--memory-high"] == "memory_high"


def test_ladder_and_demo_take_the_run_wide_settings_only():
    for command in (_command("ladder"), _command("demo")):
        options = _options(command)
        flags = {s.flag for s in SETTINGS if s.flag in options}
        assert flags == {"--backend", "--interval"}


def test_file_keys_come_from_the_table():
    assert {s.key for s in SETTINGS if Where.TIER in s.where} == TIER_KEYS
    assert {s.key for s in SETTINGS if Where.STEP in s.where} == DEFAULT_KEYS
    assert "signal" in TIER_KEYS and "signal" in DEFAULT_KEYS
    assert {"protected", "description"} <= TIER_KEYS - DEFAULT_KEYS
    assert {"load_max", "pressure_max", "on_load", "cwd", "env"} <= DEFAULT_KEYS - TIER_KEYS
    assert not {"interval", "backend"} & (TIER_KEYS | DEFAULT_KEYS)
    tier_fields = [f.name for f in dataclasses.fields(Tier)]
    assert tier_fields == ["name", *(s.name for s in SETTINGS if Where.TIER in s.where)]


def test_what_enforces_each_ceiling_comes_from_the_table():
    every = frozenset(Capability)
    limits = Limits(cpus=(0,), memory=GiB, tasks_max=10, cpu_weight=100)
    assert kernel_enforced(limits, every) == (
        "cpuset",
        "memory-limit",
        "tasks-limit",
        "cpu-weight",
    )
    assert kernel_enforced(limits, frozenset()) == ()
    assert not_enforced(limits, frozenset({Capability.CPUSET})) == ("cpu_weight",)
    assert not_enforced(limits, frozenset({Capability.CPU_WEIGHT})) == ()
    # A ceiling the monitor holds without the kernel is never "not enforced".
    assert "memory" not in not_enforced(limits, frozenset())
    assert SETTING["nice"].kernel is None  # setpriority, by every backend


def test_every_ceiling_only_the_kernel_holds_is_reported_where_it_is_missing():
    device = BlockDevice(8, 0, "sda")
    limits = Limits(
        cpus=(0,),
        cpu_weight=200,
        cpu_quota=50.0,
        io_weight=300,
        io_write_max=10 * MiB,
        io_device=device,
        memory_low=GiB,
    )
    assert not_enforced(limits, frozenset()) == (
        "cpu_weight",
        "cpu_quota",
        "io_weight",
        "io_write_max",
        "memory_low",
    )
    assert not_enforced(limits, frozenset(Capability)) == ()
    assert limits.io_max == {"wbps": 10 * MiB}
    assert limits.as_dict()["io_device"] == "8:0"


def test_quota_and_rates_read_as_users_write_them():
    assert SETTING["cpu_quota"].convert("400%") == 400
    assert read_value(SETTING["cpu_quota"], 50) == 50
    assert read_value(SETTING["cpu_quota"], "50 %") == 50
    assert SETTING["io_write_max"].convert("10M/s") == 10 * MiB
    assert read_value(SETTING["io_read_max"], "512K") == 512 * 1024
    assert SETTING["io_read_max"].convert("none") == 0  # lifts a tier's


# -- converters and TOML values ---------------------------------------------------------------

BAD = {
    "cpus": "3-1",
    "timeout": "5x",
    "kill_after": "2h",
    "stop_signal": "STOP",
    "memory": "2X",
    "memory_high": "100",
    "tasks_max": "0",
    "load_max": "nan",
    "pressure_max": "101",
    "on_load": "sometimes",
    "nice": "1.5",
    "cpu_weight": "0",
    "io_weight": "x",
    "cpu_quota": "0%",
    "io_read_max": "fast",
    "io_write_max": "10",
    "io_read_iops_max": "0",
    "io_write_iops_max": "1.5",
    "io_device": "/dev/shm",
    "memory_low": "lots",
    "preserve_env": 5,
    "protected": "yes",
    "cwd": "/nonexistent/dir",
    "env": "NOEQUALS",
    "backend": "docker",
    "interval": "0",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_converters_refuse_without_naming_the_setting(name):
    setting = SETTING[name]
    with pytest.raises(ValueError) as excinfo:
        setting.convert(BAD[name])
    assert setting.flag not in str(excinfo.value)  # the caller names it, as the user gave it


def test_a_file_gives_typed_values_and_the_command_line_text():
    nice = SETTING["nice"]
    assert nice.convert("5") == 5  # --nice 5
    assert read_value(nice, 5) == 5  # nice = 5
    with pytest.raises(ValueError, match="expected int"):
        read_value(nice, "5")  # nice = "5": a string is not taken for a number
    with pytest.raises(ValueError, match="expected a value"):
        read_value(SETTING["memory"], True)
    assert read_value(SETTING["load_max"], 4) == 4  # an int serves a number
    assert read_value(SETTING["stop_signal"], "INT") == signal.SIGINT


def test_term_is_the_flag_on_the_command_line_and_the_key_in_a_file():
    assert term("memory_high", from_file=False) == "--memory-high"
    assert term("memory_high", from_file=True) == "memory_high"
    assert term("stop_signal", from_file=True) == "signal"
    assert term("interval", from_file=True) == "--interval"  # only ever a flag


# -- signal in files, messages in the user's terms ---------------------------------------------


def test_signal_is_a_tier_key_and_a_ladder_key():
    config = parse_config({"tiers": {"t": {"signal": "INT"}}}, HOST, "c.toml")
    assert resolve_limits(config.tier("t"), HOST, {}).stop_signal == signal.SIGINT
    assert resolve_limits(Tier("t"), HOST, {}).stop_signal == signal.SIGTERM
    ladder = parse_ladder(
        {"defaults": {"signal": "INT"}, "step": [{"name": "a", "command": "true"}]}, "l.toml"
    )
    (spec,) = plan_ladder(ladder, config, HOST)
    assert spec.limits.stop_signal == signal.SIGINT


def test_a_bad_signal_in_a_file_names_the_file_tier_and_key():
    with pytest.raises(UsageError, match=r"^c\.toml: tiers\.t\.signal: SIGSTOP cannot end"):
        parse_config({"tiers": {"t": {"signal": "STOP"}}}, HOST, "c.toml")


def test_soft_above_hard_from_a_tier_file_names_its_keys():
    config = parse_config({"tiers": {"t": {"memory": "1G", "memory_high": "2G"}}}, HOST, "c.toml")
    with pytest.raises(UsageError) as excinfo:
        resolve_limits(config.tier("t"), HOST, {}, source="c.toml")
    message = str(excinfo.value)
    assert message.startswith("tier 't' (from c.toml): memory_high is above memory:"), message
    assert "--" not in message


def test_soft_above_hard_in_a_ladder_step_names_its_keys():
    step = {"name": "a", "command": "true", "memory": "1G", "memory_high": "2G"}
    ladder = parse_ladder({"step": [step]}, "l.toml")
    config = parse_config({}, HOST, "c.toml")
    with pytest.raises(UsageError) as excinfo:
        plan_ladder(ladder, config, HOST)
    assert str(excinfo.value).startswith('l.toml: step 1 "a": memory_high is above memory:')


def test_soft_above_hard_half_from_the_command_line_says_which_is_which():
    tier = Tier("t", memory=GiB)
    with pytest.raises(UsageError, match=r"^--memory-high is above the memory of tier 't'"):
        resolve_limits(tier, HOST, {"memory_high": 2 * GiB})


def test_a_step_on_protected_cpus_is_told_the_key_to_change():
    config = parse_config({"tiers": {"system": {"cpus": "0", "protected": True}}}, HOST, "c")
    options = RunOptions(cpus=(0,), from_file=True)
    with pytest.raises(UsageError) as excinfo:
        plan_run(("true",), options, config, HOST)
    message = str(excinfo.value)
    assert message.startswith("cpus runs on CPU 0") and 'e.g. cpus = "1-3"' in message


def test_on_load_from_the_command_line_is_an_enum():
    assert SETTING["on_load"].convert("pause") is OnLoad.PAUSE
