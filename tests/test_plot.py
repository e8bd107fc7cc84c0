"""`tiered-run plot` and `--timeline-csv`: a report's timeline as a picture (checked by
its file type, its size and what is drawn on it) and every sample as CSV."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys

import pytest
from conftest import python_cmd, run_cli
from factories import GiB, MiB, make_report, timeout_report

from tiered_run.model.report import Event, TimelinePoint


def _timeline(seconds: float = 8.0, step: float = 0.25) -> tuple[TimelinePoint, ...]:
    points = []
    for index in range(int(seconds / step) + 1):
        t = round(index * step, 3)
        points.append(
            TimelinePoint(
                t, int((100 + 150 * t) * MiB), 1 + index % 5, 0.8 * t,
                1.5 if index % 4 == 0 else None, 12.5 if index % 4 == 0 else None,
            )
        )  # fmt: skip
    return tuple(points)


def _timed_out_report() -> dict:
    """A run that crossed its soft memory ceiling, was paused for host load and resumed,
    and hit its 8 s timeout."""
    report = timeout_report(
        limits={"timeout_s": 8.0, "memory_bytes": 2 * GiB, "memory_high_bytes": GiB,
                "tasks_max": 16, "load_max": 4.0},
        timeline=_timeline(),
        events=(
            Event(2.1, "pause", "host load 5.00 above 4: tree frozen until the host recovers"),
            Event(3.4, "resume", "host back under its load ceiling: tree thawed"),
            Event(6.0, "memory-high", "1.0 GiB is above the 1.0 GiB soft ceiling"),
            Event(8.0, "timeout", "still running at its 8 s timeout"),
            Event(10.0, "sigkill", "1 process still alive 2 s after SIGTERM"),
        ),
    )  # fmt: skip
    return report.to_dict()


def _plot(tmp_path, data: dict, name: str, **kwargs):
    source = tmp_path / "report.json"
    source.write_text(json.dumps(data))
    return run_cli(
        "plot", str(source), "-o", str(tmp_path / name),
        command=None, report=False, text=True, **kwargs,
    )  # fmt: skip


def test_png_shows_a_timed_out_run(tmp_path):
    result = _plot(tmp_path, _timed_out_report(), "run.png")
    assert result.returncode == 0, result.stderr
    png = (tmp_path / "run.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert (width, height) == (700, 700)
    assert len(png) > 20_000  # four rows of curves, not an empty canvas


def test_svg_marks_the_breach_the_pause_and_the_ceilings(tmp_path):
    result = _plot(tmp_path, _timed_out_report(), "run.svg")
    assert result.returncode == 0, result.stderr
    svg = (tmp_path / "run.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert 'id="breach-timeout' in svg and "timeout breach" in svg
    assert 'id="pause' in svg and "paused: host load" in svg
    assert 'id="memory-high' in svg and 'id="sigkill' in svg
    assert 'id="memory-ceiling' in svg and "ceiling 2.0 GiB" in svg
    assert "soft ceiling 1.0 GiB" in svg and 'id="load-ceiling' in svg
    assert "make -j4 test" in svg


def test_the_figure_has_a_breach_line_on_every_row():
    from matplotlib.figure import Figure

    from tiered_run.render.plot import draw_panel, panels_of

    (panel,) = panels_of(_timed_out_report())
    axes = draw_panel(Figure(), panel)
    assert [ax.get_ylabel() for ax in axes] == ["memory (GiB)", "tasks", "CPUs busy", "host load"]
    for ax in axes:
        breach = [line for line in ax.get_lines() if line.get_gid() == "breach-timeout"]
        assert len(breach) == 1 and list(breach[0].get_xdata()) == [8.0, 8.0]
        assert [p.get_gid() for p in ax.patches] == ["pause"]
    labels = [text.get_text() for text in axes[0].texts]
    assert "timeout breach" in labels and "paused: host load" in labels


def test_a_clean_run_has_no_breach_marker(tmp_path):
    result = _plot(tmp_path, make_report(timeline=_timeline()).to_dict(), "run.svg")
    assert result.returncode == 0, result.stderr
    assert "breach" not in (tmp_path / "run.svg").read_text()


def test_a_ladder_report_gets_a_panel_per_step_that_ran(tmp_path):
    def step(index: int, name: str, report: dict | None) -> dict:
        status = "not_run" if report is None else "passed"
        return {"index": index, "name": name, "status": status, "report": report}

    ladder = {
        "schema_version": 3, "kind": "ladder", "name": "tiny", "outcome": "failed",
        "steps": [
            step(1, "warm-up", make_report(timeline=_timeline(2)).to_dict()),
            step(2, "too slow", _timed_out_report()),
            step(3, "never", None),
        ],
    }  # fmt: skip
    result = _plot(tmp_path, ladder, "ladder.svg")
    assert result.returncode == 0, result.stderr
    svg = (tmp_path / "ladder.svg").read_text()
    assert "step 1: warm-up (passed)" in svg and "step 2: too slow (passed)" in svg
    assert "never" not in svg
    assert svg.count('id="breach-timeout-label"') == 1
    result = _plot(tmp_path, ladder, "ladder.png")
    width, height = struct.unpack(">II", (tmp_path / "ladder.png").read_bytes()[16:24])
    assert (width, height) == (1400, 700)  # two panels side by side


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        ({}, "run.gif", "give a .png or a .svg file"),
        ([1, 2], "run.png", "is not a tiered-run report"),
        ({"kind": "doctor"}, "run.png", "is not a tiered-run run or ladder report"),
        (make_report().to_dict(), "run.png", "has no timeline to draw"),
    ],
)
def test_bad_input_is_one_line_and_125(tmp_path, data, name, expected):
    result = _plot(tmp_path, data, name)
    assert result.returncode == 125
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tiered-run: error: ") and expected in lines[0]
    assert not (tmp_path / name).exists()


def test_the_picture_may_not_replace_its_report(tmp_path):
    source = tmp_path / "report.json"
    source.write_text(json.dumps(_timed_out_report()))
    result = run_cli("plot", str(source), "-o", str(source), command=None, report=False)
    assert result.returncode == 125
    assert json.loads(source.read_text())["outcome"] == "timeout"


def test_without_matplotlib_the_message_says_what_to_install(tmp_path):
    blocker = tmp_path / "blocked" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    path = ":".join(filter(None, [str(blocker.parent), *sys.path]))
    result = _plot(tmp_path, _timed_out_report(), "run.png", env={"PYTHONPATH": path})
    assert result.returncode == 125
    (line,) = result.stderr.splitlines()
    assert line.startswith("tiered-run: error: plot needs matplotlib")
    assert "pip install 'tiered-run[plot]'" in line


def test_a_run_loads_neither_matplotlib_nor_the_status_line_without_a_terminal(tmp_path):
    code = (
        "import sys\n"
        "from tiered_run.cli.entry import run_cli\n"
        "code = run_cli(['-q', '--timeline-csv', sys.argv[1], '--', 'true'])\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'numpy', 'PIL')\n"
        "         or m in ('tiered_run.cli.status', 'tiered_run.render.plot')]\n"
        "print(code, heavy)\n"
    )
    out = subprocess.run(
        [*python_cmd(code), str(tmp_path / "t.csv")], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "0 []", out.stderr


@pytest.mark.root(reason="guarded runs need root for cgroups here")
def test_a_real_timed_out_run_plots(tmp_path):
    run = run_cli(
        "--timeout", "1", "--", "sleep", "30", tmp_path=tmp_path, report=tmp_path / "r.json"
    )
    assert run.returncode == 124
    result = run_cli(
        "plot", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.svg"), command=None,
        report=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert 'id="breach-timeout' in (tmp_path / "r.svg").read_text()


@pytest.mark.root(reason="guarded runs need root for cgroups here")
def test_timeline_csv_has_every_sample(tmp_path):
    csv_path = tmp_path / "timeline.csv"
    result = run_cli(
        "--interval", "0.01", "--timeline-csv", str(csv_path), "--", "sleep", "8",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == [
        "t", "memory_bytes", "tasks", "cpu_s", "load1", "pressure_pct",
        "io_read_bps", "io_write_bps",
    ]  # fmt: skip
    thinned = result.report["timeline"]
    assert len(rows) > 512 >= len(thinned)  # the report's timeline is thinned, the CSV not
    times = [float(row["t"]) for row in rows]
    assert times == sorted(times) and times[-1] >= 7.5
    assert all(row["tasks"] for row in rows[:-1])
    assert any(row["load1"] == "" for row in rows)  # the host is read less often: no made-up


@pytest.mark.root(reason="guarded runs need root for cgroups here")
def test_timeline_csv_may_not_be_the_report(tmp_path):
    report = tmp_path / "r.json"
    result = run_cli(
        "--timeline-csv", str(report), "--", *python_cmd("print('ran')"), report=report
    )
    assert result.returncode == 125
    assert b"ran" not in result.stdout
    assert "are the same file" in result.stderr
