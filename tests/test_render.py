from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tiered_run.render import headline, render_json, render_junit, render_table
from tiered_run.report import EXIT_TIMEOUT, Event, HostSummary, Outcome, RunReport

MiB = 1024**2
GiB = 1024**3


def make_report(**overrides: object) -> RunReport:
    values: dict[str, object] = {
        "run_id": "run-1",
        "command": ("make", "-j4", "test"),
        "tier": "build",
        "backend": "cgroupfs",
        "backend_reason": "cgroup v2 delegated to this user",
        "outcome": Outcome.EXITED,
        "exit_code": 0,
        "returncode": 0,
        "signal": None,
        "message": "exited with code 0",
        "started_at": "2024-05-01T12:00:00+00:00",
        "wall_s": 8.02,
        "cpu_s": 15.9,
        "peak_memory_bytes": 412 * MiB,
        "peak_memory_source": "kernel",
        "peak_tasks": 17,
        "cpus": (4, 5, 6, 7),
        "cpus_seen": (4, 5),
        "leftover_killed": 0,
        "limits": {"timeout_s": 8.0, "memory_bytes": 2 * GiB, "tasks_max": 512},
        "enforced_by_kernel": ("memory", "tasks"),
        "memory_high_exceeded": False,
        "host": HostSummary(
            load1_start=0.5,
            load1_peak=3.1,
            load1_end=2.0,
            pressure_peak=None,
            memory_available_min=8 * GiB,
        ),
        "log": None,
        "events": (),
    }
    values.update(overrides)
    return RunReport(**values)  # type: ignore[arg-type]


def timeout_report(**overrides: object) -> RunReport:
    values: dict[str, object] = {
        "outcome": Outcome.TIMEOUT,
        "exit_code": EXIT_TIMEOUT,
        "returncode": None,
        "signal": 9,
        "message": "wall time exceeded 8 s; killed the process tree",
    }
    values.update(overrides)
    return make_report(**values)


JSON_KEYS = {
    "schema_version",
    "run_id",
    "command",
    "tier",
    "backend",
    "backend_reason",
    "outcome",
    "exit_code",
    "returncode",
    "signal",
    "signal_name",
    "message",
    "started_at",
    "wall_s",
    "cpu_s",
    "peak_memory_bytes",
    "peak_memory_source",
    "peak_tasks",
    "cpus",
    "cpus_seen",
    "leftover_killed",
    "limits",
    "enforced_by_kernel",
    "memory_high_exceeded",
    "host",
    "log",
    "warnings",
    "events",
    "timeline",
}


def test_json_keys_are_the_published_contract():
    data = json.loads(render_json(make_report()))
    assert set(data) == JSON_KEYS
    assert data["schema_version"] == 1


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
    assert table.splitlines()[0] == "tiered-run: exited - exited with code 0"
    assert "exit code 0" in table
    assert "412.0 MiB of 2.0 GiB (20 %)" in table
    assert "cgroupfs (cgroup v2 delegated to this user)" in table
    assert "8.02 s of 8 s" in table
    assert "17 of 512" in table
    assert "(sampled)" not in table
    assert "None" not in table


def test_table_marks_sampled_peak_and_unknown_peak():
    assert "(sampled)" in render_table(make_report(peak_memory_source="sampled"))
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
        pressure_peak=12.5,
        memory_available_min=GiB,
        protected_cpus=(0, 1),
        protected_cpu_busy_peak=0.42,
    )
    busy = render_table(make_report(memory_high_exceeded=True, log="/tmp/run.log", host=host))
    assert "memory-high exceeded" in busy
    assert "/tmp/run.log" in busy
    assert "12.5 %" in busy
    assert "42 % peak on 0-1" in busy


def test_long_durations_and_commands_are_shortened():
    table = render_table(make_report(wall_s=75.3, command=("echo", "x" * 200)))
    assert "1 minute and 15.30 seconds" in table
    assert "x" * 100 not in table
    assert "..." in table


def test_headline_is_one_line():
    assert headline(make_report(message="first\nsecond")) == "tiered-run: exited - first second"


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
    assert failure.get("message", "").startswith("timeout: wall time exceeded")
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
