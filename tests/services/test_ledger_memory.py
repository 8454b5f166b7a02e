"""
Tests for what L{ocpptw.store.ledger} keeps in memory: open and recently
stopped transactions only, the rest read from disk on a miss with every
guarantee intact (a repeated StartTransaction gets the same id, a repeated
StopTransaction is already stopped, delivery reconciles), and a flat
structure for the gateway-assigned ids in use.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import fail

from ocpptw.store import ledger as ledger_module
from ocpptw.store.ledger import DAY, GATEWAY_ID_BASE, SCHEMA, Ledger, Transaction
from ocpptw.store.sqlite import Database, InlineDatabase
from tests.helpers import bounded, failure_result_of, no_result, success_result_of
from tests.services.test_sessions import CP, T0, now, rig, start, stop  # noqa: F401 (rig is a fixture)


@pytest.fixture
def db():
    database = InlineDatabase(schema=SCHEMA)
    yield database
    database.close()


def started(db, clock, **kw):
    ledger = Ledger(db, clock, **kw)
    success_result_of(ledger.start())
    return ledger


def tx(transaction_id, cp=CP, **kw):
    fields = dict(connector_id=1, id_tag="TAG", meter_start=transaction_id, timestamp=T0)
    fields.update(kw)
    return Transaction(cp=cp, transaction_id=transaction_id, **fields)


def evict_all(ledger, clock, monkeypatch):
    """
    Let every transaction leave memory (stays on disk), as the caps do in
    time.
    """
    with monkeypatch.context() as m:
        m.setattr(ledger_module, "RECENT_MAX", 0)
        m.setattr(ledger_module, "OPEN_IN_MEMORY", 0.0)
        clock.advance(1)
        success_result_of(ledger.prune())
    assert len(ledger._transactions) == 0


def test_repeated_stop_of_an_evicted_transaction(rig, monkeypatch):
    """A stop repeated once the transaction left memory is read from disk and answered as already stopped."""
    monkeypatch.setattr(ledger_module, "RECENT_MAX", 3)
    first = success_result_of(start(rig))["transactionId"]
    success_result_of(stop(rig, first))
    for n in range(1, 5):  # later sessions push it out of the recent set
        other = success_result_of(start(rig, meter_start=1000 + n))["transactionId"]
        success_result_of(stop(rig, other))
    assert rig.ledger._transactions.get((CP, first)) is None
    assert len(rig.ledger._recent) == 3
    stops, refunds = len(rig.backend.called("stop_session")), len(rig.backend.called("refund"))

    assert success_result_of(stop(rig, first, meter_stop=20000)) == {}
    assert len(rig.backend.called("stop_session")) == stops == 5
    assert len(rig.backend.called("refund")) == refunds
    assert len(rig.publisher.of("charging.stopped")) == 5
    assert rig.outbox.depth() == 0
    assert rig.ledger._transactions.get((CP, first)).meter_stop == 13580  # back in memory, unchanged


def test_repeated_start_of_evicted_transactions(rig, monkeypatch):
    """A StartTransaction repeated once its transaction left memory (open or stopped) gets the same id."""
    open_one = success_result_of(start(rig))
    stopped_one = success_result_of(start(rig, meter_start=2000))
    success_result_of(stop(rig, stopped_one["transactionId"]))
    evict_all(rig.ledger, rig.clock, monkeypatch)
    calls = len(rig.backend.called("start_session"))

    assert success_result_of(start(rig)) == open_one
    assert success_result_of(start(rig, meter_start=2000)) == stopped_one
    assert len(rig.backend.called("start_session")) == calls
    assert len(rig.publisher.of("charging.started")) == 2
    # the open one is usable again: its stop bills it
    success_result_of(stop(rig, open_one["transactionId"]))
    assert rig.sql("SELECT cost FROM sessions WHERE transaction_id = ?", open_one["transactionId"]) == [("6.29",)]


def test_identical_starts_while_the_disk_lookup_runs(rig):
    """Two identical StartTransactions while the ledger reads the disk: one transaction, one backend session."""
    rig.state.auto = False
    first, again = start(rig), start(rig)
    no_result(first)
    no_result(again)
    assert rig.state.queued == 1  # one disk lookup for both
    rig.state.commit()
    rig.state.auto = True
    assert success_result_of(first) == success_result_of(again)
    assert len(rig.backend.called("start_session")) == 1
    assert rig.sql("SELECT count(*) FROM sessions") == [(1,)]


def test_repeat_waits_until_the_start_is_durable(rig):
    """A repeat that arrives while the first start's writes are pending is answered once they commit."""
    rig.publisher.hold = True
    first = start(rig)
    again = start(rig)
    no_result(first)
    no_result(again)
    rig.publisher.release()
    assert success_result_of(again) == success_result_of(first)


