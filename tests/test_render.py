from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from contract import (
    BEFORE_KILL_JSON_KEYS,
    EVENT_JSON_KEYS,
    HOST_JSON_KEYS,
    IO_JSON_KEYS,
    LIMITS_JSON_KEYS,
    PRESSURE_STALL_JSON_KEYS,
    RUN_JSON_KEYS,
    TIMELINE_JSON_KEYS,
)
from factories import GiB, MiB, make_report, timeout_report

from tiered_run.model.report import (
    BeforeKill,
    Event,
    HostSummary,
    Outcome,
    RunReport,
    TimelinePoint,
)
from tiered_run.model.spec import Limits
from tiered_run.model.usage import IoCounts, Stalls
from tiered_run.render.json import render_json
from tiered_run.render.junit import render_junit
from tiered_run.render.run import headline, render_table


def row(table: str, key: str) -> str:
    """The value of one row of the summary table."""
    line = next(line for line in table.splitlines() if line.startswith(key + "  "))
    return line[len(key) :].strip()


def test_json_keys_are_the_published_contract():
    data = json.loads(render_json(make_report()))
    assert set(data) == RUN_JSON_KEYS
    assert data["schema_version"] == 4


def test_nested_json_keys_are_the_published_contract_too():
    host = HostSummary(0.5, 1.0, 0.7, 12.5, GiB, (0, 1), 42.0)
    report = make_report(
        limits=Limits(cpus=(0,)).as_dict(),
        host=host,
        events=(Event(0.5, "load", "host load 3.00 above 2"),),
        timeline=(TimelinePoint(0.25, 100 * MiB, 3, 0.1, 0.5, 12.5, 0.0, 10 * MiB),),
        before_kill=BeforeKill(("py-spy", "dump", "--pid", "7"), 0, 0.4, "Thread 7\n"),
        io=IoCounts(0, 30 * MiB, 0, 60).to_dict(),
        pressure_stall=Stalls(0.1, 0.0, 2.5).to_dict(),
    )
    data = json.loads(render_json(report))
    assert set(data["before_kill"]) == BEFORE_KILL_JSON_KEYS
    assert set(data["io"]) == IO_JSON_KEYS
    assert set(data["pressure_stall"]) == PRESSURE_STALL_JSON_KEYS
    assert set(data["limits"]) == LIMITS_JSON_KEYS
    assert set(data["host"]) == HOST_JSON_KEYS
    assert [set(event) for event in data["events"]] == [EVENT_JSON_KEYS]
    assert [set(point) for point in data["timeline"]] == [TIMELINE_JSON_KEYS]


def test_json_values_are_plain_and_unknown_stays_null():
    data = json.loads(render_json(timeout_report(peak_memory_bytes=None, peak_memory_source=None)))
    assert data["outcome"] == "timeout"
    assert data["peak_memory_bytes"] is None
    assert data["signal_name"] == "SIGKILL"
    assert data["command"] == ["make", "-j4", "test"]


def test_json_ends_with_newline():
    assert render_json(make_report()).endswith("}\n")


def test_table_shows_outcome_memory_against_ceiling_and_backend_reason():
    table = render_table(make_report())
    assert table.splitlines()[0] == "tiered-run: exited with code 0"
    assert row(table, "exit code") == "0"
    assert "412.0 MiB of 2.0 GiB (20 %)" in table
    assert "cgroupfs: cgroup v2 delegated to this user" in table
    assert "8.02 s of 8 s" in table
    assert "17 of 512" in table
    assert "(sampled)" not in table
    assert "None" not in table


def test_table_marks_sampled_peak_and_unknown_peak():
    sampled = render_table(make_report(peak_memory_source="sampled"))
    assert row(sampled, "peak memory") == "412.0 MiB of 2.0 GiB (20 %, sampled)"
    table = render_table(
        make_report(peak_memory_bytes=None, peak_memory_source=None, cpu_s=None, cpus_seen=None)
    )
    peak_line = next(line for line in table.splitlines() if line.startswith("peak memory"))
    assert "unknown (ceiling 2.0 GiB)" in peak_line
    assert "None" not in table


def test_table_without_host_tier_or_limits_has_no_none():
    table = render_table(
        make_report(tier=None, host=None, limits={}, peak_tasks=None, backend_reason="")
    )
    assert "None" not in table
    assert "of" not in next(line for line in table.splitlines() if line.startswith("wall time"))


def test_table_lists_events_and_caps_them():
    events = tuple(Event(t=0.5 + i, kind="load", message=f"load {i}") for i in range(13))
    table = render_table(timeout_report(events=events))
    assert "  +0.50s  load: load 0" in table
    assert "load 9" in table
    assert "load 10" not in table
    assert "... 3 more" in table


