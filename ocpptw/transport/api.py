# -*- test-case-name: tests.transport.test_api -*-
"""
The command API (docs/contract.md section 4, REST part) under C{/api/v1}:

    - C{GET /api/v1/chargers}
    - C{GET /api/v1/chargers/{id}}
    - C{POST /api/v1/chargers/{id}/commands/{Action}} with the OCPP payload

A bearer token is required when C{ADMIN_API_TOKEN} is set; without one the
API answers only clients on the loopback interface whose C{Host} names
loopback.  A request from another site's web page (C{Origin}) is refused in
both modes (L{ocpptw.transport.request_guard.api_refusal}).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ocpptw.interfaces import (
    CallErrorReceived,
    ChargerOffline,
    CommandTimeout,
    ICommandBus,
    InvalidPayload,
)
from ocpptw.ocpp.jsontext import compact_bytes
from ocpptw.services.commands import MAX_COMMAND_TIMEOUT
from ocpptw.transport.request_guard import api_refusal, is_loopback, query_args

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = ["CommandApi", "MAX_BODY", "is_loopback", "write_json"]

#: Largest command body accepted.
MAX_BODY = 1024 * 1024


def write_json(request: Request, status: int, body: Any) -> bytes:
    """
    Set the status and JSON content type; the encoded body to return.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return compact_bytes(body)


def _error(request: Request, status: int, code: str, description: str, details: dict | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "description": description}
    if details is not None:
        error["details"] = details
    return write_json(request, status, {"error": error})


