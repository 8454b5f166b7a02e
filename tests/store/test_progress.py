"""
Tests for L{ocpptw.store.progress_rows} through the L{ocpptw.store.ledger.Ledger}:
the progress of OCPP 2.0.1 TransactionEvents on disk, surviving a reopen,
bounded per charger, pruned with the transaction's end.
"""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from ocpptw.interfaces import ILedger
from ocpptw.store import progress_rows
from ocpptw.store.ledger import DAY, SCHEMA, Ledger
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import success_result_of


def opened(path, clock):
    db = InlineDatabase(path, SCHEMA)
    ledger = Ledger(db, clock)
    success_result_of(ledger.start())
    return db, ledger


def count(db, cp=None):
    query = "SELECT count(*) FROM ledger_tx_progress" + ("" if cp is None else " WHERE cp = ?")
    return success_result_of(db.read(lambda conn: conn.execute(query, () if cp is None else (cp,)).fetchone()))[0]


def test_progress_survives_a_reopen(tmp_path, clock):
    """What one ledger wrote, the next one over the same file reads back; unknown transactions are None."""
    db, ledger = opened(tmp_path / "gateway.sqlite", clock)
    verifyObject(ILedger, ledger)
    progress = {"first": 1000, "answers": [[0, {"idTokenInfo": {"status": "Accepted"}}]]}
    success_result_of(ledger.record_progress("CS-1", "tx-1", progress, ended=False, new=True))
    db.close()
    db, ledger = opened(tmp_path / "gateway.sqlite", clock)
    assert success_result_of(ledger.progress("CS-1", "tx-1")) == progress
    assert success_result_of(ledger.progress("CS-1", "tx-2")) is None
    assert success_result_of(ledger.progress("CS-2", "tx-1")) is None
    db.close()


def test_a_charger_cannot_grow_it_without_bound(clock, monkeypatch):
    """A new transaction beyond MAX_PER_CHARGER pushes that charger's least recently written one out, no other's."""
    monkeypatch.setattr(progress_rows, "MAX_PER_CHARGER", 5)
    db, ledger = opened(":memory:", clock)
    success_result_of(ledger.record_progress("OTHER", "tx-0", {}, ended=False, new=True))
    for n in range(12):
        clock.advance(1)
        success_result_of(ledger.record_progress("CS-1", f"tx-{n}", {}, ended=False, new=True))
        clock.advance(1)
        success_result_of(ledger.record_progress("CS-1", "tx-0", {"n": n}, ended=False, new=False))  # kept busy
    assert count(db, "CS-1") == 5
    assert success_result_of(ledger.progress("CS-1", "tx-0")) == {"n": 11}
    assert success_result_of(ledger.progress("CS-1", "tx-11")) == {}
    assert success_result_of(ledger.progress("CS-1", "tx-1")) is None
    assert count(db, "OTHER") == 1
    db.close()


@pytest.mark.parametrize(("ended", "kept_for"), [(True, 2 * DAY), (False, 30 * DAY)])
def test_pruned_with_the_ledgers_transactions(clock, ended, kept_for):
    """An ended transaction's progress goes after the stopped retention, an open one's after the open retention."""
    db, ledger = opened(":memory:", clock)
    success_result_of(ledger.record_progress("CS-1", "tx-1", {}, ended=ended, new=True))
    clock.advance(kept_for - 60)
    success_result_of(ledger.prune())
    assert count(db) == 1
    clock.advance(120)
    success_result_of(ledger.prune())
    assert count(db) == 0
    db.close()
