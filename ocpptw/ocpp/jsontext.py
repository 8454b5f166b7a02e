# -*- test-case-name: tests.test_jsontext -*-
"""
The gateway's one JSON encoder: compact text (no spaces), UTF-8 characters
as they are, decimals as strings (money stays exact), datetimes as ISO 8601
UTC with a C{Z}.  NaN and the infinities are refused (they are not JSON;
no charger may send them either).  Every frame, body, event and log row the
gateway writes goes through L{compact}.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from ocpptw.clock import iso_z


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso_z(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: The reference encoder: what L{compact} returns, character for character.
#: What it encodes was decoded from JSON or built by the gateway: it holds no
#: cycles to look for.
_reference = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False, default=_default
).encode

_fast = orjson.dumps
_FAST_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME  # datetimes through _default: iso_z, as the reference
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")


def compact(value: Any) -> str:
    """
    C{value} as compact JSON text.

    orjson (about 10x the stdlib encoder) writes the same text as the
    reference encoder for strings, integers, Decimals, datetimes, lists and
    dicts.  It differs only on floats: NaN and the infinities (C{null},
    where the reference refuses them) and the exponent forms (C{1e16},
    C{0.00001} where Python writes C{1e+16}, C{1e-05}).  Output that could
    hold one of those (C{null}, a digit before C{e}, C{.0000}), and whatever
    orjson refuses (integers beyond 64 bits, keys that are not strings, lone
    surrogates, deep nesting), is encoded again by the reference, which
    also raises what it always raised.
    """
    try:
        out = _fast(value, default=_default, option=_FAST_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return _reference(value)
    if b"null" in out:
        return _reference(value)
    digits = out.translate(_DIGITS_TO_ZERO)
    if b"0e" in digits or b".0000" in digits:
        return _reference(value)
    return out.decode("utf-8")


def compact_bytes(value: Any) -> bytes:
    """
    L{compact} as UTF-8.
    """
    return compact(value).encode("utf-8")
