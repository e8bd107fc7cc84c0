"""CI summaries (`--summary FILE`, `GITHUB_STEP_SUMMARY`) and `tiered-run report`, which
shows a saved report again."""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET

import pytest
from conftest import run_cli
from factories import make_report
from workloads import MEMORY_HOG, PY

from tiered_run.model.report import Outcome
from tiered_run.render.junit import render_ladder_junit
from tiered_run.render.markdown import render_run_markdown
from tiered_run.render.run import render_table, report_rows
from tiered_run.workflows.ladder import LADDER_SCHEMA_VERSION, LadderReport

root = pytest.mark.root(reason="guarded runs need root for cgroups here")

LADDER = f"""
[[step]]
name = "fits"
command = ["true"]

[[step]]
name = "hog"
command = ["{PY}", "-c", '''{MEMORY_HOG}''']
memory = "100M"
expect = "memory"
"""


def _report(*args: str, **kwargs):
    return run_cli(*args, command="report", report=False, text=True, **kwargs)


@root
def test_a_run_appends_its_summary_to_the_ci_step_and_writes_summary_file(tmp_path):
    step_summary = tmp_path / "step.md"
    step_summary.write_text("# earlier step\n")
    result = run_cli(
        "--memory", "100M", "--summary", "s.md", "--", PY, "-c", MEMORY_HOG,
        env={"GITHUB_STEP_SUMMARY": str(step_summary)}, tmp_path=tmp_path, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 122, result.stderr
    mine = (tmp_path / "s.md").read_text()
    assert step_summary.read_text() == "# earlier step\n" + mine  # appended, not replaced
    assert mine.startswith("### tiered-run: failed: memory: ")
    assert "| peak memory | 100.0 MiB of 100.0 MiB (100 %) |" in mine
    assert "| leftovers killed | 0 |" in mine
    assert "<summary>events (1)</summary>" in mine and "- +" in mine
    assert "exit code 122" in mine


@root
def test_report_shows_a_saved_run_as_the_run_showed_it(tmp_path):
    run = run_cli("--memory", "100M", "--", PY, "-c", MEMORY_HOG, tmp_path=tmp_path)
    saved = next(tmp_path.glob("report-*.json"))
    shown = _report(str(saved))
    assert shown.returncode == 0, shown.stderr  # shown; the run's own 122 is not ours
    assert shown.stdout == run.stderr  # the very table printed at the end of the run
    again = json.loads(_report(str(saved), "--format", "json").stdout)
    assert again == json.loads(saved.read_text())
    suite = ET.fromstring(_report(str(saved), "--format", "junit").stdout)
    assert suite.get("failures") == "1"


@root
def test_a_ladder_summary_and_report_show_every_step(tmp_path):
    ladder = tmp_path / "l.toml"
    ladder.write_text(LADDER)
    result = run_cli(
        str(ladder), "--summary", "s.md", command="ladder", report=tmp_path / "l.json",
        text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = (tmp_path / "s.md").read_text()
    assert summary.startswith("### tiered-run: ladder l passed")
    rows = [
        line for line in summary.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")
    ]
    assert len(rows) == 2 and "| memory | passed | memory (122) |" in rows[1]
    shown = _report(str(tmp_path / "l.json"))
    assert shown.returncode == 0, shown.stderr
    assert result.stderr.endswith(shown.stdout)  # the table the ladder printed at its end
    markdown = _report(str(tmp_path / "l.json"), "--format", "markdown").stdout
    assert markdown == summary


def test_outside_text_cannot_break_the_table_or_become_html():
    report = make_report(
        command=("sh", "-c", "echo '<script>x</script>' | tee a|b"),
        message="exited with code 1 | <b>",
        outcome=Outcome.EXITED,
        exit_code=1,
    )
    text = render_run_markdown(report)
    code = text.splitlines()[2]  # the command in a code span, where HTML is not HTML
    assert code.startswith("`sh -c ") and code.count("`") == 2
    outside = text.replace(code, "")
    assert "<script>" not in outside and "<b>" not in outside
    command_row = next(line for line in text.splitlines() if line.startswith("| command |"))
    assert command_row.count(" | ") == 1  # two cells: every | in the command is escaped
    assert "&lt;script&gt;" in command_row


def _ladder_data() -> dict:
    return {
        "schema_version": LADDER_SCHEMA_VERSION,
        "kind": "ladder",
        "name": "l",
        "source": "l.toml",
        "outcome": "failed",
        "exit_code": 1,
        "message": "step 1 failed",
        "wall_s": 1.5,
        "steps": [
            {
                "index": 1, "name": "one", "command": ["false"], "expect": "exited",
                "status": "failed", "reason": "exited with code 1",
                "settle": {"settled": True, "waited_s": 0.0, "samples": 1, "missed": []},
                "host_before": {"load1": 0.5, "memory_available_bytes": 1 << 30,
                                "pressure_pct": {"cpu": 1.0}, "pressure_max_pct": 1.0},
                "host_after": None,
                "report": make_report(command=("false",), exit_code=1).to_dict(),
            },
            {
                "index": 2, "name": "two", "command": ["true"], "expect": "exited",
                "status": "not_run", "reason": "an earlier step failed", "settle": None,
                "host_before": None, "host_after": None, "report": None,
            },
        ],
    }  # fmt: skip


def test_a_ladder_report_read_back_is_the_same_report():
    data = _ladder_data()
    assert LadderReport.from_dict(data).to_dict() == data


def test_a_step_the_host_did_not_settle_for_is_an_error_in_junit():
    """A ladder stopped with exit 120 showed failures="0" errors="0" in JUnit: green."""
    data = _ladder_data()
    data["outcome"], data["exit_code"] = "unhealthy", 120
    del data["steps"][0]
    blocked = data["steps"][0]
    blocked["settle"] = {"settled": False, "waited_s": 60.0, "samples": 60, "missed": [
        {"key": "load_max", "value": 9.0, "limit": 0.5, "resource": None}]}  # fmt: skip
    blocked["host_before"] = {"load1": 9.0, "memory_available_bytes": 1 << 30,
                              "pressure_pct": {}, "pressure_max_pct": None}  # fmt: skip
    blocked["reason"] = "host did not settle within 60 s: load 9.00 above load_max 0.5"
    suite = ET.fromstring(render_ladder_junit(LadderReport.from_dict(data)))
    assert (suite.get("errors"), suite.get("failures")) == ("1", "0")
    error = suite.find("testcase/error")
    assert error is not None and error.get("type") == "unhealthy"
    assert "did not settle" in error.get("message", "")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot be read (No such file or directory)"),
        ("{not json", "not JSON"),
        ("[1, 2]", "not a tiered-run report"),
        ('{"kind": "calibration"}', "a calibration report; `report` shows run and ladder"),
        ('{"run_id": "x"}', "not a run report this version can read"),
        ("{}", "not a tiered-run run or ladder report"),
    ],
)
def test_report_refuses_what_is_not_a_report_in_one_line(content, needle, tmp_path):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    shown = _report(str(path))
    assert shown.returncode == 125
    lines = shown.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tiered-run: error: "), shown.stderr
    assert needle in lines[0]
    assert shown.stdout == ""