def test_identical_stops_while_the_disk_lookup_runs(rig, monkeypatch):
    """Two identical StopTransactions for an evicted transaction: stopped and billed once, both answered."""
    transaction_id = success_result_of(start(rig))["transactionId"]
    evict_all(rig.ledger, rig.clock, monkeypatch)
    rig.state.auto = False
    first, again = stop(rig, transaction_id), stop(rig, transaction_id)
    no_result(first)
    no_result(again)
    rig.state.commit()
    rig.state.auto = True
    assert success_result_of(first) == success_result_of(again) == {}
    assert len(rig.backend.called("stop_session")) == 1
    assert len(rig.publisher.of("charging.stopped")) == 1
    assert rig.sql("SELECT amount FROM wallet_ledger") == [("3.71",)]


def test_delivery_reconciles_evicted_transactions(rig, monkeypatch):
    """Backend away at start and stop; by the time it is back the ledger holds neither in memory: reconciled, billed, refunded once."""
    rig.backend.mode = "down"
    transaction_id = success_result_of(start(rig))["transactionId"]
    assert transaction_id >= GATEWAY_ID_BASE
    success_result_of(stop(rig, transaction_id))
    assert rig.outbox.depth() == 2
    evict_all(rig.ledger, rig.clock, monkeypatch)

    rig.backend.mode = "up"
    rig.retry(10)
    assert rig.outbox.depth() == 0
    assert rig.sql("SELECT transaction_id, stopped, cost, refund FROM sessions") == [(transaction_id, 1, "6.29", "3.71")]
    assert rig.sql("SELECT amount FROM wallet_ledger") == [("3.71",)]
    stored = success_result_of(rig.ledger.lookup(CP, transaction_id))
    assert stored.session_id is not None and stored.stopped  # the session did not undo the stop


def test_stop_delivered_late_reads_the_session_from_disk(rig, monkeypatch):
    """A stop whose delivery waits until the transaction left memory is billed from the session on disk."""
    transaction_id = success_result_of(start(rig))["transactionId"]
    rig.backend.modes["stop_session"] = "down"
    success_result_of(stop(rig, transaction_id))
    evict_all(rig.ledger, rig.clock, monkeypatch)
    del rig.backend.modes["stop_session"]
    rig.retry(10)
    assert rig.outbox.depth() == 0
    assert rig.sql("SELECT stopped, cost, refund FROM sessions") == [(1, "6.29", "3.71")]
    assert rig.sql("SELECT amount FROM wallet_ledger") == [("3.71",)]


def test_stop_not_durable_reopens_on_disk(rig, monkeypatch):
    """A stop whose writes failed is open again on disk too: its retry, once evicted, stops it for real."""
    transaction_id = success_result_of(start(rig))["transactionId"]
    real = rig.publisher.publish
    rig.publisher.publish = lambda event: fail(OSError("disk full"))
    failure_result_of(stop(rig, transaction_id), OSError)
    rig.publisher.publish = real
    evict_all(rig.ledger, rig.clock, monkeypatch)
    assert success_result_of(stop(rig, transaction_id)) == {}
    assert len(rig.publisher.of("charging.stopped")) == 1
    assert success_result_of(rig.ledger.lookup(CP, transaction_id)).stopped


def test_start_not_durable_is_forgotten_on_disk(rig):
    """A start whose writes failed is deleted from disk too: its repeat starts afresh instead of reading it back."""
    real = rig.publisher.publish
    rig.publisher.publish = lambda event: fail(OSError("disk full"))
    failure_result_of(start(rig), OSError)
    rig.publisher.publish = real
    assert success_result_of(rig.ledger.lookup_start((CP, 1, "TAG1", T0, 1000))) is None
    answer = success_result_of(start(rig))
    assert len(rig.backend.called("start_session")) == 2
    assert [e["transactionId"] for e in rig.publisher.of("charging.started")] == [answer["transactionId"]]
    assert success_result_of(rig.ledger.lookup_start((CP, 1, "TAG1", T0, 1000))).transaction_id == answer["transactionId"]


