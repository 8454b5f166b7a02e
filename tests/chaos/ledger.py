# -*- test-case-name: tests.chaos -*-
"""
The ledger check of the chaos scenarios: what chargers were answered,
compared with what the backend and the broker received.

A L{Book} records every CALL a L{LedgerCharger} sends and the frame that
answered it.  L{check_backend} and L{check_events} then hold the gateway to
docs/contract.md section 5 ("nothing is lost"):

  - no transaction message (StartTransaction, MeterValues,
    StopTransaction) was answered with a CALLERROR;
  - every answered CALL has exactly one C{ocpp.message} for its frame in
    and one for its answer out, per charger in the order the charger sent
    them (REST: C{POST .../ocpp-message}; broker: events).  A duplicate is
    allowed only as the same delivery again: an identical body (REST) or the
    same event C{id} (broker);
  - REST: each answered StatusNotification is one status PATCH, each
    stopped session one stop PATCH after its start, each refund one POST
    after its stop with C{idempotencyKey} = sessionId;
  - broker: each answered transaction message is one C{charging.*} event,
    started before meter values before stopped.

Both return a L{Tally}: the figures (messages, deliveries, duplicates) and
the C{problems} found; a scenario passes when C{problems} is empty.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from ocpptw.testing.backend import FakeBackend, RecordedRequest

#: The charger-to-server messages a charger gives up on after a CALLERROR.
TRANSACTION_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})

#: The first transactionId the gateway assigns itself (docs/architecture.md).
GATEWAY_ASSIGNED = 0x40000000


@dataclass
class Sent:
    """
    One CALL a charger sent, and the frame that answered it (C{None}: no
    answer, e.g. the connection died first).
    """

    cp: str
    message_id: str
    action: str
    payload: dict
    answer: list | None = None

    @property
    def answered(self) -> bool:
        return self.answer is not None

    @property
    def call_error(self) -> bool:
        return self.answer is not None and self.answer[0] == 4


@dataclass
class Book:
    """
    Every CALL of every charger, in the order each charger sent them.
    """

    sent: list[Sent] = field(default_factory=list)

    def answered(self, cp: str | None = None, action: str | None = None) -> list[Sent]:
        return [
            s
            for s in self.sent
            if s.answered and (cp is None or s.cp == cp) and (action is None or s.action == action)
        ]

    def chargers(self) -> list[str]:
        return list(dict.fromkeys(s.cp for s in self.sent))


@dataclass
class Tally:
    """
    The figures of one ledger check, and what was wrong.
    """

    messages: int = 0
    transaction_messages: int = 0
    deliveries: int = 0
    duplicates: int = 0
    call_errors: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(1 for p in self.problems if p.startswith("lost"))

    def summary(self) -> dict[str, int]:
        return {
            "messages answered": self.messages,
            "transaction messages answered": self.transaction_messages,
            "deliveries": self.deliveries,
            "duplicate deliveries": self.duplicates,
            "CALLERRORs": self.call_errors,
            "lost": self.lost,
            "problems": len(self.problems),
        }


# -- the backend side ----------------------------------------------------------


class RecordingBackend(FakeBackend):
    """
    A L{FakeBackend} that also records how each request ended: its status
    code once answered, or C{"lost"} when the connection went first.  Only
    answered 2xx requests count as delivered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: list[Any] = []

    def render(self, request: Any) -> Any:
        index = len(self.requests)
        self.outcomes.append(None)

        def finished(_: Any) -> None:
            self.outcomes[index] = request.code

        def lost(_: Any) -> None:
            self.outcomes[index] = "lost"

        request.notifyFinish().addCallbacks(finished, lost)
        return super().render(request)

    def delivered(self) -> list[RecordedRequest]:
        """
        The requests answered with a 2xx, in arrival order.
        """
        return [
            r for r, code in zip(self.requests, self.outcomes) if isinstance(code, int) and 200 <= code < 300
        ]

    def delivered_calls(self, endpoint_path: str) -> list[RecordedRequest]:
        return [r for r in self.delivered() if r.path.endswith(endpoint_path)]


def _device(path: str) -> str:
    # /api/charger/{deviceId}/...
    return unquote(path.split("/")[3])


def _key(body: Any) -> str:
    return json.dumps(body, sort_keys=True)


