# -*- test-case-name: tests.transport.test_console -*-
"""
The operator console (docs/contract.md section 8): its API next to the command API
under C{/api/v1}, and its static files at C{/console/}.

L{ConsoleApi} answers

    - C{GET /api/v1/chargers/{id}/messages} (L{ocpptw.transport.history})
    - C{GET /api/v1/stream} (L{ocpptw.transport.stream})
    - C{GET /api/v1/chargers/{id}/sessions}: its active sessions, from the
      backend (or the embedded store)
    - C{GET /api/v1/overview}: the chargers this instance has held, with
      their connectors, and the outbox figures
    - C{GET /api/v1/schemas/{version}}: the request schema of every
      CSMS-to-charger action of an OCPP version, for the console's forms

and hands every other request to the command API, whose access rules
(docs/contract.md section 4) it applies to its own paths as well.

L{ConsoleFiles} serves C{ocpptw/console/} from the package: loopback only
while C{ADMIN_API_TOKEN} is unset, to anyone otherwise (the page holds no
data; it asks for the token and sends it with each API call).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ocpptw.transport.api import write_json
from ocpptw.transport.history import BadQuery, parse_query
from ocpptw.transport.request_guard import query_args


def _schemas_16() -> tuple[Path, frozenset[str], str]:
    from ocpptw.ocpp.actions import SERVER_TO_CHARGER

    return Path(str(resources.files("ocpptw.ocpp") / "schemas")), SERVER_TO_CHARGER, ""


def known_versions() -> dict[str, Any]:
    """
    OCPP version (as in the charger list) -> C{() -> (directory of its
    request schemas, its CSMS-to-charger actions, what follows the action
    in a request schema's file name)}: every version of
    C{ocpptw.ocpp.versions} where that table exists, else 1.6 alone.
    """
    try:
        from ocpptw.ocpp import versions
    except ImportError:
        return {"1.6": _schemas_16}
    return {
        v.name: (lambda v=v: (Path(v.schema_dir), frozenset(v.server_to_charger), v.request_suffix))
        for v in versions.VERSIONS
    }


class RequestSchemas:
    """
    The request schemas of each version, read from the package once, on
    first use, and kept as the JSON text of the answer.

    @param versions: the table of L{known_versions} (the default).
    """

    def __init__(self, versions: dict[str, Any] | None = None) -> None:
        self._versions = known_versions() if versions is None else versions
        self._bodies: dict[str, bytes] = {}

    def versions(self) -> list[str]:
        return sorted(self._versions)

    def body(self, version: str) -> bytes | None:
        if version not in self._versions:
            return None
        body = self._bodies.get(version)
        if body is None:
            directory, actions, suffix = self._versions[version]()
            schemas = {}
            for action in sorted(actions):
                schema = json.loads((Path(directory) / f"{action}{suffix}.json").read_text(encoding="utf-8"))
                schema.pop("$schema", None)
                schemas[action] = schema
            body = self._bodies[version] = json.dumps(
                {"ocppVersion": version, "actions": schemas}, separators=(",", ":")
            ).encode("utf-8")
        return body


def _error(request: Request, status: int, code: str, description: str) -> bytes:
    return write_json(request, status, {"error": {"code": code, "description": description}})


class ConsoleApi(Resource):
    """
    C{/api/v1}: the console's paths, then the command API for the rest.

    @param command_api: the L{ocpptw.transport.api.CommandApi}; its access
        check guards these paths too.
    @param feed: the L{ocpptw.services.live.LiveFeed}.
    @param history: a L{ocpptw.transport.history.StoreHistory} or
        L{ocpptw.transport.history.RingHistory}.
    @param hub: the L{ocpptw.transport.stream.StreamHub}.
    @param outbox: for its depth, oldest entry and dead letters, or C{None}.
    @param backend: the L{ocpptw.interfaces.IBackend}, for active sessions.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, command_api: Any, feed: Any, history: Any, hub: Any, outbox: Any = None,
                 schemas: RequestSchemas | None = None, instance: str = "", backend: Any = None) -> None:
        super().__init__()
        self._api = command_api
        self._feed = feed
        self._history = history
        self._hub = hub
        self._outbox = outbox
        self._schemas = schemas or RequestSchemas()
        self._instance = instance
        self._backend = backend

    def render(self, request: Request) -> Any:
        parts = [unquote(s.decode("utf-8", "replace")) for s in request.postpath or () if s]
        route = self._route(parts)
        if route is None:
            return self._api.render(request)
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET")
            return _error(request, 405, "MethodNotAllowed", "only GET is allowed here")
        refusal = self._api._authorized(request)
        if refusal is not None:
            return refusal
        return route(request, parts)

    def _route(self, parts: list[str]) -> Any:
        if parts == ["stream"]:
            return self._stream
        if parts == ["overview"]:
            return self._overview
        if len(parts) == 2 and parts[0] == "schemas":
            return self._schema
        if len(parts) == 3 and parts[0] == "chargers" and parts[2] == "messages":
            return self._messages
        if len(parts) == 3 and parts[0] == "chargers" and parts[2] == "sessions" and self._backend is not None:
            return self._sessions
        return None

    def _stream(self, request: Request, parts: list[str]) -> Any:
        raw = query_args(request).get(b"chargePointId")
        charge_point_id = raw[0].decode("utf-8", "replace") if raw and raw[0] else None
        return self._hub.open(request, charge_point_id)

    def _overview(self, request: Request, parts: list[str]) -> bytes:
        outbox = self._outbox
        figures = None
        if outbox is not None:
            figures = {"depth": outbox.depth(), "oldestAgeSeconds": round(outbox.oldest_age(), 3),
                       "deadLetters": outbox.dead_letters()}
        return write_json(request, 200, {
            "instance": self._instance,
            "chargers": self._feed.chargers(),
            "outbox": figures,
            "ocppVersions": self._schemas.versions(),
        })

    def _schema(self, request: Request, parts: list[str]) -> bytes:
        body = self._schemas.body(parts[1])
        if body is None:
            known = ", ".join(self._schemas.versions())
            return _error(request, 404, "NotFound", f"no schemas for OCPP version {parts[1]!r} (known: {known})")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"max-age=300")
        return body

    def _sessions(self, request: Request, parts: list[str]) -> Any:
        charge_point_id = parts[1]
        d = self._backend.active_sessions(charge_point_id)
        d.addCallback(lambda sessions: write_json(request, 200, {"sessions": sessions}))
        return self._later(request, d, charge_point_id, "the active sessions cannot be read now")

    def _messages(self, request: Request, parts: list[str]) -> Any:
        charge_point_id = parts[1]
        try:
            limit, before = parse_query(query_args(request))
        except BadQuery as e:
            return _error(request, 400, "InvalidQuery", str(e))
        d = self._history.page(charge_point_id, limit, before)
        return self._later(request, d, charge_point_id, "the message log cannot be read now")

    def _later(self, request: Request, d: Any, charge_point_id: str, unavailable: str) -> Any:
        """
        Answer C{request} once C{d} fires: with its bytes, or its C{None} as
        404, or a failure as 503.
        """
        finished = {"gone": False}
        request.notifyFinish().addErrback(lambda _: finished.update(gone=True))

        def answer(body: bytes | None) -> None:
            if finished["gone"]:
                return
            if body is None:
                body = _error(request, 404, "NotFound", f"{charge_point_id} has never been seen here")
            else:
                request.setResponseCode(200)
                request.setHeader(b"content-type", b"application/json")
                request.setHeader(b"cache-control", b"no-store")
            request.write(body)
            request.finish()

        def failed(failure: Any) -> None:
            from ocpptw.interfaces import BackendUnavailable

            if not failure.check(BackendUnavailable):
                self.log.failure("reading for the console about {chargePointId} failed", failure,
                                 chargePointId=charge_point_id)
            if not finished["gone"]:
                request.write(_error(request, 503, "Unavailable", unavailable))
                request.finish()

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET


