# -*- test-case-name: tests.adapters.test_backend_http,tests.contract.test_backend_contract -*-
"""
The operator's backend over REST (docs/contract.md section 3), with treq's
L{HTTPClient} over Twisted's L{Agent} and a persistent connection pool.

L{HttpBackend} provides L{IBackend}.  Every call has a deadline on the
injected clock that covers the response headers I{and} the body read; every
failure becomes a domain error of L{ocpptw.interfaces}, so the services never
see a C{twisted.web} exception:

  - 5xx, 408, 429, a timeout, a refused or lost connection, and a 2xx whose
    body is not the JSON the call needs -> L{BackendUnavailable} (a backend
    that answers garbage is as good as down: retrying may help, and the OCPP
    fallbacks apply);
  - 404 -> L{NotFound} (C{charger_by_device} fires with C{None});
  - any other 4xx or a 3xx -> L{BackendRejected}.

Idempotent calls (the GETs, the PATCHes, ensure, refund, ocpp-message and
ocpp-messages) retry
L{BackendUnavailable} with exponential backoff and full jitter;
C{start_session} and C{authorize} are tried once, because their callers have
a deadline of their own.

A circuit breaker protects the gateway from a dead backend: after
C{failure_threshold} consecutive unavailable answers it opens for
C{cooldown} seconds, during which calls fail at once with L{CircuitOpen}.
After the cool-down one call goes through as a probe; its success closes
the circuit, its failure opens it again.

Per request the adapter does as little as it can: the body is encoded once
per logical call and handed to treq as an L{IBodyProducer} that writes its
bytes at once (no cooperative file producer), the headers are built once,
the endpoint for the backend's host is made once, and one timer covers the
headers and the body read (treq's own C{timeout} covers only the headers).
The body is read with treq's L{collect}, bounded in size.  The client keeps
no cookies: the backend authenticates the gateway by its bearer token, and
a jar a backend could fill is state nobody bounds.  The pool keeps as many
connections open as the outbox delivers at once, so a busy gateway does not
open a connection per request.
"""

from __future__ import annotations

import random
from typing import Any, Callable, cast
from urllib.parse import quote

from hyperlink import EncodedURL
from treq import collect
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.components import proxyForInterface
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from ocpptw import __version__
from ocpptw.adapters._http_answers import (
    BadAnswer,
    BoundedBody,
    authorized,
    json_object,
    session_list,
    started,
    started_by_charger,
)
from ocpptw.adapters.circuit import Circuit, CircuitOpen
from ocpptw.interfaces import (
    BackendRejected,
    BackendUnavailable,
    IBackend,
    IBatchedMessageLog,
    NotFound,
)
from ocpptw.ocpp.jsontext import compact_bytes
from ocpptw.transport.compat import quiet_connection_pool

__all__ = ["CircuitOpen", "HttpBackend"]

#: The largest answer body read; more is a broken backend.
MAX_BODY_BYTES = 4 * 1024 * 1024

#: Statuses below 500 that still mean "try again later".
_RETRYABLE_4XX = frozenset({408, 429})

#: Request URLs kept parsed (see L{HttpBackend._uri}); bounded memory.
URI_CACHE = 4096

#: Connections to the backend kept open: as many as the outbox delivers at
#: once (L{ocpptw.store.outbox.Outbox}'s C{max_concurrent}), so that a busy
#: outbox reuses connections instead of opening and closing one per request.
MAX_CONNECTIONS = 64


