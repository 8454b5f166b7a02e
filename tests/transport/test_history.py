"""
The history API's pieces: query parsing, opaque cursors, and the message
log's rows as history messages (both sources answer the same shape).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.transport.history import (
    MAX_LIMIT,
    BadQuery,
    StoreHistory,
    decode_cursor,
    encode_cursor,
    parse_query,
    row_message,
)
from tests.helpers import success_result_of


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_cursors_round_trip_and_are_opaque(position):
    cursor = encode_cursor(position)
    assert decode_cursor(cursor) == position
    assert str(position) not in cursor or position < 10


@pytest.mark.parametrize("text", ["", "!!", "bTE4N", "eDEy", encode_cursor(1)[:-1] + "~"])
def test_foreign_cursors_are_refused(text):
    with pytest.raises(BadQuery):
        decode_cursor(text)


def test_query_defaults_and_bounds():
    assert parse_query({}) == (50, None)
    assert parse_query({b"limit": [b"500"], b"before": [encode_cursor(7).encode()]}) == (MAX_LIMIT, 7)
    for bad in (b"501", b"0", b"-1", b"ten"):
        with pytest.raises(BadQuery, match="limit"):
            parse_query({b"limit": [bad]})


def test_rows_become_messages():
    assert row_message((5, "2026-11-24T10:00:00.000Z", "out", "CALLERROR", "m1", "Reset", "{}", "NotSupported")) == {
        "timestamp": "2026-11-24T10:00:00.000Z", "direction": "out", "messageType": "CALLERROR", "messageId": "m1",
        "action": "Reset", "payload": {}, "errorCode": "NotSupported",
    }
    cut = row_message((6, "t", "in", "CALL", "m2", "DataTransfer", '"{\\"data\\":\\"xxx"', None))
    assert cut["payload"] == '{"data":"xxx' and cut["truncated"] is True  # the log keeps a cut payload as a string
    unreadable = row_message((6, "t", "in", "CALL", "m2", "DataTransfer", '{"data":"xxx', None))
    assert unreadable["payload"] == '{"data":"xxx' and unreadable["truncated"] is True
    bare = row_message((7, "t", "in", "CALLRESULT", "m3", None, None, None))
    assert "payload" not in bare and "action" not in bare


class Store:
    def __init__(self, rows, known=True):
        self.rows, self.known, self.asked = rows, known, []

    def message_page(self, device_id, before, limit):
        from twisted.internet.defer import succeed

        self.asked.append((device_id, before, limit))
        return succeed((self.rows[: limit + 1], self.known))


def test_store_pages_carry_the_next_cursor_only_when_there_is_more():
    rows = [(n, "t", "in", "CALL", f"m{n}", "Heartbeat", "{}", None) for n in (9, 8, 7)]
    store = Store(rows)
    page = json.loads(success_result_of(StoreHistory(store).page("CP1", 2, None)))
    assert [m["messageId"] for m in page["messages"]] == ["m9", "m8"] and decode_cursor(page["next"]) == 8
    page = json.loads(success_result_of(StoreHistory(Store(rows[:2])).page("CP1", 2, None)))
    assert page["next"] is None
    assert success_result_of(StoreHistory(Store([], known=False)).page("X", 2, None)) is None