_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}

#: Nothing but this host, no inline script: a page elsewhere cannot inject into the console.
_CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        b" frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class ConsoleFiles(Resource):
    """
    C{/console/...}: the console's static files from C{ocpptw/console/}.

    @param command_api: whose access rules apply (loopback only without a
        token).
    """

    isLeaf = True

    def __init__(self, command_api: Any, directory: Path | None = None) -> None:
        super().__init__()
        self._api = command_api
        self._directory = directory or Path(str(resources.files("ocpptw") / "console"))
        self._cache: dict[str, tuple[bytes, bytes]] = {}

    def render_GET(self, request: Request) -> bytes:
        if getattr(self._api, "_token", None) is None:
            refusal = self._api._authorized(request)
            if refusal is not None:
                return refusal
        parts = [s.decode("utf-8", "replace") for s in request.postpath or ()]
        if not parts:  # /console without the slash: relative URLs need it
            request.redirect(b"/console/")
            return b""
        name = "/".join(parts) or "index.html"
        found = self._file(name)
        if found is None:
            return _error(request, 404, "NotFound", "no such console file")
        body, kind = found
        request.setHeader(b"content-type", kind)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"content-security-policy", _CSP)
        return body


    def _file(self, name: str) -> tuple[bytes, bytes] | None:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        segments = name.split("/")
        if any(s in ("", ".", "..") or s.startswith(".") for s in segments):
            return None
        path = self._directory.joinpath(*segments)
        kind = _TYPES.get(path.suffix)
        if kind is None or not path.is_file():
            return None
        found = self._cache[name] = (path.read_bytes(), kind)
        return found
