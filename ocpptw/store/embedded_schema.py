# -*- test-case-name: tests.store.test_migrations,tests.store.test_embedded -*-
"""
The tables of C{DATA_DIR/embedded.sqlite} (L{ocpptw.store.embedded}), and
how each earlier layout becomes the current one (L{ocpptw.store.migrations}).

  1. the first layout: a unique index on five columns of every logged frame
     and on the random id of every event;
  2. the message log is written straight from the frames: no unique index
     but a partial one on the bodies an outbox delivered (C{redelivered}),
     which may come twice;
  3. the same for the events;
  4. the message log indexed by charger and id (the history API's pages,
     L{ocpptw.store.message_pages});
  5. OCPP 2.0.1 sessions: the charging station's string transactionId
     mapped onto the store's own (C{station_transactions}).
"""

from __future__ import annotations

import sqlite3

from ocpptw.store.migrations import Component, Schema, columns, run_script, tables

#: The newest layout, for a new file.
CURRENT = """
CREATE TABLE chargers (
    device_id TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL DEFAULT 1,
    authorization_key_hash TEXT,
    vendor TEXT, model TEXT, serial_number TEXT, firmware_version TEXT,
    iccid TEXT, imsi TEXT, meter_type TEXT, meter_serial_number TEXT,
    last_seen TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE connector_status (
    device_id TEXT NOT NULL,
    connector_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT, info TEXT, vendor_error_code TEXT, timestamp TEXT,
    PRIMARY KEY (device_id, connector_id)
);
CREATE TABLE id_tags (
    id_tag TEXT PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'Accepted',
    user_id TEXT,
    prepaid_amount TEXT,
    updated_at TEXT
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE sessions (
    transaction_id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    connector_id INTEGER NOT NULL,
    id_tag TEXT NOT NULL,
    user_id TEXT,
    meter_start INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    reservation_id INTEGER,
    prepaid_amount TEXT, price_per_kwh TEXT, currency TEXT,
    stopped INTEGER NOT NULL DEFAULT 0,
    meter_stop INTEGER, energy_wh INTEGER, stopped_at TEXT, reason TEXT, cost TEXT, refund TEXT
);
CREATE INDEX sessions_start ON sessions (device_id, connector_id, id_tag, started_at, meter_start);
CREATE INDEX sessions_active ON sessions (device_id) WHERE stopped = 0;
CREATE TABLE station_transactions (
    device_id TEXT NOT NULL,
    station_transaction_id TEXT NOT NULL,
    transaction_id INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (device_id, station_transaction_id)
);
CREATE TABLE wallet_ledger (
    idempotency_key TEXT PRIMARY KEY,
    session_id TEXT, user_id TEXT, amount TEXT NOT NULL, currency TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    direction TEXT, message_type TEXT, message_id TEXT, action TEXT,
    payload TEXT, error_code TEXT, timestamp TEXT,
    redelivered INTEGER
);
CREATE UNIQUE INDEX messages_redelivered
    ON messages (device_id, direction, message_type, message_id, timestamp) WHERE redelivered = 1;
CREATE INDEX messages_by_device ON messages (device_id, id);
CREATE TABLE events (
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    device_id TEXT,
    occurred_at TEXT,
    data TEXT NOT NULL,
    received_at TEXT NOT NULL,
    redelivered INTEGER
);
CREATE UNIQUE INDEX events_redelivered ON events (id) WHERE redelivered = 1;
"""

