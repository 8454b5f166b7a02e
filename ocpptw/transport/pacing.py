# -*- test-case-name: tests.transport.test_pacing -*-
"""
Admission at the listening socket: connections are accepted at a bounded
pace, and the ones not yet accepted wait in the kernel's listen queue, where
they cost the gateway nothing.

After an outage thousands of chargers reconnect within a second.  Accepting
them all in one reactor turn (Twisted accepts up to 100 and more per
readiness of the listening socket) puts every handshake, every HTTP parse and
every BootNotification of the storm in front of the Heartbeats of the
chargers already connected; answering 503 to the excess costs nearly as much
as admitting them, since the request has been read and parsed by then, and
the refused chargers come back.  Here each readiness of the socket accepts at
most C{per_turn} connections (so the reactor serves every connection already
open between two accepts), optionally also within a token bucket of C{rate}
accepts a second; a deep backlog holds the rest instead of dropping their
SYNs into the clients' retransmission waves (1, 3, 7, 15 s...).

The pace only applies to the accept loop: a charger already accepted is
served at full speed, and the listen queue is first come, first served.

A charger that gave up while its connection waited in the queue (closed or
reset it: the kernel's socket is no longer established) is dropped at the
accept, before any HTTP or TLS work is spent on it, and does not count
against the pace: in a long storm the queue fills with such connections as
the chargers' own connect timeouts expire and they try again.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from zope.interface import implementer

from ocpptw.transport.compat import PacedPort, mark_tls
from ocpptw.transport.token_bucket import TokenBucket


class AcceptPacer:
    """
    How many connections the listening socket may accept now.  Pure: time
    comes from the injected clock.

    @param clock: the time source.
    @param per_turn: connections accepted at most per readiness of the
        listening socket (per reactor turn).
    @param rate: accepts a second in the long run; 0 for no limit but
        C{per_turn}.
    @param burst: accepts at once after a quiet spell when C{rate} is set
        (default: C{per_turn}).
    """

    def __init__(self, clock: IReactorTime, per_turn: int = 1, rate: float = 0.0, burst: float | None = None) -> None:
        if per_turn < 1:
            raise ValueError("per_turn must be at least 1")
        if rate < 0:
            raise ValueError("rate must be zero or more")
        self._clock = clock
        self.per_turn = per_turn
        self._bucket = TokenBucket(rate, float(burst if burst is not None else per_turn), clock.seconds())
        #: Connections accepted in all.
        self.accepted = 0
        #: Times the accept loop paused for the rate.
        self.pauses = 0
        #: Connections dropped at the accept: their client had given up.
        self.abandoned = 0
        #: Called once per abandoned connection (a metric), or C{None}.
        self.on_abandoned: Callable[[], None] | None = None
        #: How many connections wait in the listen queue now (set by the
        #: listening port; 0 where the platform cannot tell).
        self.waiting: Callable[[], int] = lambda: 0

    @property
    def rate(self) -> float:
        """
        Accepts a second in the long run (0: no limit but C{per_turn});
        the accept governor changes it.
        """
        return self._bucket.rate

    @rate.setter
    def rate(self, rate: float) -> None:
        self._bucket.rate = rate

    @property
    def burst(self) -> float:
        return self._bucket.burst

    def allowance(self) -> int:
        """
        Connections that may be accepted now (0: wait L{wait} seconds).
        """
        if not self.rate:
            return self.per_turn
        return min(self.per_turn, int(self._bucket.refill(self._clock.seconds())))

    def took(self, count: int) -> None:
        """
        C{count} connections were accepted.
        """
        self.accepted += count
        if self.rate:
            self._bucket.take(count)

    def gave_up(self) -> None:
        """
        One connection was found abandoned at the accept and dropped.
        """
        self.abandoned += 1
        if self.on_abandoned is not None:
            self.on_abandoned()

    def wait(self) -> float:
        """
        Seconds until the next accept is allowed.
        """
        self.pauses += 1
        return self._bucket.wait()


#: Connections found abandoned that one accept may drop before it yields.
MOST_SKIPPED = 64

_TCP_INFO = getattr(socket, "TCP_INFO", None)
_ESTABLISHED = 1


def established(skt: socket.socket) -> bool:
    """
    Whether an accepted TCP socket is still established (C{False} once the
    client closed or reset it), by the first field of C{TCP_INFO}; C{True}
    where the platform cannot tell.
    """
    if _TCP_INFO is None:
        return True
    try:
        return skt.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] == _ESTABLISHED
    except OSError:
        return False


def listen_queue(listening: socket.socket) -> int:
    """
    How many connections wait in a listening TCP socket's accept queue (on
    Linux, C{tcpi_unacked} of C{TCP_INFO} for a listening socket); 0 where
    the platform cannot tell.
    """
    if _TCP_INFO is None:
        return 0
    try:
        info = listening.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 32)
    except OSError:
        return 0
    return int.from_bytes(info[24:28], sys.byteorder) if len(info) >= 28 else 0


class _SkipAbandoned:
    """
    A listening socket whose C{accept} drops connections the client already
    gave up (see the module's docstring); everything else is the socket's.
    """

    def __init__(self, listening: socket.socket, pacer: AcceptPacer) -> None:
        self._listening = listening
        self._pacer = pacer

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(MOST_SKIPPED):
            skt, addr = self._listening.accept()
            if established(skt):
                return skt, addr
            skt.close()
            self._pacer.gave_up()
        # Let the reactor serve the open connections before more are looked at.
        raise BlockingIOError(errno.EAGAIN, "abandoned connections skipped")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._listening, name)


def _listening_hooks(listening: socket.socket, pacer: AcceptPacer) -> _SkipAbandoned:
    pacer.waiting = lambda: listen_queue(listening)
    return _SkipAbandoned(listening, pacer)


@implementer(IStreamServerEndpoint)
class PacedServerEndpoint:
    """
    A TCP (IPv4 or IPv6, by the interface's address) server endpoint with a
    paced accept loop and a deep listen backlog; with C{tls}, a TLS one as
    C{SSL4ServerEndpoint} builds it (TLS in memory over the TCP port).

    @param pacer: the accept pace.
    @param backlog: the listen queue's length (the kernel caps it at
        C{net.core.somaxconn}).
    @param tls: an C{IOpenSSLServerConnectionCreator} (a context factory),
        or C{None} for plain TCP.
    @param outer: wraps the factory the TCP port uses, outside TLS (a
        per-address connection cap refuses before any TLS work).
    @param reuse_port: bind with C{SO_REUSEPORT} (the workers of
        C{WORKERS} share the port).
    """

    def __init__(
        self,
        reactor: Any,
        port: int,
        pacer: AcceptPacer,
        backlog: int = 4096,
        interface: str = "",
        tls: Any = None,
        outer: Callable[[Any], Any] | None = None,
        reuse_port: bool = False,
    ) -> None:
        self._outer = outer
        self._reuse_port = reuse_port
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog
        self._tls = tls
        self.pacer = pacer

    def listen(self, protocol_factory: Any) -> Deferred[IListeningPort]:
        factory = protocol_factory
        if self._tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(self._tls, False, protocol_factory)
        if self._outer is not None:
            factory = self._outer(factory)
        try:
            port = PacedPort(self._port, factory, self._backlog, self._interface, self._reactor, self.pacer, _listening_hooks)
            port.reuse_port = self._reuse_port
            port.startListening()
        except Exception as e:  # noqa: BLE001 - the caller's Deferred reports it
            return fail(e)
        if self._tls is not None:
            mark_tls(port)
        return succeed(port)
