# -*- test-case-name: tests.transport.test_compat -*-
"""
Every use of a private name of Twisted or Autobahn, in one place.

The gateway leans on a few internals for memory and speed; each is wrapped
here and has a canary in C{tests/transport/test_compat.py} that fails
loudly when a new release renames it or changes what it does.  The
dependencies' upper bounds in C{pyproject.toml} are the releases those
canaries pass on: raise them only after the canaries pass on the new one.

  - twisted.web: the channel's C{_networkProducer} and C{requests}
    (L{release_channel}); its C{_command}, C{_path} and
    C{_handlingRequest} while it reads a request (L{request_line},
    L{reading_request_head}), for the request guard;
  - twisted.internet.tcp: L{PacedPort} subclasses C{tcp.Port} (its
    C{doRead}, C{numberAccepts}, C{sessionno}, C{socket}, C{connected},
    C{_type});
  - Autobahn: the handshake state and per-connection defaults kept on each
    protocol (L{HANDSHAKE_STATE}, L{QUIET_STATE}), C{CONFIG_ATTRS}
    (L{share_protocol_options}), the keepalive's C{autoPingPendingCall},
    C{_sendAutoPing} and the factory's C{_batched_timer}
    (L{reschedule_first_ping}), and the module names C{hltype}, C{hlval}
    and C{pformat} (L{skip_eager_debug_formatting});
  - twisted.web.client: C{HTTPConnectionPool._factory}, the protocol
    factory of the backend's connections (L{quiet_connection_pool}).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.web.client import HTTPConnectionPool

#: What an open socket no longer needs: what Autobahn keeps of the opening
#: handshake for its own use during it, and the charger record we got then.
#: A read after that finds the class's C{None}.
HANDSHAKE_STATE = frozenset(
    {
        "http_headers",
        "http_request_data",
        "http_response_data",
        "http_status_line",
        "http_request_uri",
        "http_request_path",
        "http_request_params",
        "http_request_host",
        "websocket_extensions",
        "websocket_origin",
        "websocket_protocols",
        "_wskey",
        "_ocpp_record",
        "_ocpp_version",
    }
)

#: Autobahn's per-connection state that keeps its first value while a socket
#: is open and well: Autobahn sets each when the connection is made and again
#: only when it fails or closes.  Class defaults with the same values, so an
#: open socket's own dict does not hold them.
QUIET_STATE: dict[str, Any] = {
    "closedByMe": False,
    "droppedByMe": False,
    "failedByMe": False,
    "localCloseCode": None,
    "localCloseReason": None,
    "remoteCloseCode": None,
    "remoteCloseReason": None,
    "wasClean": False,
    "wasCloseHandshakeTimeout": False,
    "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False,
    "wasNotCleanReason": None,
    "wasOpenHandshakeTimeout": False,
    "wasServerConnectionDropTimeout": False,
    "wasServingFlashSocketPolicyFile": False,
    "openHandshakeTimeoutCall": None,
    "closeHandshakeTimeoutCall": None,
    "trackedTimings": None,
    "_perMessageCompress": None,
    "websocket_version": 13,
    "_ocpp_entered": False,
}


def reschedule_first_ping(protocol: Any, delay: float) -> bool:
    """
    Move an open Autobahn protocol's pending keepalive ping to C{delay}
    seconds from now, on Autobahn's own batched timer.

    @return: whether it was moved (Autobahn's schedule stays otherwise).
    """
    pending = getattr(protocol, "autoPingPendingCall", None)
    if pending is None:
        return False
    try:
        pending.cancel()
        protocol.autoPingPendingCall = protocol.factory._batched_timer.call_later(delay, protocol._sendAutoPing)
    except Exception:  # noqa: BLE001 - keep Autobahn's own schedule
        return False
    return True


def share_protocol_options(protocol: type, factory: Any) -> None:
    """
    Autobahn copies each of its options (some thirty, C{CONFIG_ATTRS}) from
    the factory onto every new protocol instance unless the protocol
    already has it: set them on C{protocol}, a class of the factory's own,
    so that all its connections share them.
    """
    for name in protocol.CONFIG_ATTRS:  # type: ignore[attr-defined]
        # staticmethod: an option that is a function (perMessageCompressionAccept)
        # must not become a method of the protocol.
        setattr(protocol, name, staticmethod(getattr(factory, name)))


def skip_eager_debug_formatting(force: bool = False) -> None:
    """
    Autobahn builds the arguments of its debug log lines even when debug
    logging is off: C{pformat()} of every protocol option on every new
    connection (about a quarter of the server's CPU per handshake in a
    connection storm) and C{hltype()}/C{hlval()} on every frame.  Unless
    Autobahn logs at debug (C{txaio}'s level), those names in its modules
    become a function that returns an empty string; only the discarded
    debug lines lose anything.

    @param force: even when Autobahn logs at debug (the simulator, whose
        CPU should go to the wire).
    """
    import txaio

    if not force and txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]
        return
    import autobahn.twisted.websocket as twisted_websocket
    import autobahn.websocket.protocol as websocket_protocol

    for module in (twisted_websocket, websocket_protocol):
        for name in ("hltype", "hlval", "pformat"):
            if hasattr(module, name):
                setattr(module, name, _nothing)


def _nothing(*args: Any, **kwargs: Any) -> str:
    return ""


def release_channel(channel: Any) -> None:
    """
    Detach a twisted.web channel whose transport a WebSocket protocol took:
    unregister it from the transport (as Twisted does itself when it hands a
    connection over to HTTP/2) and drop its requests.
    """
    producer = getattr(channel, "_networkProducer", None)
    if producer is not None:
        producer.unregisterProducer()
    requests = getattr(channel, "requests", None)
    if requests:
        requests.clear()


def request_line(channel: Any) -> tuple[bytes, bytes]:
    """
    The method and the raw target of the request whose head a twisted.web
    channel is reading (set from its first line until the body is read).
    """
    return channel._command, channel._path


def reading_request_head(channel: Any) -> bool:
    """
    Whether a twisted.web channel is between requests or reading a
    request's head: in line mode and not handling a request.
    """
    return bool(channel.line_mode) and not channel._handlingRequest


def mark_tls(port: tcp.Port) -> None:
    """
    Make a TCP port that carries TLS in memory log itself as a TLS port, as
    C{SSL4ServerEndpoint}'s do.
    """
    port._type = "TLS"


class PacedPort(tcp.Port):
    """
    A TCP listening port whose accept loop follows a pacer: at most
    C{pacer.allowance()} accepts per reactor turn, none while it is 0 (the
    port stops reading until C{pacer.wait()} seconds have passed), and
    C{pacer.took(n)} after each turn.

    @param on_listening: C{(listening socket, pacer) -> socket} once bound:
        what the accept loop reads from instead (L{ocpptw.transport.pacing}
        wraps it to skip abandoned connections).
    """

    _resume: Any = None
    #: Bind with C{SO_REUSEPORT} (C{WORKERS}: every worker binds the port).
    reuse_port = False

    def __init__(
        self,
        port: int,
        factory: Any,
        backlog: int,
        interface: str,
        reactor: Any,
        pacer: Any,
        on_listening: Callable[[socket.socket, Any], Any],
    ) -> None:
        super().__init__(port, factory, backlog, interface, reactor)
        self._pacer = pacer
        self._on_listening = on_listening

    def createInternetSocket(self) -> socket.socket:
        skt = super().createInternetSocket()
        if self.reuse_port:
            skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return skt

    def startListening(self) -> None:
        super().startListening()
        self.socket = self._on_listening(self.socket, self._pacer)

    def doRead(self) -> None:
        allowed = self._pacer.allowance()
        if allowed < 1:
            # Not now: stop watching the socket until a token is due; the
            # kernel keeps the waiting connections in the listen queue.
            self.stopReading()
            self._resume = self.reactor.callLater(self._pacer.wait(), self._resume_reading)  # type: ignore[attr-defined]
            return None
        self.numberAccepts = allowed
        before = self.sessionno
        super().doRead()
        self._pacer.took(self.sessionno - before)
        return None

    def _resume_reading(self) -> None:
        self._resume = None
        if self.connected:
            self.startReading()

    def connectionLost(self, reason: Any) -> None:
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        self._resume = None
        super().connectionLost(reason)


class _QuietClientFactory(HTTPConnectionPool._factory):  # type: ignore[misc, valid-type]
    noisy = False


def quiet_connection_pool(pool: Any) -> None:
    """
    No "Starting factory" log line for each connection of C{pool} (an
    L{twisted.web.client.HTTPConnectionPool}): its private C{_factory} is the
    class it makes each connection's factory from.
    """
    pool._factory = _QuietClientFactory


