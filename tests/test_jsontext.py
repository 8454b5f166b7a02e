"""
Tests for L{ocpptw.ocpp.jsontext}: the one JSON encoder.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpptw.ocpp import jsontext
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


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**70), max_value=2**70) | st.text() | st.decimals(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_json_values)
def test_the_fast_encoder_writes_the_reference_text(value):
    """Whatever the value (floats in every range, long integers, any text), the text is the stdlib encoder's."""
    assert compact(value) == jsontext._reference(value)


@pytest.mark.parametrize("value", [1e16, -1e22, 1e-05, 6.1e-05, 5e-324, 1.7976931348623157e308, 0.0001, 2**64, {1: 2}])
def test_float_forms_and_what_orjson_refuses_match_the_reference(value):
    """The exponent forms orjson writes differently, integers beyond 64 bits and integer keys."""
    assert compact([value]) == jsontext._reference([value])
