"""
Building the gateway opens nothing: no file, thread, socket or timer.  Every
resource is acquired when the service tree starts (twistd forks and sheds
privileges between the two), and verified here for every shape of the
configuration.
"""

from __future__ import annotations

import threading

import pytest
from twisted.application.service import IService
from twisted.internet.testing import MemoryReactorClock

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config

SHAPES = {
    "embedded store": {},
    "REST backend": {"BACKEND_API_URL": "http://127.0.0.1:1/"},
    "RabbitMQ": {"ENABLE_RABBITMQ": "true"},
    "probe port": {"HTTP_PORT": "0"},
    "wss on PORT": {"TLS_CERT": "{missing}/cert.pem", "TLS_KEY": "{missing}/key.pem", "OCPP_SECURITY_PROFILE": "2"},
    "wss on TLS_PORT": {"TLS_CERT": "{missing}/cert.pem", "TLS_KEY": "{missing}/key.pem", "TLS_PORT": "0"},
    "fixed accept rate, no heap pacing": {"ACCEPT_RATE": "100", "GC_YOUNG_INTERVAL": "0"},
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_building_opens_nothing(tmp_path, shape):
    missing = tmp_path / "no-such-dir"
    settings = {k: v.format(missing=missing) for k, v in SHAPES[shape].items()}
    data = tmp_path / "data"
    settings.update({"DATA_DIR": str(data), "PORT": "0", "WEBSOCKET_HOST": "127.0.0.1"})
    reactor = MemoryReactorClock()
    threads = threading.active_count()
    gateway = make_gateway(load_config("", settings, {}, hostname="build"), reactor)
    assert not data.exists()  # no directory, no database file
    assert threading.active_count() == threads  # no database thread
    assert reactor.tcpServers == [] and reactor.sslServers == [] and reactor.tcpClients == []
    assert reactor.getDelayedCalls() == []
    assert not reactor.triggers.get("startup")  # nothing waits for the reactor either
    assert all(IService.providedBy(s) and not s.running for s in gateway)


def test_every_part_with_a_resource_is_in_the_tree(tmp_path):
    """The parts that hold files, threads, sockets or timers are the tree's children, in start order."""
    settings = {"DATA_DIR": str(tmp_path), "ENABLE_RABBITMQ": "true", "HTTP_PORT": "0", "PORT": "0"}
    gateway = make_gateway(load_config("", settings, {}, hostname="build"), MemoryReactorClock())
    names = [type(s).__name__ for s in gateway]
    assert names == [
        "Database",
        "Database",
        "LogRetention",
        "Ledger",
        "Outbox",
        "AmqpConnection",
        "AmqpEventPublisher",
        "OutboxAlarm",
        "Readiness",
        "HeapService",
        "AcceptGovernor",
        "StreamHub",  # the console's event streams: heartbeat timer, open streams
        "ListenerService",
        "ListenerService",
    ]


def test_the_message_log_joins_the_embedded_stores_hand_over(tmp_path):
    """
    With the embedded store the local publisher flushes through the
    embedded database's before_wake: its frames and events share a commit
    with the turn's other writes there.
    """
    settings = {"DATA_DIR": str(tmp_path), "PORT": "0"}
    gateway = make_gateway(load_config("", settings, {}, hostname="build"), MemoryReactorClock())
    embedded = gateway.parts.stores.embedded
    assert embedded is not None
    assert gateway.parts.publisher._flush_with == embedded.before_wake
    rest = make_gateway(load_config("", dict(settings, BACKEND_API_URL="http://127.0.0.1:1/"), {}, hostname="build"),
                        MemoryReactorClock())
    assert rest.parts.publisher._flush_with is None
