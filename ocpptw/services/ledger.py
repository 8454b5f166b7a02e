# -*- test-case-name: tests.services.test_ledger -*-
"""
The gateway's own durable state, in C{DATA_DIR/gateway.sqlite} next to the
outbox: which transactionId belongs to which StartTransaction, which were
stopped, the counter for transactionIds the gateway assigns, the Authorize
cache and the last known charger records.  It never holds the backend's
data beyond what the gateway needs while the backend is away.

Everything is loaded into memory by L{Ledger.start}, so lookups on the hot
path are dict lookups.  Writes go through L{Database.write} (grouped
commits) and return Deferreds; callers wait for them before they answer a
charger.  Memory is bounded (about 3 kB a transaction): stopped
transactions older than C{retention} (2 days: chargers repeat a
transaction message within minutes or hours) and open ones older than
C{open_retention} (30 days) are pruned at start and every L{PRUNE_EVERY}
stops.

transactionIds the gateway assigns (see C{docs/architecture.md})::

    0x40000000 | (slot << 20) | counter

C{counter} (20 bits, from 1) is persisted per slot with the transaction
that used it, so a restart never reuses an id; after 2**20 - 1 ids it
wraps, skipping ids still in the ledger.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocpptw.services.billing import money

GATEWAY_ID_BASE = 0x40000000
COUNTER_BITS = 20
COUNTER_MAX = (1 << COUNTER_BITS) - 1
DAY = 86400.0

#: Prune the transactions in memory and on disk after this many stops.
PRUNE_EVERY = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_transactions (
    cp TEXT NOT NULL,
    transaction_id INTEGER NOT NULL,
    connector_id INTEGER,
    id_tag TEXT,
    meter_start INTEGER,
    started_at TEXT,
    reservation_id INTEGER,
    assigned INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    session_id TEXT,
    user_id TEXT,
    prepaid TEXT,
    price TEXT,
    currency TEXT,
    id_tag_info TEXT,
    created REAL NOT NULL,
    stopped INTEGER NOT NULL DEFAULT 0,
    meter_stop INTEGER,
    stopped_at TEXT,
    reason TEXT,
    stopped_on REAL,
    PRIMARY KEY (cp, transaction_id)
);
CREATE TABLE IF NOT EXISTS ledger_counters (
    slot INTEGER PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_auth (
    id_tag TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_chargers (
    cp TEXT PRIMARY KEY,
    record TEXT,
    accepted INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
"""

