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

from ocpptw.clock import iso_z


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso_z(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


#: C{compact(value)} -> JSON text.  What it encodes was decoded from JSON or
#: built by the gateway: it holds no cycles to look for.
compact = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False, default=_default
).encode


def compact_bytes(value: Any) -> bytes:
    """
    L{compact} as UTF-8.
    """
    return compact(value).encode("utf-8")
