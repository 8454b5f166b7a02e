# -*- test-case-name: tests.transport.test_websocket -*-
"""
The Autobahn server protocol, one instance per charger.  Thin: decisions at
the handshake belong to L{ocpptw.transport.handshake.Gate}, the OCPP
conversation to L{ocpptw.ocpp.session.OcppSession}.
"""

from __future__ import annotations

import random
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocpptw.ocpp.versions import BY_SUBPROTOCOL
from ocpptw.transport.compat import (
    HANDSHAKE_STATE,
    QUIET_STATE,
    reschedule_first_ping,
    share_protocol_options,
    skip_eager_debug_formatting,
)
from ocpptw.transport.handshake import NO_SUBPROTOCOL, ChargerConnection, Gate
from ocpptw.transport.identity import BadIdentity, identity_from_path
from ocpptw.transport.request_guard import web_page_elsewhere


class OcppServerProtocol(WebSocketServerProtocol):
    """
    One charger's WebSocket.  Autobahn owns C{log}, C{server} and many other
    names on this class, so ours start with C{_ocpp}.
    """

    _ocpp_log = Logger()
    _ocpp_identity: str | None = None
    _ocpp_record: dict | None = None
    _ocpp_version: Any = None
    _ocpp_connection: ChargerConnection | None = None
    _ocpp_close_after_open = False
    #: set by Autobahn from the factory's options (setProtocolOptions)
    autoPingInterval: float
    _ocpp_entered = False
    #: the socket closed (also during the handshake)
    _ocpp_gone = False

    def _ocpp_peer(self) -> str:
        try:
            return str(self.transport.getPeer().host)  # type: ignore[union-attr]  # a TCP or TLS transport
        except Exception:  # noqa: BLE001 - a transport without an address
            return "unknown"

    def _ocpp_certificate(self) -> Any:
        getter = getattr(self.transport, "getPeerCertificate", None)
        if getter is None:
            return None
        try:
            return getter()
        except Exception:  # noqa: BLE001 - no TLS, or no certificate
            return None

    def onConnect(self, request: Any) -> Any:
        gate: Gate = self.factory.gate
        try:
            identity = identity_from_path(request.path, gate.prefix)
        except BadIdentity as e:
            gate.outcome("bad_path")
            raise ConnectionDeny(e.status, e.reason) from None
        peer = self._ocpp_peer()
        if web_page_elsewhere(request.headers):
            # a page in an operator's browser must not take a charger's place
            gate.outcome("web_page")
            self._ocpp_log.info(
                "refused a handshake for {chargePointId} from {peer}: sent by a web page of another site",
                chargePointId=identity,
                peer=peer,
            )
            raise ConnectionDeny(403, "web pages of other sites may not connect here")
        if not gate.enter(peer):
            gate.outcome("throttled")
            raise ConnectionDeny(503, "too many connection attempts, retry later")
        self._ocpp_entered = True
        self._ocpp_identity = identity
        offered = list(request.protocols)

        def decided(record: dict | None) -> str | None:
            self._ocpp_leave()
            if self._ocpp_gone:
                # The charger left while it was being admitted.  Autobahn
                # would complete the handshake anyway (opening a socket that
                # is closed, registering it in the charger's place, and
                # closing it twice): refuse it instead.
                gate.outcome("abandoned")
                raise ConnectionDeny(400, "gone")
            self._ocpp_record = record
            version = gate.choose(offered)
            if version is not None:
                self._ocpp_version = version
                return version.subprotocol
            # OCPP-J 1.6 section 3.2: no common subprotocol -> complete the
            # handshake without the header, then close at once.
            self._ocpp_close_after_open = not (gate.allow_missing_subprotocol and not offered)
            return None

        def refused(failure: Failure) -> Failure:
            self._ocpp_leave()
            if not failure.check(ConnectionDeny):
                self._ocpp_log.failure("handshake of {chargePointId} crashed", failure, chargePointId=identity)
                return Failure(ConnectionDeny(500, "internal error"))
            return failure

        d = maybeDeferred(gate.check, identity, request.headers, peer, self._ocpp_certificate())
        return d.addCallbacks(decided, refused)

    def _ocpp_leave(self) -> None:
        if self._ocpp_entered:
            self._ocpp_entered = False
            self.factory.gate.leave()

    def onOpen(self) -> None:
        record, version = self._ocpp_record, self._ocpp_version
        self._ocpp_compact()
        # Autobahn calls this in a Deferred chain without an errback: guard it.
        try:
            if self._ocpp_close_after_open:
                self.sendClose(*NO_SUBPROTOCOL)
                return
            self._ocpp_stagger_ping()
            assert self._ocpp_identity is not None
            self._ocpp_connection = self.factory.gate.opened(self._ocpp_identity, self, record, version)
        except Exception:
            self._ocpp_log.failure("opening {chargePointId} crashed", chargePointId=self._ocpp_identity)
            self.sendClose(4500, "internal error")

    def _ocpp_compact(self) -> None:
        """
        Once the socket is open: forget the handshake, and keep in this
        instance's own dict only what differs from the class defaults, in a
        new dict sized for what is left (a dict never shrinks).
        """
        forget, quiet, missing = HANDSHAKE_STATE, QUIET_STATE, _MISSING
        self.__dict__ = {
            name: value
            for name, value in self.__dict__.items()
            if name not in forget and quiet.get(name, missing) is not value
        }

    def _ocpp_stagger_ping(self) -> None:
        """
        Spread the first keepalive ping over the interval: after a mass
        reconnect, pings that fire together make a latency spike.
        """
        if self.autoPingInterval:
            reschedule_first_ping(self, self.autoPingInterval * random.uniform(0.5, 1.0))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        connection = self._ocpp_connection
        if connection is None:
            return
        try:
            if isBinary:
                connection.session.binary_received()
            else:
                connection.session.frame_received(payload.decode("utf-8"))
        except Exception:
            self._ocpp_log.failure("frame from {chargePointId} crashed its handling", chargePointId=self._ocpp_identity)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._ocpp_gone = True
        self._ocpp_leave()
        connection, self._ocpp_connection = self._ocpp_connection, None
        if connection is not None:
            try:
                self.factory.gate.closed(connection)
            except Exception:
                self._ocpp_log.failure("closing {chargePointId} crashed", chargePointId=self._ocpp_identity)


