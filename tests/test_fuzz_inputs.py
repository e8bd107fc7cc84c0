"""Bad input of every kind the command line, a config file and a ladder file accept, made
up by hypothesis: each must be refused before anything starts, with exit 125, at most two
lines on stderr and never a traceback or an "internal error".

Most examples run the real entry point in this process with the supervisor replaced by
a tripwire, so hundreds cost seconds; a few run `python -m tiered_run` end to end with a
command that would create a marker file.
"""

from __future__ import annotations

import json
import math
import os
import string
import tempfile
from pathlib import Path

import pytest
from conftest import ONLINE_CPUS, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiered_run.engine import supervisor
from tiered_run.inputs.ladder_file import DEFAULT_KEYS, SETTLE_KEYS, STEP_KEYS
from tiered_run.inputs.units import MAX_DURATION, MiB
from tiered_run.policy.tiers import MAX_TASKS, TIER_KEYS

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples in CI as here
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
UNITS = set("bkmgtpei")  # letters a size unit is made of; none other forms one
DURATION_CHARS = set(string.digits + string.ascii_lowercase + ".,: \t")
NOT_A_UNIT = "acdfhjlnoqrsuvwxyz"  # letters no size unit uses

# -- strategies: values that must be refused ----------------------------------------------

junk_text = st.text(min_size=1, max_size=30).filter(
    lambda s: "\0" not in s and s.strip().lower() not in ("none", "infinity")
)
bad_size = st.one_of(
    st.integers(min_value=-(10**9), max_value=MiB - 1).map(str),  # bytes nobody means
    st.integers(min_value=0, max_value=10**6).map(lambda n: f"{n}.5"),  # a fraction of a byte
    st.integers(min_value=2**60 + 1, max_value=2**80).map(str),  # beyond any machine
    st.text(string.digits, min_size=25, max_size=400).map(lambda d: "9" + d),  # 300+ digits
    st.from_regex(rf"\A[1-9][0-9]{{0,3}}[{NOT_A_UNIT}]{{1,3}}\Z"),  # not a unit
    st.sampled_from(["nan", "inf", "-1G", "1.5.5G", "G", "", " ", "1e3M", "2^64"]),
    junk_text.filter(lambda s: not s.strip() or not s.strip()[0].isdigit()),
)
bad_duration = st.one_of(
    st.floats(min_value=0.001, max_value=1e9).map(lambda f: f"-{f}"),
    st.floats(min_value=MAX_DURATION * 1.01, max_value=1e300).map(repr),
    st.integers(min_value=367, max_value=10**9).map(lambda n: f"{n}d"),
    st.sampled_from(["nan", "inf", "-inf", "1e300", "5x", "1h30", "1.2.3s", "5 apples", "s"]),
    junk_text.filter(lambda s: not set(s.lower()) <= DURATION_CHARS or not s.strip()),
)
bad_cpus = st.one_of(
    st.integers(min_value=max(ONLINE_CPUS) + 1, max_value=10**7).map(str),
    st.integers(min_value=1, max_value=10**7).map(lambda n: f"0-{n * 1000}"),
    st.sampled_from(["3-1", "-1", "1,,2", "a", "", "1-", "0-2-4", "0-" + "9" * 400]),
    junk_text.filter(lambda s: not s.strip().isdigit()),
)
bad_interval = st.one_of(
    st.floats(min_value=60.001, max_value=1e12).map(repr),
    st.sampled_from(["0", "0s", "-1", "nan", "1e10", "2min", "1h"]),
)


def bad_number(low: float, high: float, whole: bool = False) -> st.SearchStrategy[str]:
    outside = st.one_of(
        st.floats(max_value=low, exclude_max=True, allow_nan=False),
        st.floats(min_value=high, exclude_min=True, allow_nan=False),
    )
    if whole:
        outside = st.one_of(
            st.integers(max_value=int(low) - 1), st.integers(min_value=int(high) + 1)
        )
    words = ["nan", "NaN", "inf", "-inf", "x", "", "1,5"] + (["1.5"] if whole else [])
    return st.one_of(outside.map(str), st.sampled_from(words))


