# -*- test-case-name: tests.contract.test_backend_contract -*-
"""
One contract suite for L{IBackend}, run over every implementation: the
embedded store (L{ocpptw.store.embedded.EmbeddedBackend}) and the REST
adapter (L{ocpptw.adapters.backend_http.HttpBackend}) against the loopback
test backend (L{ocpptw.testing.backend.FakeBackend}).  What passes here is
what the services may rely on, whichever backend a deployment uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import succeed
from zope.interface.verify import verifyObject

from ocpptw.interfaces import IBackend, NotFound
from tests.helpers import bounded

#: A transactionId the gateway assigned itself during an outage (docs/architecture.md).
GATEWAY_TRANSACTION_ID = 0x40000000 | (3 << 20) | 17


@dataclass
class Subject:
    """
    An implementation under test, and how to ask it what it refunded.
    """

    backend: Any
    refunds_succeeded: Callable[[], int]
    add_tag: Callable[[str, str], Any]
    #: the message log as kept: (deviceId, direction, messageType, messageId), in order
    messages: Callable[[], list[tuple[str, str, str, str]]]


@pytest_twisted.async_yield_fixture(params=["embedded", "http"])
async def subject(request, tmp_path):
    """
    Each L{IBackend} implementation, on the real reactor.
    """
    from twisted.internet import reactor

    if request.param == "embedded":
        from ocpptw.store import embedded
        from ocpptw.store.sqlite import Database

        db = Database(tmp_path / "embedded.sqlite", reactor, schema=embedded.SCHEMA)
        db.open()
        backend = embedded.EmbeddedBackend(db, reactor)

        def add_tag(id_tag: str, status: str) -> Any:
            return db.write(lambda conn: conn.execute("INSERT INTO id_tags (id_tag, status) VALUES (?, ?)", (id_tag, status)))

        try:
            yield Subject(backend, lambda: _embedded_refunds(db), add_tag, lambda: _embedded_messages(db))
        finally:
            db.close()
        return

    from ocpptw.adapters.backend_http import HttpBackend
    from ocpptw.testing.backend import FakeBackend

    fake = FakeBackend(clock=reactor)
    _, url = fake.listen(reactor)
    backend = HttpBackend(url, reactor, timeout=5.0, retries=2, backoff_base=0.01)
    def messages() -> list[tuple[str, str, str, str]]:
        return [(d, b["direction"], b["messageType"], b["messageId"]) for d, b in fake.stored_messages()]

    try:
        yield Subject(
            backend,
            lambda: fake.refunds_succeeded,
            lambda id_tag, status: succeed(fake.add_id_tag(id_tag, status=status)),
            messages,
        )
    finally:
        await bounded(backend.close())
        await bounded(fake.stop())


def _embedded_refunds(db) -> int:
    """
    Refunds the embedded store recorded (read straight from its database).
    """
    import sqlite3

    connection = sqlite3.connect(db._path)
    try:
        return connection.execute("SELECT COUNT(*) FROM wallet_ledger").fetchone()[0]
    finally:
        connection.close()


def _embedded_messages(db) -> list[tuple[str, str, str, str]]:
    """
    The embedded store's message log, read straight from its database.
    """
    import sqlite3

    connection = sqlite3.connect(db._path)
    try:
        return connection.execute("SELECT device_id, direction, message_type, message_id FROM messages ORDER BY id").fetchall()
    finally:
        connection.close()


def charger(device_id: str = "CP1") -> dict:
    return {"deviceId": device_id, "vendor": "ACME", "model": "Wallbox 22", "serialNumber": "SN-1", "firmwareVersion": "1.2.3"}


def start_body(**changes: Any) -> dict:
    body = {"deviceId": "CP1", "connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-11-24T10:00:00.000Z"}
    body.update(changes)
    return body


def stop_body(transaction_id: int, meter_stop: int = 3000) -> dict:
    return {
        "transactionId": transaction_id,
        "meterStop": meter_stop,
        "energyWh": meter_stop - 1000,
        "stoppedAt": "2026-11-24T11:00:00.000Z",
        "reason": "Local",
    }


def test_provides_ibackend(subject):
    """Every implementation provides the whole IBackend interface and starts ready."""
    assert verifyObject(IBackend, subject.backend)
    assert subject.backend.ready() == (True, "")


@pytest_twisted.ensureDeferred
async def test_ensure_then_by_device(subject):
    """A charger registered with ensure is found by device; an unknown one is None."""
    backend = subject.backend
    assert await bounded(backend.charger_by_device("CP1")) is None
    record = await bounded(backend.ensure_charger(charger()))
    assert record["deviceId"] == "CP1"
    found = await bounded(backend.charger_by_device("CP1"))
    assert found["deviceId"] == "CP1"
    assert found.get("enabled", True) is True
    again = await bounded(backend.ensure_charger(charger()))
    assert again["deviceId"] == "CP1"


@pytest_twisted.ensureDeferred
async def test_authorize_normal_tag(subject):
    """A normal idTag is Accepted."""
    answer = await bounded(subject.backend.authorize("CP1", "TAG1"))
    assert answer["idTagInfo"]["status"] == "Accepted"


@pytest_twisted.ensureDeferred
async def test_start_gives_session_and_integer_transaction(subject):
    """Start answers a sessionId and an integer transactionId below the gateway's range; two starts differ."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    first = await bounded(backend.start_session(start_body()))
    second = await bounded(backend.start_session(start_body(connectorId=2, timestamp="2026-11-24T10:05:00.000Z")))
    for answer in (first, second):
        assert isinstance(answer["sessionId"], str) and answer["sessionId"]
        assert type(answer["transactionId"]) is int and 0 < answer["transactionId"] < 0x40000000
        assert answer["idTagInfo"]["status"] == "Accepted"
    assert first["transactionId"] != second["transactionId"]
    assert first["sessionId"] != second["sessionId"]