def test_table_shows_optional_rows_only_when_relevant():
    quiet = render_table(make_report())
    assert "memory-high" not in quiet
    assert "log file" not in quiet
    assert "protected" not in quiet
    host = HostSummary(
        load1_start=0.5,
        load1_peak=3.1,
        load1_end=2.0,
        pressure_peak_pct=12.5,
        memory_available_min_bytes=GiB,
        protected_cpus=(0, 1),
        protected_cpu_busy_peak_pct=42.0,
    )
    busy = render_table(make_report(memory_high_exceeded=True, log="/tmp/run.log", host=host))
    assert "memory-high exceeded" in busy
    assert "/tmp/run.log" in busy
    assert "12.5 %" in busy
    assert "42 % at peak on 0-1" in busy


def test_long_durations_and_commands_are_shortened():
    table = render_table(make_report(wall_s=75.3, command=("echo", "x" * 200)))
    assert row(table, "wall time") == "1 min 15.3 s of 8 s"
    assert "x" * 100 not in table
    assert "..." in table


def test_headline_is_one_line():
    assert headline(make_report(message="first\nsecond")) == "tiered-run: first second"


def _suite(xml: str) -> ET.Element:
    assert xml.startswith("<?xml")
    return ET.fromstring(xml)


def test_junit_counts_pass_and_failure():
    suite = _suite(render_junit([make_report(), timeout_report()]))
    assert suite.tag == "testsuite"
    assert suite.get("name") == "tiered-run"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    passed, failed = suite.findall("testcase")
    assert passed.find("failure") is None
    assert passed.get("name") == "make -j4 test"
    assert passed.get("time") == "8.020"
    failure = failed.find("failure")
    assert failure is not None
    assert failure.get("type") == "timeout"
    assert failure.get("message", "") == "timeout: still running at its 8 s timeout"
    assert "peak memory" in (failure.text or "")


def test_junit_nonzero_exit_fails_and_error_is_an_error():
    error = make_report(outcome=Outcome.ERROR, exit_code=127, returncode=None, message="not found")
    suite = _suite(render_junit([make_report(exit_code=3, returncode=3), error], suite="ladder"))
    assert suite.get("name") == "ladder"
    assert (suite.get("failures"), suite.get("errors")) == ("1", "1")
    assert suite.findall("testcase")[1].find("error") is not None


def test_junit_uses_given_names_and_survives_control_characters():
    xml = render_junit(
        [make_report(), timeout_report(message="boom \x1b[31mred")], names=["small", "large"]
    )
    assert [case.get("name") for case in _suite(xml).findall("testcase")] == ["small", "large"]


def test_junit_rejects_mismatched_names():
    with pytest.raises(ValueError):
        render_junit([make_report()], names=["a", "b"])


# -- one thing said once, in one style ---------------------------------------------------


def test_no_row_repeats_the_headline_or_nests_parentheses():
    # "exited - exited with code 0", "CPUs used 1 (1 CPU)", "cgroup1 (... (hybrid: ...))".
    reason = "cgroup v1 controllers (hybrid: cgroup2 mount used for kill and freeze)"
    table = render_table(make_report(cpus=(1,), cpus_seen=(1,), backend_reason=reason))
    assert table.splitlines()[0] == "tiered-run: exited with code 0"
    assert table.count("exited") == 1
    assert row(table, "CPUs used") == "1"
    assert row(table, "CPUs allowed") == "1"
    for line in table.splitlines()[1:]:
        assert not re.search(r"\([^)]*\(", line), line
    many = render_table(make_report())
    assert row(many, "CPUs allowed") == "4-7 (4 CPUs)"
    assert row(many, "CPUs used") == "4-5 (2 CPUs)"


def test_breach_headline_says_outcome_once_and_the_exit_code_row_the_signal():
    report = make_report(
        outcome=Outcome.MEMORY,
        exit_code=122,
        returncode=None,
        signal=9,
        message="memory: the kernel OOM-killed 1 process at the 200.0 MiB ceiling",
    )
    table = render_table(report)
    assert table.splitlines()[0] == (
        "tiered-run: memory: the kernel OOM-killed 1 process at the 200.0 MiB ceiling"
    )
    assert row(table, "exit code") == "122, the main process ended by SIGKILL"


def test_durations_keep_one_style_across_a_minute():
    # "59.00 s" and then "1 minute and 0.50 seconds": the style switched at 60 s.
    short = row(render_table(make_report(wall_s=59.5, limits={"timeout_s": 90.0})), "wall time")
    long = row(render_table(make_report(wall_s=60.5, limits={"timeout_s": 90.0})), "wall time")
    assert short == "59.5 s of 1 min 30 s"
    assert long == "1 min 0.5 s of 1 min 30 s"


def test_pressure_row_names_what_it_measures():
    host = HostSummary(0.5, 1.0, 0.7, 60.9, GiB)
    text = row(render_table(make_report(host=host)), "host pressure peak")
    assert text == "60.9 % (PSI some avg10, highest of cpu, memory, io)"


def test_a_run_that_never_started_is_one_line():
    # 126/127 printed a table of "unknown".
    report = make_report(
        outcome=Outcome.ERROR,
        exit_code=127,
        returncode=None,
        message="error: command not found: /nonexistent",
        cpu_s=None,
        peak_memory_bytes=None,
        peak_tasks=None,
        cpus_seen=None,
    )
    assert render_table(report) == "tiered-run: error: command not found: /nonexistent\n"