def test_a_summary_that_cannot_be_written_is_a_warning_and_the_code_stands(tmp_path):
    missing = tmp_path / "no-such-dir" / "step.md"
    result = run_cli(
        "--backend", "plain", "--", "sh", "-c", "exit 3",
        env={"GITHUB_STEP_SUMMARY": str(missing)}, report=False, text=True,
    )  # fmt: skip
    assert result.returncode == 3
    assert "warning" in result.stderr and "GITHUB_STEP_SUMMARY" in result.stderr


def test_the_summary_is_the_table_of_the_terminal():
    report = make_report()
    markdown = render_run_markdown(report)
    rows = report_rows(report)
    assert len(rows) > 10
    for key, value in rows:
        assert f"| {key} | {value} |" in markdown, key
    assert all(value in render_table(report) for _, value in rows)


@pytest.mark.parametrize("clash", ["tiered-run.toml", "--report", "--log", "--summary"])
def test_the_job_summary_is_never_appended_to_an_input_or_an_output(clash, tmp_path):
    """GITHUB_STEP_SUMMARY pointed at the config made it invalid TOML for every later run."""
    config = tmp_path / "tiered-run.toml"
    config.write_text('[tiers.batch]\ncpus = "0"\n')
    target = tmp_path / ("tiered-run.toml" if clash == "tiered-run.toml" else "out")
    before = target.read_bytes() if target.exists() else None
    outputs = [] if clash == "tiered-run.toml" else [clash, "out"]
    marker = tmp_path / "started"
    result = run_cli(
        "--backend", "plain", *outputs, "--", "touch", str(marker),
        env={"GITHUB_STEP_SUMMARY": str(target)}, report=False, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 125, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "GITHUB_STEP_SUMMARY" in line
    assert not marker.exists()
    assert (target.read_bytes() if target.exists() else None) == before


@pytest.mark.parametrize("command", ["echo `echo x`", "a `` b", "`x", "plain"])
def test_the_command_in_the_summary_is_the_command(command):
    """Backticks became apostrophes: `echo 'echo x'` is another command."""
    report = make_report(command=("sh", "-c", command))
    line = render_run_markdown(report).splitlines()[2]
    span = line[: line.index(" in tier ")]
    fence = span[: len(span) - len(span.lstrip("`"))]
    inner = span[len(fence) : -len(fence)]
    if inner.startswith(" ") and inner.endswith(" "):
        inner = inner[1:-1]  # CommonMark strips one space each side
    assert inner == shlex.join(report.command)
    assert fence not in inner


@pytest.mark.parametrize(
    ("key", "value"), [("peak_memory_bytes", "lots"), ("command", None), ("events", [1])]
)
def test_a_report_with_a_field_of_another_type_is_refused_not_a_crash(key, value, tmp_path):
    """These were internal errors: a ValueError or TypeError in showing the report."""
    data = make_report().to_dict()
    data[key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    shown = _report(str(path))
    assert shown.returncode == 125
    (line,) = shown.stderr.strip().splitlines()
    assert "not a run report this version can read" in line and "internal" not in line


def test_a_newer_report_is_shown_with_a_warning_and_stdin_is_read(tmp_path):
    data = make_report().to_dict()
    data["schema_version"] = 99
    data["a_key_from_the_future"] = 1
    shown = _report("-", input=json.dumps(data).encode())
    assert shown.returncode == 0, shown.stderr
    assert "schema 99" in shown.stderr and "warning" in shown.stderr
    assert shown.stdout.startswith("tiered-run: exited with code 0\n")