@implementer(IBodyProducer)
class _BytesProducer:
    """
    A request body that is already bytes: written at once, no cooperator.
    """

    __slots__ = ("_data", "length")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _NoCookies(IndexableCookieJar):
    """
    treq's cookie jar, kept empty: the backend authenticates the gateway by
    its bearer token, and a jar a backend could fill is state nobody
    bounds.  It skips the standard library's work of looking up and parsing
    cookies for every request and answer.
    """

    def add_cookie_header(self, request: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass

    def set_cookie(self, cookie: Any) -> None:
        pass


class _URI(EncodedURL):
    """
    A URL that is already a URI: the base URL encoded once, each path
    segment percent-encoded (L{_seg}).  treq's L{HTTPClient} turns every URL
    it is given into a URI again (IDNA for the host, percent-encoding of
    every segment: 73 of the 124 us treq adds to a request on the build
    machine, docs/performance.md);
    this one says it has nothing to do.
    """

    __slots__ = ("_text",)
    _text: str

    @classmethod
    def of(cls, text: str) -> _URI:
        url = cast(_URI, cls.from_text(text))
        url._text = text
        return url

    def to_uri(self) -> _URI:
        return self

    def to_text(self, with_password: bool = False) -> str:
        return self._text


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """
    The agent's endpoints, made once per (scheme, host, port) instead of
    once per request (the agent's default factory builds a new
    L{HostnameEndpoint} every time).
    """

    def __init__(self, reactor: Any, connect_timeout: float) -> None:
        self._reactor = reactor
        self._connect_timeout = connect_timeout
        self._policy: Any = None
        self._cache: dict[tuple[bytes, bytes, int], Any] = {}

    def endpointForURI(self, uri: Any) -> Any:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._cache.get(key)
        if endpoint is not None:
            return endpoint
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
        from twisted.web.error import SchemeNotSupported

        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
        endpoint = HostnameEndpoint(self._reactor, uri.host.decode("ascii"), uri.port, timeout=self._connect_timeout)
        if uri.scheme == b"https":
            if self._policy is None:
                from twisted.web.client import BrowserLikePolicyForHTTPS

                self._policy = BrowserLikePolicyForHTTPS()
            endpoint = wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
        self._cache[key] = endpoint
        return endpoint


class _Call:
    """
    One logical call's cancellation state: set when the caller cancels.
    """

    cancelled = False


@implementer(IBackend, IBatchedMessageLog)
class HttpBackend(Service):
    """
    L{IBackend} over HTTP.

    @param base_url: the backend's base URL (C{BACKEND_API_URL}).
    @param clock: the reactor; provides L{IReactorTime} (and L{IReactorTCP}
        unless C{http} is given).
    @param timeout: seconds one request may take, headers and body together.
    @param token: bearer token sent as C{Authorization} (never logged).
    @param pool: a L{HTTPConnectionPool}; by default a persistent one
        keeping up to L{MAX_CONNECTIONS} connections.
    @param agent: the L{IAgent} under treq's L{HTTPClient} (tests:
        C{treq.testing.RequestTraversalAgent}); by default an L{Agent} on
        C{pool}.
    @param retries: attempts of an idempotent call (at least one).
    @param rng: jitter source.
    @param observer: optional; C{observer.request(endpoint, outcome,
        seconds)} per attempt, C{outcome} one of C{ok}, C{not_found},
        C{rejected}, C{unavailable}, C{circuit_open}, C{cancelled}.
    """

    log = Logger()

    def __init__(
        self,
        base_url: str,
        clock: Any,
        timeout: float = 10.0,
        token: str | None = None,
        pool: Any = None,
        agent: Any = None,
        retries: int = 3,
        rng: random.Random | None = None,
        observer: Any = None,
        failure_threshold: int = 5,
        cooldown: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
    ) -> None:
        self._base = EncodedURL.from_text(base_url.rstrip("/")).to_uri().to_text()  # IDNA and percent-encoding, once
        self._uris: dict[str, _URI] = {}
        self._clock = clock
        self._timeout = timeout
        self._retries = max(1, retries)
        self._rng = rng if rng is not None else random.Random()
        self._observer = observer
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._circuit = Circuit(clock, failure_threshold, cooldown)
        raw = {
            b"Accept": [b"application/json"],
            b"User-Agent": [f"ocpptw/{__version__}".encode("ascii")],
        }
        if token:
            raw[b"Authorization"] = [b"Bearer " + token.encode("utf-8")]
        # Built once and shared by every request (the agent copies them to add Host).
        self._headers = Headers(raw)
        self._json_headers = Headers({**raw, b"Content-Type": [b"application/json"]})
        self._pool = None
        if agent is None:
            from twisted.web.client import Agent, HTTPConnectionPool

            if pool is None:
                pool = HTTPConnectionPool(clock, persistent=True)
                quiet_connection_pool(pool)  # no "Starting factory" line per backend connection
                pool.maxPersistentPerHost = MAX_CONNECTIONS
                pool.cachedConnectionTimeout = 30
            self._pool = pool
            agent = Agent.usingEndpointFactory(clock, _Endpoints(clock, timeout), pool=pool)
        self._http = HTTPClient(agent, cookiejar=_NoCookies())
        self._no_cookies = _NoCookies()  # passed with every request: treq would make a jar per request

    # -- IBackend ------------------------------------------------------------

    def charger_by_device(self, device_id: str) -> Deferred[dict | None]:
        d = self._call("charger_by_device", "GET", f"/api/charger/by-device/{_seg(device_id)}", parse=json_object)

        def not_found(failure: Failure) -> None:
            failure.trap(NotFound)
            return None

        return d.addErrback(not_found)

    def ensure_charger(self, body: dict) -> Deferred[dict]:
        return self._call("ensure_charger", "POST", "/api/charger/ensure", body, parse=json_object)

    def update_status(self, device_id: str, body: dict) -> Deferred[None]:
        return self._call("update_status", "PATCH", f"/api/charger/{_seg(device_id)}/status", body)

    def update_last_seen(self, device_id: str, body: dict) -> Deferred[None]:
        return self._call("update_last_seen", "PATCH", f"/api/charger/{_seg(device_id)}/last-seen", body)

    def active_sessions(self, device_id: str) -> Deferred[list[dict]]:
        return self._call(
            "active_sessions", "GET", f"/api/charger/{_seg(device_id)}/active-sessions", parse=session_list
        )

    def start_session(self, body: dict) -> Deferred[dict]:
        return self._call(
            "start_session",
            "POST",
            "/api/charging-session/start",
            body,
            parse=started_by_charger if isinstance(body.get("transactionId"), str) else started,
            idempotent=False,
        )

    def stop_session(self, session_id: str, body: dict) -> Deferred[None]:
        return self._call("stop_session", "PATCH", f"/api/charging-session/{_seg(session_id)}/stop", body)

    def refund(self, body: dict) -> Deferred[None]:
        return self._call("refund", "POST", "/api/wallet/refund", body)

    def store_message(self, device_id: str, body: dict) -> Deferred[None]:
        return self._call("store_message", "POST", f"/api/charger/{_seg(device_id)}/ocpp-message", body)

    def store_messages(self, items: list[tuple[str, dict]]) -> Deferred[None]:
        """
        Many L{store_message} bodies, C{(deviceId, body)} in order, as few
        requests as possible: one C{POST /api/charger/{deviceId}/ocpp-messages}
        with the bodies as a JSON array per run of one charger's messages
        (the outbox's batches are one charger's, so one request).  Used only
        with C{BACKEND_MESSAGE_BATCH} above 1; not part of L{IBackend}, and
        the same signature as the embedded store's C{store_messages}.
        """
        runs: list[tuple[str, list[dict]]] = []
        for device_id, body in items:
            if runs and runs[-1][0] == device_id:
                runs[-1][1].append(body)
            else:
                runs.append((device_id, [body]))
        if len(runs) == 1:
            return self._post_messages(*runs[0])
        return Deferred.fromCoroutine(self._post_runs(runs))

    def _post_messages(self, device_id: str, bodies: list[dict]) -> Deferred[None]:
        return self._call("store_messages", "POST", f"/api/charger/{_seg(device_id)}/ocpp-messages", bodies)

    async def _post_runs(self, runs: list[tuple[str, list[dict]]]) -> None:
        for device_id, bodies in runs:
            await self._post_messages(device_id, bodies)

    def authorize(self, device_id: str, id_tag: str, extra: dict | None = None) -> Deferred[dict]:
        body = {"idTag": id_tag}
        if extra:
            body.update(extra)
        return self._call(
            "authorize",
            "POST",
            f"/api/charger/{_seg(device_id)}/authorize",
            body,
            parse=authorized,
            idempotent=False,
        )

    def ready(self) -> tuple[bool, str]:
        return self._circuit.state()

    # -- lifecycle -----------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.close()

    def close(self) -> Deferred[None]:
        """
        Close the pool's cached connections (shutdown, test teardown).
        """
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()

    # -- machinery -----------------------------------------------------------

    def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        body: Any = None,
        parse: Callable[[bytes], Any] | None = None,
        idempotent: bool = True,
    ) -> Deferred[Any]:
        """
        Run one logical call (with retries) as a cancellable Deferred.
        """
        state = _Call()
        if isinstance(body, dict):  # optional properties are omitted, never sent as null
            body = _present(body)
        elif isinstance(body, list):
            body = [_present(item) if isinstance(item, dict) else item for item in body]
        data = None if body is None else compact_bytes(body)
        inner = Deferred.fromCoroutine(
            self._run(endpoint, method, self._uri(path), data, parse, idempotent, state)
        )

        def cancel(outer: Deferred[Any]) -> None:
            state.cancelled = True
            inner.cancel()

        outer: Deferred[Any] = Deferred(cancel)

        def deliver(result: Any) -> None:
            if outer.called:  # cancelled, and the canceller already failed it
                return
            if isinstance(result, Failure):
                outer.errback(result)
            else:
                outer.callback(result)

        inner.addBoth(deliver)
        return outer

    async def _run(
        self,
        endpoint: str,
        method: str,
        url: _URI,
        data: bytes | None,
        parse: Callable[[bytes], Any] | None,
        idempotent: bool,
        state: _Call,
    ) -> Any:
        attempts = self._retries if idempotent else 1
        for attempt in range(attempts):
            try:
                return await self._attempt(endpoint, method, url, data, parse, state)
            except CircuitOpen:
                raise
            except BackendUnavailable:
                if attempt + 1 >= attempts or state.cancelled or self._circuit.is_open():
                    raise
            delay = self._rng.uniform(0, min(self._backoff_cap, self._backoff_base * 2**attempt))
            await deferLater(self._clock, delay, lambda: None)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        endpoint: str,
        method: str,
        url: _URI,
        data: bytes | None,
        parse: Callable[[bytes], Any] | None,
        state: _Call,
    ) -> Any:
        try:
            probe = self._circuit.admit()
        except CircuitOpen:
            self._observe(endpoint, "circuit_open", 0.0)
            raise
        started = self._clock.seconds()
        try:
            status, raw = await self._exchange(method, url, data)
        except Exception as e:  # whatever the network layer raised: twisted.web never leaks out
            if state.cancelled:
                if probe:
                    self._circuit.abandoned()
                self._observe(endpoint, "cancelled", self._clock.seconds() - started)
                raise CancelledError() from None
            reason = _describe(e)
            self._unreachable(endpoint, method, reason, started)
            raise BackendUnavailable(f"{method} {endpoint}: {reason}") from None
        try:
            result = self._interpret(status, raw, parse)
        except (BackendRejected, NotFound) as e:
            self._reached(endpoint, "not_found" if isinstance(e, NotFound) else "rejected", started)
            raise
        except BadAnswer as e:
            self._unreachable(endpoint, method, str(e), started)
            raise BackendUnavailable(f"{method} {endpoint}: {e}") from None
        self._reached(endpoint, "ok", started)
        return result

    def _uri(self, path: str) -> _URI:
        """
        The URL of C{path}, parsed once while it is among the last
        L{URI_CACHE} paths used (a charger's message log is posted to the
        same path frame after frame).
        """
        uri = self._uris.get(path)
        if uri is None:
            if len(self._uris) >= URI_CACHE:
                self._uris.clear()
            uri = self._uris[path] = _URI.of(self._base + path)
        return uri

    def _exchange(self, method: str, url: _URI, data: bytes | None) -> Deferred[tuple[int, bytes]]:
        """
        One request and its whole answer, within C{timeout} seconds: one
        timer cancels the request while it waits for the headers, and the
        body read after them (a cancelled read drops the connection).
        """
        if data is None:
            requested = self._http.request(
                method, url, headers=self._headers, cookies=self._no_cookies, allow_redirects=False, unbuffered=True
            )
        else:
            requested = self._http.request(
                method,
                url,
                headers=self._json_headers,
                data=_BytesProducer(data),
                cookies=self._no_cookies,
                allow_redirects=False,
                unbuffered=True,
            )
        requested.addCallback(_read_body)
        timer = self._clock.callLater(self._timeout, requested.cancel)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return requested.addBoth(settled)

    def _interpret(self, status: int, raw: bytes, parse: Callable[[bytes], Any] | None) -> Any:
        if 200 <= status < 300:
            return parse(raw) if parse is not None else None
        if status == 404:
            raise NotFound(_short(raw))
        if status >= 500 or status in _RETRYABLE_4XX:
            raise BadAnswer(f"HTTP {status}")
        raise BackendRejected(status, _short(raw))

    def _reached(self, endpoint: str, outcome: str, started: float) -> None:
        if self._circuit.succeeded():
            self.log.info("backend reachable again: circuit closed")
        self._observe(endpoint, outcome, self._clock.seconds() - started)

    def _unreachable(self, endpoint: str, method: str, reason: str, started: float) -> None:
        self.log.info("backend call {method} {endpoint} failed: {reason}", method=method, endpoint=endpoint, reason=reason)
        if self._circuit.failed(reason):
            self.log.error(
                "backend unreachable ({failures} failures in a row, last: {reason}); circuit open",
                failures=self._circuit.failures,
                reason=reason,
            )
        self._observe(endpoint, "unavailable", self._clock.seconds() - started)

    def _observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer.request(endpoint, outcome, seconds)
        except Exception:
            self.log.failure("backend request observer failed")