def _distinct(items: list[tuple[Any, Any]], tally: Tally, what: str) -> dict[Any, list[Any]]:
    """
    Group C{(key, body)} pairs by key; identical bodies are one delivery
    (counted as duplicates), different bodies under one key are a problem.
    Returns key -> distinct bodies in first-arrival order.
    """
    seen: dict[Any, list[Any]] = defaultdict(list)
    keys: dict[Any, set[str]] = defaultdict(set)
    for key, body in items:
        k = _key(body)
        if k in keys[key]:
            tally.duplicates += 1
            continue
        keys[key].add(k)
        seen[key].append(body)
    for key, bodies in seen.items():
        if len(bodies) > 1:
            tally.problems.append(f"twice: {what} {key} delivered {len(bodies)} times with different bodies")
    return seen


def _count_answers(book: Book, tally: Tally) -> None:
    for s in book.sent:
        if not s.answered:
            continue
        tally.messages += 1
        if s.action in TRANSACTION_ACTIONS:
            tally.transaction_messages += 1
        if s.call_error:
            tally.call_errors += 1
            if s.action in TRANSACTION_ACTIONS:
                tally.problems.append(f"CALLERROR to {s.cp} for {s.action} {s.message_id}: {s.answer}")


def _check_order(cp: str, expected: list[str], arrived: list[str], what: str, tally: Tally) -> None:
    position = {mid: i for i, mid in enumerate(arrived)}
    present = [mid for mid in expected if mid in position]
    if [position[mid] for mid in present] != sorted(position[mid] for mid in present):
        tally.problems.append(f"order: {what} of {cp} arrived as {arrived}, sent as {expected}")


def check_backend(book: Book, backend: RecordingBackend) -> Tally:
    """
    The ledger against what the REST backend received (see the module
    docstring).
    """
    tally = Tally()
    _count_answers(book, tally)
    delivered = backend.delivered()
    tally.deliveries = len(delivered)
    index = {id(r): i for i, r in enumerate(delivered)}

    # Frames: one ocpp-message per frame in and out.
    posts = [
        ((_device(r.path), r.body["direction"], r.body["messageId"]), r.body)
        for r in delivered
        if r.path.endswith("/ocpp-message")
    ]
    frames = _distinct(posts, tally, "ocpp-message")
    for s in book.sent:
        if not s.answered:
            continue
        for direction in ("in", "out"):
            if (s.cp, direction, s.message_id) not in frames:
                tally.problems.append(f"lost: no ocpp-message {direction} for {s.cp} {s.action} {s.message_id}")
    for cp in book.chargers():
        expected = [s.message_id for s in book.answered(cp)]
        arrived = [key[2] for key in frames if key[0] == cp and key[1] == "in"]
        _check_order(cp, expected, arrived, "ocpp-message in", tally)

    # Status notifications: one PATCH each, in order.
    statuses = [
        ((_device(r.path), r.body.get("connectorId"), r.body.get("status"), r.body.get("timestamp")), r.body)
        for r in delivered
        if r.path.endswith("/status")
    ]
    patched = _distinct(statuses, tally, "status")
    for s in book.answered(action="StatusNotification"):
        p = s.payload
        if not any(k[0] == s.cp and k[1] == p["connectorId"] and k[2] == p["status"] for k in patched):
            tally.problems.append(f"lost: no status PATCH for {s.cp} {p['status']} ({s.message_id})")

    # Sessions: start (or its reconciliation) < one stop PATCH < one refund.
    starts = {}
    for r in delivered:
        if r.path.endswith("/charging-session/start"):
            starts.setdefault((r.body["deviceId"], r.body.get("transactionId")), r)
    stops = _distinct(
        [((r.path.split("/")[3], r.body["transactionId"]), r.body) for r in delivered if r.path.endswith("/stop")],
        tally,
        "stop PATCH",
    )
    stop_requests = {(r.path.split("/")[3], r.body["transactionId"]): r for r in reversed(delivered) if r.path.endswith("/stop")}
    refunds = _distinct(
        [(r.body["idempotencyKey"], r.body) for r in delivered if r.path.endswith("/wallet/refund")], tally, "refund"
    )
    refund_requests = {r.body["idempotencyKey"]: r for r in reversed(delivered) if r.path.endswith("/wallet/refund")}
    for s in book.answered(action="StopTransaction"):
        tx = s.payload["transactionId"]
        started = [a for a in book.answered(s.cp, "StartTransaction") if a.answer[2]["transactionId"] == tx]
        if not started or started[0].answer[2]["idTagInfo"]["status"] != "Accepted":
            continue
        found = [(session, body) for (session, t), body in stops.items() if t == tx]
        if not found:
            tally.problems.append(f"lost: no stop PATCH for transaction {tx} of {s.cp}")
            continue
        session_id, bodies = found[0]
        if len(found) > 1:
            tally.problems.append(f"twice: transaction {tx} stopped in {len(found)} sessions")
        stop_request = stop_requests[(session_id, tx)]
        start_request = starts.get((s.cp, tx)) or starts.get((s.cp, None))
        if tx >= GATEWAY_ASSIGNED and (s.cp, tx) not in starts:
            tally.problems.append(f"lost: transaction {tx} of {s.cp} was never reconciled (no start with its id)")
        elif start_request is not None and index[id(start_request)] > index[id(stop_request)]:
            tally.problems.append(f"order: stop of {tx} reached the backend before its start")
        refund = bodies[0].get("refund")
        if refund is not None and Decimal(refund) > 0:
            if unquote(session_id) not in refunds:
                tally.problems.append(f"lost: no refund for session {session_id} ({refund})")
            else:
                body = refunds[unquote(session_id)][0]
                if body["amount"] != refund:
                    tally.problems.append(f"refund of {session_id} is {body['amount']}, the stop says {refund}")
                if index[id(refund_requests[unquote(session_id)])] < index[id(stop_request)]:
                    tally.problems.append(f"order: refund of {session_id} before its stop")
    return tally


