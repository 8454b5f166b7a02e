"""
Tests for L{ocpptw.services.recorder}: every frame in and out reaches the message log
(or the events exchange) and the metrics.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import LogLevel, globalLogPublisher

from ocpptw.adapters.local_events import LocalEventPublisher
from ocpptw.interfaces import StorageFull
from ocpptw.observability.metrics import Metrics
from ocpptw.services.recorder import FrameRecorder
from ocpptw.store import embedded
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import success_result_of


class Session:
    charge_point_id = "CP-1"

    def __init__(self) -> None:
        self.context: dict = {}


class Publishing:
    """A publisher without a message log of its own (as the broker's)."""

    def __init__(self, result=None) -> None:
        self.events: list[dict] = []
        self.result = result

    def publish(self, event):
        self.events.append(event)
        return self.result if self.result is not None else succeed(None)


def test_frames_reach_the_embedded_log_with_their_text(clock):
    """With the embedded store a frame is logged without an envelope, the session's payload text kept as it is."""
    clock.advance(1_790_035_200)
    db = InlineDatabase(schema=embedded.SCHEMA)
    publisher = LocalEventPublisher(None, embedded.EmbeddedBackend(db, clock), clock)
    recorder = FrameRecorder(publisher, clock, "gw-1", Metrics())
    session = Session()
    recorder.frame(session, "in", "CALL", "m1", "Heartbeat", {}, None, None, "{ }")
    recorder.frame(session, "out", "CALLRESULT", "m1", "Heartbeat", {"currentTime": "t"}, None, None, None)
    recorder.frame(session, "out", "CALLERROR", "m2", None, {}, "FormationViolation", "bad", "{}")
    clock.advance(0)
    rows = success_result_of(db.read(lambda c: c.execute(
        "SELECT direction, message_type, message_id, action, payload, error_code FROM messages ORDER BY id").fetchall()))
    assert rows == [
        ("in", "CALL", "m1", "Heartbeat", "{ }", None),
        ("out", "CALLRESULT", "m1", "Heartbeat", '{"currentTime":"t"}', None),
        ("out", "CALLERROR", "m2", None, "{}", "FormationViolation"),
    ]
    db.close()


def test_frames_are_events_for_other_publishers(clock):
    """A publisher without log_frame gets the ocpp.message event of docs/contract.md section 5."""
    publisher = Publishing()
    recorder = FrameRecorder(publisher, clock, "gw-1")
    recorder.frame(Session(), "out", "CALLERROR", "m2", "Heartbeat", {}, "NotSupported", None, "{}")
    [event] = publisher.events
    assert (event["type"], event["deviceId"], event["instance"]) == ("ocpp.message", "CP-1", "gw-1")
    assert event["data"] == {"direction": "out", "messageType": "CALLERROR", "messageId": "m2", "action": "Heartbeat",
                             "payload": {}, "errorCode": "NotSupported", "errorDescription": ""}


def test_a_refusing_disk_is_logged_once_per_outage(clock):
    """StorageFull warns once, whatever the number of frames or writes, and recovery is logged."""
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        refusing = Publishing()
        recorder = FrameRecorder(refusing, clock, "gw-1")
        for n in range(3):
            refusing.result = fail(StorageFull("disk full"))
            recorder.frame(Session(), "in", "CALL", str(n), "Heartbeat", {}, None, None, "{}")
        refusing.result = succeed(None)
        recorder.frame(Session(), "in", "CALL", "4", "Heartbeat", {}, None, None, "{}")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    levels = [(e["log_level"], e["log_format"]) for e in logged if e.get("log_namespace", "").startswith("ocpptw.services.recorder")]
    assert [level for level, _ in levels] == [LogLevel.warn, LogLevel.info]


def test_one_callback_per_shared_write(clock):
    """Frames that share one write's Deferred get the recorder's callbacks once."""
    added = []

    class Counting(Deferred):
        def addErrback(self, *args, **kwargs):
            added.append(args)
            return super().addErrback(*args, **kwargs)

    shared: Deferred[None] = Counting()

    from zope.interface import implementer

    from ocpptw.interfaces import IFrameLog

    @implementer(IFrameLog)
    class Logging:
        def log_frame(self, *args):
            return shared

    recorder = FrameRecorder(Logging(), clock, "gw-1")
    for n in range(5):
        recorder.frame(Session(), "in", "CALL", str(n), "Heartbeat", {}, None, None, "{}")
    assert len(added) == 1
    shared.callback(None)


def _embedded_recorder(clock, accepted=None, max_payload_bytes=None):
    clock.advance(1_790_035_200)
    db = InlineDatabase(schema=embedded.SCHEMA)
    publisher = LocalEventPublisher(None, embedded.EmbeddedBackend(db, clock), clock)
    metrics = Metrics()
    recorder = FrameRecorder(publisher, clock, "gw-1", metrics, accepted=accepted, max_payload_bytes=max_payload_bytes)
    return recorder, db, metrics


def _rows(db):
    return success_result_of(db.read(lambda c: c.execute(
        "SELECT direction, message_type, message_id, action, payload FROM messages ORDER BY id").fetchall()))


def test_finding_3_before_acceptance_only_boots_are_logged(clock):
    """A charger not yet accepted: its BootNotification and the answer are kept; its other frames are only counted."""
    accepted = {"CP-1": False}
    recorder, db, metrics = _embedded_recorder(clock, accepted=lambda cp: accepted[cp])
    session = Session()
    big = {"vendorId": "V", "data": "x" * 100_000}
    for n in range(20):
        recorder.frame(session, "in", "CALL", f"d{n}", "DataTransfer", big, None, None, None)
        recorder.frame(session, "out", "CALLERROR", f"d{n}", "DataTransfer", {}, "SecurityError", "not accepted", "{}")
    recorder.frame(session, "out", "CALLERROR", "-1", None, {}, "FormationViolation", "bad", "{}")
    recorder.frame(session, "in", "CALL", "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}, None, None, None)
    recorder.frame(session, "out", "CALLRESULT", "b1", "BootNotification", {"status": "Rejected"}, None, None, None)
    accepted["CP-1"] = True
    recorder.frame(session, "in", "CALL", "h1", "Heartbeat", {}, None, None, "{}")
    clock.advance(0)
    assert [r[2:4] for r in _rows(db)] == [("b1", "BootNotification"), ("b1", "BootNotification"), ("h1", "Heartbeat")]
    body = metrics.render()[0].decode()
    assert 'ocpp_frames_not_logged_total{reason="not_accepted"} 41.0' in body
    assert 'ocpp_frames_total{action="DataTransfer",direction="in",message_type="CALL"} 20.0' in body  # still counted as frames
    db.close()


def test_finding_3_names_a_charger_chose_are_cut_to_what_no_real_one_exceeds(clock):
    """A megabyte action name, CALLERROR code or message id is kept as its first 64 characters, marked truncated."""
    from ocpptw.services.recorder import MAX_NAME_CHARS

    recorder, db, metrics = _embedded_recorder(clock)
    session = Session()
    huge = "A" * 1_000_000
    recorder.frame(session, "in", "CALL", "c1", huge, {}, None, None, "{}")
    recorder.frame(session, "out", "CALLERROR", "c1", huge, {}, "NotImplemented", "unknown action", "{}")
    recorder.frame(session, "in", "CALLERROR", "x" * 500, None, {}, "E" * 900_000, "stray", "{}")
    clock.advance(0)
    stored = success_result_of(db.read(lambda c: c.execute(
        "SELECT max(length(action)), max(length(error_code)), max(length(message_id)) FROM messages").fetchone()))
    assert stored == (MAX_NAME_CHARS, MAX_NAME_CHARS, MAX_NAME_CHARS)
    db.close()


def test_finding_3_payloads_over_the_cap_are_kept_truncated_and_marked(clock):
    """MESSAGE_LOG_MAX_BYTES: a longer payload is kept as its first bytes, as a JSON string (the mark), and counted."""
    import json

    recorder, db, metrics = _embedded_recorder(clock, max_payload_bytes=1024)
    session = Session()
    recorder.frame(session, "in", "CALL", "d1", "DataTransfer", {"vendorId": "V", "data": "é" * 5000}, None, None, None)
    recorder.frame(session, "in", "CALL", "d2", "DataTransfer", {"vendorId": "V"}, None, None, '{"vendorId":"V"}')
    clock.advance(0)
    (first, second) = _rows(db)
    kept = json.loads(first[4])
    assert isinstance(kept, str) and kept.startswith('{"vendorId":"V","data":"éé') and len(kept.encode()) <= 1024
    assert second[4] == '{"vendorId":"V"}'
    assert 'ocpp_frames_not_logged_total{reason="truncated"} 1.0' in metrics.render()[0].decode()
    db.close()


def test_finding_3_truncated_frames_say_so_in_events_and_backend_bodies(clock):
    """Through the broker (or to a REST backend) a cut payload comes with truncated: true."""
    publisher = Publishing()
    recorder = FrameRecorder(publisher, clock, "gw-1", None, max_payload_bytes=1024)
    recorder.frame(Session(), "in", "CALL", "d1", "DataTransfer", {"vendorId": "V", "data": "x" * 5000}, None, None, None)
    [event] = publisher.events
    assert event["data"]["truncated"] is True and isinstance(event["data"]["payload"], str)
    assert len(event["data"]["payload"]) == 1024
    outboxed = []

    class Outbox:
        def append(self, key, operation, body):
            outboxed.append(body)
            return succeed(None)

    local = LocalEventPublisher(Outbox(), object(), clock)
    local._log_frames = None  # a REST backend: frames go through the outbox
    FrameRecorder(local, clock, "gw-1", None, max_payload_bytes=1024).frame(
        Session(), "in", "CALL", "d2", "DataTransfer", {"vendorId": "V", "data": "x" * 5000}, None, None, None
    )
    assert outboxed[0]["body"]["truncated"] is True


def test_finding_3_truncated_frames_match_the_documents(clock):
    """docs/asyncapi.yaml and docs/backend-api.yaml describe a cut payload as it is sent."""
    from pathlib import Path

    import jsonschema
    import yaml

    docs = Path(__file__).resolve().parents[1] / "docs"
    event_schema = yaml.safe_load((docs / "asyncapi.yaml").read_text())["components"]["schemas"]["OcppMessageData"]
    backend_doc = yaml.safe_load((docs / "backend-api.yaml").read_text())
    body_schema = {"components": backend_doc["components"], "$ref": "#/components/schemas/OcppMessage"}
    publisher = Publishing()
    recorder = FrameRecorder(publisher, clock, "gw-1", None, max_payload_bytes=1024)
    recorder.frame(Session(), "in", "CALL", "d1", "DataTransfer", {"vendorId": "V", "data": "x" * 5000}, None, None, None)
    data = publisher.events[0]["data"]
    jsonschema.validate(data, event_schema)
    jsonschema.validate({**data, "timestamp": "2026-12-04T00:00:00.000Z"}, body_schema)


def test_with_flush_with_frames_wait_for_a_hand_over_and_events_do_not(clock):
    """
    Given the embedded database's before_wake, the publisher registers its
    flush there: frames alone may wait FRAME_DELAY for other writes to share
    their commit; an event (its caller may wait on it) asks for this turn's
    hand-over; either way the flush writes everything gathered, once.
    """
    from ocpptw.adapters import local_events

    clock.advance(1_790_035_200)
    db = InlineDatabase(schema=embedded.SCHEMA)
    registered: list[tuple] = []
    publisher = LocalEventPublisher(None, embedded.EmbeddedBackend(db, clock), clock,
                                    flush_with=lambda fn, within: registered.append((fn, within)))
    written = publisher.log_frame("CP-1", "out", "CALLRESULT", "1", "Heartbeat", {}, "{}", None, None)
    publisher.log_frame("CP-1", "in", "CALL", "2", "Heartbeat", {}, "{}", None, None)
    assert [within for _, within in registered] == [local_events.FRAME_DELAY]
    event = publisher.publish({"id": "e1", "type": "charger.statusUpdate", "deviceId": "CP-1",
                               "occurredAt": "2026-12-05T00:00:00Z", "data": {"connectorId": 1, "status": "Available"}})
    assert [within for _, within in registered] == [local_events.FRAME_DELAY, 0.0]
    assert not clock.getDelayedCalls()  # no callLater of its own
    for fn, _ in registered:
        fn()
    success_result_of(written)
    success_result_of(event)
    assert [r[2] for r in _rows(db)] == ["1", "2"]
    events = success_result_of(db.read(lambda c: c.execute("SELECT id FROM events").fetchall()))
    assert events == [("e1",)]
    publisher.log_frame("CP-1", "in", "CALL", "3", "Heartbeat", {}, "{}", None, None)
    assert len(registered) == 3  # registered again once flushed


def test_with_flush_with_a_chargers_connected_and_disconnected_wait_like_frames(clock):
    """
    A charger's Connected and Disconnected (nobody waits on them but the
    drain) may wait for a hand-over like frames; a connector's status,
    which a StatusNotification's answer waits on, does not.
    """
    from ocpptw.adapters import local_events
    from ocpptw.services.chargers import ChargerService

    clock.advance(1_790_035_200)
    db = InlineDatabase(schema=embedded.SCHEMA)
    registered: list[tuple] = []
    backend = embedded.EmbeddedBackend(db, clock)
    publisher = LocalEventPublisher(None, backend, clock, flush_with=lambda fn, within: registered.append((fn, within)))
    chargers = ChargerService(backend, None, publisher, None, clock)
    connected = chargers.connected("CP-1", None)
    assert [within for _, within in registered] == [local_events.FRAME_DELAY]
    status = publisher.publish({"id": "e2", "type": "charger.statusUpdate", "deviceId": "CP-1",
                                "occurredAt": "2026-12-05T00:00:00Z",
                                "data": {"connectorId": 1, "status": "Available", "online": True}})
    assert [within for _, within in registered] == [local_events.FRAME_DELAY, 0.0]
    for fn, _ in registered:
        fn()
    success_result_of(connected)
    success_result_of(status)
    registered.clear()
    disconnected = chargers.disconnected("CP-1", None)
    assert [within for _, within in registered] == [local_events.FRAME_DELAY]
    registered[0][0]()
    success_result_of(disconnected)
    rows = success_result_of(db.read(lambda c: c.execute("SELECT type, data FROM events ORDER BY rowid").fetchall()))
    assert [json.loads(data)["status"] for _, data in rows] == ["Connected", "Available", "Disconnected"]
