"""Sizes, durations and CPU lists as a user types them on the command line or in a config."""

from __future__ import annotations

import pytest

from tiered_run.inputs.units import (
    NO_CEILING,
    format_cpus,
    format_duration,
    parse_cpus,
    parse_duration,
    parse_size,
    plural,
)

KiB, MiB, GiB = 1024, 1024**2, 1024**3


# -- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300M", 300 * MiB),
        ("2G", 2 * GiB),
        ("2g", 2 * GiB),
        ("512MiB", 512 * MiB),
        ("512mib", 512 * MiB),
        ("1.5GB", 1_500_000_000),
        ("100MB", 100_000_000),
        ("64k", 64 * KiB),
        ("1T", 1024**4),
        ("1048576", MiB),
        ("4096B", 4096),
        ("1.5K", 1536),
        (" 300 M ", 300 * MiB),
        (4 * MiB, 4 * MiB),
        (1073741824.0, GiB),
    ],
)
def test_size_accepts_binary_decimal_and_plain_forms(text, expected):
    assert parse_size(text) == expected


def test_single_letter_units_are_binary_and_two_letter_units_decimal():
    assert parse_size("1G") == GiB
    assert parse_size("1GB") == 1000**3
    assert parse_size("1GiB") == GiB
    assert parse_size("1G") != parse_size("1GB")


@pytest.mark.parametrize("text", ["-1", "2X", "0", "", "   ", "1.5.5G", "G", "12 34M"])
def test_size_rejects_bad_input_with_a_message_showing_a_valid_form(text):
    with pytest.raises(ValueError) as excinfo:
        parse_size(text)
    message = str(excinfo.value)
    assert repr(text) in message
    assert "e.g." in message and "300M" in message


@pytest.mark.parametrize(
    ("text", "hint"),
    [("100", "did you mean 100M?"), ("4096", "did you mean 4096M?"), (100, "did you mean 100M?")],
)
def test_size_below_a_mebibyte_without_a_unit_is_refused_with_a_hint(text, hint):
    # `--memory 100` is a 100-byte ceiling nobody means; `100B` says it on purpose.
    with pytest.raises(ValueError, match=hint):
        parse_size(text)


@pytest.mark.parametrize("text", ["1.5", "1.5B", 1.5, "0.5"])
def test_size_that_is_a_fraction_of_a_byte_is_refused(text):
    # `--memory 1.5` became a 1-byte ceiling; `memory = 1.5` in TOML too.
    with pytest.raises(ValueError, match="fraction of a byte"):
        parse_size(text)


@pytest.mark.parametrize("text", ["9" * 310, str(2**64), 2**64, "16EiB", "1" * 5000 + "G", 1e300])
def test_size_beyond_any_machine_is_refused_without_overflow(text):
    with pytest.raises(ValueError, match="too large"):
        parse_size(text)


@pytest.mark.parametrize("text", ["none", "infinity", "None", " INFINITY "])
def test_none_and_infinity_mean_no_ceiling_where_a_ceiling_is_asked_for(text):
    assert parse_size(text, ceiling=True) == NO_CEILING
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("value", [0, -1, -4096])
def test_size_rejects_non_positive_integers(value):
    with pytest.raises(ValueError, match="positive"):
        parse_size(value)


def test_size_rejects_a_boolean():
    with pytest.raises(ValueError):
        parse_size(True)


# -- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8", 8.0),
        ("8s", 8.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("5min", 300.0),
        ("30sec", 30.0),
        ("1h 30m", 5400.0),
        ("1h 30min", 5400.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        ("2 minutes", 120.0),
        ("1 min 15.3 s", 75.3),
        ("8 s", 8.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("  8s ", 8.0),
        ("8S", 8.0),
        (8, 8.0),
        (1.5, 1.5),
        (0, 0.0),
    ],
)
def test_duration_accepts_seconds_and_units(text, expected):
    value = parse_duration(text)
    assert isinstance(value, float)
    assert value == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    ["-3", "5x", "1h30", "abc", "", "s", "1h-30m", "1.2.3s", "\u0661\u0662s", "1e300", "5 apples"],
)
def test_duration_rejects_bad_input(text):
    with pytest.raises(ValueError) as excinfo:
        parse_duration(text)
    assert repr(text) in str(excinfo.value)


