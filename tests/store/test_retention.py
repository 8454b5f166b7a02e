"""
Tests for L{ocpptw.store.retention}: the embedded message log and events
are kept for EMBEDDED_LOG_RETENTION, oldest rows deleted first, in chunks.
"""

from __future__ import annotations

from ocpptw.clock import iso_z, utcnow
from ocpptw.store import embedded
from ocpptw.store.retention import LogRetention
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import success_result_of

DAY = 86400.0


def fill(backend, clock, count, prefix):
    """count frames and events stamped with the clock's current time."""
    now = iso_z(utcnow(clock))
    items = [("CP1", {"direction": "in", "messageType": "CALL", "messageId": f"{prefix}{i}", "timestamp": now}) for i in range(count)]
    success_result_of(backend.store_messages(items))
    events = [{"id": f"{prefix}-e{i}", "type": "charger.lastSeen", "deviceId": "CP1", "occurredAt": now, "data": {}} for i in range(count)]
    success_result_of(backend.record_events(events))


def counts(db):
    return success_result_of(
        db.read(lambda c: (c.execute("SELECT count(*) FROM messages").fetchone()[0], c.execute("SELECT count(*) FROM events").fetchone()[0]))
    )


def test_old_rows_go_new_rows_stay(clock):
    """Rows older than the retention are deleted, in chunks; newer ones are kept."""
    clock.advance(1_790_000_000)
    db = InlineDatabase(schema=embedded.SCHEMA)
    backend = embedded.EmbeddedBackend(db, clock)
    fill(backend, clock, 25, "old")
    clock.advance(2 * DAY)
    fill(backend, clock, 5, "new")
    retention = LogRetention(db, clock, retention=DAY, every=600, chunk=10)
    assert success_result_of(retention.prune()) == 50
    assert counts(db) == (5, 5)
    kept = success_result_of(db.read(lambda c: [r[0] for r in c.execute("SELECT message_id FROM messages")]))
    assert kept == [f"new{i}" for i in range(5)]
    assert success_result_of(retention.prune()) == 0
    db.close()


def test_runs_on_a_timer_and_stops(clock):
    """As a service it prunes at start and then every `every` seconds, and stops cleanly."""
    clock.advance(1_790_000_000)
    db = InlineDatabase(schema=embedded.SCHEMA)
    backend = embedded.EmbeddedBackend(db, clock)
    retention = LogRetention(db, clock, retention=DAY, every=600)
    retention.startService()
    fill(backend, clock, 3, "a")
    clock.advance(DAY + 1)  # the timer has pruned a's rows on the way
    assert counts(db) == (0, 0)
    retention.stopService()
    assert clock.getDelayedCalls() == []
    db.close()