#: What the first layout's gateway ran at every open (every table "IF NOT
#: EXISTS"): run on a file of those days, it completes it.
_FIRST = """
CREATE TABLE IF NOT EXISTS chargers (
    device_id TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL DEFAULT 1,
    authorization_key_hash TEXT,
    vendor TEXT, model TEXT, serial_number TEXT, firmware_version TEXT,
    iccid TEXT, imsi TEXT, meter_type TEXT, meter_serial_number TEXT,
    last_seen TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS connector_status (
    device_id TEXT NOT NULL,
    connector_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT, info TEXT, vendor_error_code TEXT, timestamp TEXT,
    PRIMARY KEY (device_id, connector_id)
);
CREATE TABLE IF NOT EXISTS id_tags (
    id_tag TEXT PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'Accepted',
    user_id TEXT,
    prepaid_amount TEXT,
    updated_at TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    transaction_id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    connector_id INTEGER NOT NULL,
    id_tag TEXT NOT NULL,
    user_id TEXT,
    meter_start INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    reservation_id INTEGER,
    prepaid_amount TEXT, price_per_kwh TEXT, currency TEXT,
    stopped INTEGER NOT NULL DEFAULT 0,
    meter_stop INTEGER, energy_wh INTEGER, stopped_at TEXT, reason TEXT, cost TEXT, refund TEXT
);
CREATE INDEX IF NOT EXISTS sessions_start ON sessions (device_id, connector_id, id_tag, started_at, meter_start);
CREATE INDEX IF NOT EXISTS sessions_active ON sessions (device_id) WHERE stopped = 0;
CREATE TABLE IF NOT EXISTS wallet_ledger (
    idempotency_key TEXT PRIMARY KEY,
    session_id TEXT, user_id TEXT, amount TEXT NOT NULL, currency TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    direction TEXT, message_type TEXT, message_id TEXT, action TEXT,
    payload TEXT, error_code TEXT, timestamp TEXT,
    UNIQUE (device_id, direction, message_type, message_id, timestamp)
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    device_id TEXT,
    occurred_at TEXT,
    data TEXT NOT NULL,
    received_at TEXT NOT NULL
);
"""

#: 1 -> 2: the message log without its five-column unique index (rows, ids and order kept).
_TO_2 = """
ALTER TABLE messages RENAME TO messages_1;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    direction TEXT, message_type TEXT, message_id TEXT, action TEXT,
    payload TEXT, error_code TEXT, timestamp TEXT,
    redelivered INTEGER
);
INSERT INTO messages (id, device_id, direction, message_type, message_id, action, payload, error_code, timestamp)
    SELECT id, device_id, direction, message_type, message_id, action, payload, error_code, timestamp
    FROM messages_1 ORDER BY rowid;
DROP TABLE messages_1;
CREATE UNIQUE INDEX messages_redelivered
    ON messages (device_id, direction, message_type, message_id, timestamp) WHERE redelivered = 1;
"""

#: 2 -> 3: the events without the unique index on their id (rows and order kept).
_TO_3 = """
ALTER TABLE events RENAME TO events_2;
CREATE TABLE events (
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    device_id TEXT,
    occurred_at TEXT,
    data TEXT NOT NULL,
    received_at TEXT NOT NULL,
    redelivered INTEGER
);
INSERT INTO events (rowid, id, type, device_id, occurred_at, data, received_at)
    SELECT rowid, id, type, device_id, occurred_at, data, received_at FROM events_2 ORDER BY rowid;
DROP TABLE events_2;
CREATE UNIQUE INDEX events_redelivered ON events (id) WHERE redelivered = 1;
"""

#: 3 -> 4: the history API reads a charger's frames through this index.
_TO_4 = """
CREATE INDEX IF NOT EXISTS messages_by_device ON messages (device_id, id);
"""

#: 4 -> 5: OCPP 2.0.1 sessions, whose transactionId the charging station chose (a
#: string), mapped onto the store's own integer ids.
_TO_5 = """
CREATE TABLE IF NOT EXISTS station_transactions (
    device_id TEXT NOT NULL,
    station_transaction_id TEXT NOT NULL,
    transaction_id INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (device_id, station_transaction_id)
);
"""

_TABLES = frozenset({"chargers", "connector_status", "id_tags", "counters", "sessions", "wallet_ledger", "messages", "events"})


def _legacy(conn: sqlite3.Connection) -> int:
    """
    The layout of a file from before versions were recorded, told by the
    C{redelivered} columns that layouts 2 and 3 added; 0 for a new file.
    """
    if not _TABLES & tables(conn):
        return 0
    run_script(conn, _FIRST)
    if "redelivered" not in columns(conn, "messages"):
        return 1
    # Layout 2's gateway made this index after opening the file.
    conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS messages_redelivered"
        " ON messages (device_id, direction, message_type, message_id, timestamp) WHERE redelivered = 1"
    )
    if "redelivered" not in columns(conn, "events"):
        return 2
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_redelivered ON events (id) WHERE redelivered = 1")
    return 3


#: For C{Database(path, reactor, schema=...)}.
SCHEMA = Schema.of(Component("embedded", CURRENT, (_TO_2, _TO_3, _TO_4, _TO_5), _legacy))