def test_ceilings_a_backend_does_not_apply_show_as_not_enforced():
    table = render_table(make_report(not_enforced=("cpu_weight", "io_weight")))
    assert (
        row(table, "not enforced")
        == "cpu_weight, io_weight: cgroupfs has no controller for them here"
    )
    data = json.loads(render_json(make_report(not_enforced=("cpu_weight",))))
    assert data["not_enforced"] == ["cpu_weight"]
    assert "not enforced" not in render_table(make_report())


def test_io_throttling_and_stalls_are_rows_of_the_table():
    report = make_report(
        io=IoCounts(2 * MiB, 30 * MiB, 16, 60).to_dict(),
        io_source="kernel",
        cpu_throttled_s=4.5,
        limits=Limits(cpus=(0,), cpu_quota=50.0).as_dict(),
        pressure_stall=Stalls(0.5, None, 2.25).to_dict(),
    )
    table = render_table(report)
    assert row(table, "I/O") == "read 2.0 MiB, written 30.0 MiB, 16 reads, 60 writes"
    assert row(table, "CPU throttled") == "4.5 s held back by the 50 % quota"
    assert row(table, "stalled") == "cpu 0.5 s, io 2.25 s (PSI some, this run's cgroup)"
    sampled = make_report(io=IoCounts(0, MiB).to_dict(), io_source="sampled")
    assert row(render_table(sampled), "I/O") == "read 0 Bytes, written 1.0 MiB (sampled, at least)"
    assert "I/O" not in render_table(make_report())


def test_warnings_are_in_the_table_and_the_json():
    warning = "memory: 8.0 GiB overrides the host reserve of tier 'batch'"
    report = make_report(warnings=(warning,))
    assert f"warning: {warning}" in render_table(report)
    assert json.loads(render_json(report))["warnings"] == [warning]


# -- units in the JSON ------------------------------------------------------------------


def _keys(value: object, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in [key, *_keys(v, key)]]
    if isinstance(value, list):
        return [k for item in value for k in _keys(item, prefix)]
    return []


def test_json_has_one_unit_convention():
    host = HostSummary(0.5, 1.0, 0.7, 12.5, GiB, (0, 1), 42.0)
    point = TimelinePoint(0.25, 100 * MiB, 3, 0.1, 0.5, 12.5)
    limits = {"timeout_s": 8.0, "memory_bytes": GiB, "pressure_max_pct": 50.0}
    data = json.loads(render_json(make_report(host=host, timeline=(point,), limits=limits)))
    keys = set(_keys(data))
    assert {
        "pressure_peak_pct",
        "memory_available_min_bytes",
        "protected_cpu_busy_peak_pct",
    } <= keys
    assert {"pressure_pct", "memory_bytes", "cpu_s", "pressure_max_pct"} <= keys
    assert (
        not {"pressure_peak", "pressure", "memory_available_min", "protected_cpu_busy_peak"} & keys
    )
    assert data["host"]["protected_cpu_busy_peak_pct"] == 42.0  # a percentage, not 0.42
    assert data["ended_at"] and data["hostname"] == "build-7"
    assert data["tiered_run_version"] == "0.1.0"


# -- text that is not UTF-8 ---------------------------------------------------------------

CAFE = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of argv $'caf\xe9'


def test_every_renderer_copes_with_arguments_paths_and_output_that_are_not_utf8():
    report = timeout_report(
        command=("printf", r"%s\n", CAFE),
        log=f"/tmp/log-{CAFE}.txt",
        message=f"timeout: {CAFE}",
        events=(Event(0.5, "load", CAFE),),
        warnings=(f"--log {CAFE}: not written",),
    )
    table = render_table(report)
    table.encode("utf-8")  # strict: no surrogate left
    assert "caf\\xe9" in table
    data = json.loads(render_json(report))
    assert data["command"][2] == "caf\\xe9" and data["log"] == "/tmp/log-caf\\xe9.txt"
    render_json(report).encode("utf-8")
    xml = render_junit([report])
    suite = ET.fromstring(xml.encode("utf-8"))  # well-formed, as a file would be read
    assert suite.find("testcase").get("name") == "printf '%s\\n' 'caf\\xe9'"
    assert headline(report) == "tiered-run: timeout: caf\\xe9"


def test_control_characters_from_the_command_do_not_reach_the_terminal():
    """An ESC sequence in an argument or step name must not drive the user's terminal."""
    table = render_table(make_report(command=("sh", "-c", "exit 3", "\x1b[31mred")))
    assert "\x1b" not in table
    assert "\\x1b[31mred" in table


def test_a_report_read_back_from_its_json_is_the_same_report():
    """How reports written by tiered-run in a Slurm job are collected."""
    report = make_report(
        events=(Event(1.5, "memory", "high"),),
        timeline=(TimelinePoint(0.25, 1 << 20, 3, 0.1, 0.5, None),),
    )
    assert RunReport.from_dict(json.loads(render_json(report))) == report
