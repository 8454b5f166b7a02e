"""
L{ListenerService}: bound early, accepting late, released at stop.
"""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol

from ocpptw.transport.listener import ListenerService
from tests.helpers import bounded


def service(port: int = 0) -> ListenerService:
    from twisted.internet import reactor

    return ListenerService(TCP4ServerEndpoint(reactor, port, interface="127.0.0.1"), Factory.forProtocol(Protocol), "test")


@pytest_twisted.ensureDeferred
async def test_privileged_start_binds_without_accepting_until_start():
    """Bound in privilegedStartService (before privileges are shed), watched for connections only from startService."""
    from twisted.internet import reactor

    listener = service()
    listener.privilegedStartService()
    try:
        port = listener.port
        assert port is not None and port.getHost().port > 0
        assert port not in reactor.getReaders()
        listener.startService()
        assert listener.port is port and port in reactor.getReaders()
    finally:
        await bounded(listener.stopService())
    assert listener.port is None and port not in reactor.getReaders()


@pytest_twisted.ensureDeferred
async def test_start_without_privileged_start_binds_and_accepts():
    from twisted.internet import reactor

    listener = service()
    listener.startService()
    try:
        assert listener.port in reactor.getReaders()
    finally:
        await bounded(listener.stopService())


def test_a_port_in_use_raises_at_once():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = service(taken.getsockname()[1])
        with pytest.raises(CannotListenError):
            listener.privilegedStartService()
        assert listener.port is None


def test_stop_when_never_started_does_nothing():
    assert service().stopService() is None
