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


def _log_frames(backend, clock, prefix, count, size):
    now = iso_z(utcnow(clock))
    rows = [("CP1", "in", "CALL", f"{prefix}{i}", "DataTransfer", '"' + "x" * (size - 2) + '"', None, now) for i in range(count)]
    success_result_of(backend.log_frames(rows))


def _log_bytes(db):
    from ocpptw.store.retention import ROW_SIZE

    return success_result_of(db.read(lambda c: c.execute(f"SELECT COALESCE(SUM({ROW_SIZE}), 0) FROM messages").fetchone()[0]))


def test_finding_3_message_log_total_is_bounded_oldest_rows_first(clock):
    """MESSAGE_LOG_MAX_TOTAL_BYTES: over the bound the oldest rows go (to 90%), newer ones stay; only new rows are read later."""
    from ocpptw.store.retention import ROW_OVERHEAD, LogBound

    clock.advance(1_790_000_000)
    db = InlineDatabase(schema=embedded.SCHEMA)
    backend = embedded.EmbeddedBackend(db, clock)
    row = 1000 + ROW_OVERHEAD + len("CP1") + len("DataTransfer") + len("a00")  # what each row below costs, about
    bound = LogBound(db, clock, max_bytes=100 * row, chunk=7)
    _log_frames(backend, clock, "a", 60, 1000)
    assert success_result_of(bound.check()) == 0 and bound.total == _log_bytes(db) <= 60 * row
    _log_frames(backend, clock, "b", 60, 1000)
    deleted = success_result_of(bound.check())
    assert deleted >= 30 and _log_bytes(db) <= 90 * row and bound.total == _log_bytes(db)
    kept = success_result_of(db.read(lambda c: [r[0] for r in c.execute("SELECT message_id FROM messages ORDER BY id")]))
    everything = [f"a{i}" for i in range(60)] + [f"b{i}" for i in range(60)]
    assert kept == everything[-len(kept):]
    # Rows deleted by someone else (the age retention): the next look measures everything again.
    success_result_of(db.write(lambda c: c.execute("DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT 10)")))
    _log_frames(backend, clock, "c", 5, 1000)
    assert success_result_of(bound.check()) == 0 and bound.total == _log_bytes(db)
    db.close()


def test_finding_3_log_bound_runs_as_a_service(clock):
    """Started, it checks at once and every minute; stopped, it stops."""
    from ocpptw.store.retention import LogBound

    db = InlineDatabase(schema=embedded.SCHEMA)
    backend = embedded.EmbeddedBackend(db, clock)
    bound = LogBound(db, clock, max_bytes=2048, every=60)
    bound.startService()
    _log_frames(backend, clock, "a", 20, 1000)
    clock.advance(60)
    assert _log_bytes(db) <= 2048
    bound.stopService()
    assert not clock.getDelayedCalls()
    db.close()


def test_finding_3_retention_looks_after_the_size_bound_too(clock):
    """The retention service starts and stops its LogBound; with no age limit (0) it bounds the size alone."""
    from ocpptw.store.retention import LogBound

    clock.advance(1_790_000_000)
    db = InlineDatabase(schema=embedded.SCHEMA)
    backend = embedded.EmbeddedBackend(db, clock)
    _log_frames(backend, clock, "old", 20, 1000)
    clock.advance(30 * DAY)
    bound = LogBound(db, clock, max_bytes=10 * 1200, every=60, chunk=1)
    retention = LogRetention(db, clock, retention=0, every=600, bound=bound)
    retention.startService()
    assert bound.running
    assert 0 < _log_bytes(db) <= 10 * 1200  # old rows stay for their age, but not past the size bound
    retention.stopService()
    assert not bound.running and not clock.getDelayedCalls()
    db.close()