@pytest_twisted.ensureDeferred
async def test_start_keeps_gateway_transaction_id_idempotently(subject):
    """A start carrying the gateway's transactionId keeps it, and a repeat is the same session."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    body = start_body(transactionId=GATEWAY_TRANSACTION_ID)
    first = await bounded(backend.start_session(body))
    repeat = await bounded(backend.start_session(dict(body)))
    assert first["transactionId"] == repeat["transactionId"] == GATEWAY_TRANSACTION_ID
    assert first["sessionId"] == repeat["sessionId"]
    active = await bounded(backend.active_sessions("CP1"))
    assert [s["transactionId"] for s in active] == [GATEWAY_TRANSACTION_ID]


@pytest_twisted.ensureDeferred
async def test_active_sessions_until_stopped(subject):
    """A started session is active with its fields; after stop it is not."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    assert await bounded(backend.active_sessions("CP1")) == []
    started = await bounded(backend.start_session(start_body()))
    [active] = await bounded(backend.active_sessions("CP1"))
    assert {k: active[k] for k in ("sessionId", "transactionId", "connectorId", "idTag", "meterStart")} == {
        "sessionId": started["sessionId"],
        "transactionId": started["transactionId"],
        "connectorId": 1,
        "idTag": "TAG1",
        "meterStart": 1000,
    }
    assert await bounded(backend.active_sessions("CP2")) == []
    await bounded(backend.stop_session(started["sessionId"], stop_body(started["transactionId"])))
    assert await bounded(backend.active_sessions("CP1")) == []


@pytest_twisted.ensureDeferred
async def test_repeated_stop_is_harmless(subject):
    """Stopping a session twice succeeds both times."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    started = await bounded(backend.start_session(start_body()))
    assert await bounded(backend.stop_session(started["sessionId"], stop_body(started["transactionId"]))) is None
    assert await bounded(backend.stop_session(started["sessionId"], stop_body(started["transactionId"]))) is None


@pytest_twisted.ensureDeferred
async def test_unknown_session_stop_is_not_found(subject):
    """Stopping a session nobody started fails with NotFound."""
    with pytest.raises(NotFound):
        await bounded(subject.backend.stop_session("no-such-session", stop_body(1)))


@pytest_twisted.ensureDeferred
async def test_refund_once_per_idempotency_key(subject):
    """A refund repeated with the same idempotencyKey refunds once; another key refunds again."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    started = await bounded(backend.start_session(start_body()))
    await bounded(backend.stop_session(started["sessionId"], stop_body(started["transactionId"])))
    refund = {
        "sessionId": started["sessionId"],
        "userId": "user-1",
        "amount": "4.40",
        "currency": "EUR",
        "idempotencyKey": started["sessionId"],
    }
    assert await bounded(backend.refund(refund)) is None
    assert await bounded(backend.refund(dict(refund))) is None
    assert subject.refunds_succeeded() == 1
    other = await bounded(backend.start_session(start_body(connectorId=2)))
    await bounded(backend.refund({**refund, "sessionId": other["sessionId"], "idempotencyKey": other["sessionId"]}))
    assert subject.refunds_succeeded() == 2


