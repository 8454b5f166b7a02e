"""
Tests for L{ocpptw.ocpp.jsontext}: the one JSON encoder.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ocpptw.ocpp.jsontext import compact, compact_bytes


def test_compact_text_with_characters_as_they_are():
    """No spaces, non-ASCII characters kept (not escaped), key order kept."""
    assert compact({"b": [1, 2], "a": "Grüße ☃", "c": None, "d": True}) == '{"b":[1,2],"a":"Grüße ☃","c":null,"d":true}'
    assert compact_bytes({"a": "ü"}) == '{"a":"ü"}'.encode("utf-8")


def test_decimals_are_exact_strings_and_datetimes_utc_with_z():
    """Money stays exact; a datetime of any zone is written as UTC with milliseconds and a Z."""
    moment = datetime(2026, 11, 24, 11, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert compact({"amount": Decimal("6.29"), "tiny": Decimal("0.10"), "at": moment}) == (
        '{"amount":"6.29","tiny":"0.10","at":"2026-11-24T10:00:00.123Z"}'
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_infinities_are_refused(value):
    """NaN and the infinities are not JSON: encoding them raises instead of writing text no parser takes."""
    with pytest.raises(ValueError):
        compact({"x": [value]})


def test_other_objects_are_refused():
    """An object JSON cannot hold is a TypeError naming its type."""
    with pytest.raises(TypeError, match="set"):
        compact({"x": {1}})


def test_round_trip():
    """What compact writes, json reads back as it was (decimals as their strings)."""
    value = {"a": [1, -2.5, "x\u2028y", {"b": None}], "c": "\"quoted\" \\ back"}
    assert json.loads(compact(value)) == value
