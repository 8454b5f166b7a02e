"""
Support for the tests against the real RabbitMQ: unique names per test, a
plain pika client for inspection and clean-up, an in-memory outbox, fake
charger connections.  A missing broker fails these tests; none is skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from zope.interface import implementer

from ocpptw.interfaces import IOutbox
from tests.helpers import WAIT, bounded, until

#: The broker the integration tests use.
BROKER_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

EVENT_TYPES = (
    "ocpp.message",
    "charger.metadataUpdate",
    "charger.statusUpdate",
    "charger.lastSeen",
    "charging.started",
    "charging.meterValues",
    "charging.stopped",
)


#: One sample ``data`` object per event type, as docs/contract.md section 5 lists them.
SAMPLE_DATA = {
    "ocpp.message": {"direction": "in", "messageType": "CALL", "messageId": "m1", "action": "Heartbeat", "payload": {}},
    "charger.metadataUpdate": {"deviceId": "CP1", "vendor": "V", "model": "M", "serialNumber": "S1"},
    "charger.statusUpdate": {"connectorId": 1, "status": "Available", "errorCode": "NoError", "online": True},
    "charger.lastSeen": {"lastSeen": "2026-11-24T10:00:00.000Z"},
    "charging.started": {"sessionId": None, "transactionId": 1073741825, "connectorId": 1, "idTag": "TAG1", "meterStart": 100},
    "charging.meterValues": {
        "transactionId": 7,
        "connectorId": 1,
        "samples": [{"timestamp": "2026-11-24T10:00:00.000Z", "measurand": "Energy.Active.Import.Register", "value": 1500.0, "unit": "Wh"}],
    },
    "charging.stopped": {"sessionId": "s1", "transactionId": 7, "meterStop": 1600, "energyWh": 1500, "cost": "0.45", "refund": "4.55", "reason": "Local"},
}


class Names:
    """
    Exchange and instance names unique to one test.
    """

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.tag = tag
        self.events = f"test.{tag}.events"
        self.commands = f"test.{tag}.commands"

    def instance(self, name: str) -> str:
        return f"{name}-{self.tag}"


def make_event(event_type: str, device_id: str, data: dict, instance: str = "test", number: int = 0) -> dict:
    """
    An envelope as docs/contract.md section 5 describes it.
    """
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "deviceId": device_id,
        "occurredAt": f"2026-11-24T10:00:{number % 60:02d}.000Z",
        "instance": instance,
        "data": data,
    }


async def open_client(reactor: Any) -> Any:
    """
    A plain pika connection (not the gateway's code) to inspect the broker.
    """
    import pika
    from pika.adapters.twisted_connection import TwistedProtocolConnection
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from ocpptw.adapters.amqp import parse_amqp_url

    url = parse_amqp_url(BROKER_URL)
    params = pika.ConnectionParameters(
        virtual_host=url.vhost, credentials=pika.PlainCredentials(url.username, url.password)
    )
    protocol = TwistedProtocolConnection(params, custom_reactor=reactor)
    endpoint = TCP4ClientEndpoint(reactor, url.host, url.port, timeout=5)
    await bounded(connectProtocol(endpoint, protocol))
    return await bounded(protocol.ready)


async def _delete_command_queue(client: Any, queue: str, seconds: float = WAIT) -> None:
    """
    Delete an instance's command queue.  It is exclusive to the instance's
    connection: when a test has just killed that instance, the broker may not
    have seen the connection close yet and answers 405 RESOURCE_LOCKED (the
    queue goes with the connection then).  Retry on a fresh channel, bounded.
    """
    from pika.exceptions import ChannelClosedByBroker
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    waited, step = 0.0, 0.1
    while True:
        channel = await bounded(client.channel())
        try:
            await bounded(channel.queue_delete(queue=queue))
        except ChannelClosedByBroker as e:
            if e.reply_code != 405 or waited >= seconds:
                raise
            await deferLater(reactor, step, lambda: None)
            waited += step
        else:
            await bounded(channel.close() or succeed(None))
            return


async def delete_topology(client: Any, names: Names, instances: tuple[str, ...] = ()) -> None:
    """
    Delete everything a test declared for C{names}.
    """
    for instance in instances:
        await _delete_command_queue(client, f"{names.commands}.{instance}")
    channel = await bounded(client.channel())
    await bounded(channel.queue_delete(queue=f"{names.events}.unroutable"))
    for exchange in (names.events, f"{names.events}.unroutable", names.commands, f"{names.commands}.claims"):
        await bounded(channel.exchange_delete(exchange=exchange))
    await bounded(channel.close() or succeed(None))


async def collect(client: Any, exchange: str, routing_key: str = "#") -> tuple[Any, list]:
    """
    Bind a fresh exclusive queue to C{exchange}; return the channel and the
    list that received messages are appended to.
    """
    channel = await bounded(client.channel())
    declared = await bounded(channel.queue_declare(queue="", exclusive=True, auto_delete=True))
    name = declared.method.queue
    await bounded(channel.queue_bind(queue=name, exchange=exchange, routing_key=routing_key))
    queue, _ = await bounded(channel.basic_consume(queue=name, auto_ack=True))
    received: list = []

    @inlineCallbacks
    def loop():
        while True:
            try:
                message = yield queue.get()
            except Exception:
                return
            received.append(message)

    loop()
    return channel, received


def make_connection(reactor: Any, names: Names, instance: str, **kwargs: Any) -> Any:
    """
    An L{AmqpConnection} on the test broker with the test's names; the
    caller builds its components on it, then starts it.
    """
    from ocpptw.adapters.amqp import AmqpConnection

    return AmqpConnection(
        reactor, BROKER_URL, names.instance(instance), events_exchange=names.events, command_exchange=names.commands, **kwargs
    )


async def wait_ready(connection: Any, seconds: float = 10.0) -> None:
    await until(lambda: connection.ready()[0], seconds)


def close_from_broker(connection_name: str) -> int:
    """
    Close, from the broker's side, the connection whose client named itself
    C{connection_name}.  Returns how many were closed.  Blocking: run it
    in a thread.
    """
    listed = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    closed = 0
    marker = '{"connection_name","%s"}' % connection_name
    for line in listed.stdout.splitlines():
        pid, _, props = line.partition("\t")
        if marker in props:
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, "closed by the test"],
                capture_output=True,
                timeout=30,
                check=True,
            )
            closed += 1
    return closed


@implementer(IOutbox)
class MemoryOutbox:
    """
    An in-memory L{IOutbox}: one FIFO, retried every C{retry} seconds on
    the real reactor.  Enough to test the publisher's hand-over; the real
    outbox has its own tests.
    """

    def __init__(self, reactor: Any, retry: float = 0.05) -> None:
        self._reactor = reactor
        self._retry = retry
        self._entries: deque[tuple[int, str, str, dict]] = deque()
        self._deliverers: dict[str, Any] = {}
        self._call: Any = None
        self._running = False
        self._next_id = 0
        self.appended: list[dict] = []
        self.attempts = 0

    def append(self, key: str, operation: str, body: dict) -> Deferred[int]:
        self._next_id += 1
        self._entries.append((self._next_id, key, operation, body))
        self.appended.append(body)
        self._schedule()
        return succeed(self._next_id)

    def register(self, operation: str, deliver: Any) -> None:
        self._deliverers[operation] = deliver

    def depth(self) -> int:
        return len(self._entries)

    def pending(self, key: str) -> int:
        return sum(1 for e in self._entries if e[1] == key)

    def oldest_age(self) -> float:
        return 0.0

    def dead_letters(self) -> int:
        return 0

    def flush(self, timeout: float) -> Deferred[bool]:
        self._schedule(0)
        return succeed(not self._entries)

    def _schedule(self, delay: float | None = None) -> None:
        if self._call is None and not self._running:
            self._call = self._reactor.callLater(self._retry if delay is None else delay, self._run)

    @inlineCallbacks
    def _run(self) -> Any:
        self._call = None
        self._running = True
        try:
            while self._entries:
                _, _, operation, body = self._entries[0]
                self.attempts += 1
                try:
                    yield self._deliverers[operation](body)
                except Exception:
                    break
                self._entries.popleft()
        finally:
            self._running = False
        if self._entries:
            self._schedule()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class FakeSession:
    """
    A session that answers calls from a table: C{answers[action]} is a dict
    (CALLRESULT payload) or an exception instance to fail with.
    """

    def __init__(self, answers: dict | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, dict, Any]] = []

    def call(self, action: str, payload: dict, timeout: Any = None) -> Deferred[dict]:
        from twisted.internet.defer import fail

        self.calls.append((action, payload, timeout))
        answer = self.answers.get(action, {"status": "Accepted"})
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed(answer)


class FakeConnection:
    """
    A charger connection as the registry holds it.
    """

    def __init__(self, session: FakeSession | None = None) -> None:
        self.session = session or FakeSession()
        self.closed: list[tuple[int, str]] = []

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


class FakeLocalBus:
    """
    The local command bus in its simplest form: the registry's session.
    """

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def check(self, action: str, payload: Any) -> None:
        """Every command passes."""

    def send(self, charge_point_id: str, action: str, payload: dict, timeout: float | None = None) -> Deferred[dict]:
        from twisted.internet.defer import fail

        from ocpptw.interfaces import ChargerOffline

        connection = self._registry.get(charge_point_id)
        if connection is None:
            return fail(ChargerOffline(f"{charge_point_id} is not connected"))
        return connection.session.call(action, payload, timeout=timeout)
