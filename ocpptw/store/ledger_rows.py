# -*- test-case-name: tests.services.test_ledger,tests.services.test_ledger_memory -*-
"""
How L{ocpptw.store.ledger} stores transactions: the rows of a
L{ocpptw.services.model.Transaction}, the schema of
C{DATA_DIR/gateway.sqlite}'s ledger tables and the SQL the ledger runs on
the database thread.

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
from decimal import Decimal
from typing import Any

from ocpptw.services.model import Transaction
from ocpptw.store.migrations import Component, Schema, tables
from ocpptw.store.progress_rows import PROGRESS_TABLE, prune_progress

GATEWAY_ID_BASE = 0x40000000
COUNTER_BITS = 20

#: Selects the rows of gateway-range ids.  A literal, so that SQLite may use
#: the partial index of that range.
GATEWAY_RANGE = f"transaction_id >= {GATEWAY_ID_BASE}"

#: The newest layout of the ledger's tables, for a new file.
CURRENT = f"""
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
    ocpp_version TEXT,
    evse_id INTEGER,
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
{PROGRESS_TABLE}"""

#: 1 -> 2: the indexes that let the ledger keep only recent transactions in memory.
_TO_2 = """
CREATE INDEX ledger_transactions_start ON ledger_transactions (cp, started_at);
CREATE INDEX ledger_transactions_stopped ON ledger_transactions (stopped_on) WHERE stopped = 1;
CREATE INDEX ledger_transactions_open ON ledger_transactions (created) WHERE stopped = 0;
CREATE INDEX ledger_transactions_gateway_ids ON ledger_transactions (transaction_id)
    WHERE transaction_id >= 1073741824;
"""


#: 2 -> 3: each transaction's OCPP version and 2.0.1 EVSE (for the bodies
#: replayed after a restart), and the progress of 2.0.1 TransactionEvents.
#: Rows from before: an integer id is a 1.6 transaction, a string one
#: (stored with L{STRING_ID_PREFIX}) a 2.0.1 one.
_TO_3 = f"""
ALTER TABLE ledger_transactions ADD COLUMN ocpp_version TEXT;
ALTER TABLE ledger_transactions ADD COLUMN evse_id INTEGER;
UPDATE ledger_transactions SET ocpp_version = CASE WHEN typeof(transaction_id) = 'text' THEN '2.0.1' ELSE '1.6' END;
{PROGRESS_TABLE}"""


def _legacy(conn: sqlite3.Connection) -> int:
    """
    The layout of a file from before versions were recorded: 2 has the
    index of repeated starts; 0 for a new file.  The tables themselves are
    the same in both (every release made all of them at once).
    """
    if "ledger_transactions" not in tables(conn):
        return 0
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'ledger_transactions_start'")
    return 2 if found.fetchone() else 1


#: The ledger's tables in C{DATA_DIR/gateway.sqlite} (beside the outbox's).
SCHEMA = Schema.of(Component("ledger", CURRENT, (_TO_2, _TO_3), _legacy))

_COLUMNS = (
    "cp", "transaction_id", "connector_id", "id_tag", "meter_start", "started_at", "reservation_id",
    "assigned", "rejected", "session_id", "user_id", "prepaid", "price", "currency", "id_tag_info",
    "created", "stopped", "meter_stop", "stopped_at", "reason", "stopped_on", "ocpp_version", "evse_id",
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


#: Prefix of a charger-chosen (OCPP 2.0.1, string) transactionId in the
#: C{transaction_id} column: the column has INTEGER affinity, so a string id
#: such as C{"123"} would otherwise come back as the integer 123.  With the
#: prefix it is stored as TEXT and never meets an integer id of 1.6.
STRING_ID_PREFIX = "s:"


def db_id(transaction_id: Any) -> Any:
    """
    C{transaction_id} as stored in the C{transaction_id} column.
    """
    return STRING_ID_PREFIX + transaction_id if type(transaction_id) is str else transaction_id


def from_db_id(value: Any) -> Any:
    """
    The transactionId a C{transaction_id} column value stands for.
    """
    if type(value) is str and value.startswith(STRING_ID_PREFIX):
        return value[len(STRING_ID_PREFIX):]
    return value


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def transaction_row(tx: Transaction) -> tuple:
    """
    C{tx} as a row of C{ledger_transactions}, its columns in order.
    """
    return (
        tx.cp, db_id(tx.transaction_id), tx.connector_id, tx.id_tag, tx.meter_start, tx.timestamp,
        tx.reservation_id, int(tx.assigned), int(tx.rejected), tx.session_id, tx.user_id,
        _text(tx.prepaid), _text(tx.price), tx.currency, json.dumps(tx.id_tag_info), tx.created,
        int(tx.stopped), tx.meter_stop, tx.stopped_at, tx.reason, tx.stopped_on, tx.ocpp_version, tx.evse_id,
    )


def transaction_from_row(row: sqlite3.Row | tuple) -> Transaction:
    """
    The L{Transaction} a row of C{ledger_transactions} holds.
    """
    v = dict(zip(_COLUMNS, row))
    return Transaction(
        cp=v["cp"], transaction_id=from_db_id(v["transaction_id"]), connector_id=v["connector_id"], id_tag=v["id_tag"],
        meter_start=v["meter_start"], timestamp=v["started_at"], reservation_id=v["reservation_id"],
        assigned=bool(v["assigned"]), rejected=bool(v["rejected"]), session_id=v["session_id"],
        user_id=v["user_id"], prepaid=_decimal(v["prepaid"]), price=_decimal(v["price"]),
        currency=v["currency"], id_tag_info=json.loads(v["id_tag_info"] or '{"status": "Accepted"}'),
        created=v["created"], stopped=bool(v["stopped"]), meter_stop=v["meter_stop"],
        stopped_at=v["stopped_at"], reason=v["reason"], stopped_on=v["stopped_on"],
        ocpp_version=v["ocpp_version"], evse_id=v["evse_id"],
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
    prune_progress(conn, stopped_before, open_before)
    return unheld(conn, doomed)
