"""
Tests for L{ocpptw.store.embedded}: the backend of the no-backend mode.
"""

from __future__ import annotations

import sqlite3
import uuid
from decimal import Decimal

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from ocpptw.interfaces import BackendRejected, BackendUnavailable, IBackend, NotFound
from ocpptw.store.embedded import GATEWAY_IDS, SCHEMA, EmbeddedBackend, money
from ocpptw.store.sqlite import Database, InlineDatabase
from tests.helpers import bounded, failure_result_of, success_result_of

BOOT = {"deviceId": "CP1", "vendor": "Acme", "model": "Fast 22", "serialNumber": "S-1", "firmwareVersion": "1.0"}


def start_body(**overrides):
    body = {"deviceId": "CP1", "connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-11-24T10:00:00.000Z"}
    body.update(overrides)
    return body


@pytest.fixture
def path(tmp_path):
    return tmp_path / "embedded.sqlite"


@pytest.fixture
def db(path):
    database = InlineDatabase(path, SCHEMA)
    yield database
    database.close()


@pytest.fixture
def backend(db, clock):
    return EmbeddedBackend(db, clock)


def sql(db, text, *args):
    return success_result_of(db.write(lambda c: c.execute(text, args).fetchall()))


def test_provides_the_interface_and_is_ready(backend):
    """The embedded store provides IBackend and is always ready."""
    assert verifyObject(IBackend, backend)
    assert backend.ready() == (True, "")


def test_unknown_charger_is_none(backend):
    """A charger never registered is None."""
    assert success_result_of(backend.charger_by_device("CP1")) is None


def test_ensure_registers_and_updates_keeping_enabled(backend, db):
    """ensure_charger upserts the boot fields; enabled stays as the operator set it."""
    record = success_result_of(backend.ensure_charger(BOOT))
    assert record == {
        "deviceId": "CP1", "enabled": True, "vendor": "Acme", "model": "Fast 22", "serialNumber": "S-1",
        "firmwareVersion": "1.0", "connectors": [],
    }
    sql(db, "UPDATE chargers SET enabled = 0, authorization_key_hash = 'sha256:00:11' WHERE device_id = 'CP1'")
    record = success_result_of(backend.ensure_charger({**BOOT, "firmwareVersion": "2.0"}))
    assert record["enabled"] is False
    assert record["firmwareVersion"] == "2.0"
    assert record["serialNumber"] == "S-1"
    assert record["authorizationKeyHash"] == "sha256:00:11"
    assert success_result_of(backend.charger_by_device("CP1")) == record


def test_ensure_without_device_id_is_rejected(backend):
    """A body without deviceId is a 400, as an HTTP backend answers."""
    assert failure_result_of(backend.ensure_charger({"vendor": "x"}), BackendRejected).value.status == 400


def test_status_and_last_seen(backend, clock):
    """Connector statuses and last-seen are kept in the charger record; unknown chargers are NotFound."""
    failure_result_of(backend.update_status("CP1", {"connectorId": 1, "status": "Available", "errorCode": "NoError"}), NotFound)
    failure_result_of(backend.update_last_seen("CP1", {"lastSeen": "2026-11-24T10:00:00.000Z"}), NotFound)
    backend.ensure_charger(BOOT)
    status = {"connectorId": 1, "status": "Charging", "errorCode": "NoError", "timestamp": "2026-11-24T10:00:00.000Z"}
    success_result_of(backend.update_status("CP1", {**status, "status": "Available"}))
    success_result_of(backend.update_status("CP1", status))
    success_result_of(backend.update_status("CP1", {"connectorId": 0, "status": "Available", "errorCode": "NoError"}))
    success_result_of(backend.update_last_seen("CP1", {"lastSeen": "2026-11-24T10:01:00.000Z"}))
    record = success_result_of(backend.charger_by_device("CP1"))
    assert record["lastSeen"] == "2026-11-24T10:01:00.000Z"
    assert record["connectors"] == [
        {"connectorId": 0, "status": "Available", "errorCode": "NoError", "timestamp": "1970-01-01T00:00:00.000Z"},
        status,
    ]


