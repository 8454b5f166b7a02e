# -*- test-case-name: tests.integration.test_fleet_lookup -*-
"""
Where is a charger connected?  Asked across the instances behind one
broker (docs/contract.md section 4: C{GET /api/v1/chargers/{id}} answers for a
charger on any instance, C{GET /api/v1/chargers?scope=fleet} lists them
all).

Two questions, answered by every L{ocpptw.adapters.amqp_commands.AmqpCommandServer}:

    - C{describe}: published to the command exchange with routing key =
      chargePointId and C{mandatory}, like a command, so it reaches the
      one instance that holds the charger (the bindings move with the
      charger); the broker returns it when no instance holds it, which is
      the only case where "not connected to any instance" is said.
    - C{census}: published to the claims exchange (fanout), so every
      instance answers with its list; the answers that arrive within
      C{window} seconds are merged, and the instances that answered named.

Both carry the header L{QUERY}; answers come back on RabbitMQ's direct
reply-to, as command answers do.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger

from ocpptw.adapters.amqp import describe_failure
from ocpptw.interfaces import BrokerUnavailable, IChargerRegistry

__all__ = ["AmqpDirectory", "BrokerUnavailable", "QUERY", "answer", "query_of"]

#: Header naming the question; its value is C{describe} or C{census}.
QUERY = "x-ocpptw-query"
DESCRIBE, CENSUS = "describe", "census"
REPLY_TO = "amq.rabbitmq.reply-to"


def _properties(**kwargs: Any) -> Any:
    import pika

    return pika.BasicProperties(content_type="application/json", **kwargs)


def query_of(properties: Any) -> str | None:
    """
    The question a message asks (L{DESCRIBE}, L{CENSUS}), or C{None} for a
    command or a claim.
    """
    value = (getattr(properties, "headers", None) or {}).get(QUERY)
    return value if value in (DESCRIBE, CENSUS) else None


def answer(channel: Any, properties: Any, body: dict) -> None:
    """
    Reply to a question on its C{reply_to} (the responders' side).
    """
    if properties.reply_to:
        channel.basic_publish(
            "",
            properties.reply_to,
            json.dumps(body, separators=(",", ":")).encode("utf-8"),
            _properties(correlation_id=properties.correlation_id),
        )


class AmqpDirectory:
    """
    The asking side, for the REST API.

    @param connection: the L{ocpptw.adapters.amqp.AmqpConnection}.
    @param registry: this instance's L{ChargerRegistry} (answered locally).
    @param clock: an L{IReactorTime}.
    @param timeout: seconds a C{describe} waits for its answer.
    @param window: seconds a C{census} collects answers.
    """

    log = Logger()

    def __init__(self, connection: Any, registry: IChargerRegistry, clock: Any, timeout: float = 5.0, window: float = 1.0) -> None:
        self._connection = connection
        self._registry = registry
        self._clock = clock
        self._timeout = timeout
        self._window = window
        self._channel: Any = None
        self._pending: dict[str, Deferred] = {}
        self._census: dict[str, list[dict]] = {}
        connection.add_on_ready(self._open)

    @inlineCallbacks
    def _open(self, connection: Any) -> Any:
        channel = yield connection.channel()
        channel.add_on_return_callback(self._returned)
        replies, _ = yield channel.basic_consume(queue=REPLY_TO, auto_ack=True)
        channel.on_closed.addBoth(self._closed, channel)
        self._channel = channel
        from ocpptw.adapters.amqp_commands import _consume

        _consume(replies, self._replied, self.log)

    def _closed(self, reason: Any, channel: Any) -> None:
        if self._channel is channel:
            self._channel = None
            pending, self._pending = self._pending, {}
            for d in pending.values():
                d.errback(BrokerUnavailable(describe_failure(reason)))

    def describe(self, charge_point_id: str) -> Deferred[dict | None]:
        """
        The charger's entry (with its C{instance}) wherever it is
        connected, or C{None} when no instance holds it.

        @raise BrokerUnavailable: (as a failure) other instances cannot be
            asked, or did not answer in time.
        """
        local = self._registry.describe(charge_point_id)
        if local is not None:
            return succeed(local)
        channel = self._channel
        if channel is None:
            return fail(BrokerUnavailable("RabbitMQ is not connected"))
        correlation_id = uuid.uuid4().hex
        d: Deferred[dict | None] = Deferred(lambda _: self._forget(correlation_id))
        self._pending[correlation_id] = d
        properties = _properties(
            reply_to=REPLY_TO,
            correlation_id=correlation_id,
            expiration=str(int(self._timeout * 1000)),
            headers={QUERY: DESCRIBE},
        )
        try:
            channel.basic_publish(self._connection.topology.command_exchange, charge_point_id, b"{}", properties, mandatory=True)
        except Exception as e:
            self._pending.pop(correlation_id, None)
            return fail(BrokerUnavailable(describe_failure(e)))

        def late(failure: Any) -> Any:
            from twisted.internet.defer import TimeoutError

            failure.trap(TimeoutError)
            raise BrokerUnavailable(f"no answer about {charge_point_id} within {self._timeout:g} s")

        return d.addTimeout(self._timeout, self._clock).addErrback(late)

    def census(self) -> Deferred[dict]:
        """
        C{{chargers: [...], instances: [...]}}: this instance's chargers and
        those of every instance that answered within the window.
        """
        mine = {"instance": self._registry.instance, "chargers": self._registry.describe_all()}
        channel = self._channel
        if channel is None:
            return fail(BrokerUnavailable("RabbitMQ is not connected"))
        correlation_id = uuid.uuid4().hex
        self._census[correlation_id] = []
        properties = _properties(
            reply_to=REPLY_TO, correlation_id=correlation_id, expiration=str(int(self._window * 1000)), headers={QUERY: CENSUS}
        )
        try:
            channel.basic_publish(self._connection.topology.claims_exchange, "", b"{}", properties)
        except Exception as e:
            self._census.pop(correlation_id, None)
            return fail(BrokerUnavailable(describe_failure(e)))
        d: Deferred[dict] = Deferred()

        def collect() -> None:
            answers = [a for a in self._census.pop(correlation_id, []) if a.get("instance") != mine["instance"]]
            merged = {a["instance"]: a for a in answers}
            merged[mine["instance"]] = mine
            chargers = [c for name in sorted(merged) for c in merged[name]["chargers"]]
            d.callback({"chargers": chargers, "instances": sorted(merged)})

        self._clock.callLater(self._window, collect)
        return d


    def _forget(self, correlation_id: str) -> None:
        """
        A caller cancelled its request: its late reply is dropped.
        """
        self._pending.pop(correlation_id, None)

    def _returned(self, message: Any) -> None:
        d = self._pending.pop(message.properties.correlation_id or "", None)
        if d is not None:
            d.callback(None)  # no instance holds the charger

    def _replied(self, message: Any) -> None:
        correlation_id = message.properties.correlation_id or ""
        try:
            reply = json.loads(message.body)
        except ValueError:
            return
        if correlation_id in self._census:
            result = reply.get("result") if isinstance(reply, dict) else None
            if isinstance(result, dict) and isinstance(result.get("instance"), str) and isinstance(result.get("chargers"), list):
                if len(self._census[correlation_id]) < 1024:
                    self._census[correlation_id].append(result)
            return
        d = self._pending.pop(correlation_id, None)
        if d is None:
            return
        d.callback(reply.get("result") if isinstance(reply, dict) and reply.get("ok") else None)
