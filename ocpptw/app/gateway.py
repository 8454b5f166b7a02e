# -*- test-case-name: tests.integration.test_gateway -*-
"""
The gateway's service tree: builds every room from a L{Config} and wires
them.  The one place (with L{ocpptw.tap}) that resolves the global reactor.

Start order: local state (ledger, outbox), the broker, then the listener.
Stop order (SIGTERM drain, CONTRACT section 6): stop accepting, let
in-flight calls finish, flush the outbox, close sockets with 1001, stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ocpptw.config import Config

#: Close code and reason for sockets closed by the drain.
GOING_AWAY = (1001, "gateway shutting down")

#: Seconds the drain waits for close handshakes after DRAIN_GRACE.
CLOSE_WAIT = 6.0
#: Seconds a call cut off by a closed socket may take to finish its writes.
FINISH_WAIT = 2.0
#: The most the drain takes beyond DRAIN_GRACE (orchestrators must wait longer).
DRAIN_EXTRA = CLOSE_WAIT + FINISH_WAIT


def _or_global_reactor(reactor: Any | None) -> Any:
    """
    The argument, or the global reactor (imported lazily: importing ocpptw
    installs nothing).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor


class GatewayService(MultiService):
    """
    The whole gateway.  Attributes are the wired parts, for tests and
    operators' tooling.
    """

    log = Logger()

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.databases: list[Any] = []
        self.closers: list[Any] = []
        self.starters: list[Any] = []
        self.port: Any = None
        self.listener: Any = None
        self.extra_listeners: list[tuple[Any, Any]] = []
        self.extra_ports: list[Any] = []
        self.gate: Any = None
        self.registry: Any = None
        self.outbox: Any = None
        self.publisher: Any = None
        self.backend: Any = None
        self.metrics: Any = None
        self.started: Deferred[None] = Deferred()

    def exit_zero_on_sigterm(self) -> None:
        """
        Make SIGTERM drain and exit 0, as orchestrators expect.  twistd would
        otherwise re-raise the signal after the drain and exit with -15.
        Call before the reactor runs; the handler is installed once it does.
        """
        import signal

        def install() -> None:
            def on_term(signum: int, frame: Any) -> None:
                self.log.info("SIGTERM: draining")
                self.reactor.callFromThread(self.reactor.stop)

            signal.signal(signal.SIGTERM, on_term)

        self.reactor.callWhenRunning(install)

    def startService(self) -> None:
        # Children (the broker connection) start with the parent; the
        # listener waits until local state is loaded.
        super().startService()
        self.log.info("ocpptw starting: {settings}", settings=self.config.redacted())
        d = self._start()
        d.addErrback(self._failed_start)

    @inlineCallbacks
    def _start(self) -> Any:
        for start in self.starters:
            yield start()
        self.port = yield self.listener.listen(self.site)
        for endpoint, site in self.extra_listeners:
            extra = yield endpoint.listen(site)
            self.extra_ports.append(extra)
            self.log.info("plain HTTP on port {port}", port=extra.getHost().port)
        address = self.port.getHost()
        scheme = "wss" if self.config.tls else "ws"
        self.log.info(
            "listening for chargers at {scheme}://{host}:{port}{path}/{{chargePointId}}",
            scheme=scheme,
            host=address.host,
            port=address.port,
            path=self.config.ocpp_path,
        )
        if self.config.admin_token is None:
            self.log.warn("ADMIN_API_TOKEN is unset: the command API answers only on loopback")
        self.started.callback(None)

    def _failed_start(self, failure: Any) -> None:
        self.log.critical("ocpptw could not start: {error}", error=failure.getErrorMessage(), log_failure=failure)
        if not self.started.called:
            self.started.errback(failure)
        if self.reactor.running:
            self.reactor.stop()

    @inlineCallbacks
    def stopService(self) -> Any:
        yield self._drain()
        yield super().stopService()
        for close in reversed(self.closers):
            try:
                yield close()
            except Exception:
                self.log.failure("closing a part of the gateway failed")

    @inlineCallbacks
    def _drain(self) -> Any:
        grace = self.config.drain_grace
        deadline = self.reactor.seconds() + grace
        if self.gate is not None:
            self.gate.accepting = False
        for port in [self.port, *self.extra_ports]:
            if port is not None:
                yield port.stopListening()
        # Let inbound calls that are being handled finish (their answers
        # wait for durable writes), within the grace period.
        while self.registry is not None and self.reactor.seconds() < deadline:
            busy = [c for c in (self.registry.get(cp) for cp in self.registry) if c and not c.session.idle()]
            if not busy:
                break
            yield deferLater(self.reactor, 0.05, lambda: None)
        if self.outbox is not None:
            left = max(0.0, deadline - self.reactor.seconds())
            emptied = yield self.outbox.flush(left)
            if not emptied:
                self.log.warn(
                    "drain: {depth} outbox entries stay in {dataDir}; they are delivered at the next start",
                    depth=self.outbox.depth(),
                    dataDir=self.config.data_dir,
                )
        if self.registry is not None:
            connections = [self.registry.get(cp) for cp in self.registry]
            for connection in connections:
                if connection is not None:
                    connection.close(*GOING_AWAY)
            # Wait for the close handshakes (bounded: Autobahn drops a peer
            # that does not answer within its close timeout).
            closing_deadline = self.reactor.seconds() + CLOSE_WAIT
            while len(self.registry) and self.reactor.seconds() < closing_deadline:
                yield deferLater(self.reactor, 0.02, lambda: None)
            self.log.info("drain: closed {count} charger connections", count=len(connections))
        if self.gate is not None:
            # Handlers of connections that just closed may still be waiting
            # for the backend; their writes must land before the stores close.
            finish_by = max(deadline, self.reactor.seconds()) + FINISH_WAIT
            while self.gate.finishing() and self.reactor.seconds() < finish_by:
                yield deferLater(self.reactor, 0.02, lambda: None)
            if self.gate.finishing():
                self.log.warn(
                    "drain: {count} calls were still being handled at the end of the grace period",
                    count=self.gate.finishing(),
                )
            yield self.gate.settled()


def make_gateway(config: Config, reactor: Any | None = None, daemon: bool = False) -> GatewayService:
    """
    Build the gateway from C{config}.

    @param daemon: running under twistd: SIGTERM drains and exits 0.
    """
    from ocpptw.app.wiring import wire

    reactor = _or_global_reactor(reactor)
    gateway = GatewayService(config, reactor)
    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    wire(gateway, config, reactor)
    if daemon:
        from ocpptw.observability.logs import bridge_stdlib_logging

        bridge_stdlib_logging()
        gateway.exit_zero_on_sigterm()
    return gateway
