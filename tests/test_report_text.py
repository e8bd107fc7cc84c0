"""What a user reads after a real run: bytes that are not UTF-8 in every renderer, a run
that never started in one line, the JSON's new fields, warnings and unapplied ceilings."""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import ONLINE_CPUS, python_cmd, run_cli
from contract import (
    HOST_JSON_KEYS,
    LIMITS_JSON_KEYS,
    MEMORY_SPLIT_JSON_KEYS,
    RUN_JSON_KEYS,
    TIMELINE_JSON_KEYS,
)

from tiered_run import __version__

CAFE = os.fsdecode(b"caf\xe9")  # argv $'caf\xe9', as Python holds it


def test_junit_report_and_table_cope_with_an_argument_that_is_not_utf8(tmp_path):
    # `tiered-run --junit j.xml -- printf '%s\n' $'caf\xe9'` crashed and left an empty j.xml.
    junit = tmp_path / "j.xml"
    result = run_cli("--junit", str(junit), "--", "printf", r"%s\n", CAFE, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"caf\xe9\n"  # the workload's own output, byte for byte
    case = ET.parse(junit).getroot().find("testcase")
    assert case is not None and case.get("name") == "printf '%s\\n' 'caf\\xe9'"
    assert result.report["command"][2] == "caf\\xe9"
    assert "caf\\xe9" in result.stderr and "Traceback" not in result.stderr


def test_a_failing_run_with_a_log_path_that_is_not_utf8(tmp_path):
    log = os.path.join(os.fsencode(tmp_path), b"log-\xe9.txt")
    junit = tmp_path / "j.xml"
    result = run_cli(
        "--log", os.fsdecode(log), "--junit", str(junit), "--", "sh", "-c", "echo out; exit 3",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert Path(os.fsdecode(log)).read_bytes() == b"out\n"
    assert result.report["log"].endswith("log-\\xe9.txt")
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and "log-\\xe9.txt" in (failure.text or "")


def test_a_command_that_cannot_start_prints_one_line(tmp_path):
    result = run_cli("--", str(tmp_path / "nonexistent"), tmp_path=tmp_path)
    assert result.returncode == 127
    assert result.stderr.splitlines() == [
        f"tiered-run: error: command not found: {tmp_path}/nonexistent"
    ]
    assert result.report["outcome"] == "error"


def test_json_says_when_where_and_by_which_version(tmp_path):
    result = run_cli("--", "true", tmp_path=tmp_path)
    report = result.report
    assert report["schema_version"] == 4
    assert report["ended_at"] >= report["started_at"]
    assert report["hostname"] == socket.gethostname()
    assert report["tiered_run_version"] == __version__


def test_a_real_report_has_the_published_keys_at_every_level(tmp_path):
    code = "import time; x = b'1' * (20 << 20); time.sleep(0.6)"
    report = run_cli("--interval", "0.1", "--", *python_cmd(code), tmp_path=tmp_path).report
    assert set(report) == RUN_JSON_KEYS
    assert set(report["limits"]) == LIMITS_JSON_KEYS
    assert set(report["host"]) == HOST_JSON_KEYS
    assert report["timeline"]
    assert all(set(point) == TIMELINE_JSON_KEYS for point in report["timeline"])
    assert report["memory_split"] is None or set(report["memory_split"]) == MEMORY_SPLIT_JSON_KEYS


def test_only_ceilings_that_are_set_are_listed_as_kernel_enforced(tmp_path):
    result = run_cli("--memory", "none", "--", "true", tmp_path=tmp_path)
    report = result.report
    assert report["limits"]["memory_bytes"] is None
    assert "memory-limit" not in report["enforced_by_kernel"]
    assert "memory-high" not in report["enforced_by_kernel"]
    assert any("host reserve" in warning for warning in report["warnings"])
    assert "warning: memory: no memory ceiling overrides the host reserve" in result.stderr


def test_weights_outside_systemd_are_reported_as_not_enforced(tmp_path):
    ladder = tmp_path / "l.toml"
    ladder.write_text('[[step]]\nname = "w"\ncommand = "true"\ncpu_weight = 100\n')
    result = run_cli(str(ladder), "--backend", "plain", tmp_path=tmp_path, command="ladder")
    assert result.returncode == 0, result.stderr
    step = result.report["steps"][0]["report"]
    assert step["not_enforced"] == ["cpu_weight"]
    assert step["limits"]["cpu_weight"] == 100


def test_tiers_points_out_a_tier_on_protected_cpus(tmp_path):
    config = tmp_path / "c.toml"
    everything = f"{ONLINE_CPUS[0]}-{ONLINE_CPUS[-1]}"
    config.write_text(
        f'[tiers.system]\ncpus = "{everything}"\nprotected = true\n'
        f'[tiers.w]\ncpus = "{ONLINE_CPUS[-1]}"\n'
    )
    proc = run_cli("--config", str(config), "tiers", command=None, report=False, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"w: CPU {ONLINE_CPUS[-1]} kept by protected tier 'system'" in proc.stdout