def test_authorize_open_mode(backend, db):
    """Open mode accepts every tag except those marked Blocked or Expired."""
    sql(db, "INSERT INTO id_tags (id_tag, status) VALUES ('B', 'Blocked'), ('E', 'Expired'), ('A', 'Accepted')")
    answers = {tag: success_result_of(backend.authorize("CP1", tag)) for tag in ["A", "B", "E", "unknown"]}
    assert answers == {
        "A": {"idTagInfo": {"status": "Accepted"}},
        "B": {"idTagInfo": {"status": "Blocked"}},
        "E": {"idTagInfo": {"status": "Expired"}},
        "unknown": {"idTagInfo": {"status": "Accepted"}},
    }


def test_authorize_allowlist_mode(db, clock):
    """Allowlist mode accepts only tags listed as Accepted; unknown tags are Invalid."""
    backend = EmbeddedBackend(db, clock, auth_mode="allowlist")
    sql(db, "INSERT INTO id_tags (id_tag, status) VALUES ('B', 'Blocked'), ('A', 'Accepted')")
    statuses = {tag: success_result_of(backend.authorize("CP1", tag))["idTagInfo"]["status"] for tag in ["A", "B", "x"]}
    assert statuses == {"A": "Accepted", "B": "Blocked", "x": "Invalid"}


def test_unknown_auth_mode_is_refused(db, clock):
    """A mistyped auth mode fails at construction."""
    with pytest.raises(ValueError):
        EmbeddedBackend(db, clock, auth_mode="closed")


def test_start_allocates_sequential_ids_with_tariff_and_prepaid(db, clock):
    """Sessions get transactionIds 1, 2, ... and a uuid4 sessionId; money is a decimal string."""
    backend = EmbeddedBackend(db, clock, price_per_kwh=Decimal("0.35"), currency="EUR")
    sql(db, "INSERT INTO id_tags (id_tag, status, user_id, prepaid_amount) VALUES ('TAG1', 'Accepted', 'u1', '20')")
    first = success_result_of(backend.start_session(start_body()))
    second = success_result_of(backend.start_session(start_body(connectorId=2, idTag="OTHER")))
    assert first["transactionId"] == 1
    assert second["transactionId"] == 2
    assert uuid.UUID(first["sessionId"]).version == 4
    assert first == {
        "sessionId": first["sessionId"], "transactionId": 1, "idTagInfo": {"status": "Accepted"}, "userId": "u1",
        "prepaidAmount": "20.00", "pricePerKwh": "0.35", "currency": "EUR",
    }
    assert "prepaidAmount" not in second and "userId" not in second


def test_start_without_tariff_has_no_money_fields(backend):
    """With no tariff and no prepaid amount the answer carries no money."""
    answer = success_result_of(backend.start_session(start_body()))
    assert set(answer) == {"sessionId", "transactionId", "idTagInfo"}


def test_start_with_a_gateway_transaction_id_keeps_it_and_is_idempotent(backend):
    """A transactionId assigned by the gateway is kept; a second start returns the same session."""
    tx = GATEWAY_IDS | (3 << 20) | 7
    first = success_result_of(backend.start_session(start_body(transactionId=tx)))
    again = success_result_of(backend.start_session(start_body(transactionId=tx, meterStart=5)))
    assert first["transactionId"] == tx
    assert again == first
    assert success_result_of(backend.start_session(start_body(connectorId=2)))["transactionId"] == 1


def test_a_start_reconciled_with_the_gateway_id_rekeys_the_session(backend):
    """A start the gateway gave up on, sent again with the gateway's transactionId, re-keys that session."""
    first = success_result_of(backend.start_session(start_body()))
    tx = GATEWAY_IDS | 5
    again = success_result_of(backend.start_session(start_body(transactionId=tx)))
    assert (again["sessionId"], again["transactionId"]) == (first["sessionId"], tx)
    assert [(s["sessionId"], s["transactionId"]) for s in success_result_of(backend.active_sessions("CP1"))] == [
        (first["sessionId"], tx)
    ]
    assert success_result_of(backend.start_session(start_body(transactionId=tx))) == again


def test_a_repeated_start_returns_the_same_session(backend):
    """The same start sent again (same connector, tag, timestamp, meterStart) gets the same session."""
    first = success_result_of(backend.start_session(start_body()))
    assert success_result_of(backend.start_session(start_body())) == first
    assert len(success_result_of(backend.active_sessions("CP1"))) == 1