CLI_BAD = {
    "--memory": bad_size,
    "--memory-high": bad_size,
    "--timeout": bad_duration,
    "--kill-after": bad_duration,
    "--cpus": bad_cpus,
    "--interval": bad_interval,
    "--load-max": bad_number(0, 1e6),
    "--pressure-max": bad_number(0, 100),
    "--tasks-max": bad_number(1, MAX_TASKS, whole=True),
    "--nice": bad_number(-20, 19, whole=True),
    "--env": st.sampled_from(["=x", "NOEQUALS", "", "=="]),
    "--on-load": junk_text.filter(lambda s: s not in ("warn", "pause", "kill")),
    "--backend": junk_text.filter(lambda s: s not in ("auto", "cgroup2", "cgroup1", "plain")),
    "--tier": junk_text.filter(lambda s: s not in ("user", "batch")),
    "--report": st.just("-"),
    "--cwd": st.just("/nonexistent/dir"),
}


# TOML values: what a hand-edited file can hold.
toml_scalar = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20).filter(lambda s: s.isprintable()),
)
toml_value = st.one_of(toml_scalar, st.lists(toml_scalar, max_size=3))

TOML_BAD = {
    "cpus": st.one_of(bad_cpus, st.integers(min_value=max(ONLINE_CPUS) + 1)),
    "memory": st.one_of(bad_size, st.integers(max_value=MiB - 1), st.just(1.5), st.just(2**64)),
    "memory_high": bad_size,
    "tasks_max": st.one_of(
        st.integers(max_value=0), st.integers(min_value=MAX_TASKS + 1), st.just("4096")
    ),
    "timeout": st.one_of(bad_duration, st.floats(min_value=MAX_DURATION * 1.01), st.just(math.nan)),
    "kill_after": st.one_of(bad_duration, st.just(-1), st.just(math.inf)),
    "nice": st.one_of(st.integers(max_value=-21), st.integers(min_value=20), st.just("5")),
    "cpu_weight": st.one_of(st.integers(max_value=0), st.integers(min_value=10001), junk_text),
    "io_weight": st.one_of(st.just(0), st.just(1.5), st.just("/tmp")),
    "user": st.one_of(st.integers(), st.just("no-such-user-tr")),
}
LADDER_BAD = {
    **TOML_BAD,
    "load_max": st.one_of(st.just(math.nan), st.just(-1.0), st.just(math.inf), junk_text),
    "pressure_max": st.one_of(st.just(math.nan), st.just(101), st.just(-0.5), junk_text),
    "on_load": junk_text.filter(lambda s: s not in ("warn", "pause", "kill")),
    "env": st.sampled_from([{"A=B": "1"}, {"": "1"}, {"A": 1}, "LANG=C", {"A\0": "x"}]),
    "cwd": st.sampled_from(["/nonexistent", 5, "", "a\0b"]),
}


