# -*- test-case-name: tests.transport.test_listener -*-
"""
A listening socket as a service of the gateway's tree.

Under twistd the socket is bound in C{privilegedStartService}, before the
daemon drops its privileges (so a port below 1024 works with C{--uid}), and
a port that cannot be bound stops the start there, before twistd detaches,
with the reason on the command line and in the log.  It accepts nothing
until C{startService}, which the tree calls once the stores are loaded:
chargers that connect earlier wait in the kernel's listen queue.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer


class ListenerService(Service):
    """
    Listens on C{endpoint} with C{factory} while running.

    @param endpoint: must listen synchronously, with a L{tcp.Port
        <twisted.internet.tcp.Port>} (TCP and TLS endpoints do), so that a
        port in use is reported at start and accepting can wait.
    @param what: what the port serves, for the log line.
    @ivar port: the listening port while bound, else C{None}.
    """

    log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, factory: Any, what: str) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.what = what
        self.port: IListeningPort | None = None

    def _bind(self) -> IListeningPort:
        outcome: list[Any] = []
        self.endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"{self.what}: the endpoint did not listen at once")
        result = outcome[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.port is None:
            self.port = self._bind()
            self.port.stopReading()  # type: ignore[attr-defined]  # a tcp.Port: accept nothing yet

    def startService(self) -> None:
        if self.port is None:
            self.port = self._bind()
        else:
            self.port.startReading()  # type: ignore[attr-defined]
        super().startService()
        address = self.port.getHost()
        self.log.info("{what} on port {port}", what=self.what, port=getattr(address, "port", address))

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        return port.stopListening()


class _ReusePort(tcp.Port):
    def createInternetSocket(self) -> socket.socket:
        skt = super().createInternetSocket()
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return skt


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """
    A plain TCP server endpoint (IPv4 or IPv6, by the interface's address)
    that binds with C{SO_REUSEPORT}, so that the workers of C{WORKERS}
    each listen on the same port and the kernel spreads connections.
    """

    def __init__(self, reactor: Any, port: int, interface: str = "", backlog: int = 50) -> None:
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        try:
            port = _ReusePort(self._port, factory, self._backlog, self._interface, self._reactor)
            port.startListening()
        except Exception as e:  # noqa: BLE001 - the caller's Deferred reports it
            return fail(e)
        return succeed(port)