def test_a_rejected_start_records_no_session_and_burns_its_id(db, clock):
    """A tag that is not accepted gets its status and a fresh id, and no session is recorded."""
    backend = EmbeddedBackend(db, clock, auth_mode="allowlist")
    answer = success_result_of(backend.start_session(start_body(idTag="nobody")))
    assert answer == {"sessionId": None, "transactionId": 1, "idTagInfo": {"status": "Invalid"}}
    assert success_result_of(backend.active_sessions("CP1")) == []
    sql(db, "INSERT INTO id_tags (id_tag, status) VALUES ('TAG1', 'Accepted')")
    assert success_result_of(backend.start_session(start_body()))["transactionId"] == 2


def test_a_start_reconciled_after_an_outage_is_recorded_whatever_the_tag(db, clock):
    """A session the gateway already accepted during an outage is recorded, with the tag's real status."""
    backend = EmbeddedBackend(db, clock, auth_mode="allowlist")
    answer = success_result_of(backend.start_session(start_body(idTag="nobody", transactionId=GATEWAY_IDS + 1)))
    assert answer["idTagInfo"] == {"status": "Invalid"}
    assert [s["transactionId"] for s in success_result_of(backend.active_sessions("CP1"))] == [GATEWAY_IDS + 1]


def test_start_with_missing_fields_is_rejected(backend):
    """A start without meterStart is a 400."""
    body = start_body()
    del body["meterStart"]
    failure_result_of(backend.start_session(body), BackendRejected)
    failure_result_of(backend.start_session(start_body(transactionId="7")), BackendRejected)


def test_active_sessions_and_stop(db, clock):
    """Unstopped sessions are listed in the contract's shape; the first stop wins; repeats are no-ops."""
    backend = EmbeddedBackend(db, clock, price_per_kwh=Decimal("0.35"))
    session = success_result_of(backend.start_session(start_body()))
    assert success_result_of(backend.active_sessions("CP1")) == [
        {"sessionId": session["sessionId"], "transactionId": 1, "connectorId": 1, "idTag": "TAG1", "meterStart": 1000,
         "pricePerKwh": "0.35", "currency": "EUR"}
    ]
    stop = {"transactionId": 1, "meterStop": 6000, "energyWh": 5000, "stoppedAt": "2026-11-24T11:00:00.000Z",
            "reason": "Local", "cost": "1.75", "refund": 18.25}
    assert success_result_of(backend.stop_session(session["sessionId"], stop)) is None
    success_result_of(backend.stop_session(session["sessionId"], {**stop, "meterStop": 9000, "cost": "9.99"}))
    assert success_result_of(backend.active_sessions("CP1")) == []
    row = sql(db, "SELECT meter_stop, energy_wh, stopped_at, reason, cost, refund FROM sessions")
    assert row == [(6000, 5000, "2026-11-24T11:00:00.000Z", "Local", "1.75", "18.25")]


def test_stop_computes_energy_when_absent(backend, db):
    """Without energyWh the stop records meterStop - meterStart, never below zero."""
    session = success_result_of(backend.start_session(start_body()))
    success_result_of(backend.stop_session(session["sessionId"], {"meterStop": 500, "reason": "Local"}))
    assert sql(db, "SELECT energy_wh FROM sessions") == [(0,)]


def test_stop_of_an_unknown_session_is_not_found(backend):
    """Stopping a session that does not exist is NotFound."""
    failure_result_of(backend.stop_session("nope", {"meterStop": 1}), NotFound)


def test_refund_is_idempotent_on_its_key(backend, db):
    """A refund repeated with the same idempotencyKey is recorded once."""
    body = {"sessionId": "s1", "userId": "u1", "amount": "18.25", "currency": "EUR", "idempotencyKey": "s1"}
    success_result_of(backend.refund(body))
    success_result_of(backend.refund({**body, "amount": 99}))
    assert sql(db, "SELECT idempotency_key, amount FROM wallet_ledger") == [("s1", "18.25")]
    failure_result_of(backend.refund({**body, "idempotencyKey": None}), BackendRejected)
    failure_result_of(backend.refund({**body, "idempotencyKey": "s2", "amount": "lots"}), BackendRejected)


