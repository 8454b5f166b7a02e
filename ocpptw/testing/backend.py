# -*- test-case-name: tests.adapters.test_backend_http,tests.contract.test_backend_contract -*-
"""
An in-memory operator backend: every endpoint of docs/contract.md section 3 as a
real C{twisted.web} resource, with fault injection.

Use it in-process through C{treq.testing.StubTreq(backend)}, or on a real
loopback socket::

    backend = FakeBackend(clock=reactor)
    port, base_url = backend.listen(reactor)
    ...
    await backend.stop()

Every request is recorded in order as L{RecordedRequest} C{(method, path,
body)} in L{FakeBackend.requests} (the path as sent, still percent-encoded;
the body parsed as JSON, or C{None}), with its headers in
L{FakeBackend.headers} at the same index.

Faults apply to the next C{times} matching requests (all of them when
C{times} is C{None}) of one endpoint (every endpoint when C{None}); endpoint
names are the L{ocpptw.interfaces.IBackend} method names, and
C{store_messages} for the batch form of the message log (C{POST
/api/charger/{deviceId}/ocpp-messages}, a JSON array of C{ocpp-message}
bodies).  Faulted requests are recorded but change no state.

Both forms of the message log append to L{FakeBackend.messages} as
C{(deviceId, body)} in order; L{FakeBackend.stored_messages} is the log as
a backend that deduplicates redeliveries keeps it (once per deviceId,
direction, messageType, messageId and timestamp).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, NamedTuple

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

#: (method, path pattern, endpoint name); C{None} in a pattern is a parameter.
ROUTES: tuple[tuple[str, tuple[str | None, ...], str], ...] = (
    ("GET", ("api", "charger", "by-device", None), "charger_by_device"),
    ("POST", ("api", "charger", "ensure"), "ensure_charger"),
    ("PATCH", ("api", "charger", None, "status"), "update_status"),
    ("PATCH", ("api", "charger", None, "last-seen"), "update_last_seen"),
    ("GET", ("api", "charger", None, "active-sessions"), "active_sessions"),
    ("POST", ("api", "charging-session", "start"), "start_session"),
    ("PATCH", ("api", "charging-session", None, "stop"), "stop_session"),
    ("POST", ("api", "wallet", "refund"), "refund"),
    ("POST", ("api", "charger", None, "ocpp-message"), "store_message"),
    ("POST", ("api", "charger", None, "ocpp-messages"), "store_messages"),
    ("POST", ("api", "charger", None, "authorize"), "authorize"),
)

#: Most messages in one C{ocpp-messages} request (docs/backend-api.yaml).
MAX_MESSAGES_PER_BATCH = 1000

#: What identifies one frame of the message log: a redelivery repeats it.
MESSAGE_KEY = ("direction", "messageType", "messageId", "timestamp")

#: Required body properties per endpoint (docs/contract.md section 3).
REQUIRED: dict[str, tuple[str, ...]] = {
    "ensure_charger": ("deviceId", "vendor", "model"),
    "update_status": ("connectorId", "status", "errorCode", "timestamp"),
    "update_last_seen": ("lastSeen",),
    "start_session": ("deviceId", "connectorId", "idTag", "meterStart", "timestamp"),
    "stop_session": ("transactionId", "meterStop", "energyWh", "stoppedAt", "reason"),
    "refund": ("sessionId", "userId", "amount", "currency", "idempotencyKey"),
    "store_message": ("direction", "messageType", "messageId", "timestamp"),
    "authorize": ("idTag",),
}

Reply = tuple[int, Any]


class RecordedRequest(NamedTuple):
    """
    One request as the backend received it.
    """

    method: str
    path: str
    body: Any


@dataclass
class _Fault:
    kind: str
    endpoint: str | None
    remaining: int | None
    status: int = 503
    body: Any = None
    seconds: float = 0.0
    clock: Any = None


class _Site(Site):
    """
    A site that keeps no access log and knows its open connections.
    """

    def __init__(self, resource: Resource, reactor: Any) -> None:
        super().__init__(resource, reactor=reactor)
        self.protocols: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.protocols = [p for p in self.protocols if _connected(p)]
        self.protocols.append(protocol)
        return protocol

    def log(self, request: http.Request) -> None:
        pass

    def drop_connections(self) -> None:
        for protocol in self.protocols:
            if _connected(protocol):
                _transport(protocol).abortConnection()
        self.protocols = []


class FakeBackend(Resource):
    """
    The operator's backend, in memory.

    @param clock: runs L{delay}ed answers (the reactor, or a test C{Clock}).
    @param token: when set, requests without C{Authorization: Bearer
        <token>} get 401.
    @param price_per_kwh: the default tariff, a decimal string (C{None}: no
        price in answers).
    @param unknown_tag_status: the C{idTagInfo.status} of idTags never
        added with L{add_id_tag}.
    @param first_transaction_id: the first transactionId this backend issues.
    @param base_path: the path the API lives under (C{"/operator"}), when
        the gateway's C{BACKEND_API_URL} has one.
    @param record: keep every request, its headers and every message
        (tests); C{False} keeps none of them (benchmarks: flat memory, less
        CPU per request).
    """

    isLeaf = True

    def __init__(
        self,
        clock: Any = None,
        token: str | None = None,
        price_per_kwh: str | None = "0.30",
        currency: str = "EUR",
        unknown_tag_status: str = "Accepted",
        first_transaction_id: int = 1,
        base_path: str = "",
        record: bool = True,
    ) -> None:
        super().__init__()
        self.record = record
        self._prefix = [segment for segment in base_path.split("/") if segment]
        self.clock = clock
        self.token = token
        self.price_per_kwh = price_per_kwh
        self.currency = currency
        self.unknown_tag_status = unknown_tag_status
        self.requests: list[RecordedRequest] = []
        self.headers: list[dict[str, str]] = []
        self.chargers: dict[str, dict] = {}
        self.id_tags: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.statuses: list[tuple[str, dict]] = []
        self.last_seen: dict[str, str] = {}
        self.messages: list[tuple[str, dict]] = []
        self.refunds: dict[str, dict] = {}
        self.refunds_succeeded = 0
        self._next_transaction_id = first_transaction_id
        self._next_session = 1
        self._faults: list[_Fault] = []
        self._overrides: dict[str, Callable[[RecordedRequest, str | None], Reply]] = {}
        self._held: list[tuple[Request, Callable[[], None]]] = []
        self._site: _Site | None = None
        self._port: Any = None
        self._listen_args: tuple[Any, int, str] | None = None

    # -- configuration -------------------------------------------------------

    def add_charger(self, device_id: str, enabled: bool = True, authorization_key_hash: str | None = None, **fields: Any) -> dict:
        """
        Make a charger known, as C{GET /api/charger/by-device} will return it.
        """
        record = {"deviceId": device_id, "enabled": enabled, **fields}
        if authorization_key_hash is not None:
            record["authorizationKeyHash"] = authorization_key_hash
        self.chargers[device_id] = record
        return record

    def add_id_tag(
        self,
        id_tag: str,
        status: str = "Accepted",
        user_id: str | None = None,
        prepaid_amount: str | None = None,
        price_per_kwh: str | None = None,
        currency: str | None = None,
        expiry_date: str | None = None,
        parent_id_tag: str | None = None,
    ) -> None:
        """
        Configure an idTag: its status, its user, its prepaid amount and price.
        """
        self.id_tags[id_tag] = {
            "status": status,
            "userId": user_id,
            "prepaidAmount": prepaid_amount,
            "pricePerKwh": price_per_kwh,
            "currency": currency,
            "expiryDate": expiry_date,
            "parentIdTag": parent_id_tag,
        }

    def override(self, endpoint: str, handler: Callable[[RecordedRequest, str | None], Reply] | None) -> None:
        """
        Answer C{endpoint} with C{handler(request, parameter) -> (status,
        body)} instead of the built-in behaviour (C{None} restores it).
        """
        if handler is None:
            self._overrides.pop(endpoint, None)
        else:
            self._overrides[endpoint] = handler

    # -- faults --------------------------------------------------------------

    def fail_with(self, status: int, endpoint: str | None = None, times: int | None = None, body: Any = None) -> None:
        """
        Answer with C{status} (and C{body}, JSON unless C{bytes}).
        """
        self._faults.append(_Fault("status", endpoint, times, status=status, body=body))

    def hang(self, endpoint: str | None = None, times: int | None = None) -> None:
        """
        Never answer (until L{release}).
        """
        self._faults.append(_Fault("hang", endpoint, times))

    def stall_body(self, endpoint: str | None = None, times: int | None = None) -> None:
        """
        Send the status line, the headers and part of a body, then stall.
        """
        self._faults.append(_Fault("stall", endpoint, times))

    def drop(self, endpoint: str | None = None, times: int | None = None) -> None:
        """
        Close the connection without answering.
        """
        self._faults.append(_Fault("drop", endpoint, times))

    def delay(self, seconds: float, clock: Any = None, endpoint: str | None = None, times: int | None = None) -> None:
        """
        Answer normally, C{seconds} later on C{clock} (default: this backend's).
        """
        self._faults.append(_Fault("delay", endpoint, times, seconds=seconds, clock=clock or self.clock))

    def clear_faults(self) -> None:
        """
        Remove every fault; held requests stay held (see L{release}).
        """
        self._faults = []

    def release(self) -> None:
        """
        Answer every request held by L{hang}, normally.
        """
        held, self._held = self._held, []
        for request, answer in held:
            if not request.finished:
                answer()

    def _release(self, held: tuple[Request, Callable[[], None]]) -> None:
        if held in self._held:
            self._held.remove(held)

    # -- network -------------------------------------------------------------

    def listen(self, reactor: Any, port: int = 0, interface: str = "127.0.0.1") -> tuple[int, str]:
        """
        Serve on a loopback TCP port; fires nothing, returns C{(port,
        base_url)}.
        """
        if self.clock is None:
            self.clock = reactor
        self._site = _Site(self, reactor)
        self._port = reactor.listenTCP(port, self._site, interface=interface)
        number = self._port.getHost().port
        self._listen_args = (reactor, number, interface)
        return number, f"http://{interface}:{number}"

    def open_connections(self) -> int:
        """
        Connections to the listening backend that are still open.
        """
        if self._site is None:
            return 0
        return sum(1 for protocol in self._site.protocols if _connected(protocol))

    def refuse(self) -> Deferred[None]:
        """
        Stop listening and drop open connections: new requests are refused.
        """
        assert self._site is not None, "refuse() needs listen()"
        self._site.drop_connections()
        port, self._port = self._port, None
        return port.stopListening() if port is not None else succeed(None)

    def resume(self) -> None:
        """
        Listen again on the same port after L{refuse}.
        """
        assert self._listen_args is not None and self._site is not None, "resume() needs listen()"
        reactor, number, interface = self._listen_args
        self._port = reactor.listenTCP(number, self._site, interface=interface)

    def stop(self) -> Deferred[Any]:
        """
        Drop held requests and connections, stop listening.
        """
        self._held = []
        waits: list[Deferred[Any]] = []
        if self._site is not None:
            self._site.drop_connections()
        if self._port is not None:
            waits.append(self._port.stopListening() or succeed(None))
            self._port = None
        return gatherResults(waits)

    # -- twisted.web ---------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        method = request.method.decode("ascii")
        path = request.path.decode("ascii", "replace")
        raw = request.content.read() if request.content is not None else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _INVALID
        recorded = RecordedRequest(method, path, None if body is _INVALID else body)
        if self.record:
            self.requests.append(recorded)
            self.headers.append(
                {k.decode("latin-1").lower(): v[-1].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
            )

        if self.token is not None and request.getHeader("authorization") != f"Bearer {self.token}":
            return _write(request, 401, {"error": "missing or wrong bearer token"})
        segments = [segment.decode("utf-8", "replace") for segment in request.postpath or ()]
        prefixed = segments[: len(self._prefix)] == self._prefix
        route = _route(method, segments[len(self._prefix) :]) if prefixed else None
        if route is None:
            return _write(request, 404, {"error": f"no endpoint {method} {path}"})
        endpoint, parameter = route
        if body is _INVALID:
            return _write(request, 400, {"error": "body is not JSON"})

        def answer() -> None:
            status, reply = self._answer(endpoint, recorded, parameter)
            data = _write(request, status, reply)
            if data:
                request.write(data)
            request.finish()

        fault = self._take_fault(endpoint)
        if fault is None:
            status, reply = self._answer(endpoint, recorded, parameter)
            return _write(request, status, reply)
        if fault.kind == "status":
            return _write(request, fault.status, fault.body if fault.body is not None else {"error": "injected fault"})
        if fault.kind == "hang":
            held = (request, answer)
            self._held.append(held)
            # a client that gave up is not answered later (twisted.web would refuse the late write)
            request.notifyFinish().addErrback(lambda _: self._release(held))
            return NOT_DONE_YET
        if fault.kind == "stall":
            request.setResponseCode(200)
            request.setHeader(b"content-type", b"application/json")
            request.write(b'{"stalled": ')
            return NOT_DONE_YET
        if fault.kind == "drop":
            transport: Any = request.channel.transport  # a TCP transport: abortConnection is ITCPTransport's
            transport.abortConnection()
            return NOT_DONE_YET
        call = fault.clock.callLater(fault.seconds, answer)
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        return NOT_DONE_YET

    def _take_fault(self, endpoint: str) -> _Fault | None:
        for fault in self._faults:
            if fault.endpoint in (None, endpoint):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    # -- the endpoints -------------------------------------------------------

    def _answer(self, endpoint: str, recorded: RecordedRequest, parameter: str | None) -> Reply:
        override = self._overrides.get(endpoint)
        if override is not None:
            return override(recorded, parameter)
        body = recorded.body
        required = REQUIRED.get(endpoint, ())
        if required:
            if not isinstance(body, dict):
                return 400, {"error": "body must be a JSON object"}
            missing = [name for name in required if name not in body]
            if missing:
                return 400, {"error": f"missing {', '.join(missing)}"}
        return getattr(self, "_" + endpoint)(parameter, body)

    def _charger_by_device(self, device_id: str, body: Any) -> Reply:
        record = self.chargers.get(device_id)
        return (200, record) if record is not None else (404, {"error": "unknown charger"})

    def _ensure_charger(self, _: None, body: dict) -> Reply:
        record = self.chargers.setdefault(body["deviceId"], {"deviceId": body["deviceId"], "enabled": True})
        record.update({k: v for k, v in body.items() if v is not None})
        return 200, record

    def _update_status(self, device_id: str, body: dict) -> Reply:
        if device_id not in self.chargers:
            return 404, {"error": "unknown charger"}
        self.statuses.append((device_id, body))
        return 204, None

    def _update_last_seen(self, device_id: str, body: dict) -> Reply:
        if device_id not in self.chargers:
            return 404, {"error": "unknown charger"}
        self.last_seen[device_id] = body["lastSeen"]
        return 204, None

    def _active_sessions(self, device_id: str, body: Any) -> Reply:
        keys = ("sessionId", "transactionId", "connectorId", "idTag", "userId", "meterStart", "prepaidAmount", "pricePerKwh", "currency")
        return 200, [
            {k: s[k] for k in keys if s.get(k) is not None}
            for s in self.sessions.values()
            if s["deviceId"] == device_id and s["stop"] is None
        ]

    def _tag(self, id_tag: str) -> dict:
        return self.id_tags.get(id_tag) or {"status": self.unknown_tag_status}

    def _id_tag_info(self, id_tag: str) -> dict:
        tag = self._tag(id_tag)
        info = {"status": tag["status"]}
        for key in ("expiryDate", "parentIdTag"):
            if tag.get(key) is not None:
                info[key] = tag[key]
        return info

    def _start_session(self, _: None, body: dict) -> Reply:
        given = body.get("transactionId")
        natural = ("deviceId", "connectorId", "idTag", "meterStart", "timestamp")
        for session in self.sessions.values():
            if session["transactionId"] == given:
                return 200, self._started(session)
        for session in self.sessions.values():
            if all(session[k] == body[k] for k in natural):
                if given is not None:  # the gateway gave up waiting and assigned its own id: it wins
                    session["transactionId"] = given
                return 200, self._started(session)
        tag = self._tag(body["idTag"])
        if given is not None:
            transaction_id = given
        else:
            taken = {s["transactionId"] for s in self.sessions.values()}
            while self._next_transaction_id in taken:
                self._next_transaction_id += 1
            transaction_id = self._next_transaction_id
            self._next_transaction_id += 1
            if tag["status"] != "Accepted":  # no session for a refused idTag
                return 200, {"sessionId": None, "transactionId": transaction_id, "idTagInfo": self._id_tag_info(body["idTag"])}
        price = tag.get("pricePerKwh") or self.price_per_kwh
        session = {
            "sessionId": f"session-{self._next_session}",
            "transactionId": transaction_id,
            "deviceId": body["deviceId"],
            "connectorId": body["connectorId"],
            "idTag": body["idTag"],
            "userId": tag.get("userId"),
            "meterStart": body["meterStart"],
            "timestamp": body["timestamp"],
            "prepaidAmount": tag.get("prepaidAmount"),
            "pricePerKwh": price,
            "currency": (tag.get("currency") or self.currency) if price is not None else None,
            "stop": None,
        }
        self._next_session += 1
        self.sessions[session["sessionId"]] = session
        return 200, self._started(session)

    def _started(self, session: dict) -> dict:
        answer = {"sessionId": session["sessionId"], "transactionId": session["transactionId"], "idTagInfo": self._id_tag_info(session["idTag"])}
        for key in ("userId", "prepaidAmount", "pricePerKwh", "currency"):
            if session.get(key) is not None:
                answer[key] = session[key]
        return answer

    def _stop_session(self, session_id: str, body: dict) -> Reply:
        session = self.sessions.get(session_id)
        if session is None:
            return 404, {"error": "unknown session"}
        if session["stop"] is None:
            session["stop"] = body
        return 200, {"sessionId": session_id, "stopped": True}

    def _refund(self, _: None, body: dict) -> Reply:
        try:
            amount = Decimal(str(body["amount"]))
        except InvalidOperation:
            return 400, {"error": "amount is not a decimal"}
        if not amount.is_finite() or amount <= 0:
            return 400, {"error": "amount must be positive"}
        key = body["idempotencyKey"]
        if key not in self.refunds:
            self.refunds[key] = body
            self.refunds_succeeded += 1
            return 200, {"refunded": True, "idempotencyKey": key}
        return 200, {"refunded": False, "idempotencyKey": key, "duplicate": True}

    def _store_message(self, device_id: str, body: dict) -> Reply:
        if self.record:
            self.messages.append((device_id, body))
        return 204, None

    def _store_messages(self, device_id: str, body: Any) -> Reply:
        if not isinstance(body, list) or not 1 <= len(body) <= MAX_MESSAGES_PER_BATCH:
            return 400, {"error": f"body must be a JSON array of 1 to {MAX_MESSAGES_PER_BATCH} messages"}
        required = REQUIRED["store_message"]
        for index, message in enumerate(body):
            if not isinstance(message, dict):
                return 400, {"error": f"message {index} is not a JSON object"}
            missing = [name for name in required if name not in message]
            if missing:
                return 400, {"error": f"message {index}: missing {', '.join(missing)}"}
        if self.record:
            self.messages.extend((device_id, message) for message in body)
        return 204, None

    def stored_messages(self) -> list[tuple[str, dict]]:
        """
        L{messages} without redeliveries: the first of each (deviceId,
        direction, messageType, messageId, timestamp), in arrival order.
        """
        seen: set[tuple[Any, ...]] = set()
        kept = []
        for device_id, body in self.messages:
            key = (device_id, *(body.get(name) for name in MESSAGE_KEY))
            if key not in seen:
                seen.add(key)
                kept.append((device_id, body))
        return kept

    def _authorize(self, device_id: str, body: dict) -> Reply:
        return 200, {"idTagInfo": self._id_tag_info(body["idTag"])}


_INVALID = object()


def _transport(protocol: Any) -> Any:
    channel = getattr(protocol, "_channel", protocol)  # Site wraps HTTPChannel in a proxy
    return getattr(channel, "transport", None)


def _connected(protocol: Any) -> bool:
    transport = _transport(protocol)
    return transport is not None and bool(getattr(transport, "connected", False))


def _route(method: str, segments: list[str]) -> tuple[str, str | None] | None:
    for route_method, pattern, endpoint in ROUTES:
        if route_method != method or len(pattern) != len(segments):
            continue
        parameter = None
        for expected, actual in zip(pattern, segments):
            if expected is None:
                parameter = actual
            elif expected != actual:
                break
        else:
            return endpoint, parameter
    return None


def _write(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    if body is None:
        return b""
    request.setHeader(b"content-type", b"application/json")
    return body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    """
    C{python -m ocpptw.testing.backend}: the fake backend on a loopback
    port, for trying a gateway without the operator's backend (every idTag
    is accepted unless C{--unknown-tags Invalid}; nothing is kept on disk).
    Stops on Ctrl-C or SIGTERM.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ocpptw.testing.backend",
        description="An in-memory operator backend for trying the gateway (docs/backend-api.yaml).",
    )
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (%(default)s; 0 picks one)")
    parser.add_argument("--token", help="bearer token the gateway must send (its BACKEND_API_TOKEN)")
    parser.add_argument("--price", default="0.30", help="price per kWh of every tag (%(default)s)")
    parser.add_argument("--currency", default="EUR", help="currency (%(default)s)")
    parser.add_argument(
        "--unknown-tags", default="Accepted", choices=["Accepted", "Invalid", "Blocked"],
        help="what Authorize answers for an idTag it was not told about (%(default)s)",
    )
    parser.add_argument(
        "--charger", action="append", default=[], metavar="ID=KEY",
        help="a known charger and its authorization key (security profiles 1 and 2); repeat for more",
    )
    args = parser.parse_args(argv)
    chargers = []
    for item in args.charger:
        device_id, sep, key = item.partition("=")
        if not sep or not device_id:
            parser.error(f"--charger takes ID=KEY, got {item!r}")
        from ocpptw.services.keys import check_key, hash_key

        problem = check_key(key)
        if problem:
            parser.error(f"--charger {device_id}: {problem}")
        chargers.append((device_id, hash_key(key)))

    from twisted.internet import reactor

    backend = FakeBackend(
        clock=reactor, token=args.token, price_per_kwh=args.price, currency=args.currency,
        unknown_tag_status=args.unknown_tags, record=False,
    )
    for device_id, key_hash in chargers:
        backend.add_charger(device_id, authorization_key_hash=key_hash)
    _, url = backend.listen(reactor, args.port)
    print(f"fake backend listening at {url} (set BACKEND_API_URL={url})", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