def test_memory_stays_bounded(db, clock):
    """Thousands of sessions: memory holds the open ones and at most RECENT_MAX stopped ones; then RECENT_AGE empties it."""
    db.auto = False
    ledger = Ledger(db, clock)
    ledger.start()
    db.commit()
    total = 3 * ledger_module.RECENT_MAX
    for n in range(total):
        ledger.record_start(tx(n + 1))
        _, stopped = ledger.record_stop(CP, n + 1, n + 100, "t", "Local")
        clock.advance(0.01)
        if n % 1000 == 999:
            db.commit()
            success_result_of(stopped)
        assert len(ledger._transactions) <= ledger_module.RECENT_MAX + 1
    db.commit()
    assert len(ledger._transactions) == len(ledger._recent) == ledger_module.RECENT_MAX
    assert len(ledger._by_key) == ledger_module.RECENT_MAX
    assert len(ledger.ids_in_use) == 0  # backend ids are not tracked
    db.auto = True
    assert success_result_of(db.read(lambda c: c.execute("SELECT count(*) FROM ledger_transactions").fetchone())) == (total,)
    assert success_result_of(ledger.lookup(CP, 1)).meter_stop == 100  # the first, from disk

    success_result_of(ledger.record_start(tx(total + 1)))  # open: stays
    clock.advance(ledger_module.RECENT_AGE + 1)
    ledger.record_stop(CP, total + 2, 1, "t", "Local")  # unknown: a stub, the only recent one left
    assert len(ledger._transactions) == 2 and len(ledger._recent) == 1


def test_open_transactions_leave_memory_after_a_day(db, clock):
    """An open transaction older than OPEN_IN_MEMORY leaves memory at the next prune; its stop reads it from disk."""
    ledger = started(db, clock)
    success_result_of(ledger.record_start(tx(1, session_id="s-1")))
    clock.advance(ledger_module.OPEN_IN_MEMORY + 1)
    success_result_of(ledger.prune())
    assert len(ledger._transactions) == 0
    found = success_result_of(ledger.lookup(CP, 1))
    assert found.session_id == "s-1" and not found.stopped
    assert success_result_of(ledger.lookup(CP, 1)) is found  # one object per transaction


def test_restart_loads_open_and_recent_only(db, clock, monkeypatch):
    """At start: open transactions of the last day and the most recent stopped ones (by count and age); the rest on disk."""
    monkeypatch.setattr(ledger_module, "RECENT_MAX", 2)
    ledger = started(db, clock)
    success_result_of(ledger.record_start(tx(1)))  # open, will be 2 days old
    clock.advance(2 * DAY)
    for n in (2, 3, 4, 5, 6):
        success_result_of(ledger.record_start(tx(n)))
    for n in (2, 3):
        success_result_of(ledger.record_stop(CP, n, 1, "t", "Local")[1])  # stopped 20 minutes ago
    clock.advance(20 * 60)
    for n in (4, 5):
        success_result_of(ledger.record_stop(CP, n, 1, "t", "Local")[1])
        clock.advance(1)

    again = started(db, clock)
    assert {key[1] for key in again._transactions} == {4, 5, 6}
    assert len(again._recent) == 2
    for n in (1, 2, 3):
        assert success_result_of(again.lookup(CP, n)).transaction_id == n
    assert again.cached_start((CP, 1, "TAG", T0, 6)).transaction_id == 6

    monkeypatch.setattr(ledger_module, "RECENT_MAX", 1)
    assert {key[1] for key in started(db, clock)._transactions} == {5, 6}


def test_counter_wraps_skipping_ids_on_disk_and_reusing_pruned_ones(db, clock, monkeypatch):
    """After a wrap, ids still on disk (even out of memory, even across a restart) are skipped; pruned ones come back."""
    monkeypatch.setattr(ledger_module, "COUNTER_MAX", 3)
    ledger = started(db, clock)
    ids = []
    for n in range(3):
        ids.append(ledger.assign_transaction_id(0))
        success_result_of(ledger.record_start(tx(ids[-1], meter_start=n, assigned=True), slot=0))
    success_result_of(ledger.record_stop(CP, ids[0], 5, "t", "Local")[1])
    evict_all(ledger, clock, monkeypatch)
    with pytest.raises(RuntimeError):
        ledger.assign_transaction_id(0)
    again = started(db, clock)
    with pytest.raises(RuntimeError):
        again.assign_transaction_id(0)

    clock.advance(2 * DAY)  # the stopped one is past its retention
    success_result_of(again.prune())
    assert again.assign_transaction_id(0) == ids[0]
    assert len(again.ids_in_use) == 2
    assert len(again.ids_in_use._slots[0]) == 1 << 17  # 128 kB, however many ids


