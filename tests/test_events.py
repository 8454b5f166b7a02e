"""
Tests for L{ocpptw.services.events}: the envelope, and the publisher used when
RabbitMQ is off.
"""

from __future__ import annotations

import uuid

import pytest
from twisted.internet.defer import succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ocpptw.adapters.local_events import LocalEventPublisher
from ocpptw.interfaces import IEventPublisher, IMessageLog
from ocpptw.services import events
from ocpptw.services.delivery import STORE_MESSAGE
from ocpptw.services.events import make_event
from ocpptw.store import embedded
from ocpptw.store import outbox as outbox_module
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import failure_result_of, no_result, success_result_of


def message_body(event):
    """
    The contract's ocpp-message body for an ocpp.message event: its fields
    that are set, and occurredAt as the timestamp.
    """
    fields = ("direction", "messageType", "messageId", "action", "payload", "errorCode")
    body = {name: event["data"][name] for name in fields if event["data"].get(name) is not None}
    body["timestamp"] = event["occurredAt"]
    return body


def message_event(clock, **data):
    base = {"direction": "in", "messageType": "CALL", "messageId": "m1", "action": "Heartbeat", "payload": {}}
    base.update(data)
    return make_event(events.OCPP_MESSAGE, "CP-1", base, clock, "gw-1")


class HttpLike:
    """
    A backend without the embedded store's logs (as the REST adapter).
    """


@pytest.fixture
def parts(clock):
    state = InlineDatabase(schema=outbox_module.SCHEMA)
    store_db = InlineDatabase(schema=embedded.SCHEMA)
    backend = embedded.EmbeddedBackend(store_db, clock)
    success_result_of(backend.ensure_charger({"deviceId": "CP-1", "vendor": "V", "model": "M"}))
    outbox = outbox_module.Outbox(state, clock, max_age=60.0)
    outbox.register(STORE_MESSAGE, lambda body: backend.store_message(body["deviceId"], body["body"]))
    success_result_of(outbox.start())
    yield state, store_db, backend, outbox
    success_result_of(outbox.stop())
    state.close()
    store_db.close()


def test_envelope(clock):
    """An event has a UUID4 id, its type, the device, the clock's time in ISO Z, the instance and the data."""
    clock.advance(1_790_035_200.5)
    event = make_event(events.CHARGER_LAST_SEEN, "CP-1", {"lastSeen": "x"}, clock, "gw-1")
    assert uuid.UUID(event["id"]).version == 4
    assert event == {"id": event["id"], "type": "charger.lastSeen", "deviceId": "CP-1",
                     "occurredAt": "2026-09-22T00:00:00.500Z", "instance": "gw-1", "data": {"lastSeen": "x"}}
    assert make_event(events.CHARGER_LAST_SEEN, "CP-1", {}, clock, "gw-1")["id"] != event["id"]


def test_event_types_are_the_contract_types():
    """The seven types of docs/contract.md section 5."""
    assert set(events.EVENT_TYPES) == {
        "ocpp.message", "charger.metadataUpdate", "charger.statusUpdate", "charger.lastSeen",
        "charging.started", "charging.meterValues", "charging.stopped",
    }


def test_message_body_follows_the_backend_contract(clock, parts):
    """A published ocpp.message becomes an ocpp-message body with the contract's fields only, occurredAt as timestamp."""
    _, _, _, outbox = parts

    publisher = LocalEventPublisher(outbox, HttpLike(), clock)
    bodies = []
    outbox.register(STORE_MESSAGE, lambda body: bodies.append(body["body"]) or succeed(None))
    event = message_event(clock, messageType="CALLERROR", errorCode="FormationViolation",
                          errorDescription="bad", action=None, payload=None)
    success_result_of(publisher.publish(event))
    clock.advance(1)
    assert bodies == [{"direction": "in", "messageType": "CALLERROR", "messageId": "m1",
                       "errorCode": "FormationViolation", "timestamp": event["occurredAt"]}]


def test_local_publisher_sends_messages_through_the_outbox(clock, parts):
    """ocpp.message becomes backend.store_message in the outbox and reaches the store."""
    state, store_db, backend, outbox = parts
    publisher = LocalEventPublisher(outbox, HttpLike(), clock)
    verifyObject(IEventPublisher, publisher)
    assert publisher.ready() == (True, "")
    success_result_of(publisher.publish(message_event(clock)))
    rows = success_result_of(store_db.read(lambda c: c.execute("SELECT device_id, action, payload FROM messages").fetchall()))
    assert rows == [("CP-1", "Heartbeat", "{}")]


def test_local_publisher_fires_when_durable(clock, parts):
    """publish fires only after the outbox entry is committed."""
    state, store_db, backend, outbox = parts
    state.auto = False
    d = LocalEventPublisher(outbox, HttpLike(), clock).publish(message_event(clock))
    no_result(d)
    state.commit()
    success_result_of(d)
    state.auto = True
    state.commit()


def test_other_events_are_dropped_without_the_embedded_store(clock, parts):
    """With a REST backend, events other than ocpp.message fire at once and write nothing."""
    state, store_db, backend, outbox = parts
    event = make_event(events.CHARGING_METER_VALUES, "CP-1", {"connectorId": 1, "samples": []}, clock, "gw-1")
    assert success_result_of(LocalEventPublisher(outbox, HttpLike(), clock).publish(event)) is None
    assert outbox.depth() == 0
    assert not clock.getDelayedCalls()


