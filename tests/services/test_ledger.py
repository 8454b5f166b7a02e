"""
Tests for L{ocpptw.store.ledger}: the gateway's durable state, on disk,
bounded, and surviving restarts (what memory holds:
L{tests.services.test_ledger_memory}).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from ocpptw.interfaces import ILedger
from ocpptw.store import ledger as ledger_module
from ocpptw.store.ledger import DAY, GATEWAY_ID_BASE, SCHEMA, Ledger, Transaction
from ocpptw.store.sqlite import Database, InlineDatabase
from tests.helpers import bounded, success_result_of


@pytest.fixture
def db():
    database = InlineDatabase(schema=SCHEMA)
    yield database
    database.close()


def started(db, clock, **kw):
    ledger = Ledger(db, clock, **kw)
    success_result_of(ledger.start())
    return ledger


#: The dedupe key of L{tx}'s defaults.
KEY = ("CP-1", 1, "TAG", "2026-09-22T08:00:00Z", 1000)


def tx(cp="CP-1", transaction_id=7, **kw):
    fields = dict(connector_id=1, id_tag="TAG", meter_start=1000, timestamp="2026-09-22T08:00:00Z")
    fields.update(kw)
    return Transaction(cp=cp, transaction_id=transaction_id, **fields)


def test_the_ledger_provides_what_the_services_use(db, clock):
    """The services know the ledger only as ILedger, and Ledger provides it."""
    verifyObject(ILedger, Ledger(db, clock))


def test_transactions_survive_a_restart(db, clock):
    """Starts, sessions and stops are on disk and come back at start."""
    ledger = started(db, clock)
    t = tx(session_id="s-1", prepaid=Decimal("10.00"), price=Decimal("0.50"), currency="EUR", user_id="u")
    success_result_of(ledger.record_start(t))
    _, d = ledger.record_stop("CP-1", 7, 13580, "2026-09-22T09:00:00.000Z", "Local")
    success_result_of(d)
    again = started(db, clock)
    loaded = success_result_of(again.lookup("CP-1", 7))
    assert loaded == t
    assert loaded.prepaid == Decimal("10.00") and loaded.stopped and loaded.meter_stop == 13580
    assert again.cached_start(KEY) is loaded
    assert success_result_of(again.lookup("CP-2", 7)) is None


def test_gateway_ids_follow_the_scheme_and_persist(db, clock):
    """Assigned ids are 0x40000000 | slot << 20 | counter, and a restart continues the counter."""
    ledger = started(db, clock)
    first = ledger.assign_transaction_id(5)
    assert first == GATEWAY_ID_BASE | (5 << 20) | 1
    success_result_of(ledger.record_start(tx(transaction_id=first, assigned=True), slot=5))
    second = ledger.assign_transaction_id(5)
    success_result_of(ledger.record_start(tx(transaction_id=second, meter_start=2, assigned=True), slot=5))
    assert started(db, clock).assign_transaction_id(5) == second + 1
    assert started(db, clock).assign_transaction_id(6) == GATEWAY_ID_BASE | (6 << 20) | 1


def test_counter_wraps_and_skips_ids_in_use(db, clock, monkeypatch):
    """After the last counter value the ids wrap, skipping those still in the ledger."""
    monkeypatch.setattr(ledger_module, "COUNTER_MAX", 3)
    ledger = started(db, clock)
    ids = []
    for n in range(3):
        ids.append(ledger.assign_transaction_id(0))
        success_result_of(ledger.record_start(tx(transaction_id=ids[-1], meter_start=n), slot=0))
    assert [i & 0xFFFFF for i in ids] == [1, 2, 3]
    success_result_of(ledger.forget(success_result_of(ledger.lookup("CP-1", ids[1]))))
    assert ledger.assign_transaction_id(0) == ids[1]


def test_old_stopped_transactions_pruned(db, clock):
    """Stopped transactions older than the retention are dropped at start; open ones stay longer."""
    ledger = started(db, clock)
    success_result_of(ledger.record_start(tx(transaction_id=1)))
    success_result_of(ledger.record_start(tx(transaction_id=2, meter_start=2)))
    success_result_of(ledger.record_stop("CP-1", 1, 5, "t", "Local")[1])
    clock.advance(8 * DAY)
    again = started(db, clock)
    assert success_result_of(again.lookup("CP-1", 1)) is None
    assert success_result_of(again.lookup("CP-1", 2)) is not None
    assert success_result_of(again.lookup_start(KEY)) is None
    clock.advance(30 * DAY)
    assert success_result_of(started(db, clock).lookup("CP-1", 2)) is None


def test_unknown_stop_is_remembered(db, clock):
    """A stop for an unknown id becomes a stopped stub, so its repeat is recognised."""
    ledger = started(db, clock)
    stub, d = ledger.record_stop("CP-1", 99, 10, "t", "Local")
    success_result_of(d)
    assert stub.stopped and stub.meter_start is None
    assert success_result_of(started(db, clock).lookup("CP-1", 99)).stopped


def test_auth_cache_and_charger_records(db, clock):
    """Authorize answers and charger records are kept; unchanged records are not rewritten."""
    ledger = started(db, clock)
    success_result_of(ledger.auth_put("TAG", {"status": "Accepted"}))
    success_result_of(ledger.remember_charger("CP-1", {"deviceId": "CP-1", "authorizationKeyHash": "sha256:aa:bb"}, True))
    writes = db.writes
    success_result_of(ledger.remember_charger("CP-1", {"deviceId": "CP-1", "authorizationKeyHash": "sha256:aa:bb"}))
    assert db.writes == writes
    again = started(db, clock)
    assert again.auth_get("TAG") == ({"status": "Accepted"}, clock.seconds())
    assert again.charger("CP-1")["authorizationKeyHash"] == "sha256:aa:bb"
    assert again.charger_accepted("CP-1")
    success_result_of(again.forget_charger("CP-1"))
    assert started(db, clock).charger("CP-1") is None


def test_start_body_reconciles_with_the_assigned_id():
    """The reconciling start carries the gateway's transactionId and the charger's fields."""
    assert tx(transaction_id=GATEWAY_ID_BASE + 1, reservation_id=4).start_body() == {
        "deviceId": "CP-1", "connectorId": 1, "idTag": "TAG", "meterStart": 1000,
        "timestamp": "2026-09-22T08:00:00Z", "reservationId": 4, "transactionId": GATEWAY_ID_BASE + 1,
    }


@pytest_twisted.ensureDeferred
async def test_real_database_on_disk(tmp_path):
    """On the threaded Database in DATA_DIR the ledger writes, reloads and prunes the same."""
    from twisted.internet import reactor

    path = tmp_path / "gateway.sqlite"
    db = Database(path, reactor, SCHEMA)
    db.open()
    try:
        ledger = Ledger(db, reactor)
        await bounded(ledger.start())
        assigned = ledger.assign_transaction_id(1)
        await bounded(ledger.record_start(tx(transaction_id=assigned, assigned=True), slot=1))
        held = await bounded(ledger.lookup("CP-1", assigned))
        await bounded(ledger.record_session(held, {"sessionId": "s-9", "pricePerKwh": 0.3}))
    finally:
        db.close()
    db = Database(path, reactor, SCHEMA)
    db.open()
    try:
        again = Ledger(db, reactor)
        await bounded(again.start())
        loaded = await bounded(again.lookup("CP-1", assigned))
        assert (loaded.session_id, loaded.price, loaded.assigned) == ("s-9", Decimal("0.3"), True)
        assert again.assign_transaction_id(1) == assigned + 1
    finally:
        db.close()