def test_ids_held_by_another_row_stay_in_use(db, clock):
    """An id in the gateway's range held by a stub of another charger stays in use when the assigned row goes."""
    ledger = started(db, clock)
    assigned = ledger.assign_transaction_id(0)
    success_result_of(ledger.record_start(tx(assigned, assigned=True), slot=0))
    success_result_of(ledger.record_stop(CP, assigned, 5, "t", "Local")[1])
    success_result_of(ledger.record_stop("CP-2", assigned, 5, "t", "Local")[1])  # a charger repeating a foreign id
    clock.advance(1)
    success_result_of(ledger.record_stop("CP-2", assigned, 6, "t", "Local")[1])  # stays younger than the first
    clock.advance(2 * DAY - 0.5)
    success_result_of(ledger.prune())
    assert success_result_of(ledger.lookup(CP, assigned)) is None
    assert assigned in ledger.ids_in_use
    clock.advance(1)
    success_result_of(ledger.prune())
    assert assigned not in ledger.ids_in_use


def test_id_taken_while_a_prune_runs_stays_in_use(db, clock):
    """A prune that frees an id does not clear it when a row took that id again before the prune's answer came."""
    ledger = started(db, clock)
    assigned = ledger.assign_transaction_id(0)
    success_result_of(ledger.record_start(tx(assigned, assigned=True), slot=0))
    success_result_of(ledger.record_stop(CP, assigned, 5, "t", "Local")[1])
    clock.advance(2 * DAY + 1)
    db.auto = False
    pruned = ledger.prune()
    ledger.record_stop("CP-2", assigned, 5, "t", "Local")  # queued after the prune's delete
    db.commit()
    db.auto = True
    success_result_of(pruned)
    assert success_result_of(ledger.lookup("CP-2", assigned)) is not None
    assert assigned in ledger.ids_in_use


def test_stale_copy_does_not_undo_a_stop(db, clock, monkeypatch):
    """A copy that left memory while a caller held it writes only its session, not its old open state."""
    ledger = started(db, clock)
    success_result_of(ledger.record_start(tx(1)))
    held = ledger._transactions.get((CP, 1))
    evict_all(ledger, clock, monkeypatch)
    fresh = success_result_of(ledger.lookup(CP, 1))
    assert fresh is not held
    success_result_of(ledger.record_stop(CP, 1, 500, "t", "Local", fresh)[1])
    success_result_of(ledger.record_session(held, {"sessionId": "s-1"}))
    evict_all(ledger, clock, monkeypatch)
    stored = success_result_of(ledger.lookup(CP, 1))
    assert (stored.stopped, stored.meter_stop, stored.session_id) == (True, 500, "s-1")


@pytest_twisted.ensureDeferred
async def test_lookups_on_the_threaded_database(tmp_path, monkeypatch):
    """On the real database thread: concurrent lookups of an evicted transaction give one object; starts are found by key."""
    from twisted.internet import reactor

    db = Database(tmp_path / "gateway.sqlite", reactor, SCHEMA)
    db.open()
    try:
        ledger = Ledger(db, reactor)
        await bounded(ledger.start())
        await bounded(ledger.record_start(tx(7, session_id="s-7")))
        _, written = ledger.record_stop(CP, 7, 99, "t", "Local")
        await bounded(written)
        with monkeypatch.context() as m:
            m.setattr(ledger_module, "RECENT_MAX", 0)
            await bounded(ledger.prune())
        assert len(ledger._transactions) == 0
        one, two = ledger.lookup(CP, 7), ledger.lookup(CP, 7)
        no_result(one)
        first, second = await bounded(one), await bounded(two)
        assert first is second and first.session_id == "s-7" and first.stopped
        assert ledger._transactions.get((CP, 7)) is first
        by_key = await bounded(ledger.lookup_start((CP, 1, "TAG", T0, 7)))
        assert (by_key.transaction_id, by_key.meter_stop) == (7, 99)
        assert await bounded(ledger.lookup_start((CP, 1, "TAG", T0, 8))) is None
        assert await bounded(ledger.lookup(CP, 8)) is None
    finally:
        db.close()