@pytest.mark.parametrize("text", ["5x", "1h30", "abc"])
def test_malformed_duration_message_shows_valid_forms(text):
    with pytest.raises(ValueError, match=r"e\.g\. 8, 1\.5s, 500ms, 5min, 1h 30m"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-3, -0.5])
def test_duration_rejects_negative_numbers(value):
    with pytest.raises(ValueError, match="negative"):
        parse_duration(value)


@pytest.mark.parametrize("text", ["nan", "inf"])
def test_duration_rejects_values_that_are_not_a_finite_number_of_seconds(text):
    # `--timeout nan` would otherwise be accepted and silently never fire.
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value", [1e300, "1e300", "400d", 366 * 86400, "99999999999999d"])
def test_duration_beyond_a_year_is_refused(value):
    # `--timeout 1e300` crashed after the run.
    with pytest.raises(ValueError, match=r"365d|malformed"):
        parse_duration(value)


def test_duration_maximum_can_be_narrowed():
    assert parse_duration("1min", maximum=60) == 60
    with pytest.raises(ValueError, match="at most 1 min"):
        parse_duration("61s", maximum=60)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.019, "0.02 s"),
        (8.0, "8 s"),
        (8.02, "8.02 s"),
        (59.5, "59.5 s"),
        (60, "1 min"),
        (75.3, "1 min 15.3 s"),
        (3725.25, "1 h 2 min 5.25 s"),
        (59.999, "1 min"),
        (7200, "2 h"),
        (3605, "1 h 5 s"),
    ],
)
def test_durations_are_written_in_one_style_at_every_length(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(round(seconds, 2))


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 processes"), (1, "1 process"), (2, "2 processes")]
)
def test_plural(count, text):
    assert plural(count, "process") == text
    assert plural(1, "fork") == "1 fork" and plural(3, "fork") == "3 forks"


# -- CPU lists --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", (1,)),
        ("0", (0,)),
        ("4-19", tuple(range(4, 20))),
        ("0,2-3", (0, 2, 3)),
        (" 0 , 2 - 3 ", (0, 2, 3)),
        ("3,1,2", (1, 2, 3)),
        ("0-3,2", (0, 1, 2, 3)),
        ("5-5", (5,)),
        (7, (7,)),
    ],
)
def test_cpu_list_gives_sorted_unique_cpus(text, expected):
    assert parse_cpus(text) == expected


@pytest.mark.parametrize("text", ["3-1", "a", "1,,2", "", "1-", "-1", "0-2-4", "1,"])
def test_cpu_list_rejects_malformed_input(text):
    with pytest.raises(ValueError) as excinfo:
        parse_cpus(text)
    assert repr(text) in str(excinfo.value)


@pytest.mark.parametrize("text", ["0-5000000", "9000", "0-" + "9" * 400])
def test_cpu_numbers_beyond_any_machine_are_refused_before_building_the_set(text):
    # `--cpus 0-5000000` used 625 MiB before failing.
    with pytest.raises(ValueError, match="8191"):
        parse_cpus(text)


def test_backwards_range_message_names_the_range():
    with pytest.raises(ValueError, match="3-1 runs backwards"):
        parse_cpus("3-1")


def test_malformed_cpu_list_message_shows_valid_forms():
    with pytest.raises(ValueError, match=r"e\.g\. 1, 4-19 or 0,2-3"):
        parse_cpus("a")


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        ((0,), "0"),
        ((0, 1), "0-1"),
        ((0, 2, 3, 4), "0,2-4"),
        ((1, 3, 5), "1,3,5"),
        (tuple(range(4, 20)), "4-19"),
        ([4, 3, 2, 0], "0,2-4"),
        (frozenset({9, 8, 1}), "1,8-9"),
        ((), ""),
    ],
)
def test_format_cpus_gives_the_kernel_compact_form(cpus, expected):
    assert format_cpus(cpus) == expected


@pytest.mark.parametrize(
    "cpus",
    [
        (0,),
        (0, 1),
        (0, 2, 3, 4),
        (1, 3, 5, 7),
        tuple(range(4, 20)),
        (0, 1, 2, 5, 6, 9, 10, 11, 63),
        tuple(range(0, 128, 2)),
    ],
)
def test_format_and_parse_round_trip(cpus):
    text = format_cpus(cpus)
    assert parse_cpus(text) == cpus
    assert format_cpus(parse_cpus(text)) == text