def test_embedded_writes_are_grouped_per_turn(clock, parts):
    """With the embedded store, the frames and events of one reactor turn go in one write each."""
    state, store_db, backend, outbox = parts
    publisher = LocalEventPublisher(outbox, backend, clock)
    writes = []
    original = store_db.write
    store_db.write = lambda fn: (writes.append(fn), original(fn))[1]
    first = publisher.publish(message_event(clock, messageId="a"))
    second = publisher.publish(message_event(clock, messageId="b"))
    meter = publisher.publish(make_event(events.CHARGING_METER_VALUES, "CP-1", {"connectorId": 1, "samples": []}, clock, "gw-1"))
    no_result(first)
    assert writes == []
    clock.advance(0)
    for d in (first, second, meter):
        assert success_result_of(d) is None
    assert len(writes) == 2
    assert outbox.depth() == 0
    logged = success_result_of(store_db.read(lambda c: c.execute("SELECT message_id FROM messages ORDER BY rowid").fetchall()))
    assert logged == [("a",), ("b",)]
    assert success_result_of(store_db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone())) == (1,)


def test_frames_go_to_the_embedded_log_as_they_are(clock, parts):
    """log_frame keeps the payload text it is given, encodes a payload given without one, and shares one Deferred per write."""
    state, store_db, backend, outbox = parts
    clock.advance(1_790_035_200.25)
    publisher = LocalEventPublisher(outbox, backend, clock)
    first = publisher.log_frame("CP-1", "in", "CALL", "a", "DataTransfer", {"vendorId": "Grüße"},
                                '{ "vendorId" : "Gr\\u00fc\\u00dfe" }', None, None)
    second = publisher.log_frame("CP-1", "out", "CALLERROR", "a", "DataTransfer", {"why": "Grüße"}, None,
                                 "GenericError", "no")
    assert second is first
    no_result(first)
    clock.advance(0)
    assert success_result_of(first) is None
    rows = success_result_of(store_db.read(lambda c: c.execute(
        "SELECT device_id, direction, message_type, message_id, action, payload, error_code, timestamp FROM messages"
        " ORDER BY id").fetchall()))
    assert rows == [
        ("CP-1", "in", "CALL", "a", "DataTransfer", '{ "vendorId" : "Gr\\u00fc\\u00dfe" }', None, "2026-09-22T00:00:00.250Z"),
        ("CP-1", "out", "CALLERROR", "a", "DataTransfer", '{"why":"Grüße"}', "GenericError", "2026-09-22T00:00:00.250Z"),
    ]
    third = publisher.log_frame("CP-1", "in", "CALL", "b", "Heartbeat", {}, "{}", None, None)
    assert third is not first
    clock.advance(0)
    success_result_of(third)
    assert outbox.depth() == 0


def test_frames_go_through_the_outbox_without_the_embedded_store(clock, parts):
    """With a REST backend a frame is a backend.store_message outbox entry, its body the ocpp-message body."""
    state, store_db, backend, outbox = parts

    clock.advance(1_790_035_200.5)
    publisher = LocalEventPublisher(outbox, HttpLike(), clock)
    bodies = []
    outbox.register(STORE_MESSAGE, lambda body: bodies.append(body) or succeed(None))
    event = message_event(clock, messageType="CALLERROR", errorCode="FormationViolation", errorDescription="bad",
                          action=None, payload={})
    success_result_of(publisher.log_frame("CP-1", "in", "CALLERROR", "m1", None, {}, "{}", "FormationViolation", "bad"))
    clock.advance(1)
    assert bodies == [{"deviceId": "CP-1", "body": message_body(event)}]


def test_a_frame_write_that_fails_fails_its_deferred(clock):
    """A batch of frames the store refuses fails the shared Deferred."""

    @implementer(IMessageLog)
    class Refusing:
        def log_frames(self, rows):
            raise ValueError("refused")

        def log_events(self, events):
            raise ValueError("refused")

        def record_event(self, event):
            raise ValueError("refused")

    publisher = LocalEventPublisher(outbox=None, backend=Refusing(), clock=clock)
    d = publisher.log_frame("CP", "in", "CALL", "1", "Heartbeat", {}, "{}", None, None)
    clock.advance(0)
    failure_result_of(d, ValueError)


def test_ids_are_uuid4_strings():
    """new_id formats what uuid.UUID(int=..., version=4) would: version 4, RFC 4122 variant."""
    for _ in range(2000):
        value = uuid.UUID(events.new_id())
        assert value.version == 4 and value.variant == uuid.RFC_4122
        assert str(value) == str(uuid.UUID(int=value.int, version=4))


def test_now_z_is_iso_z(clock):
    """now_z, formatted directly, gives iso_z's text, to the millisecond, including rounding at the edges."""
    from ocpptw.clock import iso_z, now_z, utcnow

    for seconds in (0.0, 0.0005, 0.9995, 0.99999949, 0.9999995, 59.9999996, 951782400.001, 1_790_035_200.123456,
                    4102444799.9999999, 253402300799.0):
        clock.advance(seconds - clock.seconds())
        assert now_z(clock) == iso_z(utcnow(clock))