_COLUMNS = (
    "cp", "transaction_id", "connector_id", "id_tag", "meter_start", "started_at", "reservation_id",
    "assigned", "rejected", "session_id", "user_id", "prepaid", "price", "currency", "id_tag_info",
    "created", "stopped", "meter_stop", "stopped_at", "reason", "stopped_on",
)
_INSERT = (
    f"INSERT OR REPLACE INTO ledger_transactions ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)

DedupeKey = tuple[str, Any, Any, Any, Any]


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


@dataclass
class Transaction:
    """
    One transaction as the gateway knows it.

    @ivar assigned: the gateway assigned the id (the backend was away);
        the session is reconciled later.
    @ivar rejected: the backend refused the start (4xx); there is nothing
        to reconcile or stop at the backend.
    @ivar session_id: the backend's session, C{None} until reconciled.
    @ivar timestamp: StartTransaction's C{timestamp} exactly as sent (part
        of the dedupe key).
    """

    cp: str
    transaction_id: int
    connector_id: int | None = None
    id_tag: str | None = None
    meter_start: int | None = None
    timestamp: str | None = None
    reservation_id: int | None = None
    assigned: bool = False
    rejected: bool = False
    session_id: str | None = None
    user_id: str | None = None
    prepaid: Decimal | None = None
    price: Decimal | None = None
    currency: str | None = None
    id_tag_info: dict = field(default_factory=lambda: {"status": "Accepted"})
    created: float = 0.0
    stopped: bool = False
    meter_stop: int | None = None
    stopped_at: str | None = None
    reason: str | None = None
    stopped_on: float | None = None

    @property
    def dedupe_key(self) -> DedupeKey | None:
        if self.timestamp is None:
            return None
        return (self.cp, self.connector_id, self.id_tag, self.timestamp, self.meter_start)

    def start_body(self) -> dict:
        """
        The C{POST /api/charging-session/start} body that reconciles a
        gateway-assigned transaction (with C{transactionId}).
        """
        body: dict[str, Any] = {
            "deviceId": self.cp,
            "connectorId": self.connector_id,
            "idTag": self.id_tag,
            "meterStart": self.meter_start,
            "timestamp": self.timestamp,
        }
        if self.reservation_id is not None:
            body["reservationId"] = self.reservation_id
        body["transactionId"] = self.transaction_id
        return body

    def apply_session(self, answer: dict) -> None:
        """
        Take the backend's session data (C{POST /api/charging-session/start}
        answer, or an C{active-sessions} entry).
        """
        if answer.get("sessionId") is not None:
            self.session_id = str(answer["sessionId"])
        if answer.get("userId") is not None:
            self.user_id = str(answer["userId"])
        if answer.get("prepaidAmount") is not None:
            self.prepaid = money(answer["prepaidAmount"])
        if answer.get("pricePerKwh") is not None:
            self.price = money(answer["pricePerKwh"])
        if answer.get("currency") is not None:
            self.currency = str(answer["currency"])

    def _row(self) -> tuple:
        return (
            self.cp, self.transaction_id, self.connector_id, self.id_tag, self.meter_start, self.timestamp,
            self.reservation_id, int(self.assigned), int(self.rejected), self.session_id, self.user_id,
            _text(self.prepaid), _text(self.price), self.currency, json.dumps(self.id_tag_info), self.created,
            int(self.stopped), self.meter_stop, self.stopped_at, self.reason, self.stopped_on,
        )

    @classmethod
    def _from_row(cls, row: sqlite3.Row | tuple) -> Transaction:
        v = dict(zip(_COLUMNS, row))
        return cls(
            cp=v["cp"], transaction_id=v["transaction_id"], connector_id=v["connector_id"], id_tag=v["id_tag"],
            meter_start=v["meter_start"], timestamp=v["started_at"], reservation_id=v["reservation_id"],
            assigned=bool(v["assigned"]), rejected=bool(v["rejected"]), session_id=v["session_id"],
            user_id=v["user_id"], prepaid=_decimal(v["prepaid"]), price=_decimal(v["price"]),
            currency=v["currency"], id_tag_info=json.loads(v["id_tag_info"] or '{"status": "Accepted"}'),
            created=v["created"], stopped=bool(v["stopped"]), meter_stop=v["meter_stop"],
            stopped_at=v["stopped_at"], reason=v["reason"], stopped_on=v["stopped_on"],
        )


class Ledger:
    """
    The gateway's durable state, served from memory.

    @param db: an L{ocpptw.store.sqlite.Database} whose schema includes
        L{SCHEMA} (it may be shared with the outbox).
    @param clock: gives the times stored for pruning and cache ages.
    @param retention: seconds a stopped transaction is kept.
    @param open_retention: seconds a transaction that never stopped is kept.
    """

    log = Logger()

    def __init__(
        self,
        db: Any,
        clock: IReactorTime,
        retention: float = 2 * DAY,
        open_retention: float = 30 * DAY,
    ) -> None:
        self._db = db
        self._clock = clock
        self._retention = retention
        self._open_retention = open_retention
        self._transactions: dict[tuple[str, int], Transaction] = {}
        self._by_key: dict[DedupeKey, Transaction] = {}
        self._ids: dict[int, int] = {}
        self._counters: dict[int, int] = {}
        self._auth: dict[str, tuple[dict, float]] = {}
        self._chargers: dict[str, tuple[dict | None, bool]] = {}
        self._stops_since_prune = 0
        self.started = False

    # -- loading ---------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Prune, then load everything into memory.
        """
        now = self._clock.seconds()
        stopped_before, open_before = now - self._retention, now - self._open_retention

        def load(conn: sqlite3.Connection) -> tuple:
            _prune(conn, stopped_before, open_before)
            conn.execute("DELETE FROM ledger_auth WHERE stored_at < ?", (stopped_before,))
            return (
                conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM ledger_transactions").fetchall(),
                conn.execute("SELECT slot, value FROM ledger_counters").fetchall(),
                conn.execute("SELECT id_tag, info, stored_at FROM ledger_auth").fetchall(),
                conn.execute("SELECT cp, record, accepted FROM ledger_chargers").fetchall(),
            )

        return self._db.write(load).addCallback(self._loaded)

    def _loaded(self, rows: tuple) -> None:
        transactions, counters, auth, chargers = rows
        for row in transactions:
            self._index(Transaction._from_row(row))
        self._counters = {slot: value for slot, value in counters}
        self._auth = {tag: (json.loads(info), stored_at) for tag, info, stored_at in auth}
        self._chargers = {
            cp: (json.loads(record) if record else None, bool(accepted)) for cp, record, accepted in chargers
        }
        self.started = True

    def _index(self, tx: Transaction) -> None:
        self._transactions[(tx.cp, tx.transaction_id)] = tx
        self._ids[tx.transaction_id] = self._ids.get(tx.transaction_id, 0) + 1
        key = tx.dedupe_key
        if key is not None:
            self._by_key[key] = tx

    def forget(self, tx: Transaction) -> None:
        """
        Drop C{tx} from memory (its start was not made durable).
        """
        if self._transactions.pop((tx.cp, tx.transaction_id), None) is None:
            return
        left = self._ids.get(tx.transaction_id, 1) - 1
        if left:
            self._ids[tx.transaction_id] = left
        else:
            self._ids.pop(tx.transaction_id, None)
        key = tx.dedupe_key
        if key is not None and self._by_key.get(key) is tx:
            del self._by_key[key]

    def __len__(self) -> int:
        return len(self._transactions)

    # -- transactions ------------------------------------------------------------

    def get(self, cp: str, transaction_id: int) -> Transaction | None:
        """
        The transaction C{transaction_id} of charger C{cp}, or C{None}.
        """
        return self._transactions.get((cp, transaction_id))

    def find_start(self, cp: str, connector_id: Any, id_tag: Any, timestamp: Any, meter_start: Any) -> Transaction | None:
        """
        The transaction an earlier, identical StartTransaction created.
        """
        return self._by_key.get((cp, connector_id, id_tag, timestamp, meter_start))

    def assign_transaction_id(self, slot: int) -> int:
        """
        The next gateway-assigned transactionId for C{slot}.  The counter
        is persisted by the L{record_start} of the transaction using it.
        """
        counter = self._counters.get(slot, 0)
        for _ in range(COUNTER_MAX):
            counter = counter % COUNTER_MAX + 1
            candidate = GATEWAY_ID_BASE | (slot << COUNTER_BITS) | counter
            if candidate not in self._ids:
                self._counters[slot] = counter
                return candidate
        raise RuntimeError(f"every transactionId of slot {slot} is in use")

    def record_start(self, tx: Transaction, slot: int | None = None) -> Deferred[None]:
        """
        Remember a started transaction (and, for a gateway-assigned id, the
        counter of C{slot}).  In memory at once; fires once committed.
        """
        tx.created = tx.created or self._clock.seconds()
        self._index(tx)
        row = tx._row()
        counter = None if slot is None else self._counters.get(slot)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_INSERT, row)
            if counter is not None:
                conn.execute(
                    "INSERT INTO ledger_counters (slot, value) VALUES (?, ?) "
                    "ON CONFLICT (slot) DO UPDATE SET value = excluded.value",
                    (slot, counter),
                )

        return self._db.write(write)

    def record_session(self, tx: Transaction, answer: dict) -> Deferred[None]:
        """
        The backend's session for C{tx} is known now (reconciliation).
        """
        tx.apply_session(answer)
        return self._save(tx)

    def record_stop(
        self, cp: str, transaction_id: int, meter_stop: int, stopped_at: str, reason: str
    ) -> tuple[Transaction, Deferred[None]]:
        """
        Mark a transaction stopped; an unknown one is remembered as a
        stopped stub, so its repeats are recognised too.

        @return: the transaction and a Deferred that fires once committed.
        """
        tx = self.get(cp, transaction_id)
        if tx is None:
            tx = Transaction(cp=cp, transaction_id=transaction_id, id_tag_info={}, created=self._clock.seconds())
            self._index(tx)
        tx.stopped = True
        tx.meter_stop = meter_stop
        tx.stopped_at = stopped_at
        tx.reason = reason
        tx.stopped_on = self._clock.seconds()
        d = self._save(tx)
        self._stops_since_prune += 1
        if self._stops_since_prune >= PRUNE_EVERY:
            self._stops_since_prune = 0
            self.prune().addErrback(lambda f: self.log.failure("pruning the ledger failed", f))
        return tx, d

    def _save(self, tx: Transaction) -> Deferred[None]:
        row = tx._row()
        return self._db.write(_statement(_INSERT, row))

    def prune(self) -> Deferred[None]:
        """
        Forget stopped transactions older than C{retention} and open ones
        older than C{open_retention}, in memory and on disk.
        """
        now = self._clock.seconds()
        stopped_before, open_before = now - self._retention, now - self._open_retention
        for tx in list(self._transactions.values()):
            if (tx.stopped and (tx.stopped_on or 0) < stopped_before) or (not tx.stopped and tx.created < open_before):
                self.forget(tx)
        return self._db.write(lambda conn: _prune(conn, stopped_before, open_before))

    # -- Authorize cache -------------------------------------------------------

    def auth_get(self, id_tag: str) -> tuple[dict, float] | None:
        """
        C{(idTagInfo, stored_at)} of the last backend answer for C{id_tag}.
        """
        return self._auth.get(id_tag)

    def auth_put(self, id_tag: str, info: dict) -> Deferred[None]:
        """
        Remember the backend's answer for C{id_tag}.
        """
        stored_at = self._clock.seconds()
        self._auth[id_tag] = (info, stored_at)
        text = json.dumps(info)
        return self._db.write(
            _statement("INSERT OR REPLACE INTO ledger_auth (id_tag, info, stored_at) VALUES (?, ?, ?)", (id_tag, text, stored_at))
        )

    # -- charger records -------------------------------------------------------

    def charger(self, cp: str) -> dict | None:
        """
        The last known charger record (as the backend gave it), or C{None}.
        """
        entry = self._chargers.get(cp)
        return None if entry is None else entry[0]

    def charger_accepted(self, cp: str) -> bool:
        """
        Whether this charger's last BootNotification was accepted.
        """
        entry = self._chargers.get(cp)
        return entry is not None and entry[1]

    def remember_charger(self, cp: str, record: dict | None = None, accepted: bool | None = None) -> Deferred[None]:
        """
        Keep C{record} (when given) and the accepted flag (when given).
        Writes only when something changed.
        """
        old_record, old_accepted = self._chargers.get(cp, (None, False))
        new_record = old_record if record is None else record
        new_accepted = old_accepted if accepted is None else accepted
        if cp in self._chargers and new_record == old_record and new_accepted == old_accepted:
            return succeed(None)
        self._chargers[cp] = (new_record, new_accepted)
        text = None if new_record is None else json.dumps(new_record)
        now = self._clock.seconds()
        return self._db.write(
            _statement(
                "INSERT OR REPLACE INTO ledger_chargers (cp, record, accepted, updated) VALUES (?, ?, ?, ?)",
                (cp, text, int(new_accepted), now),
            )
        )

    def forget_charger(self, cp: str) -> Deferred[None]:
        """
        The backend no longer knows C{cp}: drop its record and acceptance.
        """
        if self._chargers.pop(cp, None) is None:
            return succeed(None)
        return self._db.write(_statement("DELETE FROM ledger_chargers WHERE cp = ?", (cp,)))


def _statement(sql: str, params: tuple) -> Any:
    def run(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    return run


def _prune(conn: sqlite3.Connection, stopped_before: float, open_before: float) -> None:
    conn.execute("DELETE FROM ledger_transactions WHERE stopped = 1 AND stopped_on < ?", (stopped_before,))
    conn.execute("DELETE FROM ledger_transactions WHERE stopped = 0 AND created < ?", (open_before,))
