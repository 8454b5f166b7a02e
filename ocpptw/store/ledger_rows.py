# -*- test-case-name: tests.services.test_ledger,tests.services.test_ledger_memory -*-
"""
How L{ocpptw.store.ledger} stores transactions: the L{Transaction}
record, the schema of C{DATA_DIR/gateway.sqlite}'s ledger tables and the
SQL the ledger runs on the database thread.

Indexes of C{ledger_transactions}, besides its primary key
C{(cp, transaction_id)}: C{(cp, started_at)} finds a repeated
StartTransaction; C{stopped_on} of stopped rows and C{created} of open ones
make pruning and loading cost what they return, not the table's size; and
C{transaction_id} of the gateway's range (normally empty: only ids the
gateway assigned while the backend was away) gives the ids in use.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ocpptw.services.billing import money

GATEWAY_ID_BASE = 0x40000000
COUNTER_BITS = 20

#: Selects the rows of gateway-range ids.  A literal, so that SQLite may use
#: the partial index of that range.
GATEWAY_RANGE = f"transaction_id >= {GATEWAY_ID_BASE}"

SCHEMA = f"""
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
CREATE INDEX IF NOT EXISTS ledger_transactions_start ON ledger_transactions (cp, started_at);
CREATE INDEX IF NOT EXISTS ledger_transactions_stopped ON ledger_transactions (stopped_on) WHERE stopped = 1;
CREATE INDEX IF NOT EXISTS ledger_transactions_open ON ledger_transactions (created) WHERE stopped = 0;
CREATE INDEX IF NOT EXISTS ledger_transactions_gateway_ids ON ledger_transactions (transaction_id)
    WHERE {GATEWAY_RANGE};
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
_VALUES = f"({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
INSERT = f"INSERT OR REPLACE INTO ledger_transactions {_VALUES}"


def _upsert(columns: tuple[str, ...]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns)
    return f"INSERT INTO ledger_transactions {_VALUES} ON CONFLICT (cp, transaction_id) DO UPDATE SET {updates}"


UPSERT_SESSION = _upsert(("session_id", "user_id", "prepaid", "price", "currency", "meter_start"))
UPSERT_STOP = _upsert(("stopped", "meter_stop", "stopped_at", "reason", "stopped_on"))
SELECT = f"SELECT {', '.join(_COLUMNS)} FROM ledger_transactions"
BY_ID = f"{SELECT} WHERE cp = ? AND transaction_id = ?"
BY_START = (
    f"{SELECT} WHERE cp = ? AND started_at = ? AND connector_id = ? AND id_tag = ? AND meter_start = ? "
    "ORDER BY created DESC LIMIT 1"
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


def statement(sql: str, params: tuple) -> Any:
    def run(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    return run


def fetch_one(sql: str, params: tuple) -> Callable[[sqlite3.Connection], tuple | None]:
    def run(conn: sqlite3.Connection) -> tuple | None:
        return conn.execute(sql, params).fetchone()

    return run


def unheld(conn: sqlite3.Connection, transaction_ids: Iterable[Any]) -> list[int]:
    """
    Those of C{transaction_ids} in the gateway's range that no row holds.
    """
    query = f"SELECT 1 FROM ledger_transactions WHERE transaction_id = ? AND {GATEWAY_RANGE} LIMIT 1"
    return [
        transaction_id
        for transaction_id in set(transaction_ids)
        if type(transaction_id) is int
        and transaction_id >= GATEWAY_ID_BASE
        and conn.execute(query, (transaction_id,)).fetchone() is None
    ]


def prune_rows(conn: sqlite3.Connection, stopped_before: float, open_before: float) -> list[int]:
    """
    Delete the stopped transactions older than C{stopped_before} and the
    open ones older than C{open_before}.

    @return: the gateway-range ids that no row holds any more.
    """
    # Through the same indexes as the deletes (O(rows deleted)); the range
    # test is in Python so that SQLite does not prefer the range's index.
    doomed = [
        row[0]
        for query, before in (
            ("SELECT transaction_id FROM ledger_transactions WHERE stopped = 1 AND stopped_on < ?", stopped_before),
            ("SELECT transaction_id FROM ledger_transactions WHERE stopped = 0 AND created < ?", open_before),
        )
        for row in conn.execute(query, (before,))
        if type(row[0]) is int and row[0] >= GATEWAY_ID_BASE
    ]
    conn.execute("DELETE FROM ledger_transactions WHERE stopped = 1 AND stopped_on < ?", (stopped_before,))
    conn.execute("DELETE FROM ledger_transactions WHERE stopped = 0 AND created < ?", (open_before,))
    return unheld(conn, doomed)