class CommandApi(Resource):
    """
    C{/api/v1}: leaf resource routing on the remaining path segments.

    @param bus: where commands go (L{ICommandBus}: local, or through the
        broker to the instance that holds the charger).
    @param registry: the chargers connected here.
    @param directory: optional C{(charge_point_id) -> Deferred[dict | None]}
        that finds a charger on another instance for C{GET}.
    @param trusted: the L{ocpptw.transport.auth.ProxyTrust} of
        C{TRUSTED_PROXIES}: their forwarded client address is the peer.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        bus: ICommandBus,
        registry: Any,
        token: str | None,
        call_timeout: float,
        trusted: Any = None,
        directory: Any = None,
    ) -> None:
        super().__init__()
        self._trusted = trusted
        self._directory = directory
        self._bus = bus
        self._registry = registry
        self._token = token.encode("utf-8") if token else None
        self._call_timeout = call_timeout

    def _authorized(self, request: Request) -> bytes | None:
        """
        C{None} when the request may proceed, else the refusal body.
        """
        refusal = api_refusal(request, self._token, self._trusted)
        if refusal is None:
            return None
        status, code, description = refusal
        if status == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="ocpptw"')
        return _error(request, status, code, description)

    def _segments(self, request: Request) -> list[str]:
        return [unquote(s.decode("utf-8", "replace")) for s in request.postpath or () if s]

    def render(self, request: Request) -> Any:
        """
        A method the path does not take is 405 with C{Allow} (JSON, after
        the authorization check); an unknown path is 404 whatever the method.
        """
        method = (request.method or b"").decode("ascii", "replace")
        allowed = allowed_methods(self._segments(request))
        if method in allowed or (method == "HEAD" and "GET" in allowed):
            return super().render(request)
        refusal = self._authorized(request)
        if refusal is not None:
            return refusal
        if not allowed:
            return _error(request, 404, "NotFound", "no such resource")
        request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
        return _error(request, 405, "MethodNotAllowed", f"{method[:16]} is not allowed here; use {' or '.join(allowed)}")

    def render_GET(self, request: Request) -> bytes:
        refusal = self._authorized(request)
        if refusal is not None:
            return refusal
        parts = self._segments(request)
        if parts == ["chargers"]:
            if query_args(request).get(b"scope") == [b"fleet"]:
                return self._fleet(request)
            return write_json(request, 200, {"chargers": self._registry.describe_all()})
        if len(parts) == 2 and parts[0] == "chargers":
            found = self._registry.describe(parts[1])
            if found is not None:
                return write_json(request, 200, found)
            if self._directory is None:
                return _error(
                    request, 404, "ChargerOffline",
                    f"{parts[1]} is not connected to this instance (without RabbitMQ no other instance can be asked)",
                )
            return self._later(request, self._directory.describe(parts[1]), lambda found: self._described(request, parts[1], found))
        return _error(request, 404, "NotFound", "no such resource")

    def _fleet(self, request: Request) -> Any:
        if self._directory is None:
            body = {"chargers": self._registry.describe_all(), "instances": [self._registry.instance]}
            return write_json(request, 200, body)
        return self._later(request, self._directory.census(), lambda body: write_json(request, 200, body))

    def _described(self, request: Request, charge_point_id: str, found: dict | None) -> bytes:
        if found is None:
            return _error(request, 404, "ChargerOffline", f"{charge_point_id} is not connected to any instance")
        return write_json(request, 200, found)

    def _later(self, request: Request, d: Deferred, done: Any) -> Any:
        """
        Answer when C{d} fires; a broker that cannot be asked is 503.
        """
        finished = {"gone": False}
        request.notifyFinish().addErrback(lambda _: finished.update(gone=True))

        def unavailable(failure: Failure) -> bytes:
            from ocpptw.interfaces import BrokerUnavailable

            failure.trap(BrokerUnavailable)
            return _error(
                request, 503, "BrokerUnavailable", f"other instances cannot be asked now: {failure.getErrorMessage()}"
            )

        d.addCallbacks(done, unavailable)
        d.addCallback(lambda body: None if finished["gone"] else (request.write(body), request.finish()))
        d.addErrback(lambda f: self.log.failure("answering a charger lookup failed", f))
        return NOT_DONE_YET

    def render_POST(self, request: Request) -> bytes | int:
        refusal = self._authorized(request)
        if refusal is not None:
            return refusal
        parts = self._segments(request)
        if len(parts) != 4 or parts[0] != "chargers" or parts[2] != "commands":
            return _error(request, 404, "NotFound", "no such resource")
        charge_point_id, action = parts[1], parts[3]
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            return _error(request, 400, "InvalidPayload", "the body is larger than 1 MiB")
        try:
            payload = json.loads(raw or b"{}", parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return _error(request, 400, "InvalidPayload", "the body is not JSON")
        if not isinstance(payload, dict):
            return _error(request, 400, "InvalidPayload", "the body must be a JSON object")
        timeout = self._call_timeout
        arg = query_args(request).get(b"timeout")
        if arg:
            try:
                timeout = float(arg[0])
                if not 0 < timeout <= MAX_COMMAND_TIMEOUT:
                    raise ValueError
            except ValueError:
                return _error(
                    request, 400, "InvalidPayload", f"timeout must be a number of seconds in (0, {MAX_COMMAND_TIMEOUT:g}]"
                )
        d = self._bus.send(charge_point_id, action, payload, timeout)
        finished = {"gone": False}
        request.notifyFinish().addErrback(lambda _: finished.update(gone=True))
        d.addCallbacks(
            lambda result: write_json(request, 200, {"result": result}),
            lambda failure: self._failed(request, failure, charge_point_id, action),
        )
        d.addCallback(lambda body: None if finished["gone"] else (request.write(body), request.finish()))
        d.addErrback(lambda f: self.log.failure("answering a command failed", f))
        return NOT_DONE_YET

    def _failed(self, request: Request, failure: Failure, charge_point_id: str, action: str) -> bytes:
        if failure.check(InvalidPayload):
            return _error(request, 400, "InvalidPayload", str(failure.value))
        if failure.check(ChargerOffline):
            return _error(request, 404, "ChargerOffline", f"{charge_point_id} is not connected")
        if failure.check(CommandTimeout):
            return _error(request, 504, "Timeout", f"{charge_point_id} did not answer {action} in time")
        if failure.check(CallErrorReceived):
            e = failure.value
            return _error(request, 502, e.code, e.description, e.details or {})
        self.log.failure("command {action} to {chargePointId} failed", failure, action=action, chargePointId=charge_point_id)
        return _error(request, 500, "InternalError", "the command could not be sent")


def allowed_methods(parts: list[str]) -> tuple[str, ...]:
    """
    The methods an API path under C{/api/v1} takes; empty for no such path.
    """
    if parts and parts[0] == "chargers" and len(parts) in (1, 2):
        return ("GET",)
    if len(parts) == 4 and parts[0] == "chargers" and parts[2] == "commands":
        return ("POST",)
    return ()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
