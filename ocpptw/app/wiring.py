# -*- test-case-name: tests.app.test_building,tests.integration.test_gateway -*-
"""
Builds the gateway's parts from a L{Config}: small builders, each returning
what it made, gathered in one frozen L{Parts}.

Building opens nothing: no file, thread, socket or timer.  Every part that
holds a resource is a service, and L{ocpptw.app.gateway.GatewayService}
puts them in its tree in the order of L{Parts.services}, which acquires them
in C{startService} and releases them, in reverse, in C{stopService}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.web.server import Site

from ocpptw.adapters.amqp import AmqpConnection
from ocpptw.adapters.amqp_commands import AmqpCommandServer
from ocpptw.config import Config
from ocpptw.interfaces import IBackend, ICommandBus, IEventPublisher
from ocpptw.observability.heap import HeapService
from ocpptw.observability.metrics import Metrics
from ocpptw.observability.readiness import Readiness, room_check
from ocpptw.services.registry import ChargerRegistry
from ocpptw.store.ledger import Ledger
from ocpptw.store.outbox import Outbox
from ocpptw.store.outbox_alarm import OutboxAlarm
from ocpptw.store.retention import LogBound, LogRetention
from ocpptw.store.sqlite import Database
from ocpptw.transport.console_wiring import Console, build_console, live_feed
from ocpptw.transport.governor import AcceptGovernor
from ocpptw.transport.handshake import CLOSE_BUDGET, Gate
from ocpptw.transport.listener import ListenerService
from ocpptw.transport.pacing import AcceptPacer
from ocpptw.transport.tls import CertificateReloadService

ReadyCheck = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class Stores:
    """
    Where the gateway keeps its state and finds its backend.

    @ivar state: the outbox and the ledger (C{gateway.sqlite}).
    @ivar embedded: the embedded store's database, when no backend URL is set.
    @ivar retention: prunes the embedded store's message log (by age, and
        by size through its L{LogBound}).
    """

    state: Database
    embedded: Database | None
    backend: IBackend
    retention: LogRetention | None

    @property
    def databases(self) -> tuple[Database, ...]:
        return (self.state,) if self.embedded is None else (self.state, self.embedded)


@dataclass(frozen=True)
class Broker:
    """
    The RabbitMQ connection and the command server on it (C{ENABLE_RABBITMQ}).
    """

    connection: AmqpConnection
    command_server: AmqpCommandServer


@dataclass(frozen=True)
class Listeners:
    """
    The listening sockets: C{chargers} on C{PORT} (or C{TLS_PORT}), and the
    plain ones beside it (C{HTTP_PORT}; C{PORT} when wss has a port of its own).
    """

    chargers: ListenerService
    others: tuple[ListenerService, ...]
    governor: AcceptGovernor | None
    certificates: CertificateReloadService | None


@dataclass(frozen=True)
class Parts:
    """
    Everything the gateway is made of, for the service tree, the drain, and
    tests and operators' tooling.
    """

    config: Config
    metrics: Metrics
    stores: Stores
    ledger: Ledger
    outbox: Outbox
    publisher: IEventPublisher
    broker: Broker | None
    registry: ChargerRegistry
    gate: Gate
    bus: ICommandBus
    alarm: OutboxAlarm
    heap: HeapService | None
    listeners: Listeners
    console: Console
    readiness: Readiness
    #: A worker's end of the channel to its parent (C{WORKERS}), a service.
    hub: IService | None = None

    def services(self) -> list[IService]:
        """
        The services in start order (stop order is the reverse): local
        state first, then the broker, periodic work, and the listeners last.
        """
        ordered: list[Any] = [*self.stores.databases]
        if self.stores.retention is not None:
            ordered.append(self.stores.retention)
        if IService.providedBy(self.stores.backend):
            ordered.append(self.stores.backend)
        ordered += [self.ledger, self.outbox]
        if self.broker is not None:
            ordered.append(self.broker.connection)
        if IService.providedBy(self.publisher):
            ordered.append(self.publisher)
        ordered.append(self.alarm)
        ordered.append(self.readiness)
        if self.heap is not None:
            ordered.append(self.heap)
        if self.listeners.governor is not None:
            ordered.append(self.listeners.governor)
        if self.listeners.certificates is not None:
            ordered.append(self.listeners.certificates)
        ordered.append(self.console.hub)
        if self.hub is not None:
            ordered.append(self.hub)
        ordered += [self.listeners.chargers, *self.listeners.others]
        return ordered


def build_stores(config: Config, reactor: Any, metrics: Metrics, worker: int = 0) -> Stores:
    """
    The state database, and the backend: the REST adapter for
    C{BACKEND_API_URL}, else the embedded store.

    @param worker: this process's number among C{WORKERS} (0: the only
        one).  A worker keeps its outbox and ledger in
        C{DATA_DIR/worker-N/gateway.sqlite}; the embedded store,
        C{DATA_DIR/embedded.sqlite}, is shared by every worker (WAL).
    """
    from ocpptw.store import ledger, outbox

    data = Path(config.data_dir)
    own = data / f"worker-{worker}" if worker else data
    state = Database(own / "gateway.sqlite", reactor, outbox.SCHEMA + ledger.SCHEMA)
    if config.backend_url:
        from ocpptw.adapters.backend_http import HttpBackend

        backend = HttpBackend(
            config.backend_url,
            reactor,
            timeout=config.backend_timeout,
            token=config.backend_token,
            observer=metrics,
            cooldown=config.circuit_cooldown,
        )
        return Stores(state, None, backend, None)
    from ocpptw.store import embedded

    db = Database(data / "embedded.sqlite", reactor, embedded.SCHEMA)
    # one service looks after the log: its age (when limited) and its size
    bound = LogBound(db, reactor, config.message_log_max_total_bytes)
    retention = LogRetention(db, reactor, config.embedded_log_retention, bound=bound)
    store = embedded.EmbeddedBackend(
        db,
        reactor,
        price_per_kwh=config.embedded_price,
        currency=config.embedded_currency,
        auth_mode=config.embedded_auth_mode,
    )
    return Stores(state, db, store, retention)


def build_events(
    config: Config,
    reactor: Any,
    outbox: Outbox,
    backend: IBackend,
    metrics: Metrics,
    embedded: Database | None = None,
) -> tuple[IEventPublisher, AmqpConnection | None]:
    """
    Where events go: RabbitMQ when enabled, else the local publisher.

    @param embedded: the embedded store's database, when it keeps the
        message log: the local publisher's writes of a turn join that
        turn's other writes there (one commit).
    """
    if not config.enable_rabbitmq:
        from ocpptw.adapters.local_events import LocalEventPublisher

        flush_with = embedded.before_wake if embedded is not None else None
        return LocalEventPublisher(outbox, backend, reactor, flush_with=flush_with), None
    from ocpptw.adapters.amqp_events import AmqpEventPublisher

    assert config.rabbitmq_url is not None  # the configuration gives it a default
    connection = AmqpConnection(
        reactor,
        config.rabbitmq_url,
        config.instance_id,
        events_exchange=config.rabbitmq_exchange,
        command_exchange=config.rabbitmq_command_exchange,
    )
    metrics.watch_broker(connection.ready)
    publisher = AmqpEventPublisher(connection, outbox, reactor, config.rabbitmq_exchange, metrics=metrics)
    return publisher, connection


def build_pacer(config: Config, reactor: Any, metrics: Metrics, governor: AcceptGovernor | None) -> AcceptPacer:
    """
    A listener's accept pace; with C{ACCEPT_RATE=auto} steered by C{governor}.
    """
    pacer = AcceptPacer(reactor, config.accept_per_turn, config.accept_rate or 0)
    pacer.on_abandoned = lambda: metrics.handshake("abandoned")
    if governor is not None:
        governor.steer(pacer)
    else:
        metrics.watch_accept(lambda: pacer.rate, waiting=lambda: pacer.waiting())
    return pacer


def build_listeners(
    config: Config,
    reactor: Any,
    metrics: Metrics,
    site: Callable[..., Site],
    charger_factory: Any,
    reuse_port: bool = False,
) -> Listeners:
    """
    One listener on C{PORT} (wss when TLS is configured); with a
    C{TLS_PORT} of its own, C{PORT} stays plain for probes, scrapes and the
    API, and for chargers only where the security profile allows plain ws;
    C{HTTP_PORT} serves probes, scrapes and the API on a socket of their own,
    never paced, never queued behind a storm of chargers.

    @param site: C{(ws_factory, require_tls=None) -> Site}.
    @param reuse_port: bind every port with C{SO_REUSEPORT} (a worker of
        C{WORKERS}).
    """
    from ocpptw.transport.pacing import PacedServerEndpoint

    outer: Callable[[Any], Any] | None = None
    if config.max_connections_per_ip:
        from ocpptw.transport.request_guard import PeerConnectionCap

        counts: dict[str, int] = {}  # one count per address for every listener of the process

        def cap(factory: Any) -> Any:
            # At the TCP level, outside TLS: a refused connection costs no handshake.
            return PeerConnectionCap(
                factory, config.max_connections_per_ip, lambda: metrics.handshake("too_many_from_address"), counts
            )

        outer = cap

    governor = None
    if config.accept_rate is None:
        governor = AcceptGovernor(reactor, [], config.accept_cpu_share, config.accept_max_wait)
        metrics.watch_accept(lambda: governor.rate, lambda: governor.busy, governor.waiting)

    def paced(port: int, tls: Any = None) -> IStreamServerEndpoint:
        pacer = build_pacer(config, reactor, metrics, governor)
        return PacedServerEndpoint(
            reactor, port, pacer, config.listen_backlog, config.host, tls=tls, outer=outer, reuse_port=reuse_port
        )

    others: list[ListenerService] = []
    if config.http_port is not None:
        from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

        kind = TCP6ServerEndpoint if ":" in config.host else TCP4ServerEndpoint
        probes = site(None)
        endpoint: IStreamServerEndpoint = kind(reactor, config.http_port, interface=config.host)
        if reuse_port:
            from ocpptw.transport.listener import ReusePortEndpoint

            endpoint = ReusePortEndpoint(reactor, config.http_port, config.host, backlog=config.listen_backlog)
        others.append(ListenerService(endpoint, outer(probes) if outer is not None else probes, "plain HTTP"))
    certificates = None
    if not config.tls:
        chargers = ListenerService(paced(config.port), site(charger_factory), "chargers (ws)")
    else:
        from ocpptw.transport.tls import context_factory_for

        tls_port = config.tls_port if config.tls_port is not None else config.port
        context = context_factory_for(config, reactor)
        certificates = CertificateReloadService(context, reactor)
        chargers = ListenerService(paced(tls_port, context), site(charger_factory), "chargers (wss)")
        if tls_port != config.port:
            plain_factory = charger_factory if config.security_profile < 2 else None
            others.append(ListenerService(paced(config.port), site(plain_factory, require_tls=tls_port), "plain HTTP"))
    return Listeners(chargers, tuple(others), governor, certificates)


def build(config: Config, reactor: Any, worker: int = 0) -> Parts:
    """
    Every part of the gateway, wired, nothing started.

    @param worker: this process's number among C{WORKERS}, or 0 when it
        is the gateway's only process.
    """
    from ocpptw.ocpp.validation import Validator
    from ocpptw.services.chargers import ChargerService
    from ocpptw.services.commands import LocalCommandBus
    from ocpptw.services.delivery import register_deliveries
    from ocpptw.services.recorder import FrameRecorder
    from ocpptw.services.sessions import SessionService
    from ocpptw.services.wallet import WalletService
    from ocpptw.transport.api import CommandApi
    from ocpptw.transport.auth import ProxyTrust
    from ocpptw.transport.http import build_site
    from ocpptw.transport.websocket import OcppServerFactory

    metrics = Metrics()
    stores = build_stores(config, reactor, metrics, worker)
    backend = stores.backend
    outbox = Outbox(
        stores.state,
        reactor,
        config.outbox_max_age,
        initial_delay=min(0.5, config.outbox_retry_max),
        max_delay=config.outbox_retry_max,
        observer=metrics,
    )
    ledger = Ledger(stores.state, reactor)
    publisher, connection = build_events(config, reactor, outbox, backend, metrics, stores.embedded)
    wallet = WalletService(backend)
    chargers = ChargerService(
        backend,
        outbox,
        publisher,
        ledger,
        reactor,
        heartbeat_interval=config.heartbeat_interval,
        allow_unknown=config.allow_unknown_chargers,
        instance=config.instance_id,
    )
    sessions = SessionService(
        backend,
        outbox,
        publisher,
        ledger,
        reactor,
        start_deadline=config.start_deadline,
        auth_cache_ttl=config.auth_cache_ttl,
        instance_slot=config.instance_slot,
        instance=config.instance_id,
    )
    register_deliveries(outbox, backend, ledger, wallet, message_batch=config.backend_message_batch)

    registry = ChargerRegistry(config.instance_id, reactor)
    validator = Validator()
    from ocpptw.services.presence import Presence

    recorder = FrameRecorder(
        publisher, reactor, config.instance_id, metrics,
        accepted=chargers.is_accepted, max_payload_bytes=config.message_log_max_bytes,
        presence=Presence(registry, chargers, reactor),
    )
    feed, observer = live_feed(config, reactor, registry, recorder, backend, accepted=chargers.is_accepted)
    from ocpptw.ocpp.factory import SessionFactory, routers

    session_factory = SessionFactory(
        routers(chargers, sessions, reactor), reactor, config.call_timeout, observer, {validator.version.name: validator}
    )

    authenticate = None
    if config.security_profile:
        from ocpptw.transport.auth import authenticator
        from ocpptw.transport.guess_limit import GuessLimit

        authenticate = GuessLimit(authenticator(config), reactor, trusted=ProxyTrust(config.trusted_proxies))
    admission = None
    if config.handshake_concurrency or config.handshake_rate_per_ip:
        from ocpptw.transport.admission import HandshakeAdmission

        admission = HandshakeAdmission(reactor, config.handshake_concurrency, config.handshake_rate_per_ip)
    gate = Gate(
        prefix=config.ocpp_path,
        chargers=chargers,
        registry=registry,
        session_factory=session_factory,
        clock=reactor,
        strict=config.validation == "strict",
        allow_unknown=config.allow_unknown_chargers,
        allow_missing_subprotocol=config.allow_missing_subprotocol,
        versions=config.ocpp_versions,
        authenticate=authenticate,
        admission=admission,
        metrics=metrics,
        close_budget=CLOSE_BUDGET,
    )
    factory = OcppServerFactory(gate, max_frame_bytes=config.max_frame_bytes, ping_interval=config.ping_interval, reactor=reactor)

    bus: ICommandBus = LocalCommandBus(registry, validator, config.call_timeout)
    broker = None
    if connection is not None:
        from ocpptw.adapters.amqp_commands import AmqpCommandBus

        server = AmqpCommandServer(connection, registry, bus, config.instance_id)
        bus = AmqpCommandBus(connection, bus, registry, reactor, default_timeout=config.call_timeout)
        broker = Broker(connection, server)
    hub_client = hub_service = None
    if worker:
        hub_client, hub_service = build_hub_client(config, reactor, worker, registry, bus, claims=connection is None)
        if connection is None:
            from ocpptw.app.hub import WorkerCommandBus

            bus = WorkerCommandBus(bus, registry, hub_client)
    directory: Any = None
    if connection is not None:
        from ocpptw.adapters.amqp_directory import AmqpDirectory

        directory = AmqpDirectory(connection, registry, reactor)
    elif hub_client is not None:
        from ocpptw.app.hub import WorkerDirectory

        directory = WorkerDirectory(hub_client)
    api = CommandApi(
        bus, registry, config.admin_token, config.call_timeout,
        trusted=ProxyTrust(config.trusted_proxies), directory=directory,
    )
    console = build_console(config, reactor, api, feed, backend, outbox, metrics)

    metrics.watch_outbox(outbox)
    alarm = OutboxAlarm(outbox, reactor, config.outbox_alarm_depth, config.outbox_alarm_age)
    metrics.watch_outbox_alarm(alarm)
    heap = HeapService(reactor, config.gc_young_interval, config.gc_full_interval) if config.gc_young_interval else None

    listening: list[Listeners] = []

    def charger_port_up() -> tuple[bool, str]:
        return bool(listening and listening[0].chargers.running), "listener not up"

    def not_draining() -> tuple[bool, str]:
        return gate.accepting, "draining"

    def stores_writable() -> tuple[bool, str]:
        # the outbox's own refusals land on its database
        return all([db.probe() for db in stores.databases]), f"cannot write to {config.data_dir}"

    # /ready (docs/contract.md section 6): only this instance's own trouble blocks;
    # a backend or broker outage, shared by every instance, degrades.
    readiness = Readiness(
        blocking=[charger_port_up, not_draining, stores_writable, room_check(config.data_dir)],
        degrading=[backend.ready, publisher.ready],
        clock=reactor,
        observer=metrics,
    )

    host_ready: Any = readiness
    host_metrics: Any = metrics.render
    if hub_client is not None:
        from types import SimpleNamespace

        from ocpptw.app.hub import host_views

        hub_client.reports.update(
            ready=lambda: list(readiness.answer()),
            metrics=lambda: metrics.render()[0].decode("utf-8"),
            chargers=registry.describe_all,
        )
        ready_all, host_metrics = host_views(hub_client)
        host_ready = SimpleNamespace(answer=ready_all)

    def site(ws_factory: Any, require_tls: int | None = None) -> Site:
        return build_site(ws_factory, config.ocpp_path, host_ready, host_metrics, console.api, require_tls=require_tls,
                          console=console.files)

    listeners = build_listeners(config, reactor, metrics, site, factory, reuse_port=bool(worker))
    listening.append(listeners)
    return Parts(
        config=config,
        metrics=metrics,
        stores=stores,
        ledger=ledger,
        outbox=outbox,
        publisher=publisher,
        broker=broker,
        registry=registry,
        gate=gate,
        bus=bus,
        alarm=alarm,
        heap=heap,
        listeners=listeners,
        console=console,
        readiness=readiness,
        hub=hub_service,
    )


def hub_socket(config: Config) -> str:
    """
    The workers' channel (C{WORKERS}): a UNIX socket in C{DATA_DIR}.
    """
    return str(Path(config.data_dir).resolve() / "workers.sock")


def build_hub_client(config: Config, reactor: Any, worker: int, registry: Any, local_bus: Any, claims: bool) -> Any:
    """
    A worker's end of the channel to its parent and the service that keeps
    it connected.
    """
    from twisted.application.internet import ClientService, backoffPolicy
    from twisted.internet.endpoints import UNIXClientEndpoint

    from ocpptw.app.hub import HubClient

    client = HubClient(worker, registry, local_bus, reactor, {}, claims=claims, default_timeout=config.call_timeout)
    service = ClientService(
        UNIXClientEndpoint(reactor, hub_socket(config), timeout=5),
        client.factory(),
        retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=2.0),
        prepareConnection=client.connected,
        clock=reactor,
    )
    return client, service
