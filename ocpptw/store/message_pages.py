# -*- test-case-name: tests.store.test_message_pages -*-
"""
Pages of the embedded store's message log, newest first, for the history API
(docs/contract.md section 8).

The log is read by charger and row id, through the index
L{BY_DEVICE} (C{device_id, id}): a page is one index range scan, as fast
with millions of rows as with a few (C{bench/history_bench.py}).
"""

from __future__ import annotations

import sqlite3
from typing import Any

#: The message log's index by charger, newest row last.
BY_DEVICE = "CREATE INDEX IF NOT EXISTS messages_by_device ON messages (device_id, id)"

_PAGE = (
    "SELECT id, timestamp, direction, message_type, message_id, action, payload, error_code"
    " FROM messages WHERE device_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
)


def read_page(conn: sqlite3.Connection, device_id: str, before: int | None, limit: int) -> tuple[list[tuple[Any, ...]], bool]:
    """
    At most C{limit} rows of C{device_id} with an id below C{before} (any
    when C{None}), newest first, and whether the charger is known at all
    (a charger record, or any row in the log).
    """
    rows = conn.execute(_PAGE, (device_id, before if before is not None else 2**63 - 1, limit + 1)).fetchall()
    if rows or before is not None:
        return rows, True
    known = conn.execute("SELECT 1 FROM chargers WHERE device_id = ?", (device_id,)).fetchone() is not None
    return rows, known