def toml(value: object) -> str:
    """A TOML literal for a value hypothesis made (tomllib reads but cannot write)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


# -- the harness ---------------------------------------------------------------------------


@pytest.fixture
def harness(monkeypatch):
    """Run the entry point in-process; fail if a run would have started."""
    started: list[object] = []

    def tripwire(spec, on_event=None):
        started.append(spec)
        raise AssertionError(f"a run was started for bad input: {spec.command}")

    monkeypatch.setattr(supervisor, "run", tripwire)

    def refuse(args: list[str]) -> None:
        result = run_cli(*args, command=None, report=False, in_process=True)
        code, err = result.returncode, result.stderr
        lines = [line for line in err.splitlines() if line.strip()]
        assert not started, (args, err)
        assert code == 125, (args, code, err)
        assert 1 <= len(lines) <= 2, (args, err)
        assert "Traceback" not in err and "internal error" not in err, (args, err)
        assert lines[0].startswith("tiered-run: error: "), (args, err)

    return refuse


def write(text: str | bytes, suffix: str = ".toml") -> str:
    handle, name = tempfile.mkstemp(suffix=suffix, prefix="tiered-run-fuzz-")
    os.write(handle, text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    os.close(handle)
    return name


COMMAND = ["--", "true"]


@SETTINGS
@given(data=st.data())
def test_bad_command_lines_are_refused(harness, data):
    option = data.draw(st.sampled_from(sorted(CLI_BAD)), label="option")
    value = data.draw(CLI_BAD[option], label="value")
    good = data.draw(st.sampled_from([[], ["--timeout", "5min"], ["-q"]]), label="good")
    harness([*good, option, value, *COMMAND])


@SETTINGS
@given(data=st.data())
def test_bad_config_files_are_refused(harness, data):
    key = data.draw(st.sampled_from(sorted(TOML_BAD)), label="key")
    value = data.draw(TOML_BAD[key], label="value")
    text = f'default_tier = "t"\n[tiers.t]\n{key} = {toml(value)}\n'
    path = write(text)
    try:
        harness(["--config", path, *COMMAND])
    finally:
        os.unlink(path)


@SETTINGS
@given(data=st.data())
def test_bad_ladder_files_are_refused_before_step_one(harness, data):
    table = data.draw(st.sampled_from(["defaults", "step 1", "step 2", "settle"]), label="table")
    keys = SETTLE_KEYS if table == "settle" else DEFAULT_KEYS if table == "defaults" else STEP_KEYS
    key = data.draw(st.sampled_from(sorted(set(LADDER_BAD) & keys)), label="key")
    value = data.draw(LADDER_BAD[key], label="value")
    line = f"{key} = {toml(value)}\n"
    steps = [
        '[[step]]\nname = "one"\ncommand = "true"\n',
        '[[step]]\nname = "two"\ncommand = "true"\n',
    ]
    head = ""
    if table in ("defaults", "settle"):
        head = f"[{table}]\n{line}"
    else:
        index = int(table[-1]) - 1
        steps[index] += line
    path = write(head + "".join(steps))
    try:
        harness(["ladder", path])
    finally:
        os.unlink(path)


@SETTINGS
@given(
    content=st.one_of(
        st.binary(max_size=64).map(lambda b: b"\xff" + b),  # never UTF-8
        st.integers(min_value=100, max_value=3000).map(lambda n: b"a = " + b"[" * n + b"]" * n),
        st.sampled_from([b"default_tier = []\n", b"default_tier = 1\n", b"tiers = 1\n"]),
        st.sampled_from([b'[tiers.t]\nprotected = "yes"\n', b"[tiers]\nt = 1\n"]),
        st.from_regex(r"\A[a-z_]{1,12}\Z")
        .filter(lambda k: k not in TIER_KEYS)
        .map(lambda k: f"[tiers.t]\n{k} = 1\n".encode()),
    ),
    ladder=st.booleans(),
)
def test_files_that_are_not_a_config_or_a_ladder_are_refused(harness, content, ladder):
    path = write(content)
    try:
        harness(["ladder", path] if ladder else ["--config", path, *COMMAND])
    finally:
        os.unlink(path)


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_end_to_end_bad_input_starts_nothing(data):
    """A handful through a real process: the marker the command would create stays absent."""
    option = data.draw(st.sampled_from(sorted(CLI_BAD)), label="option")
    value = data.draw(CLI_BAD[option].filter(lambda v: "\0" not in v), label="value")
    with tempfile.TemporaryDirectory(prefix="tiered-run-fuzz-") as where:
        marker = Path(where) / "started"
        proc = run_cli(
            option, value, "--", "touch", str(marker),
            command=None, report=False, text=True, cwd=where, timeout=60,
        )  # fmt: skip
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 125, (option, value, proc.stderr)
        assert 1 <= len(lines) <= 2 and "Traceback" not in proc.stderr, proc.stderr
        assert not marker.exists()