def test_message_log_and_events(backend, db):
    """OCPP messages (as an outbox delivers them, maybe twice) and events are kept, each once."""
    message = {"direction": "in", "messageType": "CALL", "messageId": "m1", "action": "Heartbeat", "payload": {},
               "timestamp": "2026-11-24T10:00:00.000Z"}
    success_result_of(backend.store_message("CP1", message))
    success_result_of(backend.store_message("CP1", message))
    assert sql(db, "SELECT device_id, action, payload FROM messages") == [("CP1", "Heartbeat", "{}")]
    event = {"id": "e1", "type": "charging.meterValues", "deviceId": "CP1", "occurredAt": "2026-11-24T10:00:00.000Z",
             "instance": "i1", "data": {"connectorId": 1, "samples": [{"measurand": "Energy.Active.Import.Register", "value": 1.5}]}}
    success_result_of(backend.record_event(event))
    success_result_of(backend.record_event(event))
    rows = sql(db, "SELECT id, type, data FROM events")
    assert len(rows) == 1 and rows[0][1] == "charging.meterValues" and '"value":1.5' in rows[0][2]


def test_frames_are_logged_as_given(backend, db):
    """log_frames appends each row as it is, the payload text verbatim, with no unique index to pay for."""
    row = ("CP1", "in", "CALL", "m1", "MeterValues", '{ "connectorId" : 1 }', None, "2026-11-24T10:00:00.000Z")
    success_result_of(backend.log_frames([row, row[:3] + ("m2",) + row[4:]]))
    assert sql(db, "SELECT device_id, message_id, payload, redelivered FROM messages ORDER BY id") == [
        ("CP1", "m1", '{ "connectorId" : 1 }', None),
        ("CP1", "m2", '{ "connectorId" : 1 }', None),
    ]
    indexes = dict(sql(db, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"))
    unique = [row[1] for row in sql(db, "PRAGMA index_list(messages)") if row[2]]
    assert unique == ["messages_redelivered"]  # the only unique index covers redelivered rows alone
    assert "WHERE redelivered = 1" in indexes["messages_redelivered"]
    assert set(indexes) == {"messages_redelivered", "messages_by_device"}  # the history API's pages


OLD_MESSAGES = """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    direction TEXT, message_type TEXT, message_id TEXT, action TEXT,
    payload TEXT, error_code TEXT, timestamp TEXT,
    UNIQUE (device_id, direction, message_type, message_id, timestamp)
);
INSERT INTO messages VALUES (7, 'CP1', 'in', 'CALL', 'm1', 'Heartbeat', '{}', NULL, '2026-11-24T10:00:00.000Z');
INSERT INTO messages VALUES (9, 'CP1', 'out', 'CALLRESULT', 'm1', 'Heartbeat', '{"currentTime":"x"}', NULL, '2026-11-24T10:00:00.001Z');
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    device_id TEXT,
    occurred_at TEXT,
    data TEXT NOT NULL,
    received_at TEXT NOT NULL
);
INSERT INTO events VALUES ('f-second-by-id', 'charger.lastSeen', 'CP1', 't1', '{}', 't1');
INSERT INTO events VALUES ('a-first-by-id', 'charger.lastSeen', 'CP1', 't2', '{}', 't2');
"""


def test_a_message_log_with_the_old_unique_index_is_rebuilt(path, clock):
    """A store made before frames and events were logged directly keeps its rows, ids and order, without the unique indexes."""
    conn = sqlite3.connect(path)
    conn.executescript(OLD_MESSAGES)
    conn.close()
    db = InlineDatabase(path, SCHEMA)
    backend = EmbeddedBackend(db, clock)
    success_result_of(backend.charger_by_device("CP-none"))  # the first call brings the file up to date
    assert sql(db, "SELECT id, message_id, payload FROM messages ORDER BY id") == [
        (7, "m1", "{}"), (9, "m1", '{"currentTime":"x"}')
    ]
    assert [r[0] for r in sql(db, "SELECT name FROM sqlite_master WHERE tbl_name IN ('messages', 'events')"
                                  " AND type = 'index' ORDER BY name")] == ["events_redelivered", "messages_by_device",
                                                                            "messages_redelivered"]
    assert sql(db, "SELECT id FROM events ORDER BY rowid") == [("f-second-by-id",), ("a-first-by-id",)]
    success_result_of(backend.log_frames([("CP1", "in", "CALL", "m2", "Heartbeat", "{}", None, "2026-11-24T10:00:01.000Z")]))
    assert sql(db, "SELECT max(id) FROM messages") == [(10,)]
    db.close()
    again = InlineDatabase(path, SCHEMA)  # a second open has nothing to do
    success_result_of(EmbeddedBackend(again, clock).charger_by_device("CP-none"))
    assert sql(again, "SELECT count(*) FROM messages") == [(3,)]
    again.close()


def test_own_events_are_logged_each_as_given(backend, db, clock):
    """log_events appends the gateway's own events (each with a fresh id) without an index on the id."""
    event = {"id": "e1", "type": "charging.meterValues", "deviceId": "CP1", "occurredAt": "2026-11-24T10:00:00.000Z",
             "instance": "i1", "data": {"connectorId": 1, "samples": [{"value": 1.5, "unit": "Wh"}], "note": "Grüße"}}
    success_result_of(backend.log_events([event, {**event, "id": "e2"}]))
    assert sql(db, "SELECT id, type, device_id, occurred_at, data, redelivered FROM events ORDER BY rowid") == [
        ("e1", "charging.meterValues", "CP1", "2026-11-24T10:00:00.000Z",
         '{"connectorId":1,"samples":[{"value":1.5,"unit":"Wh"}],"note":"Grüße"}', None),
        ("e2", "charging.meterValues", "CP1", "2026-11-24T10:00:00.000Z",
         '{"connectorId":1,"samples":[{"value":1.5,"unit":"Wh"}],"note":"Grüße"}', None),
    ]


def test_everything_survives_a_restart(path, clock):
    """Closing and reopening the file keeps chargers, tags, sessions, stops and the id counter."""
    first_db = InlineDatabase(path, SCHEMA)
    first = EmbeddedBackend(first_db, clock)
    first.ensure_charger(BOOT)
    first_db.write(lambda c: c.execute("INSERT INTO id_tags (id_tag, status) VALUES ('B', 'Blocked')"))
    one = success_result_of(first.start_session(start_body()))
    two = success_result_of(first.start_session(start_body(connectorId=2)))
    first.stop_session(one["sessionId"], {"meterStop": 2000, "reason": "Local"})
    first_db.close()

    second_db = InlineDatabase(path, SCHEMA)
    second = EmbeddedBackend(second_db, clock)
    assert success_result_of(second.charger_by_device("CP1"))["vendor"] == "Acme"
    assert success_result_of(second.authorize("CP1", "B"))["idTagInfo"]["status"] == "Blocked"
    assert [s["sessionId"] for s in success_result_of(second.active_sessions("CP1"))] == [two["sessionId"]]
    assert success_result_of(second.start_session(start_body(connectorId=3)))["transactionId"] == 3
    second_db.close()


def test_a_full_disk_is_backend_unavailable(backend, db):
    """A write the disk refuses is BackendUnavailable, so callers retry."""
    success_result_of(backend.charger_by_device("CP-none"))  # the store's own upgrade is done
    original = db.write

    def full(fn):
        def boom(conn):
            raise sqlite3.OperationalError("database or disk is full")

        return original(boom)

    db.write = full
    failure_result_of(backend.ensure_charger(BOOT), BackendUnavailable)


def test_money_is_two_places_half_up():
    """Amounts become decimal strings with two places, rounded half up."""
    assert money("6.285") == "6.29"
    assert money(6) == "6.00"
    assert money(None) is None
    with pytest.raises(BackendRejected):
        money("NaN")


@pytest_twisted.ensureDeferred
async def test_works_through_the_database_thread(path):
    """The backend runs on the real Database without blocking the reactor, and survives reopening."""
    from twisted.internet import reactor

    database = Database(path, reactor, SCHEMA)
    database.open()
    backend = EmbeddedBackend(database, reactor)
    try:
        await bounded(backend.ensure_charger(BOOT))
        session = await bounded(backend.start_session(start_body()))
    finally:
        database.close()
    database = Database(path, reactor, SCHEMA)
    database.open()
    try:
        sessions = await bounded(EmbeddedBackend(database, reactor).active_sessions("CP1"))
        assert [s["sessionId"] for s in sessions] == [session["sessionId"]]
    finally:
        database.close()
