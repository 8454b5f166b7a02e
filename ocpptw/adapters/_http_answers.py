# -*- test-case-name: tests.adapters.test_backend_http -*-
"""
What the backend REST adapter does with bytes: JSON bodies out (money and
times as strings), answers in (bounded body reads, exact money, the shape
each call needs).  Private to L{ocpptw.adapters.backend_http}.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

#: Keys whose values are money: numbers in answers become exact decimal strings.
MONEY_KEYS = frozenset({"prepaidAmount", "pricePerKwh", "cost", "refund", "amount"})


class BadAnswer(Exception):
    """
    A 2xx whose body is not what the call needs.
    """


def normalise(value: Any, key: str | None = None) -> Any:
    """
    Money numbers become exact decimal strings; other non-integers floats.
    """
    if isinstance(value, dict):
        return {k: normalise(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if key in MONEY_KEYS and isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def parse_json(raw: bytes) -> Any:
    try:
        return normalise(json.loads(raw.decode("utf-8"), parse_float=Decimal))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadAnswer(f"answer is not JSON: {e}") from None


class BoundedBody:
    """
    A response body collected by treq's L{collect} (L{add} per chunk), at
    most C{limit} bytes: one more raises L{BadAnswer}, on which C{collect}
    drops the connection.
    """

    __slots__ = ("_limit", "_parts", "_size")

    def __init__(self, limit: int) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit

    def add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise BadAnswer(f"answer larger than {self._limit} bytes")
        self._parts.append(data)

    def data(self) -> bytes:
        return b"".join(self._parts)


def json_object(raw: bytes) -> dict:
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadAnswer("answer is not a JSON object")
    return value


def session_list(raw: bytes) -> list[dict]:
    value = parse_json(raw)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadAnswer("answer is not a list of sessions")
    return value


def _has_id_tag_info(value: dict) -> bool:
    info = value.get("idTagInfo")
    return isinstance(info, dict) and isinstance(info.get("status"), str)


def started(raw: bytes) -> dict:
    """
    A start answer: an integer transactionId, an idTagInfo, and a sessionId
    unless the idTag was refused (then the backend may record no session).
    """
    value = json_object(raw)
    transaction_id = value.get("transactionId")
    if not isinstance(transaction_id, int) or isinstance(transaction_id, bool) or not _has_id_tag_info(value):
        raise BadAnswer("start answer lacks an integer transactionId or idTagInfo.status")
    if value["idTagInfo"]["status"] == "Accepted" and value.get("sessionId") in (None, ""):
        raise BadAnswer("start answer accepts the idTag but has no sessionId")
    return value


def started_by_charger(raw: bytes) -> dict:
    """
    The answer to the start of a transaction whose id the charger chose
    (OCPP 2.0.1, a string): as L{started}, but the transactionId may be
    that string, or left out (the gateway keeps the charger's).
    """
    value = json_object(raw)
    transaction_id = value.get("transactionId")
    if transaction_id is not None and not isinstance(transaction_id, (str, int)) or isinstance(transaction_id, bool):
        raise BadAnswer("start answer has an unusable transactionId")
    if not _has_id_tag_info(value):
        raise BadAnswer("start answer lacks idTagInfo.status")
    if value["idTagInfo"]["status"] == "Accepted" and value.get("sessionId") in (None, ""):
        raise BadAnswer("start answer accepts the idTag but has no sessionId")
    return value


def authorized(raw: bytes) -> dict:
    value = json_object(raw)
    if not _has_id_tag_info(value):
        raise BadAnswer("authorize answer lacks idTagInfo.status")
    return value