class _Droppable(proxyForInterface(IResponse)):  # type: ignore[misc]
    """
    A response whose body reader can be told to drop the connection: treq's
    L{collect} has no canceller, and a body that stalls after the headers
    must not keep its connection (nor come back to the pool).
    """

    _reader: Any = None

    def deliverBody(self, protocol: Any) -> None:
        self._reader = protocol
        self.original.deliverBody(protocol)

    def drop(self) -> None:
        transport = getattr(self._reader, "transport", None)
        if transport is not None:
            transport.loseConnection()


def _read_body(response: Any) -> Deferred[tuple[int, bytes]]:
    """
    C{(status, body)}, the body read with treq's L{collect} and bounded by
    L{MAX_BODY_BYTES}; cancelling the read drops the connection.
    """
    body = BoundedBody(MAX_BODY_BYTES)
    droppable = _Droppable(response)

    def cancel(read: Deferred[tuple[int, bytes]]) -> None:
        read.errback(CancelledError())  # first: what the dropped connection reports next is ignored
        droppable.drop()

    read: Deferred[tuple[int, bytes]] = Deferred(cancel)
    code = response.code

    def done(_: None) -> None:
        if not read.called:
            read.callback((code, body.data()))

    def failed(failure: Failure) -> None:
        if not read.called:
            read.errback(failure)

    collect(droppable, body.add).addCallbacks(done, failed)
    return read


def _present(body: dict) -> dict:
    return {key: value for key, value in body.items() if value is not None}


def _seg(value: Any) -> str:
    """
    One escaped path segment; C{.} and C{..} too, so that no backend or
    proxy that normalises dot segments turns the URL into another endpoint.
    """
    segment = quote(str(value), safe="")
    if segment in (".", ".."):
        return "%2E" * len(segment)
    return segment


def _short(raw: bytes, limit: int = 200) -> str:
    return raw[:limit].decode("utf-8", "replace").strip()


def _describe(error: BaseException) -> str:
    if isinstance(error, BadAnswer):  # an oversized body
        return str(error)
    reasons = getattr(error, "reasons", None)  # ResponseNeverReceived / ResponseFailed wrap failures
    if reasons:
        inner = reasons[0].value if isinstance(reasons[0], Failure) else reasons[0]
        if isinstance(inner, CancelledError):
            return "timed out"
        return f"{type(error).__name__}({type(inner).__name__})"
    if isinstance(error, (CancelledError, TimeoutError)) or type(error).__name__ == "TimeoutError":
        return "timed out"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

