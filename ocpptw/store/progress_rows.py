# -*- test-case-name: tests.store.test_progress -*-
"""
How the ledger keeps the progress of OCPP 2.0.1 TransactionEvents on disk
(table C{ledger_tx_progress} of C{DATA_DIR/gateway.sqlite}), so that a
restart forgets neither a transaction's first energy register (its
C{meterStart}) nor which C{seqNo}s were answered.

One row per (charger, transactionId): the progress as JSON (see
L{ocpptw.ocpp.transaction_events}), whether the transaction ended, and
when the row was last written.  Bounded three ways, so that no charger can
grow it without limit:

  - the progress itself holds at most a fixed number of answers (the
    caller's bound);
  - a charger keeps at most L{MAX_PER_CHARGER} rows: writing the row of a
    new transaction drops that charger's least recently written ones;
  - rows of ended transactions go with the ledger's stopped ones (after
    its C{retention}), rows of open ones with its open ones (after
    C{open_retention}).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from ocpptw.ocpp.jsontext import compact

#: Rows kept per charger (transactions in progress or recently ended).
MAX_PER_CHARGER = 200

#: The table and its indexes, made by the ledger's layout 3 (and a new file).
PROGRESS_TABLE = """
CREATE TABLE IF NOT EXISTS ledger_tx_progress (
    cp TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    progress TEXT NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (cp, transaction_id)
);
CREATE INDEX IF NOT EXISTS ledger_tx_progress_by_cp ON ledger_tx_progress (cp, updated);
CREATE INDEX IF NOT EXISTS ledger_tx_progress_updated ON ledger_tx_progress (updated);
"""

_UPSERT = (
    "INSERT INTO ledger_tx_progress (cp, transaction_id, progress, ended, updated) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (cp, transaction_id) DO UPDATE SET progress = excluded.progress, ended = excluded.ended, "
    "updated = excluded.updated"
)

# The rows of the charger beyond its newest MAX_PER_CHARGER, through the
# (cp, updated) index: costs the cap, not the table's size.
_TRIM = (
    "DELETE FROM ledger_tx_progress WHERE cp = ? AND rowid IN ("
    "SELECT rowid FROM ledger_tx_progress WHERE cp = ? ORDER BY updated DESC LIMIT -1 OFFSET ?)"
)


def read_progress(cp: str, transaction_id: str) -> Callable[[sqlite3.Connection], dict | None]:
    """
    A read of the progress of C{transaction_id} of C{cp}, or C{None}.
    """

    def run(conn: sqlite3.Connection) -> dict | None:
        row = conn.execute(
            "SELECT progress FROM ledger_tx_progress WHERE cp = ? AND transaction_id = ?", (cp, transaction_id)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    return run


def write_progress(
    cp: str, transaction_id: str, progress: dict, ended: bool, now: float, new: bool, cap: int | None = None
) -> Callable[[sqlite3.Connection], None]:
    """
    A write of C{progress}; for a C{new} transaction, the charger's rows
    beyond C{cap} go too.
    """
    text = compact(progress)

    def run(conn: sqlite3.Connection) -> None:
        conn.execute(_UPSERT, (cp, transaction_id, text, int(ended), now))
        if new:
            conn.execute(_TRIM, (cp, cp, MAX_PER_CHARGER if cap is None else cap))

    return run


def prune_progress(conn: sqlite3.Connection, ended_before: float, open_before: float) -> None:
    """
    Delete the progress of transactions that ended before C{ended_before}
    and of open ones last written before C{open_before}.
    """
    conn.execute("DELETE FROM ledger_tx_progress WHERE ended = 1 AND updated < ?", (ended_before,))
    conn.execute("DELETE FROM ledger_tx_progress WHERE ended = 0 AND updated < ?", (open_before,))