@pytest_twisted.ensureDeferred
async def test_status_last_seen_and_message_accepted(subject):
    """Status, last-seen and ocpp-message calls are accepted."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    status = {"connectorId": 1, "status": "Charging", "errorCode": "NoError", "info": "ok", "timestamp": "2026-11-24T10:00:00.000Z"}
    assert await bounded(backend.update_status("CP1", status)) is None
    assert await bounded(backend.update_last_seen("CP1", {"lastSeen": "2026-11-24T10:00:01.000Z"})) is None
    message = {
        "direction": "in",
        "messageType": "CALL",
        "messageId": "m-1",
        "action": "Heartbeat",
        "payload": {},
        "timestamp": "2026-11-24T10:00:02.000Z",
    }
    assert await bounded(backend.store_message("CP1", message)) is None


def _frame(message_id: str, direction: str = "in", message_type: str = "CALL", second: int = 0) -> dict:
    frame = {"direction": direction, "messageType": message_type, "messageId": message_id,
             "timestamp": f"2026-11-24T10:00:{second:02d}.000Z"}
    if message_type == "CALL":
        frame.update(action="Heartbeat", payload={})
    elif message_type == "CALLRESULT":
        frame["payload"] = {"currentTime": "2026-11-24T10:00:00.000Z"}
    return frame


@pytest_twisted.ensureDeferred
async def test_message_log_in_both_forms_keeps_order_and_each_frame_once(subject):
    """One frame at a time (ocpp-message) and in batches (ocpp-messages) are logged in order; a redelivered batch is kept once."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    await bounded(backend.ensure_charger(charger("CP2")))
    await bounded(backend.store_message("CP1", _frame("1")))
    batch = [("CP1", _frame("1", "out", "CALLRESULT")), ("CP1", _frame("2", second=1)), ("CP1", _frame("2", "out", "CALLRESULT", 1))]
    assert await bounded(backend.store_messages(batch)) is None
    assert await bounded(backend.store_messages(batch)) is None  # at least once: a redelivery changes nothing
    await bounded(backend.store_messages([("CP2", _frame("1")), ("CP1", _frame("1", second=2))]))  # two chargers, in order
    assert subject.messages() == [
        ("CP1", "in", "CALL", "1"),
        ("CP1", "out", "CALLRESULT", "1"),
        ("CP1", "in", "CALL", "2"),
        ("CP1", "out", "CALLRESULT", "2"),
        ("CP2", "in", "CALL", "1"),
        ("CP1", "in", "CALL", "1"),  # the same id again after a reboot: another frame
    ]


@pytest_twisted.ensureDeferred
async def test_repeated_start_answers_the_same_session(subject):
    """A start repeating a recorded one (same connector, idTag, timestamp, meterStart) answers that session."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    first = await bounded(backend.start_session(start_body()))
    repeat = await bounded(backend.start_session(start_body()))
    assert (repeat["sessionId"], repeat["transactionId"]) == (first["sessionId"], first["transactionId"])
    assert len(await bounded(backend.active_sessions("CP1"))) == 1


@pytest_twisted.ensureDeferred
async def test_refused_tag_starts_no_session(subject):
    """A Blocked idTag is refused by authorize and start; start records no active session."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    await subject.add_tag("BLOCKED1", "Blocked")
    assert (await bounded(backend.authorize("CP1", "BLOCKED1")))["idTagInfo"]["status"] == "Blocked"
    answer = await bounded(backend.start_session(start_body(idTag="BLOCKED1")))
    assert answer["idTagInfo"]["status"] == "Blocked"
    assert type(answer["transactionId"]) is int
    assert await bounded(backend.active_sessions("CP1")) == []


@pytest_twisted.ensureDeferred
async def test_status_of_unknown_charger_is_not_found(subject):
    """Status and last-seen for a charger never registered fail with NotFound."""
    status = {"connectorId": 1, "status": "Available", "errorCode": "NoError", "timestamp": "2026-11-24T10:00:00.000Z"}
    with pytest.raises(NotFound):
        await bounded(subject.backend.update_status("CP-unknown", status))
    with pytest.raises(NotFound):
        await bounded(subject.backend.update_last_seen("CP-unknown", {"lastSeen": "2026-11-24T10:00:00.000Z"}))


@pytest_twisted.ensureDeferred
async def test_reconciled_start_takes_the_gateway_transaction_id(subject):
    """A start the gateway gave up waiting for, repeated with its own transactionId, re-keys the one session."""
    backend = subject.backend
    await bounded(backend.ensure_charger(charger()))
    first = await bounded(backend.start_session(start_body()))
    reconciled = await bounded(backend.start_session(start_body(transactionId=GATEWAY_TRANSACTION_ID)))
    assert reconciled["sessionId"] == first["sessionId"]
    assert reconciled["transactionId"] == GATEWAY_TRANSACTION_ID
    active = await bounded(backend.active_sessions("CP1"))
    assert [(s["sessionId"], s["transactionId"]) for s in active] == [(first["sessionId"], GATEWAY_TRANSACTION_ID)]
