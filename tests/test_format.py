"""The one vocabulary of durations, rates, sizes and counts that every display shares."""

import json
from pathlib import Path

import pytest

from jupyter_torchlab._format import (
    format_bytes,
    format_change,
    format_count,
    format_duration,
    format_elapsed,
    format_eta,
    format_metrics,
    format_number,
    format_percent,
    format_rate,
    format_span,
)

# the cases the lab extension's format.ts is checked against too (labextension/test)
CASES = json.loads(
    (Path(__file__).parents[1] / "labextension" / "test" / "format-cases.json").read_text()
)
FUNCTIONS = {
    "duration": format_duration,
    "span": format_span,
    "bytes": format_bytes,
    "eta": format_eta,
    "rate": format_rate,
    "number": format_number,
    "elapsed": format_elapsed,
    "change": format_change,
}


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [(kind, v, e) for kind in FUNCTIONS for v, e in CASES[kind]],
)
def test_python_and_the_lab_extension_read_the_same(kind, value, expected):
    assert FUNCTIONS[kind](value) == expected


def test_durations_read_like_a_stopwatch():
    assert format_duration(0) == "0:00"
    assert format_duration(5) == "0:05"
    assert format_duration(59.9) == "0:59"  # rounded down: never a second that has not passed
    assert format_duration(61.4) == "1:01"
    assert format_duration(61.9) == "1:01"
    assert format_duration(65) == "1:05"
    assert format_duration(6160) == "1:42:40"
    assert format_duration(None) == "?"
    assert format_duration(float("nan")) == "?"
    assert format_duration(float("inf")) == "?"
    assert format_duration(-1) == "?"


def test_sizes_use_binary_units_and_drop_the_decimal_past_ten():
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
    assert format_bytes(16 * 1024**3) == "16 GiB"
    assert format_bytes(23.8 * 1024**3) == "24 GiB"
    assert format_bytes(5 * 1024**5) == "5.0 PiB"
    assert format_bytes(None) == "n/a"


def test_rates_switch_prefix_and_to_seconds_per_unit_when_slow():
    assert format_rate(12.345) == "12.35it/s"
    assert format_rate(2500, "img") == "2.50kimg/s"
    assert format_rate(3.2e6) == "3.20Mit/s"
    assert format_rate(999.999) == "1.00kit/s"
    assert format_rate(0.25) == "4.00s/it"
    assert format_rate(2500, "img", scale=False) == "2500.00img/s"
    assert format_rate(None) == "?it/s"
    assert format_rate(0) == "?it/s"
    assert format_rate(float("nan"), "B") == "?B/s"


def test_counts_with_separators_or_si_prefixes():
    assert format_count(12345) == "12,345"
    assert format_count(7) == "7"
    assert format_count(2.5) == "2.50"
    assert format_count(12345, scale=True) == "12.3k"
    assert format_count(999, scale=True) == "999"
    assert format_count(1000, scale=True) == "1.00k"
    assert format_count(2048, scale=True, divisor=1024) == "2.00k"
    assert format_count(3_400_000, scale=True) == "3.40M"
    assert format_count(float("nan")) == "?"
    assert format_count(100_000, separators=False) == "100000"
    assert format_count(2.5, separators=False) == "2.5"


def test_percent_number_and_metrics():
    assert format_percent(0.4567) == "46%"
    assert format_percent(0.4567, 1) == "45.7%"
    assert format_percent(None) == "n/a"
    assert format_number(0.123456) == "0.1235"
    assert format_number(12) == "12"
    assert format_number(1.5e-5) == "1.500e-05"
    assert format_number(float("nan")) == "nan"
    assert format_metrics({"loss": 0.5, "acc": 0.25}) == "loss=0.5, acc=0.25"
