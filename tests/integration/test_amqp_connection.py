"""
The RabbitMQ connection: URL parsing, topology, readiness, and recovery
after the broker closes the connection (real broker).
"""

from __future__ import annotations

import pytest
import pytest_twisted

from ocpptw.adapters.amqp import parse_amqp_url
from ocpptw.config import ConfigError
from tests.helpers import bounded, until
from tests.integration.amqp_support import (
    Names,
    close_from_broker,
    delete_topology,
    make_connection,
    open_client,
    wait_ready,
)


def test_url_defaults():
    """A bare amqp URL means guest/guest on 5672 and the vhost /."""
    url = parse_amqp_url("amqp://localhost")
    assert (url.host, url.port, url.username, url.password, url.vhost, url.tls) == (
        "localhost", 5672, "guest", "guest", "/", False,
    )


def test_url_vhost_credentials_and_tls():
    """The vhost is the percent-decoded path; credentials are decoded; amqps defaults to 5671."""
    url = parse_amqp_url("amqps://us%40er:p%3Ass@broker.example:5999/ocpp%2Fprod?heartbeat=15")
    assert (url.host, url.port, url.username, url.password, url.vhost, url.tls, url.heartbeat) == (
        "broker.example", 5999, "us@er", "p:ss", "ocpp/prod", True, 15,
    )
    assert parse_amqp_url("amqps://h").port == 5671
    assert parse_amqp_url("amqp://h/%2F").vhost == "/"


def test_url_never_shows_the_password():
    """Neither repr nor describe() of a parsed URL contains the password."""
    url = parse_amqp_url("amqp://user:s3cret-pw@h:5672/v")
    assert "s3cret-pw" not in repr(url)
    assert "s3cret-pw" not in url.describe()
    assert url.describe() == "amqp://h:5672/v"


@pytest.mark.parametrize("bad", ["http://h", "amqp://", "amqp://h:notaport", "amqp://h?frame_max=1", "amqp://h?heartbeat=x"])
def test_url_rejects_bad_values(bad):
    """Malformed URLs raise ConfigError naming RABBITMQ_URL, without the password."""
    with pytest.raises(ConfigError, match="RABBITMQ_URL"):
        parse_amqp_url(bad)


@pytest_twisted.ensureDeferred
async def test_connects_declares_topology_and_reports_ready():
    """Once started, the connection declares every exchange and queue and ready() turns true."""
    from pika.exceptions import ChannelClosedByBroker
    from twisted.internet import reactor

    names = Names()
    connection = make_connection(reactor, names, "a")
    seen = []
    connection.add_on_ready(seen.append)
    assert connection.ready() == (False, "not started")
    client = await open_client(reactor)
    try:
        connection.startService()
        await wait_ready(connection)
        assert connection.state == "ready" and connection.connects == 1
        assert seen == [connection.connection]
        channel = await bounded(client.channel())
        t = connection.topology
        for exchange in (t.events_exchange, t.unroutable_exchange, t.command_exchange, t.claims_exchange):
            await bounded(channel.exchange_declare(exchange=exchange, passive=True))
        await bounded(channel.queue_declare(queue=t.unroutable_queue, passive=True))
        # the command queue exists and is exclusive to the gateway's connection
        other = await bounded(client.channel())
        with pytest.raises(ChannelClosedByBroker) as locked:
            await bounded(other.queue_declare(queue=t.command_queue, passive=True))
        assert locked.value.reply_code == 405
        assert t.command_queue == f"{names.commands}.{names.instance('a')}"
    finally:
        await bounded(connection.stopService())
        await delete_topology(client, names)
        await bounded(client.close())
    assert connection.ready() == (False, "stopped")


@pytest_twisted.ensureDeferred
async def test_reconnects_after_the_broker_closes_the_connection(fail_on_logged_errors):
    """A connection closed by the broker is logged once, re-established, and set up again."""
    from twisted.internet import reactor
    from twisted.internet.threads import deferToThread

    names = Names()
    connection = make_connection(reactor, names, "a")
    readies = []
    connection.add_on_ready(readies.append)
    client = await open_client(reactor)
    try:
        connection.startService()
        await wait_ready(connection)
        first = connection.connection
        closed = await bounded(deferToThread(close_from_broker, f"ocpptw {connection.instance}"), 30)
        assert closed == 1
        await until(lambda: connection.connects == 2, 15)
        assert connection.ready() == (True, "")
        assert connection.losses == 1
        assert len(readies) == 2 and readies[1] is not first
        errors = [e for e in fail_on_logged_errors if "connection lost" in e.get("reason", "")]
        assert len(errors) == 1, fail_on_logged_errors
        fail_on_logged_errors.clear()
    finally:
        await bounded(connection.stopService())
        await delete_topology(client, names)
        await bounded(client.close())


@pytest_twisted.ensureDeferred
async def test_unreachable_broker_is_reported_once_and_not_ready(fail_on_logged_errors):
    """With nothing listening, ready() gives the reason and the outage is logged once."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.internet.protocol import Factory, Protocol

    # a port that was free a moment ago: listen, learn the port, stop listening
    port = await bounded(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Protocol)))
    number = port.getHost().port
    await bounded(port.stopListening())
    from ocpptw.adapters.amqp import AmqpConnection

    connection = AmqpConnection(reactor, f"amqp://guest:secret-pw@127.0.0.1:{number}/", "x", max_retry_delay=0.2)
    try:
        connection.startService()
        await until(lambda: len(fail_on_logged_errors) >= 1, 5)
        from twisted.internet.task import deferLater

        await deferLater(reactor, 1.0, lambda: None)  # several retries happen meanwhile
        ok, reason = connection.ready()
        assert not ok and "cannot reach RabbitMQ" in reason and "secret-pw" not in reason
        assert len(fail_on_logged_errors) == 1
        fail_on_logged_errors.clear()
    finally:
        await bounded(connection.stopService())
