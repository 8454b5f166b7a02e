# -*- test-case-name: tests.integration.test_gateway -*-
"""
Assembles the rooms into a L{GatewayService}: stores, backend, publisher,
services, sessions, the WebSocket gateway and the HTTP site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocpptw.config import Config


def _database(gateway: Any, path: Path, reactor: Any, schema: str) -> Any:
    from ocpptw.store.sqlite import Database

    db = Database(path, reactor, schema)
    gateway.closers.append(db.close)
    if getattr(gateway, "databases", None) is None:
        gateway.databases = []
    gateway.databases.append(db)  # for /ready: a database whose disk refuses writes
    return db


def _backend(gateway: Any, config: Config, reactor: Any) -> Any:
    if config.backend_url:
        from ocpptw.adapters.backend_http import HttpBackend

        backend = HttpBackend(
            config.backend_url,
            reactor,
            timeout=config.backend_timeout,
            token=config.backend_token,
            observer=gateway.metrics,
            cooldown=config.circuit_cooldown,
        )
        gateway.closers.append(backend.close)
        return backend
    from ocpptw.store import embedded

    db = _database(gateway, Path(config.data_dir) / "embedded.sqlite", reactor, embedded.SCHEMA)
    if config.embedded_log_retention:
        from ocpptw.store.retention import LogRetention

        LogRetention(db, reactor, config.embedded_log_retention).setServiceParent(gateway)
    return embedded.EmbeddedBackend(
        db,
        reactor,
        price_per_kwh=config.embedded_price,
        currency=config.embedded_currency,
        auth_mode=config.embedded_auth_mode,
    )


def _publisher(gateway: Any, config: Config, reactor: Any, outbox: Any, backend: Any) -> Any:
    if not config.enable_rabbitmq:
        from ocpptw.adapters.local_events import LocalEventPublisher

        return LocalEventPublisher(outbox, backend, reactor)
    from ocpptw.adapters.amqp import AmqpConnection
    from ocpptw.adapters.amqp_events import AmqpEventPublisher

    connection = AmqpConnection(
        reactor,
        config.rabbitmq_url,
        config.instance_id,
        events_exchange=config.rabbitmq_exchange,
        command_exchange=config.rabbitmq_command_exchange,
    )
    connection.setServiceParent(gateway)
    gateway.amqp = connection
    gateway.metrics.watch_broker(connection.ready)
    return AmqpEventPublisher(connection, outbox, reactor, config.rabbitmq_exchange, metrics=gateway.metrics)


def _pacing(gateway: Any, config: Config, reactor: Any) -> tuple[Any, int]:
    """
    A listener's accept pace; with C{ACCEPT_RATE=auto} every listener's
    pace is steered by one L{AcceptGovernor}.
    """
    from ocpptw.transport.pacing import AcceptPacer

    pacer = AcceptPacer(reactor, config.accept_per_turn, config.accept_rate or 0)
    pacer.on_abandoned = lambda: gateway.metrics.handshake("abandoned")
    if config.accept_rate is None:
        governor = getattr(gateway, "accept_governor", None)
        if governor is None:
            from ocpptw.transport.governor import AcceptGovernor

            governor = gateway.accept_governor = AcceptGovernor(reactor, [], config.accept_cpu_share, config.accept_max_wait)
            governor.setServiceParent(gateway)
            gateway.metrics.watch_accept(lambda: governor.rate, lambda: governor.busy, governor.waiting)
        governor.steer(pacer)
    else:
        gateway.metrics.watch_accept(lambda: pacer.rate, waiting=lambda: pacer.waiting())
    return pacer, config.listen_backlog


def _plain_endpoint(gateway: Any, config: Config, reactor: Any) -> Any:
    from ocpptw.transport.pacing import PacedServerEndpoint

    pacer, backlog = _pacing(gateway, config, reactor)
    return PacedServerEndpoint(reactor, config.port, pacer, backlog, interface=config.host)


def _listeners(gateway: Any, config: Config, reactor: Any, factory: Any, checks: list, metrics: Any, api: Any) -> None:
    """
    One listener on PORT (wss when TLS is configured); with a TLS_PORT of
    its own, PORT stays plain for probes, scrapes and the API, and for
    chargers only where the security profile allows plain ws.
    """
    from ocpptw.transport.http import build_site

    gateway.site = build_site(factory, config.ocpp_path, checks, metrics.render, api)
    if config.http_port is not None:
        from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

        # Probes, scrapes and the API on a socket of their own: never paced,
        # never queued behind a storm of chargers.
        kind = TCP6ServerEndpoint if ":" in config.host else TCP4ServerEndpoint
        probes = build_site(None, config.ocpp_path, checks, metrics.render, api)
        gateway.extra_listeners.append((kind(reactor, config.http_port, interface=config.host), probes))
    if not config.tls:
        gateway.listener = _plain_endpoint(gateway, config, reactor)
        return
    from ocpptw.transport.tls import tls_server_endpoint

    tls_port = config.tls_port if config.tls_port is not None else config.port
    gateway.listener = tls_server_endpoint(reactor, config, tls_port, config.host, pacing=_pacing(gateway, config, reactor))
    if tls_port != config.port:
        plain_factory = factory if config.security_profile < 2 else None
        plain = build_site(plain_factory, config.ocpp_path, checks, metrics.render, api, require_tls=tls_port)
        gateway.extra_listeners.append((_plain_endpoint(gateway, config, reactor), plain))


def wire(gateway: Any, config: Config, reactor: Any) -> None:
    """
    Build every part and hang it on C{gateway}.
    """
    from ocpptw.ocpp.router import Router
    from ocpptw.observability.metrics import Metrics
    from ocpptw.ocpp.session import OcppSession
    from ocpptw.ocpp.validation import Validator
    from ocpptw.services.recorder import FrameRecorder
    from ocpptw.store import ledger as ledger_module
    from ocpptw.services.chargers import ChargerService
    from ocpptw.services.commands import LocalCommandBus
    from ocpptw.services.delivery import register_deliveries
    from ocpptw.services.registry import ChargerRegistry
    from ocpptw.services.sessions import SessionService
    from ocpptw.services.wallet import WalletService
    from ocpptw.store import outbox as outbox_module
    from ocpptw.transport.api import CommandApi
    from ocpptw.transport.handshake import Gate
    from ocpptw.transport.websocket import OcppServerFactory

    metrics = gateway.metrics = Metrics()
    data = Path(config.data_dir)
    state = _database(gateway, data / "gateway.sqlite", reactor, outbox_module.SCHEMA + ledger_module.SCHEMA)
    backend = gateway.backend = _backend(gateway, config, reactor)
    outbox = gateway.outbox = outbox_module.Outbox(
        state,
        reactor,
        config.outbox_max_age,
        initial_delay=min(0.5, config.outbox_retry_max),
        max_delay=config.outbox_retry_max,
        observer=metrics,
    )
    ledger = gateway.ledger = ledger_module.Ledger(state, reactor)
    publisher = gateway.publisher = _publisher(gateway, config, reactor, outbox, backend)
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
        wallet,
        reactor,
        start_deadline=config.start_deadline,
        auth_cache_ttl=config.auth_cache_ttl,
        instance_slot=config.instance_slot,
        instance=config.instance_id,
    )
    register_deliveries(outbox, backend, ledger, wallet, publisher, message_batch=config.backend_message_batch)
    gateway.starters.append(ledger.start)
    gateway.starters.append(lambda: outbox.start())
    gateway.closers.append(lambda: outbox.stop())

    registry = gateway.registry = ChargerRegistry(config.instance_id, reactor)
    validator = Validator()
    router = Router(chargers, sessions, reactor)
    recorder = FrameRecorder(publisher, reactor, config.instance_id, metrics)

    def session_factory(identity: str, connection: Any, strict: bool) -> Any:
        session = OcppSession(identity, connection, router, reactor, validator, call_timeout=config.call_timeout, observer=recorder)
        session.strict = strict
        return session

    authenticate = None
    if config.security_profile:
        from ocpptw.transport.auth import authenticator

        authenticate = authenticator(config)
    admission = None
    if config.handshake_concurrency or config.handshake_rate_per_ip:
        from ocpptw.transport.admission import HandshakeAdmission

        admission = HandshakeAdmission(reactor, config.handshake_concurrency, config.handshake_rate_per_ip)
    gate = gateway.gate = Gate(
        prefix=config.ocpp_path,
        chargers=chargers,
        registry=registry,
        session_factory=session_factory,
        clock=reactor,
        strict=config.validation == "strict",
        allow_unknown=config.allow_unknown_chargers,
        allow_missing_subprotocol=config.allow_missing_subprotocol,
        authenticate=authenticate,
        admission=admission,
        metrics=metrics,
    )
    factory = OcppServerFactory(gate, max_frame_bytes=config.max_frame_bytes, ping_interval=config.ping_interval, reactor=reactor)

    bus: Any = LocalCommandBus(registry, validator, config.call_timeout)
    if config.enable_rabbitmq:
        from ocpptw.adapters.amqp_commands import AmqpCommandBus, AmqpCommandServer

        server = AmqpCommandServer(gateway.amqp, registry, bus, config.instance_id)
        gateway.command_server = server
        bus = AmqpCommandBus(gateway.amqp, bus, registry)
    gateway.bus = bus
    api = CommandApi(bus, registry, config.admin_token, config.call_timeout)

    checks = [lambda: (gateway.port is not None and gate.accepting, "listener not accepting")]
    checks.append(backend.ready)
    checks.append(publisher.ready)
    checks.append(
        lambda: (
            all([db.probe() for db in gateway.databases]),  # the outbox's own refusals land on its database
            f"cannot write to {config.data_dir}",
        )
    )
    metrics.watch_outbox(outbox)
    from ocpptw.store.outbox_alarm import OutboxAlarm

    alarm = gateway.outbox_alarm = OutboxAlarm(outbox, reactor, config.outbox_alarm_depth, config.outbox_alarm_age)
    alarm.setServiceParent(gateway)
    metrics.watch_outbox_alarm(alarm)
    if config.gc_young_interval:
        from ocpptw.observability.heap import HeapService

        HeapService(reactor, config.gc_young_interval, config.gc_full_interval).setServiceParent(gateway)
    _listeners(gateway, config, reactor, factory, checks, metrics, api)
