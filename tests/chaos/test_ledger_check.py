# -*- test-case-name: tests.chaos.test_ledger_check -*-
"""
The ledger check itself: it finds what is lost, doubled, reordered or
refused, so a chaos scenario that passes means something.
"""

from __future__ import annotations

import copy

from ocpptw.testing.backend import RecordedRequest
from tests.chaos.charger import meter_payload
from tests.chaos.ledger import Book, Sent, check_backend, check_events

CP = "L-1"


class Delivered:
    def __init__(self, requests):
        self.requests = requests

    def delivered(self):
        return list(self.requests)


def session_book():
    book = Book()
    start = {"connectorId": 1, "idTag": "T", "meterStart": 1000, "timestamp": "2026-11-24T10:00:00Z"}
    book.sent.append(Sent(CP, "m1", "StartTransaction", start, [3, "m1", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}]))
    book.sent.append(Sent(CP, "m2", "MeterValues", meter_payload(1, 7, 1100, "2026-11-24T10:01:00Z"), [3, "m2", {}]))
    stop = {"transactionId": 7, "meterStop": 1250, "timestamp": "2026-11-24T10:02:00Z"}
    book.sent.append(Sent(CP, "m3", "StopTransaction", stop, [3, "m3", {}]))
    return book


def frame_posts(book, stamp="2026-11-24T10:00:00.000Z"):
    posts = []
    for s in book.sent:
        for direction, kind in (("in", "CALL"), ("out", "CALLRESULT")):
            body = {"direction": direction, "messageType": kind, "messageId": s.message_id, "action": s.action, "timestamp": stamp}
            posts.append(RecordedRequest("POST", f"/api/charger/{CP}/ocpp-message", body))
    return posts


def complete_requests(book):
    start = RecordedRequest("POST", "/api/charging-session/start", {"deviceId": CP, "connectorId": 1})
    stop = RecordedRequest("PATCH", "/api/charging-session/s1/stop", {"transactionId": 7, "meterStop": 1250, "refund": "9.87"})
    refund = RecordedRequest("POST", "/api/wallet/refund", {"sessionId": "s1", "amount": "9.87", "idempotencyKey": "s1"})
    return [start] + frame_posts(book) + [stop, refund]


def test_a_complete_delivery_passes():
    """Every frame, the stop and the refund once, in order: no problem."""
    book = session_book()
    tally = check_backend(book, Delivered(complete_requests(book)))
    assert tally.problems == [] and tally.transaction_messages == 3 and tally.lost == 0


def test_finds_a_lost_frame_stop_and_refund():
    """A missing frame post, stop PATCH or refund is reported lost."""
    book = session_book()
    requests = complete_requests(book)
    for missing in (3, len(requests) - 2, len(requests) - 1):
        tally = check_backend(book, Delivered(requests[:missing] + requests[missing + 1 :]))
        assert tally.lost == 1, (missing, tally.problems)


def test_identical_repeats_are_duplicates_different_ones_are_problems():
    """A redelivered identical body is a duplicate; the same key with another body is a problem."""
    book = session_book()
    requests = complete_requests(book)
    assert check_backend(book, Delivered(requests + [requests[-1]])).duplicates == 1
    assert check_backend(book, Delivered(requests + [requests[-1]])).problems == []
    other = copy.deepcopy(requests[-1])
    other.body["amount"] = "1.00"
    assert any(p.startswith("twice") for p in check_backend(book, Delivered(requests + [other])).problems)


def test_finds_reordering_and_callerrors():
    """Frames out of order, a refund before its stop and a CALLERROR are reported."""
    book = session_book()
    requests = complete_requests(book)
    swapped = requests[:1] + [requests[3], requests[1], requests[2]] + requests[4:]
    assert any(p.startswith("order") for p in check_backend(book, Delivered(swapped)).problems)
    refund_first = requests[:-2] + [requests[-1], requests[-2]]
    assert any(p.startswith("order") for p in check_backend(book, Delivered(refund_first)).problems)
    book.sent[1].answer = [4, "m2", "InternalError", "broker down", {}]
    tally = check_backend(book, Delivered(requests))
    assert tally.call_errors == 1 and any(p.startswith("CALLERROR") for p in tally.problems)


def events_for(book):
    events = []
    n = 0
    for s in book.sent:
        for direction in ("in", "out"):
            n += 1
            events.append({"id": f"e{n}", "type": "ocpp.message", "deviceId": CP,
                           "data": {"direction": direction, "messageId": s.message_id}})
    events.append({"id": "s", "type": "charging.started", "deviceId": CP, "data": {"transactionId": 7}})
    events.append({"id": "v", "type": "charging.meterValues", "deviceId": CP,
                   "data": {"transactionId": 7, "samples": [{"value": 1100.0}]}})
    events.append({"id": "t", "type": "charging.stopped", "deviceId": CP, "data": {"transactionId": 7}})
    return events


def test_events_lost_doubled_and_reordered():
    """Events: same-id repeats pass, a lost or re-identified event fails, charging events keep their order."""
    book = session_book()
    events = events_for(book)
    assert check_events(book, events).problems == []
    assert check_events(book, events + [events[-1]]).duplicates == 1
    assert check_events(book, events + [events[-1]]).problems == []
    assert check_events(book, events[:-1]).lost == 1
    assert any(p.startswith("twice") for p in check_events(book, events + [dict(events[0], id="again")]).problems)
    reordered = events[:-3] + [events[-2], events[-3], events[-1]]
    assert any(p.startswith("order") for p in check_events(book, reordered).problems)
