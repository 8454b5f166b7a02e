# -*- test-case-name: tests.integration.test_amqp_connection -*-
"""
The RabbitMQ connection: pika's Twisted adapter under a L{ClientService},
re-established with backoff whenever the broker goes away.

On every (re)connect the topology is declared again and the C{on_ready}
callbacks run, each opening the channels and consumers it needs (the event
publisher, the command server, the command bus).  pika is imported lazily:
its Twisted adapter installs the global reactor at import, which would break
C{twistd --reactor=...} if the plugin imported it.

Two traps of C{ClientService} (Twisted 26) shape this module: a failing
C{prepareConnection} does not close the connection, and a connection lost
while C{prepareConnection} is still pending raises C{NoTransition} from
C{connectionLost}.  So C{prepareConnection} here returns at once and the
AMQP set-up runs beside it; when the set-up fails we close the connection
ourselves, and the service reconnects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from ocpptw.config import ConfigError

#: Arguments of the parking queue for events no queue is bound for: bounded,
#: so a deployment without consumers cannot fill the broker's disk.
UNROUTABLE_MAX_LENGTH = 100_000


@dataclass(frozen=True)
class AmqpUrl:
    """
    A parsed C{RABBITMQ_URL}.  Its C{repr} and L{describe} never show the
    password.
    """

    tls: bool
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    vhost: str
    heartbeat: int = 30
    connection_timeout: float = 10.0

    def describe(self) -> str:
        """
        C{amqp://host:port/vhost}, without credentials, for logs.
        """
        return f"{'amqps' if self.tls else 'amqp'}://{self.host}:{self.port}/{quote(self.vhost, safe='')}"


def parse_amqp_url(url: str) -> AmqpUrl:
    """
    Parse an C{amqp://user:pass@host:port/vhost?heartbeat=30} URL, as in the
    RabbitMQ URI spec: the vhost is the percent-decoded path (C{%2F} is
    C{/}; an empty path means C{/}), credentials default to guest/guest.

    @raise ConfigError: one line naming C{RABBITMQ_URL}, never the password.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError("RABBITMQ_URL is not a valid amqp:// or amqps:// URL") from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError("RABBITMQ_URL must be an amqp:// or amqps:// URL with a host")
    tls = parts.scheme == "amqps"
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    options: dict[str, Any] = {}
    for name, values in parse_qs(parts.query).items():
        if name == "heartbeat":
            options["heartbeat"] = _number(name, values[-1], int)
        elif name == "connection_timeout":
            options["connection_timeout"] = _number(name, values[-1], float)
        else:
            raise ConfigError(f"RABBITMQ_URL has an unsupported parameter {name!r} (heartbeat, connection_timeout)")
    return AmqpUrl(
        tls=tls,
        host=parts.hostname,
        port=port or (5671 if tls else 5672),
        username=unquote(parts.username) if parts.username is not None else "guest",
        password=unquote(parts.password) if parts.password is not None else "guest",
        vhost=vhost,
        **options,
    )


def _number(name: str, text: str, kind: type) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"RABBITMQ_URL parameter {name} must be a number, got {text!r}") from None
    if value < 0:
        raise ConfigError(f"RABBITMQ_URL parameter {name} must be zero or more, got {text!r}")
    return value


@dataclass(frozen=True)
class Topology:
    """
    The names the gateway declares on the broker.
    """

    events_exchange: str = "ocpp.events"
    command_exchange: str = "ocpp.commands"
    instance: str = "ocpptw"

    @property
    def unroutable_exchange(self) -> str:
        """Fanout alternate exchange of the events exchange."""
        return f"{self.events_exchange}.unroutable"

    @property
    def unroutable_queue(self) -> str:
        """Durable parking queue for events no queue was bound for."""
        return f"{self.events_exchange}.unroutable"

    @property
    def command_queue(self) -> str:
        """This instance's command queue (exclusive, auto-delete)."""
        return f"{self.command_exchange}.{self.instance}"

    @property
    def claims_exchange(self) -> str:
        """Fanout exchange on which instances announce the chargers they hold."""
        return f"{self.command_exchange}.claims"


def describe_failure(reason: Any) -> str:
    """
    A one-line reason for logs and C{/ready}: the exception's class and text.
    """
    error = getattr(reason, "value", reason)
    if error is None:
        return "connection closed"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _ConnectionFactory(Factory):
    """
    Builds one pika L{TwistedProtocolConnection} per TCP connection.
    """

    noisy = False  # no "Starting factory" line per reconnect

    def __init__(self, url: AmqpUrl, instance: str, reactor: Any) -> None:
        self._url = url
        self._instance = instance
        self._reactor = reactor

    def buildProtocol(self, addr: Any) -> Any:
        import pika
        from pika.adapters.twisted_connection import TwistedProtocolConnection

        params = pika.ConnectionParameters(
            host=self._url.host,
            port=self._url.port,
            virtual_host=self._url.vhost,
            credentials=pika.PlainCredentials(self._url.username, self._url.password),
            heartbeat=self._url.heartbeat,
            blocked_connection_timeout=30,
            client_properties={"connection_name": f"ocpptw {self._instance}"},
        )
        return TwistedProtocolConnection(params, custom_reactor=self._reactor)


@implementer(IStreamClientEndpoint)
class _ObservedEndpoint:
    """
    An endpoint that reports failed connection attempts (ClientService
    retries them silently).
    """

    def __init__(self, endpoint: Any, failed: Callable[[Any], None]) -> None:
        self._endpoint = endpoint
        self._failed = failed

    def connect(self, factory: Any) -> Deferred:
        d = self._endpoint.connect(factory)

        def report(failure: Any) -> Any:
            self._failed(failure)
            return failure

        return d.addErrback(report)


ReadyCallback = Callable[[Any], Any]


class AmqpConnection(Service):
    """
    One AMQP connection for this instance, kept alive by a L{ClientService}.

    @ivar state: C{stopped}, C{connecting}, C{ready} or C{reconnecting}.
    @ivar connects: how many times the connection became ready.
    @ivar losses: how many times a ready connection was lost.
    @ivar connection: the live pika connection while C{ready}, else C{None}.
    @ivar channel: a channel for small tasks while C{ready}, else C{None}.
    @ivar topology: the L{Topology} names.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: str,
        instance: str,
        on_ready: list[ReadyCallback] | tuple[ReadyCallback, ...] = (),
        events_exchange: str = "ocpp.events",
        command_exchange: str = "ocpp.commands",
        max_retry_delay: float = 30.0,
    ) -> None:
        self._reactor = reactor
        self.url = parse_amqp_url(url)
        self.instance = instance
        self.topology = Topology(events_exchange, command_exchange, instance)
        self._on_ready: list[ReadyCallback] = list(on_ready)
        self._policy = backoffPolicy(0.5, max_retry_delay)
        self._setup_failures = 0
        self._service: ClientService | None = None
        self._outage_logged = False
        self.state = "stopped"
        self.reason = "not started"
        self.connects = 0
        self.losses = 0
        self.connection: Any = None
        self.channel: Any = None

    # -- wiring ------------------------------------------------------------

    def add_on_ready(self, callback: ReadyCallback) -> None:
        """
        Run C{callback(connection)} on every (re)connect, after the topology
        is declared; it may return a L{Deferred}.  A failure drops the
        connection, which is then retried.  Added while ready, it runs now.
        """
        self._on_ready.append(callback)
        if self.state == "ready":
            maybeDeferred(callback, self.connection).addErrback(self._callback_failed, self.connection)

    def ready(self) -> tuple[bool, str]:
        """
        C{(True, "")} when connected and set up, else C{(False, reason)}.
        """
        if self.state == "ready":
            return True, ""
        return False, self.reason

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self.state = "connecting"
        self.reason = f"connecting to RabbitMQ at {self.url.describe()}"
        endpoint = self._endpoint()
        self._service = ClientService(
            _ObservedEndpoint(endpoint, self._attempt_failed),
            _ConnectionFactory(self.url, self.instance, self._reactor),
            retryPolicy=lambda attempt: self._policy(attempt + self._setup_failures),
            clock=self._reactor,
            prepareConnection=self._connected,
        )
        self._service.startService()

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        self.state = "stopped"
        self.reason = "stopped"
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None and connection.is_open:
            closed = connection.closed
            connection.close()
            if closed is not None:
                yield closed.addTimeout(5, self._reactor).addErrback(lambda _: None)
        if self._service is not None:
            service, self._service = self._service, None
            yield service.stopService()

    def _endpoint(self) -> Any:
        tcp = endpoints.HostnameEndpoint(self._reactor, self.url.host, self.url.port, timeout=self.url.connection_timeout)
        if not self.url.tls:
            return tcp
        from twisted.internet.ssl import optionsForClientTLS

        return endpoints.wrapClientTLS(optionsForClientTLS(self.url.host), tcp)

    # -- connection life ----------------------------------------------------

    def _connected(self, proxy: Any) -> None:
        """
        C{prepareConnection}: start the set-up beside the service (see the
        module docstring) and return at once.
        """
        self._setup(proxy)

    @inlineCallbacks
    def _setup(self, proxy: Any) -> Any:
        connection = None
        try:
            connection = yield proxy.ready
            connection.closed.addBoth(self._closed, connection)
            channel = yield connection.channel()
            yield self._declare(channel)
            for callback in list(self._on_ready):
                yield maybeDeferred(callback, connection)
        except Exception as e:
            if self.state == "stopped":
                self._drop(proxy, connection)
                return
            self._setup_failures += 1
            self._outage(f"RabbitMQ set-up failed: {describe_failure(e)}")
            self._drop(proxy, connection)
            return
        if self.state == "stopped":
            self._drop(proxy, connection)
            return
        self.connection = connection
        self.channel = channel
        self._setup_failures = 0
        self.connects += 1
        self.state = "ready"
        self.reason = ""
        if self._outage_logged:
            self._outage_logged = False
            self.log.info("RabbitMQ is back at {broker} (connect #{connects})", broker=self.url.describe(), connects=self.connects)
        else:
            self.log.info("Connected to RabbitMQ at {broker}", broker=self.url.describe())

    @inlineCallbacks
    def _declare(self, channel: Any) -> Any:
        t = self.topology
        yield channel.exchange_declare(exchange=t.unroutable_exchange, exchange_type="fanout", durable=True)
        yield channel.queue_declare(
            queue=t.unroutable_queue,
            durable=True,
            arguments={"x-max-length": UNROUTABLE_MAX_LENGTH, "x-overflow": "drop-head"},
        )
        yield channel.queue_bind(queue=t.unroutable_queue, exchange=t.unroutable_exchange, routing_key="")
        yield channel.exchange_declare(
            exchange=t.events_exchange,
            exchange_type="topic",
            durable=True,
            arguments={"alternate-exchange": t.unroutable_exchange},
        )
        yield channel.exchange_declare(exchange=t.command_exchange, exchange_type="direct", durable=True)
        yield channel.exchange_declare(exchange=t.claims_exchange, exchange_type="fanout", durable=True)
        yield channel.queue_declare(queue=t.command_queue, exclusive=True, auto_delete=True)

    def _closed(self, reason: Any, connection: Any) -> None:
        if connection is not self.connection:
            return
        self.connection = None
        self.channel = None
        if self.state == "stopped":
            return
        self.losses += 1
        self.state = "reconnecting"
        self._outage(f"RabbitMQ connection lost: {describe_failure(reason)}")

    def _attempt_failed(self, failure: Any) -> None:
        if self.state == "stopped":
            return
        self._outage(f"cannot reach RabbitMQ at {self.url.describe()}: {describe_failure(failure)}")

    def _outage(self, reason: str) -> None:
        """
        Record why the broker is unavailable; log only the first reason of
        an outage (the return is logged once too).
        """
        self.reason = reason
        if self.state == "ready":
            self.state = "reconnecting"
        if not self._outage_logged:
            self._outage_logged = True
            self.log.error("{reason}; retrying with backoff", reason=reason)

    def _drop(self, proxy: Any, connection: Any) -> None:
        if connection is not None and connection.is_open:
            connection.close(200, "set-up failed")
        else:
            transport = getattr(proxy, "transport", None)
            if transport is not None:
                transport.loseConnection()

    def _callback_failed(self, failure: Any, connection: Any) -> None:
        self._outage(f"RabbitMQ set-up failed: {describe_failure(failure)}")
        if connection is not None and connection is self.connection:
            connection.close(200, "set-up failed")
