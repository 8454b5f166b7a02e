"""
Pages of the embedded store's message log for the history API: newest
first, by charger, through the index, and a charger known without frames.
"""

from __future__ import annotations

import pytest

from ocpptw.store.embedded import SCHEMA, EmbeddedBackend
from ocpptw.store.message_pages import read_page
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import success_result_of


@pytest.fixture
def store(tmp_path, clock):
    db = InlineDatabase(tmp_path / "embedded.sqlite", SCHEMA)
    yield db, EmbeddedBackend(db, clock)
    db.close()


def frames(device, n, start=0):
    return [(device, "in", "CALL", f"m{i}", "Heartbeat", "{}", None, f"2026-11-24T10:00:{i:02d}.000Z")
            for i in range(start, start + n)]


def test_pages_are_newest_first_per_charger(store):
    db, backend = store
    success_result_of(backend.log_frames(frames("A", 5) + frames("B", 3)))
    rows, known = success_result_of(backend.message_page("A", None, 2))
    assert known and [r[4] for r in rows] == ["m4", "m3", "m2"]  # one more than asked: there is a next page
    rows, _ = success_result_of(backend.message_page("A", rows[1][0], 2))
    assert [r[4] for r in rows] == ["m2", "m1", "m0"]
    rows, _ = success_result_of(backend.message_page("A", rows[2][0], 2))
    assert rows == []


def test_a_charger_with_a_record_but_no_frames_is_known(store):
    _, backend = store
    success_result_of(backend.ensure_charger({"deviceId": "C", "vendor": "v", "model": "m"}))
    assert success_result_of(backend.message_page("C", None, 10)) == ([], True)
    assert success_result_of(backend.message_page("NOPE", None, 10)) == ([], False)


def test_a_page_is_an_index_range_scan(store):
    db, _ = store
    plan = success_result_of(db.read(lambda conn: conn.execute(
        "EXPLAIN QUERY PLAN SELECT id, timestamp, direction, message_type, message_id, action, payload, error_code"
        " FROM messages WHERE device_id = ? AND id < ? ORDER BY id DESC LIMIT ?", ("A", 10, 5)).fetchall()))
    detail = " ".join(row[3] for row in plan)
    assert "messages_by_device" in detail and "TEMP B-TREE" not in detail


def test_read_page_on_a_bare_connection(store):
    db, backend = store
    success_result_of(backend.log_frames(frames("A", 2)))
    rows, known = success_result_of(db.read(lambda conn: read_page(conn, "A", None, 1)))
    assert known and len(rows) == 2
