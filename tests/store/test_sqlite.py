"""
Tests for L{ocpptw.store.sqlite}: grouped commits off the reactor thread.
"""

from __future__ import annotations

import sqlite3

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults

from ocpptw.store.sqlite import Database
from tests.helpers import bounded

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER);"


@pytest.fixture
def db(tmp_path):
    from twisted.internet import reactor

    database = Database(tmp_path / "x.sqlite", reactor, SCHEMA)
    yield database
    database.close()


@pytest_twisted.ensureDeferred
async def test_writes_are_grouped_and_durable(db, tmp_path):
    """Many writes queued together share commits, and all are on disk after."""

    def put(i):
        return lambda c: c.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", i)).rowcount

    results = await bounded(gatherResults([db.write(put(i)) for i in range(200)]))
    assert results == [1] * 200
    assert db.writes == 200
    assert db.commits < 200
    other = sqlite3.connect(tmp_path / "x.sqlite")
    assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 200


@pytest_twisted.ensureDeferred
async def test_failed_write_rolls_back_only_itself(db):
    """A write that raises fails its own Deferred; its neighbours commit."""
    ok1 = db.write(lambda c: c.execute("INSERT INTO t VALUES ('a', 1)"))
    bad = db.write(lambda c: c.execute("INSERT INTO t VALUES ('a', 2)"))
    ok2 = db.write(lambda c: c.execute("INSERT INTO t VALUES ('b', 3)"))
    await bounded(ok1)
    await bounded(ok2)
    with pytest.raises(sqlite3.IntegrityError):
        await bounded(bad)
    rows = await bounded(db.read(lambda c: c.execute("SELECT k, v FROM t ORDER BY k").fetchall()))
    assert rows == [("a", 1), ("b", 3)]
