# -*- test-case-name: tests.integration.test_gateway -*-
"""
The gateway's service tree: builds every room from a L{Config} and wires
them.  The one place (with L{ocpptw.tap}) that resolves the global reactor.

Start order: local state (ledger, outbox), the broker, then the listener.
Stop order (SIGTERM drain, docs/contract.md section 6): stop accepting, let
in-flight calls finish, flush the outbox, close sockets with 1001, stop.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorThreads,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocpptw.adapters.amqp import AmqpConnection
from ocpptw.adapters.amqp_commands import AmqpCommandServer
from ocpptw.app.tree import OrderedMultiService
from ocpptw.app.wiring import Parts, build
from ocpptw.config import Config, slot_of
from ocpptw.interfaces import IBackend, ICommandBus, IEventPublisher
from ocpptw.observability.metrics import Metrics
from ocpptw.services.registry import ChargerRegistry
from ocpptw.store.ledger import Ledger
from ocpptw.store.outbox import Outbox
from ocpptw.store.outbox_alarm import OutboxAlarm
from ocpptw.store.sqlite import Database
from ocpptw.transport.governor import AcceptGovernor
from ocpptw.transport.handshake import Gate
from ocpptw.transport.tls import TlsError

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


class IGatewayReactor(IReactorCore, IReactorTime, IReactorThreads):
    """
    What the gateway needs of its reactor: to run, to tell the time, and
    to take calls from other threads (the SIGTERM handler, the databases).
    """


class StartFailed(Exception):
    """
    The gateway could not start: its message is the one line the operator
    reads (twistd prints it before it detaches, and the log has it).
    """


class GatewayService(OrderedMultiService):
    """
    The whole gateway: the parts of L{Parts} as a service tree, started in
    order (stores, broker, periodic work, listeners) and stopped in reverse
    after the SIGTERM drain.

    @ivar started: fires once every part has started (or fails with why not).
    """

    log = Logger()

    def __init__(self, parts: Parts, reactor: IGatewayReactor, daemon: bool = False) -> None:
        super().__init__()
        self.parts = parts
        self.config = parts.config
        self.reactor = reactor
        self._daemon = daemon
        self.started: Deferred[None] = Deferred()
        for service in parts.services():
            service.setServiceParent(self)

    # -- the parts, by name, for tests and operators' tooling ------------------

    @property
    def registry(self) -> ChargerRegistry:
        return self.parts.registry

    @property
    def outbox(self) -> Outbox:
        return self.parts.outbox

    @property
    def ledger(self) -> Ledger:
        return self.parts.ledger

    @property
    def publisher(self) -> IEventPublisher:
        return self.parts.publisher

    @property
    def backend(self) -> IBackend:
        return self.parts.stores.backend

    @property
    def metrics(self) -> Metrics:
        return self.parts.metrics

    @property
    def gate(self) -> Gate:
        return self.parts.gate

    @property
    def bus(self) -> ICommandBus:
        return self.parts.bus

    @property
    def amqp(self) -> AmqpConnection | None:
        return self.parts.broker.connection if self.parts.broker is not None else None

    @property
    def command_server(self) -> AmqpCommandServer | None:
        return self.parts.broker.command_server if self.parts.broker is not None else None

    @property
    def databases(self) -> tuple[Database, ...]:
        return self.parts.stores.databases

    @property
    def outbox_alarm(self) -> OutboxAlarm:
        return self.parts.alarm

    @property
    def accept_governor(self) -> AcceptGovernor | None:
        return self.parts.listeners.governor

    @property
    def listener(self) -> IStreamServerEndpoint:
        return self.parts.listeners.chargers.endpoint

    @property
    def port(self) -> IListeningPort | None:
        return self.parts.listeners.chargers.port

    @property
    def extra_ports(self) -> list[IListeningPort]:
        return [s.port for s in self.parts.listeners.others if s.port is not None]

    # -- lifecycle -------------------------------------------------------------

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            raise self._failed(Failure(e)) from None

    def startService(self) -> Deferred[None]:
        from ocpptw import __version__

        settings = self.config.redacted()
        self.log.info(
            "ocpptw {version} starting as instance {instance}: {settings}",
            version=__version__,
            instance=self.config.instance_id,
            settings=" ".join(f"{name}={value}" for name, value in settings.items()),
            **settings,
        )
        for warning in self.config.warnings():
            self.log.warn("{warning}", warning=warning)
        if self._daemon:
            from ocpptw.app.supervisor import exit_zero_on_sigterm

            exit_zero_on_sigterm(self.reactor, self.log)
        try:
            d = super().startService()
        except Exception as e:
            raise self._failed(Failure(e)) from None
        d.addCallbacks(self._up, self._failed_later)
        return d

    def _up(self, _: Any) -> None:
        port = self.parts.listeners.chargers.port
        assert port is not None
        address = port.getHost()
        scheme = "wss" if self.config.tls else "ws"
        self.log.info(
            "listening for chargers at {scheme}://{host}:{port}{path}/{{chargePointId}}",
            scheme=scheme,
            host=getattr(address, "host", ""),
            port=getattr(address, "port", ""),
            path=self.config.ocpp_path,
        )
        if self.config.admin_token is None:
            self.log.warn("ADMIN_API_TOKEN is unset: the command API answers only on loopback")
        self.started.callback(None)

    def _failed(self, failure: Failure) -> StartFailed:
        """
        Log why the start failed in one line (with the traceback only when
        it is a bug, not the machine's or the configuration's answer).
        """
        reason = _reason(failure)
        if failure.check(OSError, CannotListenError, TlsError, sqlite3.Error):
            self.log.critical("ocpptw could not start: {reason}", reason=reason)
        else:
            self.log.failure("ocpptw could not start: {reason}", failure, reason=reason)
        if not self.started.called:
            self.started.errback(failure)
            self.started.addErrback(lambda _: None)
        return StartFailed(reason)

    def _failed_later(self, failure: Failure) -> None:
        """
        A part failed after the reactor was running: stop it, and under
        twistd exit non-zero once it has stopped.
        """
        self._failed(failure)
        if self._daemon:
            import atexit
            import os

            atexit.register(os._exit, 1)
        if self.reactor.running:
            self.reactor.stop()

    @inlineCallbacks
    def stopService(self) -> Any:
        if self.running:
            yield self._drain()
        yield super().stopService()

    @inlineCallbacks
    def _drain(self) -> Any:
        grace = self.config.drain_grace
        deadline = self.reactor.seconds() + grace
        self.gate.accepting = False
        listeners = self.parts.listeners
        for listener in (listeners.chargers, *listeners.others):
            if listener.running:
                yield listener.stopService()
        # Let inbound calls that are being handled finish (their answers
        # wait for durable writes), within the grace period.
        while self.reactor.seconds() < deadline:
            busy = [c for c in (self.registry.get(cp) for cp in self.registry) if c and not c.session.idle()]
            if not busy:
                break
            yield deferLater(self.reactor, 0.05, lambda: None)
        left = max(0.0, deadline - self.reactor.seconds())
        emptied = yield self.outbox.flush(left)
        if not emptied:
            self.log.warn(
                "drain: {depth} outbox entries stay in {dataDir}; they are delivered at the next start",
                depth=self.outbox.depth(),
                dataDir=self.config.data_dir,
            )
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
        # Deliveries in flight finish rather than being cut off (which would
        # leave the backend unsure, and deliver them again after the restart).
        yield self.outbox.quiesce(max(0.0, finish_by - self.reactor.seconds()))


def _reason(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, CannotListenError):
        return f"cannot listen on {error.interface or '*'}:{error.port}: {error.socketError}"
    return failure.getErrorMessage() or failure.type.__name__


def make_gateway(config: Config, reactor: Any | None = None, daemon: bool = False, worker: int = 0) -> GatewayService:
    """
    Build the gateway from C{config}: nothing is opened until it starts.

    @param daemon: running under twistd: SIGTERM drains and exits 0, and a
        start that fails once the reactor runs exits 1.
    @param worker: this process's number among C{WORKERS} (1-based), or 0
        when it is the gateway's only process: a worker is an instance of
        its own (C{INSTANCE_ID-wN}, C{INSTANCE_SLOT + N - 1}), binds its
        ports with C{SO_REUSEPORT} and keeps its outbox and ledger in
        C{DATA_DIR/worker-N}.
    """
    if worker:
        config = worker_config(config, worker)
    reactor = _or_global_reactor(reactor)
    if daemon:
        from ocpptw.observability.logs import bridge_stdlib_logging

        bridge_stdlib_logging()
    gateway = GatewayService(build(config, reactor, worker), reactor, daemon)
    if worker and daemon:
        from ocpptw.app.supervisor import ParentWatch

        ParentWatch(reactor, reactor.stop).setServiceParent(gateway)
    return gateway


def worker_config(config: Config, worker: int) -> Config:
    """
    The configuration of worker C{worker} (1-based) of C{config.workers}:
    an instance of its own, within the one C{twistd ocpp}.
    """
    import dataclasses

    return dataclasses.replace(
        config,
        workers=1,
        instance_id=f"{config.instance_id}-w{worker}",
        # a slot of its own: hashed from the worker's instance id as the
        # default is from INSTANCE_ID (so two hosts' workers do not take
        # neighbouring slots), or the next ones after an INSTANCE_SLOT set
        instance_slot=(
            slot_of(f"{config.instance_id}-w{worker}")
            if config.instance_slot == slot_of(config.instance_id)
            else (config.instance_slot + worker - 1) % 1024
        ),
    )


def make_supervisor(config: Config, cli: list[str], inherit_output: bool, reactor: Any | None = None) -> Any:
    """
    The parent of C{config.workers} worker processes (L{ocpptw.app.supervisor}).

    @param cli: the parent's own C{twistd ocpp} options, handed to each worker.
    @param inherit_output: the workers write to the parent's standard
        output (C{twistd -n} without a log file).
    """
    from ocpptw.app.hub import Hub, HubListener
    from ocpptw.app.supervisor import WorkerPool, exit_zero_on_sigterm, process_spawner
    from ocpptw.app.wiring import hub_socket

    reactor = _or_global_reactor(reactor)
    tree = OrderedMultiService()
    hub = Hub(reactor, config.workers)
    HubListener(hub, hub_socket(config), reactor).setServiceParent(tree)
    def give_up(line: str) -> None:
        # twistd exits non-zero once the tree has stopped (the other workers drained)
        import atexit
        import os

        atexit.register(os._exit, 1)
        reactor.stop()

    pool = WorkerPool(
        config.workers,
        process_spawner(reactor, cli, inherit_output),
        reactor,
        stop_bound=config.drain_grace + DRAIN_EXTRA + 5.0,
        on_fatal=give_up,
        greeted=hub.greeted.__contains__,
    )
    GatewayService.log.info(
        "ocpptw starting {count} workers (instances {instance}-w1 ... -w{count}) on port {port}",
        count=config.workers,
        instance=config.instance_id,
        port=config.port,
    )
    pool.setServiceParent(tree)
    exit_zero_on_sigterm(reactor, GatewayService.log)
    return tree
