# -*- test-case-name: tests.integration.test_amqp_events -*-
"""
Events to RabbitMQ with publisher confirms (docs/contract.md section 5).

Publishes are pipelined: many confirms are in flight on one channel at a
time.  No C{mandatory} flag: pika 1.4's Twisted adapter misattributes
C{Basic.Return} when confirms and C{mandatory} are pipelined, so the events
exchange has an alternate exchange that parks unroutable events instead.

An event is durable once the broker confirms it, or once it is in the
local outbox (operation C{amqp.publish}, key = deviceId): while the broker
is down, when a publish is nacked, lost with the connection or not
confirmed in time.  The outbox delivers it later through this publisher.
While a charger has entries in the outbox, its new events queue behind
them, so the order per charger holds across outages.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError, fail, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocpptw.adapters.amqp import describe_failure
from ocpptw.interfaces import IEventPublisher, IOutbox
from ocpptw.ocpp.jsontext import compact_bytes

#: The outbox operation under which unpublished events wait.
OPERATION = "amqp.publish"


class BrokerUnavailable(Exception):
    """
    The broker cannot take the event now; the outbox retries it.
    """


def encode_event(event: dict) -> bytes:
    """
    The event envelope as compact UTF-8 JSON (decimals as strings, datetimes
    as ISO 8601 UTC).
    """
    return compact_bytes(event)


def event_properties(event: dict) -> Any:
    """
    The AMQP properties of an event: JSON, persistent, C{message_id} = id,
    C{type} = the event type.
    """
    import pika

    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        message_id=event["id"],
        type=event["type"],
        app_id="ocpptw",
    )


@implementer(IEventPublisher)
class AmqpEventPublisher(Service):
    """
    L{IEventPublisher} over an L{ocpptw.adapters.amqp.AmqpConnection}.

    @param connection: the L{AmqpConnection}; the publisher opens its own
        confirm channel on every (re)connect.
    @param outbox: an L{IOutbox}; this publisher registers its
        C{amqp.publish} deliverer there.
    @param clock: the L{IReactorTime} for confirm timeouts and re-opening a
        closed channel.
    @param exchange: the events exchange (default: the connection's).
    @param confirm_timeout: seconds a publish may wait for its confirm
        before the event goes to the outbox.
    @param metrics: optional, duck-typed: C{metrics.broker_published(
        seconds)} after each confirm, C{metrics.broker_failed(reason)} when
        a publish falls back to the outbox.
    """

    log = Logger()

    def __init__(
        self,
        connection: Any,
        outbox: IOutbox,
        clock: Any,
        exchange: str | None = None,
        confirm_timeout: float = 10.0,
        metrics: Any = None,
    ) -> None:
        self._connection = connection
        self._exchange = exchange or connection.topology.events_exchange
        self._metrics = metrics
        self._outbox = outbox
        self._clock = clock
        self._confirm_timeout = confirm_timeout
        self._channel: Any = None
        self._appending: dict[str, int] = {}
        self._reopen_call: Any = None
        #: counters for metrics
        self.confirmed = 0
        self.outboxed = 0
        self.in_flight = 0
        outbox.register(OPERATION, self._deliver)
        connection.add_on_ready(self._open)

    def ready(self) -> tuple[bool, str]:
        ok, reason = self._connection.ready()
        if ok and self._channel is None:
            return False, "RabbitMQ event channel not open"
        return ok, reason

    # -- publishing ----------------------------------------------------------

    def publish(self, event: dict) -> Deferred[None]:
        """
        Fires once the event is confirmed by the broker or in the outbox.
        Fails only when the outbox cannot write (L{StorageFull}).
        """
        key = event["deviceId"]
        channel = self._channel
        if channel is None:
            return self._to_outbox(key, event, "broker not connected")
        if self._outbox.pending(key) or self._appending.get(key):
            return self._to_outbox(key, event, None)
        d = self._send(channel, event)
        d.addErrback(lambda failure: self._to_outbox(key, event, failure))
        return d

    def _send(self, channel: Any, event: dict) -> Deferred[None]:
        """
        Publish on C{channel} and wait (bounded) for the confirm.
        """
        try:
            d = channel.basic_publish(self._exchange, event["type"], encode_event(event), event_properties(event))
        except Exception as e:  # a channel pika considers closed raises here
            return fail(BrokerUnavailable(describe_failure(e)))
        self.in_flight += 1
        d.addTimeout(self._confirm_timeout, self._clock)
        d.addBoth(self._settled, channel, self._clock.seconds())
        return d

    def _settled(self, result: Any, channel: Any, started: float) -> Any:
        self.in_flight -= 1
        if isinstance(result, Failure):
            self._observe("broker_failed", describe_failure(result))
            if result.check(TimeoutError) and channel is self._channel:
                self.log.warn(
                    "RabbitMQ did not confirm an event within {timeout} s; re-opening the event channel",
                    timeout=self._confirm_timeout,
                )
                self._close_channel(channel)
            return result
        self.confirmed += 1
        self._observe("broker_published", self._clock.seconds() - started)
        return None

    def _observe(self, hook: str, value: Any) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        if hook == "broker_published":
            metrics.broker_published(value)
        else:
            metrics.broker_failed(value)

    def _to_outbox(self, key: str, event: dict, reason: Any) -> Deferred[None]:
        if reason is not None:
            self.log.debug("Event {id} to the outbox: {reason}", id=event.get("id"), reason=describe_failure(reason))
        self._appending[key] = self._appending.get(key, 0) + 1
        self.outboxed += 1

        def appended(result: Any) -> Failure | None:
            left = self._appending[key] - 1
            if left:
                self._appending[key] = left
            else:
                del self._appending[key]
            if isinstance(result, Failure):
                return result
            return None

        return self._outbox.append(key, OPERATION, event).addBoth(appended)

    def _deliver(self, event: dict) -> Deferred[None]:
        """
        The outbox's deliverer for C{amqp.publish}.
        """
        channel = self._channel
        if channel is None:
            return fail(BrokerUnavailable("broker not connected"))
        return self._send(channel, event)

    # -- the channel -----------------------------------------------------------

    @inlineCallbacks
    def _open(self, connection: Any) -> Any:
        channel = yield connection.channel()
        yield channel.confirm_delivery()
        channel.on_closed.addBoth(self._channel_closed, channel, connection)
        self._channel = channel
        if self._outbox.depth():
            # deliver what waited during the outage now, not at the next backoff step
            self._outbox.flush(self._confirm_timeout).addErrback(lambda _: None)

    def _close_channel(self, channel: Any) -> None:
        if self._channel is channel:
            self._channel = None
        try:
            channel.close()
        except Exception:  # already closing
            pass

    def _channel_closed(self, reason: Any, channel: Any, connection: Any) -> None:
        if self._channel is channel:
            self._channel = None
        if connection is self._connection.connection and connection.is_open and self._reopen_call is None:
            self._reopen_call = self._clock.callLater(1.0, self._reopen, connection)

    def _reopen(self, connection: Any) -> None:
        self._reopen_call = None
        if connection is not self._connection.connection or not connection.is_open or self._channel is not None:
            return

        def failed(failure: Any) -> None:
            self.log.warn("Could not re-open the RabbitMQ event channel: {reason}", reason=describe_failure(failure))

        self._open(connection).addErrback(failed)

    def stopService(self) -> None:
        super().stopService()
        self.stop()

    def stop(self) -> None:
        """
        Cancel a pending channel re-open (at shutdown).
        """
        if self._reopen_call is not None and self._reopen_call.active():
            self._reopen_call.cancel()
        self._reopen_call = None
