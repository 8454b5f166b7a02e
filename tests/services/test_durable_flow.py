"""
The session path on the real threaded databases in C{DATA_DIR}: answers wait
for real commits, an outage at start is reconciled by the outbox, and a
restart neither loses nor repeats a stop or a refund.  Deadlines and backoff
run on a L{Clock}; database results arrive through the real reactor.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest_twisted

from ocpptw.services.chargers import ChargerService
from ocpptw.services.delivery import register_deliveries
from ocpptw.services.sessions import SessionService
from ocpptw.services.wallet import WalletService
from ocpptw.store import embedded
from ocpptw.store import ledger as ledger_module
from ocpptw.store import outbox as outbox_module
from ocpptw.store.ledger import GATEWAY_ID_BASE, Ledger
from ocpptw.store.sqlite import Database
from tests.helpers import bounded, until
from tests.services.support import EPOCH, RecordingPublisher, SwitchableBackend

CP = "CP-1"


class Gateway:
    """The service parts on real databases in C{path}."""

    def __init__(self, path, clock, store=None):
        from twisted.internet import reactor

        self.clock = clock
        self.state = Database(path / "gateway.sqlite", reactor, outbox_module.SCHEMA + ledger_module.SCHEMA)
        self.state.open()
        self.store_db = store or Database(path / "embedded.sqlite", reactor, embedded.SCHEMA)
        if isinstance(self.store_db, Database):
            self.store_db.open()
        self.backend = SwitchableBackend(embedded.EmbeddedBackend(self.store_db, clock, price_per_kwh=Decimal("0.50")))
        self.outbox = outbox_module.Outbox(self.state, clock, max_age=86400.0, initial_delay=1.0, max_delay=4.0)
        self.ledger = Ledger(self.state, clock)
        self.publisher = RecordingPublisher()
        wallet = WalletService(self.backend)
        self.chargers = ChargerService(self.backend, self.outbox, self.publisher, self.ledger, clock, instance="gw")
        self.sessions = SessionService(self.backend, self.outbox, self.publisher, self.ledger, clock,
                                       start_deadline=5.0, instance_slot=2, instance="gw")
        register_deliveries(self.outbox, self.backend, self.ledger, wallet)

    async def start(self):
        await bounded(self.ledger.start())
        await bounded(self.outbox.start())

    async def stop(self, keep_store=False):
        await bounded(self.outbox.stop())
        self.state.close()
        if not keep_store:
            self.store_db.close()

    def now(self):
        return datetime.fromtimestamp(self.clock.seconds(), tz=timezone.utc)

    async def settle(self, rounds=300):
        """Advance the clock a second at a time until the outbox is empty."""
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        for _ in range(rounds):
            if self.outbox.depth() == 0:
                return
            self.clock.advance(1)
            await deferLater(reactor, 0.01, lambda: None)
        raise AssertionError(f"outbox still holds {self.outbox.depth()} entries")

    async def rows(self, query, *params):
        return await bounded(self.store_db.read(lambda c: c.execute(query, params).fetchall()))


@pytest_twisted.ensureDeferred
async def test_outage_at_start_reconciled_and_restart_safe(tmp_path, clock):
    """Deadline passes -> gateway id; stop during the outage; backend back -> start, stop, refund once; restart repeats nothing."""
    clock.advance(EPOCH)
    gw = Gateway(tmp_path, clock)
    await gw.start()
    try:
        boot = {"chargePointVendor": "Acme", "chargePointModel": "Fast-22"}
        assert (await bounded(gw.chargers.boot(CP, boot, gw.now())))["status"] == "Accepted"
        await bounded(gw.store_db.write(lambda c: c.execute(
            "INSERT INTO id_tags (id_tag, status, user_id, prepaid_amount) VALUES ('TAG1', 'Accepted', 'u-1', '10.00')")))

        gw.backend.mode = "hang"
        start = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-09-22T08:00:00Z"}
        d = gw.sessions.start(CP, start, gw.now())
        await until(lambda: gw.backend.called("start_session"))  # after the ledger's disk lookup
        clock.advance(5)
        answer = await bounded(d)
        tx = answer["transactionId"]
        assert tx == GATEWAY_ID_BASE | (2 << 20) | 1
        assert answer["idTagInfo"] == {"status": "Accepted"}

        gw.backend.mode = "down"
        stop = {"transactionId": tx, "meterStop": 13580, "timestamp": "2026-09-22T09:00:00Z", "reason": "Local"}
        assert await bounded(gw.sessions.stop(CP, stop, gw.now())) == {}
        again = await bounded(gw.sessions.start(CP, start, gw.now()))
        assert again["transactionId"] == tx
        await gw.stop(keep_store=True)

        # restart while the backend is still away: nothing is lost
        gw = Gateway(tmp_path, clock, store=gw.store_db)
        await gw.start()
        assert gw.outbox.depth() == 2
        assert await bounded(gw.sessions.stop(CP, stop, gw.now())) == {}  # the charger repeats its stop
        assert gw.outbox.depth() == 2
        gw.backend.mode = "up"
        await gw.settle()
        order = [name for name, _ in gw.backend.calls if name in ("start_session", "stop_session", "refund")]
        assert order == ["start_session", "stop_session", "refund"]
        assert await gw.rows("SELECT transaction_id, stopped, energy_wh, cost, refund FROM sessions") == [
            (tx, 1, 12580, "6.29", "3.71")
        ]
        assert await gw.rows("SELECT amount, user_id FROM wallet_ledger") == [("3.71", "u-1")]
    finally:
        await gw.stop()
