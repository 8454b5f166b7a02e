"""
Tests for L{ocpptw.services.recorder}: every frame in and out reaches the message log
(or the events exchange) and the metrics.
"""

from __future__ import annotations

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
    """A publisher without log_frame gets the ocpp.message event of CONTRACT section 5."""
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