_MISSING = object()

for _name in HANDSHAKE_STATE:
    setattr(OcppServerProtocol, _name, None)
for _name, _value in QUIET_STATE.items():
    setattr(OcppServerProtocol, _name, _value)
del _name, _value


class OcppServerFactory(WebSocketServerFactory):
    """
    The factory for charger sockets; holds the L{Gate}.  Mounted with
    C{WebSocketResource}, which never calls C{startFactory}: keep start-up
    logic in services.
    """

    protocol = OcppServerProtocol

    def __init__(
        self,
        gate: Gate,
        *,
        max_frame_bytes: int,
        ping_interval: float,
        url: str = "ws://127.0.0.1",
        reactor: Any = None,
    ) -> None:
        # This factory's own protocol class, which holds the options (below).
        self.protocol = cast("type[OcppServerProtocol]", type(self.protocol.__name__, (self.protocol,), {"__module__": __name__}))
        super().__init__(url, protocols=list(BY_SUBPROTOCOL), reactor=reactor)
        skip_eager_debug_formatting()
        self.gate = gate
        self.setProtocolOptions(**websocket_options(max_frame_bytes, ping_interval))

    # Autobahn copies each of its options (some thirty) from the factory onto
    # every new protocol instance, unless the protocol already has it: as
    # attributes of this factory's protocol class, the options are shared by
    # all its connections instead (about 1.5 kB a connection).

    def resetProtocolOptions(self) -> None:
        super().resetProtocolOptions()
        self._share_options()

    def setProtocolOptions(self, **options: Any) -> None:  # type: ignore[override]  # Autobahn's keywords, passed on
        super().setProtocolOptions(**options)
        self._share_options()

    def _share_options(self) -> None:
        protocol = self.protocol
        if protocol is OcppServerProtocol or not issubclass(protocol, OcppServerProtocol):
            return
        share_protocol_options(protocol, self)


def websocket_options(max_frame_bytes: int, ping_interval: float) -> dict[str, Any]:
    """
    The configuration as Autobahn protocol options, in one place.
    """
    return {
        "maxMessagePayloadSize": max_frame_bytes,
        "maxFramePayloadSize": max_frame_bytes,
        # Close with 1009 on an oversized message instead of dropping TCP.
        "failByDrop": False,
        "autoPingInterval": ping_interval,
        # Autobahn's keepalive timers fire on whole-second buckets: a pong
        # gets at least two seconds, or a healthy charger could be dropped.
        "autoPingTimeout": max(2.0, min(ping_interval, 30.0)) if ping_interval else 0,
        "autoPingRestartOnAnyTraffic": True,
        "openHandshakeTimeout": 30,
        "closeHandshakeTimeout": 5,
        "utf8validateIncoming": True,
        "perMessageCompressionAccept": lambda offers: None,
        "webStatus": False,
        "trustXForwardedFor": 0,
    }