# -- the broker side -----------------------------------------------------------


def check_events(book: Book, events: list[dict]) -> Tally:
    """
    The ledger against the events one consumer queue received, in queue
    order (see the module docstring).
    """
    tally = Tally()
    _count_answers(book, tally)
    tally.deliveries = len(events)
    ids: Counter[str] = Counter(e["id"] for e in events)
    tally.duplicates = sum(n - 1 for n in ids.values())
    unique: list[dict] = []
    seen: set[str] = set()
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            unique.append(e)

    frames: dict[tuple, list[str]] = defaultdict(list)
    for e in unique:
        if e["type"] == "ocpp.message":
            d = e["data"]
            frames[(e["deviceId"], d["direction"], d["messageId"])].append(e["id"])
    for key, event_ids in frames.items():
        if len(event_ids) > 1:
            tally.problems.append(f"twice: frame {key} published as {len(event_ids)} events with different ids")
    for s in book.sent:
        if not s.answered:
            continue
        for direction in ("in", "out"):
            if (s.cp, direction, s.message_id) not in frames:
                tally.problems.append(f"lost: no ocpp.message {direction} for {s.cp} {s.action} {s.message_id}")
    for cp in book.chargers():
        expected = [s.message_id for s in book.answered(cp)]
        arrived = [key[2] for key in frames if key[0] == cp and key[1] == "in"]
        _check_order(cp, expected, arrived, "ocpp.message in", tally)

    for cp in book.chargers():
        charging = [e for e in unique if e["deviceId"] == cp and e["type"].startswith("charging.")]
        position = {}
        for i, e in enumerate(charging):
            position.setdefault((e["type"], _charging_key(e)), []).append(i)
        for key, places in position.items():
            if len(places) > 1:
                tally.problems.append(f"twice: {cp} {key} published {len(places)} times with different ids")
        order: list[int] = []
        for s in book.answered(cp):
            if s.action not in TRANSACTION_ACTIONS or s.call_error:
                continue
            key = _answered_key(s)
            if key is None:
                continue
            if key not in position:
                tally.problems.append(f"lost: no {key[0]} event for {cp} {s.message_id}")
                continue
            order.append(position[key][0])
        if order != sorted(order):
            tally.problems.append(f"order: charging events of {cp} arrived out of the order they were answered")
    return tally


def _charging_key(event: dict) -> Any:
    d = event["data"]
    if event["type"] == "charging.meterValues":
        return (d.get("transactionId"), d["samples"][0]["value"] if d["samples"] else None)
    return d.get("transactionId")


def _answered_key(s: Sent) -> tuple | None:
    if s.action == "StartTransaction":
        if s.answer[2]["idTagInfo"]["status"] != "Accepted":
            return None
        return ("charging.started", s.answer[2]["transactionId"])
    if s.action == "MeterValues":
        value = float(s.payload["meterValue"][0]["sampledValue"][0]["value"])
        return ("charging.meterValues", (s.payload.get("transactionId"), value))
    if s.action == "StopTransaction":
        return ("charging.stopped", s.payload["transactionId"])
    return None
