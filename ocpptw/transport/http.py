# -*- test-case-name: tests.transport.test_websocket,tests.integration.test_gateway -*-
"""
The one C{twisted.web} site on the gateway's port: chargers at C{OCPP_PATH},
C{/health}, C{/ready}, C{/metrics} and the command API at C{/api/v1}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import Deferred
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ocpptw.transport.api import write_json
from ocpptw.transport.compat import release_channel
from ocpptw.transport.request_guard import GuardedChannel, GuardedRequest


class Health(Resource):
    """
    C{GET /health}: the process is alive.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return write_json(request, 200, {"status": "ok"})


class Ready(Resource):
    """
    C{GET /ready}: what the L{ocpptw.observability.readiness.Readiness}
    answers (200 ready or degraded, 503 unavailable, with the reasons).

    @param readiness: a L{Readiness}, or a list of checks C{() -> (ok,
        reason)} that all block.
    """

    isLeaf = True

    def __init__(self, readiness: Any) -> None:
        super().__init__()
        self._readiness = readiness

    def render_GET(self, request: Request) -> bytes:
        if isinstance(self._readiness, list):  # plain checks, all blocking
            reasons = [reason for ok, reason in (check() for check in self._readiness) if not ok]
            status, body = (503, {"status": "unavailable", "reasons": reasons}) if reasons else (200, {"status": "ready"})
        else:
            answer = self._readiness.answer()
            if isinstance(answer, Deferred):  # the whole host's, from every worker (WORKERS)
                return _later(request, answer, lambda result: write_json(request, *result))
            status, body = answer
        return write_json(request, status, body)


class Metrics(Resource):
    """
    C{GET /metrics}: the Prometheus text format.

    @param render: C{() -> (body, content_type)}.
    """

    isLeaf = True

    def __init__(self, render: Callable[[], tuple[bytes, str]]) -> None:
        super().__init__()
        self._render = render

    def render_GET(self, request: Request) -> bytes:
        rendered = self._render()
        if isinstance(rendered, Deferred):  # every worker's (WORKERS)
            return _later(request, rendered, lambda result: _metrics_body(request, *result))
        return _metrics_body(request, *rendered)


def _metrics_body(request: Request, body: bytes, content_type: str) -> bytes:
    request.setHeader(b"content-type", content_type.encode("ascii"))
    return body


def _later(request: Request, d: Deferred[Any], write: Callable[[Any], bytes]) -> Any:
    """
    Answer C{request} once C{d} fires (503 when it fails).
    """

    def done(result: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.write(write(result))
        request.finish()

    def failed(failure: Any) -> None:
        if not request.finished and not getattr(request, "_disconnected", False):
            request.write(write_json(request, 503, {"status": "unavailable", "reasons": [failure.getErrorMessage()]}))
            request.finish()

    d.addCallbacks(done, failed)
    return NOT_DONE_YET


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return write_json(request, 404, {"error": {"code": "NotFound", "description": "no such resource"}})


class Root(Resource):
    """
    A tree whose unknown children answer a JSON 404.
    """

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _NotFound()

    def render_GET(self, request: Request) -> bytes:
        return write_json(request, 200, {"service": "ocpptw", "chargers": "connect with WebSocket to the OCPP path"})


class RequireTls(Resource):
    """
    The OCPP path on a plain listener when the security profile needs wss.
    """

    isLeaf = True

    def __init__(self, tls_port: int) -> None:
        super().__init__()
        self._tls_port = tls_port

    def render(self, request: Request) -> bytes:
        return write_json(
            request,
            403,
            {"error": {"code": "TlsRequired", "description": f"this security profile needs wss:// on port {self._tls_port}"}},
        )


class ChargerSocketResource(WebSocketResource):
    """
    Autobahn's upgrade resource, which then lets go of twisted.web's objects
    for the connection.

    Autobahn takes the transport over from the L{twisted.web.http.HTTPChannel}
    but leaves the channel registered as the transport's producer (on TLS,
    through the TLS layer), and the channel keeps the upgrade's L{Request}
    (headers, content, addresses): some 3 to 5 kB of memory per connected
    charger for as long as it stays connected, none of it used again.  Here
    the channel is unregistered and forgets the request, which frees both at
    once by reference counting.  The transport then has no producer, as the
    Autobahn protocol registers none; the channel's producer methods did
    nothing while its request was being handled anyway.
    """

    def render(self, request: Request) -> Any:
        channel = request.channel
        result = super().render(request)
        if result is NOT_DONE_YET and channel is not None and channel.transport is None:
            release_channel(channel)
        return result


class QuietSite(Site):
    """
    A site that does not write an access log line per request (charger
    upgrades and scrapes would flood it), nor Twisted's "Starting factory
    <... at 0x...>" lines, and whose requests go through
    L{ocpptw.transport.request_guard}: bodies over 1 MiB get 413 unread,
    headers must be complete within 10 s.
    """

    noisy = False
    protocol = GuardedChannel  # type: ignore[assignment]  # built with no arguments, as the stub says
    requestFactory = GuardedRequest

    def log(self, request: http.Request) -> None:
        pass


def build_site(
    ws_factory: Any,
    ocpp_path: str,
    ready_checks: Any,
    metrics_render: Callable[[], tuple[bytes, str]] | None,
    api: Resource | None,
    require_tls: int | None = None,
    console: Resource | None = None,
) -> Site:
    """
    Mount everything on one site.

    @param ws_factory: the charger WebSocket factory, or C{None} to refuse
        plain ws with 403 (C{require_tls} names the wss port).
    @param console: the operator console's files at C{/console/}.
    """
    root = Root()
    segments = [s.encode("utf-8") for s in ocpp_path.strip("/").split("/")]
    parent: Resource = root
    for segment in segments[:-1]:
        child = Root()
        parent.putChild(segment, child)
        parent = child
    if ws_factory is not None:
        parent.putChild(segments[-1], ChargerSocketResource(ws_factory))
    elif require_tls is not None:
        parent.putChild(segments[-1], RequireTls(require_tls))
    root.putChild(b"health", Health())
    root.putChild(b"ready", Ready(ready_checks))
    if metrics_render is not None:
        root.putChild(b"metrics", Metrics(metrics_render))
    if api is not None:
        api_root = Root()
        api_root.putChild(b"v1", api)
        root.putChild(b"api", api_root)
    if console is not None:
        root.putChild(b"console", console)
    site = QuietSite(root)
    site.displayTracebacks = False
    return site
