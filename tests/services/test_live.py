"""
The console's live feed: the charger table, connector statuses, the
in-memory history ring and its bounds, and the events handed to listeners.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock

from ocpptw.services.live import MAX_CONNECTORS, LiveFeed, Tee, message_text, one_line
from ocpptw.services.registry import ChargerRegistry


class Session:
    def __init__(self, charge_point_id):
        self.charge_point_id = charge_point_id


class Connection:
    def __init__(self, charge_point_id):
        self.session = Session(charge_point_id)
        self.closed = None

    def close(self, code, reason):
        self.closed = (code, reason)


def rig(history_size=0, **kwargs):
    clock = Clock()
    clock.advance(1_780_000_000)
    registry = ChargerRegistry("i-1", clock)
    feed = LiveFeed(clock, registry, history_size=history_size, **kwargs)
    events = []
    feed.listen(lambda kind, cp, text: events.append((kind, cp, json.loads(text))))
    return clock, registry, feed, events


def frame(feed, cp, direction="in", message_type="CALL", message_id="1", action="Heartbeat", payload=None, **kw):
    feed.frame(Session(cp), direction, message_type, message_id, action, payload if payload is not None else {},
               kw.get("error_code"), kw.get("error_description"), kw.get("payload_text"))


def test_connect_status_and_disconnect_are_charger_events():
    clock, registry, feed, events = rig()
    registry.attach("CP1", Connection("CP1"))
    clock.advance(5)
    frame(feed, "CP1", action="StatusNotification",
          payload={"connectorId": 1, "status": "Charging", "errorCode": "NoError", "timestamp": "2026-05-28T20:26:45Z"})
    registry.detach("CP1", registry.get("CP1"))
    changes = [(e[2]["change"], e[2]["online"]) for e in events if e[0] == "charger"]
    assert changes == [("connected", True), ("status", True), ("disconnected", False)]
    (state,) = feed.chargers()
    assert state["ocppVersion"] == "1.6" and state["online"] is False
    assert state["connectors"] == [{"connectorId": 1, "status": "Charging", "errorCode": "NoError",
                                    "timestamp": "2026-05-28T20:26:45Z"}]
    assert state["lastSeen"] > state["connectedAt"]


def test_status_of_a_2_0_1_connector_keeps_its_evse():
    _, registry, feed, _ = rig()
    registry.attach("CP2", Connection("CP2"))
    frame(feed, "CP2", action="StatusNotification",
          payload={"evseId": 2, "connectorId": 1, "connectorStatus": "Occupied", "timestamp": "2026-05-28T20:26:45Z"})
    assert feed.charger("CP2")["connectors"] == [{"evseId": 2, "connectorId": 1, "status": "Occupied",
                                                  "timestamp": "2026-05-28T20:26:45Z"}]


def test_a_charger_cannot_grow_its_connectors_without_bound():
    _, registry, feed, _ = rig()
    registry.attach("CP3", Connection("CP3"))
    for n in range(MAX_CONNECTORS + 50):
        frame(feed, "CP3", action="StatusNotification", payload={"connectorId": n, "status": "Available", "errorCode": "NoError"})
    assert len(feed.charger("CP3")["connectors"]) == MAX_CONNECTORS


def test_malformed_status_is_ignored():
    _, registry, feed, _ = rig()
    registry.attach("CP4", Connection("CP4"))
    for payload in ({"connectorId": "1", "status": "Available"}, {"connectorId": True, "status": "x"},
                    {"connectorId": 1}, {"connectorId": 1, "status": "A", "evseId": "x"}):
        frame(feed, "CP4", action="StatusNotification", payload=payload)
    assert feed.charger("CP4")["connectors"] == []


def test_frames_are_message_events_with_their_charger():
    _, registry, feed, events = rig()
    frame(feed, "CP5", payload_text='{\n "a": "x\\ny"\n}', payload={"a": "x\ny"})
    frame(feed, "CP5", direction="out", message_type="CALLERROR", error_code="NotImplemented", error_description="no",
          payload={})
    messages = [e[2] for e in events if e[0] == "message"]
    assert messages[0]["chargePointId"] == "CP5" and messages[0]["payload"] == {"a": "x\ny"}
    assert messages[1]["errorCode"] == "NotImplemented" and messages[1]["errorDescription"] == "no"


def test_no_listener_and_no_ring_costs_no_encoding():
    clock = Clock()
    feed = LiveFeed(clock, None)

    class Unencodable(dict):
        pass

    payload = Unencodable()
    payload["x"] = object()  # encoding it would raise
    feed.frame(Session("CP6"), "in", "CALL", "1", "Heartbeat", payload, None, None, None)


def test_a_long_payload_is_kept_cut_and_marked():
    text = message_text("2026-05-28T20:26:45Z", "in", "CALL", "1", "DataTransfer", '{"data":"' + "x" * 100 + '"}',
                        None, None, max_payload=20)
    message = json.loads(text)
    assert message["truncated"] is True and message["payload"] == '{"data":"xxxxxxxxxxx'


def test_one_line():
    assert one_line('{\r\n"a": 1}') == '{  "a": 1}'
    assert one_line("{}") == "{}"


def test_ring_pages_newest_first_with_a_cursor():
    _, _, feed, _ = rig(history_size=5)
    for n in range(8):
        frame(feed, "CP7", message_id=str(n))
    texts, following = feed.page("CP7", None, 2)
    assert [json.loads(t)["messageId"] for t in texts] == ["7", "6"]
    texts, following = feed.page("CP7", following, 2)
    assert [json.loads(t)["messageId"] for t in texts] == ["5", "4"]
    texts, following = feed.page("CP7", following, 2)
    assert [json.loads(t)["messageId"] for t in texts] == ["3"] and following is None
    assert feed.seen("CP7") and not feed.seen("CP8")


def test_until_a_charger_is_accepted_only_its_boots_are_kept():
    accepted = set()
    _, _, feed, events = rig(history_size=10, accepted=accepted.__contains__)
    frame(feed, "CP8", message_id="b", action="BootNotification")
    frame(feed, "CP8", message_id="h", action="Heartbeat")
    accepted.add("CP8")
    frame(feed, "CP8", message_id="h2", action="Heartbeat")
    texts, _ = feed.page("CP8", None, 10)
    assert [json.loads(t)["messageId"] for t in texts] == ["h2", "b"]
    assert [e[2]["messageId"] for e in events if e[0] == "message"] == ["b", "h", "h2"]  # the stream shows all


def test_rings_are_bounded_in_bytes_least_recent_charger_first():
    _, _, feed, _ = rig(history_size=100, max_bytes=3000)
    for cp in ("A", "B", "C"):
        for n in range(5):
            frame(feed, cp, message_id=str(n), payload={"pad": "x" * 100})
    assert not feed.seen("A") and feed.seen("C")
    assert feed._ring_bytes <= 3000


def test_offline_chargers_are_forgotten_first():
    _, registry, feed, _ = rig(max_chargers=2)
    connections = {}
    for cp in ("A", "B", "C"):
        connections[cp] = Connection(cp)
        registry.attach(cp, connections[cp])
    registry.detach("B", connections["B"])
    registry.attach("D", Connection("D"))
    assert [c["chargePointId"] for c in feed.chargers()] == ["A", "C", "D"]  # online ones stay


def test_the_feed_and_the_tee_are_session_observers():
    from zope.interface.verify import verifyObject

    from ocpptw.interfaces import ISessionObserver

    assert verifyObject(ISessionObserver, LiveFeed(Clock(), None))
    assert verifyObject(ISessionObserver, Tee())


def test_tee_calls_every_observer():
    calls = []

    class Observer:
        def __init__(self, name):
            self.name = name

        def frame(self, *args, **kwargs):
            calls.append((self.name, "frame"))

        def violation(self, *args):
            calls.append((self.name, "violation"))

    tee = Tee(Observer("a"), Observer("b"))
    tee.frame(None, "in", "CALL", "1", "Heartbeat", {}, None, None, payload_text="{}")
    tee.violation(None, "Heartbeat", None)
    assert calls == [("a", "frame"), ("b", "frame"), ("a", "violation"), ("b", "violation")]


def test_a_failing_listener_does_not_stop_the_others(fail_on_logged_errors):
    _, _, feed, events = rig()

    def broken(kind, cp, text):
        raise RuntimeError("boom")

    feed._listeners.insert(0, broken)
    frame(feed, "CP9")
    assert events and events[0][0] == "message"
    assert len(fail_on_logged_errors) == 1
    fail_on_logged_errors.clear()
