# -*- test-case-name: tests.app.test_hub,tests.e2e.test_workers -*-
"""
The local channel between the workers of C{WORKERS} and their parent: a
UNIX socket, C{DATA_DIR/workers.sock}, served by the parent; each worker
connects to it (L{HubClient}, a C{ClientService}).  Messages are JSON, one
per line (at most L{MAX_LINE} bytes), requests C{{"id", "method", "args"}}
and answers C{{"id", "result"}} or C{{"id", "error": {"code",
"description", "details"}}}, in both directions.

What travels on it:

  - C{gather(what)}: the parent asks every worker for its C{ready} answer,
    its C{metrics} text or its C{chargers}, so that C{/ready},
    C{/metrics} and the fleet list of any worker cover the whole host;
  - without a broker: C{claim} and C{release} as a worker takes and loses
    a charger (the parent keeps who holds which, and tells the older
    holder to C{evict} it: newest connection wins), and C{send}, a
    command for a charger held by another worker, forwarded by the parent
    to its holder.  With C{ENABLE_RABBITMQ} the workers do these through
    the broker as separate instances do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ocpptw.interfaces import (
    CallErrorReceived,
    ChargerOffline,
    CommandTimeout,
    ICommandBus,
    InvalidPayload,
)

#: The longest message (a worker's metrics text is the largest).
MAX_LINE = 16 * 1024 * 1024
#: Seconds a question to a worker or the parent may take (commands: their own timeout plus this).
ASK_TIMEOUT = 10.0
#: Seconds the parent waits for a worker's report (C{/ready}, C{/metrics});
#: a worker that does not answer within it is reported as missing.
REPORT_TIMEOUT = 5.0
#: Close code and reason for a connection another worker holds now.
CLAIMED_ELSEWHERE = (4001, "connected to another instance")


class HubUnavailable(Exception):
    """
    The other end of the channel is not connected.
    """


def error_of(failure: Failure) -> dict:
    for kind, code in ((ChargerOffline, "ChargerOffline"), (CommandTimeout, "Timeout"), (InvalidPayload, "InvalidPayload")):
        if failure.check(kind):
            return {"code": code, "description": str(failure.value)}
    if failure.check(CallErrorReceived):
        e = failure.value
        return {"code": e.code, "description": e.description, "details": e.details}
    return {"code": "InternalError", "description": failure.getErrorMessage()}


def exception_of(error: dict) -> Exception:
    code, description = error.get("code", "InternalError"), error.get("description", "")
    if code == "ChargerOffline":
        return ChargerOffline(description)
    if code == "Timeout":
        return CommandTimeout(description)
    if code == "InvalidPayload":
        return InvalidPayload(description)
    if code == "HubUnavailable":
        return HubUnavailable(description)
    return CallErrorReceived(code, description, error.get("details") or {})


class Peer(LineOnlyReceiver):
    """
    One end of the channel: answers requests with C{handler.on_<method>}
    (which may return a Deferred) and sends its own with L{call}.
    """

    MAX_LENGTH = MAX_LINE
    delimiter = b"\n"
    log = Logger()

    def __init__(self, handler: Any, clock: Any) -> None:
        self.handler = handler
        self.clock = clock
        self._next = 0
        self._pending: dict[int, Deferred[Any]] = {}
        self.worker = 0

    def call(self, method: str, within: float = ASK_TIMEOUT, **args: Any) -> Deferred[Any]:
        if self.transport is None or not self.connected:
            return fail(HubUnavailable("the workers' channel is not connected"))
        self._next += 1
        key = self._next
        def cancel(_: Any) -> None:
            self._pending.pop(key, None)

        d: Deferred[Any] = Deferred(cancel)
        self._pending[key] = d
        self.sendLine(json.dumps({"id": key, "method": method, "args": args}).encode("utf-8"))
        d.addTimeout(within, self.clock)

        def timed_out(failure: Failure) -> Failure:
            if failure.check(TimeoutError, DeferredTimeout):
                raise CommandTimeout(f"no answer over the workers' channel within {within:g} s")
            return failure

        return d.addErrback(timed_out)

    def lineReceived(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            self.log.warn("workers' channel: a line that is not JSON")
            return
        if (
            type(message) is not dict
            or not isinstance(message.get("id"), (int, str, type(None)))
            or not isinstance(message.get("args", {}), dict)
            or not isinstance(message.get("method", ""), str)
        ):
            self.log.warn("workers' channel: a line that is not a message")
            return
        if "method" in message:
            self._answer(message)
            return
        d = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]  # an id of ours, or nothing
        if d is None:
            return
        if "error" in message:
            d.errback(exception_of(message["error"]))
        else:
            d.callback(message.get("result"))

    def _answer(self, message: dict) -> None:
        key = message.get("id")
        handler = getattr(self.handler, f"on_{message.get('method')}", None)
        if handler is None:
            self._reply(key, error={"code": "InternalError", "description": "no such method"})
            return
        d = maybeDeferred(handler, self, **message.get("args", {}))
        d.addCallbacks(lambda result: self._reply(key, result=result), lambda f: self._reply(key, error=error_of(f)))

    def _reply(self, key: Any, **body: Any) -> None:
        if self.transport is not None and self.connected:
            self.sendLine(json.dumps({"id": key, **body}).encode("utf-8"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.log.warn("workers' channel: a message above {limit} bytes; closing", limit=self.MAX_LENGTH)
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(HubUnavailable("the workers' channel closed"))
        lost = getattr(self.handler, "lost", None)
        if lost is not None:
            lost(self)


class Hub:
    """
    The parent's end: who is connected, who holds which charger.
    """

    log = Logger()

    def __init__(self, clock: Any, expected: int) -> None:
        self.clock = clock
        self.expected = expected
        self.workers: dict[int, Peer] = {}
        self.holders: dict[str, tuple[int, float]] = {}
        #: workers that said hello at least once (they got through their start)
        self.greeted: set[int] = set()

    def factory(self) -> Factory:
        hub = self

        class HubFactory(Factory):
            def buildProtocol(self, addr: Any) -> Peer:
                return Peer(hub, hub.clock)

        return HubFactory()

    def on_hello(self, peer: Peer, worker: int) -> None:
        peer.worker = worker
        self.workers[worker] = peer
        self.greeted.add(worker)

    def lost(self, peer: Peer) -> None:
        if self.workers.get(peer.worker) is peer:
            del self.workers[peer.worker]
            for cp in [cp for cp, (w, _) in self.holders.items() if w == peer.worker]:
                del self.holders[cp]

    def on_claim(self, peer: Peer, charger: str, since: float) -> None:
        held = self.holders.get(charger)
        if held is None or held[0] == peer.worker:
            self.holders[charger] = (peer.worker, since)
            return
        if held[1] <= since:  # the claim is the newer connection
            self.holders[charger] = (peer.worker, since)
            self._evict(held[0], charger)
        else:
            self._evict(peer.worker, charger)

    def _evict(self, worker: int, charger: str) -> None:
        peer = self.workers.get(worker)
        if peer is not None:
            peer.call("evict", charger=charger).addErrback(lambda f: None)

    def on_release(self, peer: Peer, charger: str) -> None:
        if self.holders.get(charger, (None,))[0] == peer.worker:
            del self.holders[charger]

    def on_send(self, peer: Peer, charger: str, action: str, payload: dict, timeout: float) -> Deferred[Any]:
        held = self.holders.get(charger)
        holder = self.workers.get(held[0]) if held is not None else None
        if holder is None:
            return fail(ChargerOffline(f"{charger} is not connected to any worker"))
        return holder.call("send", within=timeout + ASK_TIMEOUT, charger=charger, action=action, payload=payload, timeout=timeout)

    def on_gather(self, peer: Peer, what: str) -> Deferred[Any]:
        workers = sorted(self.workers.items())
        asked = [p.call("report", within=REPORT_TIMEOUT, what=what) for _, p in workers]

        def collect(results: list) -> dict:
            reports = {str(w): value for (w, _), (ok, value) in zip(workers, results) if ok}
            return {"expected": self.expected, "reports": reports}

        return DeferredList(asked, consumeErrors=True).addCallback(collect)


@implementer(ICommandBus)
class WorkerCommandBus:
    """
    Commands from a worker's API: local when the charger is held here,
    else through the parent to the worker that holds it.
    """

    def __init__(self, local: Any, registry: Any, client: HubClient) -> None:
        self._local = local
        self._registry = registry
        self._client = client

    def check(self, action: str, payload: Any, version: Any = None) -> None:
        self._local.check(action, payload, version)

    def send(self, charge_point_id: str, action: str, payload: dict, timeout: float | None = None) -> Deferred[dict]:
        if self._registry.get(charge_point_id) is not None:
            return self._local.send(charge_point_id, action, payload, timeout)
        try:
            self._local.check(action, payload)
        except InvalidPayload as e:
            return fail(e)
        timeout = timeout or self._client.default_timeout

        def offline(failure: Failure) -> Failure:
            if failure.check(HubUnavailable):
                raise ChargerOffline(f"{charge_point_id} is not connected here and the other workers cannot be asked")
            return failure

        d = self._client.ask("send", timeout + ASK_TIMEOUT, charger=charge_point_id, action=action, payload=payload, timeout=timeout)
        return d.addErrback(offline)


class WorkerDirectory:
    """
    Without a broker, the chargers of the host's other workers for the API
    (C{GET /api/v1/chargers/{id}} and C{?scope=fleet}), asked through the
    parent (the report C{chargers} of every worker).
    """

    def __init__(self, client: HubClient) -> None:
        self._client = client

    def describe(self, charge_point_id: str) -> Deferred[dict | None]:
        def find(gathered: dict) -> dict | None:
            for chargers in gathered["reports"].values():
                for charger in chargers:
                    if charger.get("chargePointId") == charge_point_id:
                        return charger
            return None

        return self._client.gather("chargers").addCallback(find)

    def census(self) -> Deferred[dict]:
        def merge(gathered: dict) -> dict:
            chargers = [c for _, found in sorted(gathered["reports"].items(), key=lambda i: int(i[0])) for c in found]
            return {"chargers": chargers, "instances": sorted({c["instance"] for c in chargers} | {self._client.instance})}

        return self._client.gather("chargers").addCallback(merge)


class HubClient:
    """
    A worker's end: answers the parent (evict, send, report) and tells it
    which chargers this worker takes and loses (without a broker).

    @param reports: C{what -> value or Deferred} for L{on_report}.
    """

    log = Logger()

    def __init__(
        self,
        worker: int,
        registry: Any,
        local_bus: Any,
        clock: Any,
        reports: dict[str, Callable[[], Any]],
        claims: bool,
        default_timeout: float,
    ) -> None:
        self.worker = worker
        self._registry = registry
        self._local = local_bus
        self._clock = clock
        self.reports = reports
        self._claims = claims
        self.default_timeout = default_timeout
        self.peer: Peer | None = None
        self.instance = getattr(registry, "instance", "")
        self._since: dict[str, float] = {}
        if claims:
            registry.add_listener(self._attached, self._detached)

    def factory(self) -> Factory:
        client = self

        class ClientFactory(Factory):
            def buildProtocol(self, addr: Any) -> Peer:
                return Peer(client, client._clock)

        return ClientFactory()

    def connected(self, peer: Any) -> Deferred[Any]:
        """
        For C{ClientService(prepareConnection=...)}: say hello, then claim
        every charger held here.
        """
        peer = getattr(peer, "_protocol", peer)  # ClientService hands over a proxy
        self.peer = peer
        d = peer.call("hello", worker=self.worker)
        if self._claims:
            for cp in self._registry:
                d.addCallback(lambda _, cp=cp: peer.call("claim", charger=cp, since=self._since.get(cp, 0.0)))
        return d

    def lost(self, peer: Peer) -> None:
        if self.peer is peer:
            self.peer = None

    def ask(self, method: str, within: float = ASK_TIMEOUT, **args: Any) -> Deferred[Any]:
        if self.peer is None:
            return fail(HubUnavailable("the workers' channel is not connected"))
        return self.peer.call(method, within=within, **args)

    def _attached(self, cp: str) -> None:
        self._since[cp] = self._clock.seconds()
        self.ask("claim", charger=cp, since=self._since[cp]).addErrback(lambda f: None)

    def _detached(self, cp: str) -> None:
        self._since.pop(cp, None)
        self.ask("release", charger=cp).addErrback(lambda f: None)

    def on_evict(self, peer: Peer, charger: str) -> None:
        connection = self._registry.get(charger)
        if connection is not None:
            self.log.info("{chargePointId} connected to another worker; closing the older connection", chargePointId=charger)
            connection.close(*CLAIMED_ELSEWHERE)

    def on_send(self, peer: Peer, charger: str, action: str, payload: dict, timeout: float) -> Deferred[Any]:
        return maybeDeferred(self._local.send, charger, action, payload, timeout)

    def on_report(self, peer: Peer, what: str) -> Any:
        report = self.reports.get(what)
        if report is None:
            return fail(InvalidPayload(f"no report {what!r}"))
        return maybeDeferred(report)

    def gather(self, what: str) -> Deferred[dict]:
        """
        Every connected worker's C{what}: C{{"expected": N, "reports": {"1": ..., ...}}};
        only this worker's when the channel is down.
        """
        d = self.ask("gather", within=REPORT_TIMEOUT + ASK_TIMEOUT, what=what)

        def alone(failure: Failure) -> Deferred[Any]:
            failure.trap(HubUnavailable, CommandTimeout)
            return maybeDeferred(self.reports[what]).addCallback(
                lambda value: {"expected": 0, "reports": {str(self.worker): value}}
            )

        return d.addErrback(alone)


def merge_metrics(reports: dict[str, str]) -> str:
    """
    The Prometheus text of several workers as one: every sample gains a
    C{worker} label, and each family's samples stay together under one
    C{# HELP} and C{# TYPE}.
    """
    order: list[str] = []
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in sorted(reports.items(), key=lambda item: int(item[0])):
        family = ""
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split()[2]
                if family not in heads:
                    order.append(family)
                    heads[family], samples[family] = [], []
                if line not in heads[family]:
                    heads[family].append(line)
                continue
            if not line or line.startswith("#"):
                continue
            if family not in heads:
                order.append(family)
                heads[family], samples[family] = [], []
            samples[family].append(_labelled(line, worker))
    out: list[str] = []
    for family in order:
        out += heads[family] + samples[family]
    return "\n".join(out) + "\n"


def _labelled(line: str, worker: str) -> str:
    label = f'worker="{worker}"'
    name_end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=len(line))
    if line[name_end:name_end + 1] == "{":
        rest = line[name_end + 1:]
        return f"{line[:name_end]}{{{label}{',' if not rest.startswith('}') else ''}{rest}"
    return f"{line[:name_end]}{{{label}}}{line[name_end:]}"


def merge_ready(gathered: dict) -> tuple[int, dict]:
    """
    One C{/ready} answer for the host: unavailable when any worker is, degraded
    when any worker is or one does not answer (it is being started again), each
    reason naming its worker.
    """
    reports = gathered["reports"]
    reasons: list[str] = []
    states = []
    for worker, (_status, body) in sorted(reports.items(), key=lambda item: int(item[0])):
        states.append(body.get("status"))
        reasons += [f"worker {worker}: {reason}" for reason in body.get("reasons", [])]
    missing = [str(n) for n in range(1, gathered["expected"] + 1) if str(n) not in reports]
    reasons += [f"worker {n} does not answer (being started again, or stuck)" for n in missing]
    if "unavailable" in states:
        return 503, {"status": "unavailable", "reasons": reasons}
    if reasons:
        return 200, {"status": "degraded", "reasons": reasons}
    return 200, {"status": "ready"}


def host_views(client: HubClient) -> tuple[Callable[[], Deferred[Any]], Callable[[], Deferred[Any]]]:
    """
    C{(ready, metrics)}: C{/ready}'s answer and C{/metrics}' body for the
    whole host, through the parent.
    """

    def ready() -> Deferred[Any]:
        return client.gather("ready").addCallback(merge_ready)

    def metrics() -> Deferred[Any]:
        return client.gather("metrics").addCallback(
            lambda gathered: (merge_metrics(gathered["reports"]).encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8")
        )

    return ready, metrics




class HubListener(Service):
    """
    The parent's service for the channel: listens on C{path} (a stale
    socket file from an earlier run is removed first) while running.

    It first takes an exclusive lock on C{workers.lock} beside the socket
    and holds it while running: with C{SO_REUSEPORT} a second C{twistd
    ocpp} on the same C{DATA_DIR} would otherwise bind the same ports,
    take over the channel and deliver the same outboxes.
    """

    def __init__(self, hub: Hub, path: str, reactor: Any) -> None:
        self.hub = hub
        self.path = path
        self._reactor = reactor
        self.port: Any = None
        self._lock: int | None = None

    def startService(self) -> None:
        import fcntl
        import os

        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        lock = os.open(os.path.join(directory, "workers.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            from ocpptw.app.gateway import StartFailed

            raise StartFailed(f"another ocpptw runs workers on DATA_DIR {directory} (it holds workers.lock)") from None
        self._lock = lock
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.port = self._reactor.listenUNIX(self.path, self.hub.factory(), mode=0o600)
        super().startService()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        port, self.port = self.port, None
        d = succeed(None) if port is None else maybeDeferred(port.stopListening)
        return d.addBoth(self._unlock)

    def _unlock(self, result: Any) -> Any:
        import os

        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)  # and with it the lock
        return result
