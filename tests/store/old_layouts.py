"""
The layouts of C{DATA_DIR}'s files as earlier releases left them, before
versions were recorded: each is the schema text those releases ran at every
open, taken from the repository's history, plus what their gateway created
after opening.  Test data for L{tests.store.test_migrations}: never edit a
layout here; a new layout is a new entry.
"""

#: embedded.sqlite, layout 1 (from the first release to bcb150f): unique
#: indexes on five columns of every frame and on the id of every event.
EMBEDDED_1 = """
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

#: Layout 2 (bcb150f to a6f09d4): the message log without its unique index,
#: a partial one on the bodies an outbox delivered, made by the gateway
#: after opening.
EMBEDDED_2 = EMBEDDED_1.replace(
    "    UNIQUE (device_id, direction, message_type, message_id, timestamp)\n",
    "    redelivered INTEGER\n",
) + """
CREATE UNIQUE INDEX IF NOT EXISTS messages_redelivered
    ON messages (device_id, direction, message_type, message_id, timestamp) WHERE redelivered = 1;
"""

#: Layout 3 (a6f09d4 until versions were recorded): the same for the events.
EMBEDDED_3 = EMBEDDED_2.replace(
    "    id TEXT PRIMARY KEY,\n    type TEXT NOT NULL,",
    "    id TEXT NOT NULL,\n    type TEXT NOT NULL,",
).replace(
    "    received_at TEXT NOT NULL\n",
    "    received_at TEXT NOT NULL,\n    redelivered INTEGER\n",
) + """
CREATE UNIQUE INDEX IF NOT EXISTS events_redelivered ON events (id) WHERE redelivered = 1;
"""

#: gateway.sqlite's outbox, the same in every release so far.
OUTBOX_1 = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    operation TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS outbox_dead (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    operation TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    parked_at REAL NOT NULL,
    reason TEXT NOT NULL
);
"""

#: gateway.sqlite's ledger, layout 1 (the first release to aea7ba7).
LEDGER_1 = """
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

#: Layout 2 (aea7ba7 until versions were recorded): indexes for a ledger
#: that keeps only recent transactions in memory.
LEDGER_2 = LEDGER_1 + """
CREATE INDEX IF NOT EXISTS ledger_transactions_start ON ledger_transactions (cp, started_at);
CREATE INDEX IF NOT EXISTS ledger_transactions_stopped ON ledger_transactions (stopped_on) WHERE stopped = 1;
CREATE INDEX IF NOT EXISTS ledger_transactions_open ON ledger_transactions (created) WHERE stopped = 0;
CREATE INDEX IF NOT EXISTS ledger_transactions_gateway_ids ON ledger_transactions (transaction_id)
    WHERE transaction_id >= 1073741824;
"""

GATEWAY_1 = OUTBOX_1 + LEDGER_1
GATEWAY_2 = OUTBOX_1 + LEDGER_2

#: Rows every earlier layout can hold (its own columns only), per table.
EMBEDDED_ROWS = """
INSERT INTO chargers (device_id, enabled, vendor, model, created_at, updated_at)
    VALUES ('CP1', 1, 'Acme', 'Fast 22', '2026-11-24T10:00:00.000Z', '2026-11-24T10:00:00.000Z');
INSERT INTO connector_status (device_id, connector_id, status, error_code, timestamp)
    VALUES ('CP1', 1, 'Charging', 'NoError', '2026-11-24T10:00:00.000Z');
INSERT INTO id_tags (id_tag, status, user_id, prepaid_amount) VALUES ('TAG1', 'Accepted', 'u1', '10.00');
INSERT INTO counters (name, value) VALUES ('transaction_id', 41);
INSERT INTO sessions (transaction_id, session_id, device_id, connector_id, id_tag, meter_start, started_at)
    VALUES (41, 's41', 'CP1', 1, 'TAG1', 1000, '2026-11-24T10:00:00.000Z');
INSERT INTO wallet_ledger (idempotency_key, session_id, user_id, amount, currency, created_at)
    VALUES ('s40', 's40', 'u1', '6.29', 'EUR', '2026-11-24T09:00:00.000Z');
INSERT INTO messages (id, device_id, direction, message_type, message_id, action, payload, timestamp)
    VALUES (7, 'CP1', 'in', 'CALL', 'm1', 'Heartbeat', '{}', '2026-11-24T10:00:00.000Z');
INSERT INTO messages (id, device_id, direction, message_type, message_id, action, payload, timestamp)
    VALUES (9, 'CP1', 'out', 'CALLRESULT', 'm1', 'Heartbeat', '{"currentTime":"x"}', '2026-11-24T10:00:00.001Z');
INSERT INTO events (id, type, device_id, occurred_at, data, received_at)
    VALUES ('f-second-by-id', 'charger.lastSeen', 'CP1', 't1', '{}', 't1');
INSERT INTO events (id, type, device_id, occurred_at, data, received_at)
    VALUES ('a-first-by-id', 'charger.lastSeen', 'CP1', 't2', '{}', 't2');
"""

GATEWAY_ROWS = """
INSERT INTO outbox (key, operation, body, created_at, attempts, next_attempt_at, last_error)
    VALUES ('CP1', 'store_message', '{"a":1}', 1.5, 2, 3.5, 'HTTP 503');
INSERT INTO outbox_dead (id, key, operation, body, created_at, attempts, parked_at, reason)
    VALUES (3, 'CP2', 'refund', '{}', 1.0, 9, 2.0, 'rejected');
INSERT INTO ledger_transactions (cp, transaction_id, connector_id, id_tag, meter_start, started_at, created, stopped)
    VALUES ('CP1', 1073741825, 1, 'TAG1', 1000, '2026-11-24T10:00:00.000Z', 100.0, 0);
INSERT INTO ledger_counters (slot, value) VALUES (0, 1);
INSERT INTO ledger_auth (id_tag, info, stored_at) VALUES ('TAG1', '{"status":"Accepted"}', 5.0);
INSERT INTO ledger_chargers (cp, record, accepted, updated) VALUES ('CP1', '{}', 1, 6.0);
"""
