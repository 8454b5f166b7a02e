# -*- test-case-name: tests.integration.test_amqp_commands -*-
"""
Commands through RabbitMQ (docs/contract.md section 4), and "newest wins" across
instances behind one broker.

L{AmqpCommandServer} consumes this instance's command queue.  The queue is
bound to the command exchange with routing key = chargePointId for every
charger connected here, so a command published for a charger reaches the
instance that holds its socket; the bindings move with the charger.

When a charger connects here, a claim C{{chargePointId, instance,
connectedAt}} goes out on the claims exchange; an instance that holds an
older connection for that charger unbinds it at once, closes it with 4001
(without a C{Disconnected} event: the charger is online elsewhere) and
forwards commands still routed to it to the new holder
(L{ocpptw.adapters.amqp_handover}).

L{AmqpCommandBus} is the L{ICommandBus} for the REST API: a charger held
here is called directly; any other goes by RPC over the broker (direct
reply-to), published with C{mandatory} on a channel without confirms, so a
command for a charger that no instance holds comes back as
L{ChargerOffline}.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.internet.defer import (
    Deferred,
    TimeoutError,
    fail,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocpptw.adapters.amqp import describe_failure
from ocpptw.adapters.amqp_directory import CENSUS, DESCRIBE, answer, query_of
from ocpptw.adapters.amqp_handover import FORWARDED_FOR, Handover, forwarded_properties
from ocpptw.interfaces import (
    CallErrorReceived,
    ChargerOffline,
    CommandTimeout,
    IChargerRegistry,
    ICommandBus,
    InvalidPayload,
)
from ocpptw.ocpp.jsontext import compact_bytes
from ocpptw.services.commands import MAX_COMMAND_TIMEOUT

#: Close code and reason for a connection that a newer one on another
#: instance replaced.
CLAIMED_ELSEWHERE = (4001, "connected to another instance")

#: Longest C{timeoutSeconds} a command may ask for (the REST API's limit too).
MAX_TIMEOUT = MAX_COMMAND_TIMEOUT

#: Largest command body read (docs/contract.md section 4); larger gets InvalidPayload unread.
MAX_COMMAND_BYTES = 1024 * 1024

REPLY_TO = "amq.rabbitmq.reply-to"


class MalformedCommand(ValueError):
    """
    A command message that is not C{{action, payload, timeoutSeconds?}}.
    """


def parse_command(body: bytes) -> tuple[str, dict, float | None]:
    """
    Read C{{action, payload, timeoutSeconds?}}.

    @raise MalformedCommand: the body is over 1 MiB or not JSON, C{action} is not a
        non-empty string, C{payload} is not an object, or C{timeoutSeconds}
        is not a positive number.
    """
    if len(body) > MAX_COMMAND_BYTES:
        raise MalformedCommand("the command is larger than 1 MiB")
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedCommand("the command is not JSON") from None
    except RecursionError:  # left unanswered and unacked, it came back after every reconnect
        raise MalformedCommand("the command is nested too deeply") from None
    if not isinstance(message, dict):
        raise MalformedCommand("the command must be a JSON object {action, payload, timeoutSeconds?}")
    action = message.get("action")
    if not isinstance(action, str) or not action:
        raise MalformedCommand("the command has no action")
    payload = message.get("payload", {})
    if not isinstance(payload, dict):
        raise MalformedCommand("payload must be a JSON object")
    timeout = message.get("timeoutSeconds")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
            raise MalformedCommand(f"timeoutSeconds must be a number of seconds in (0, {MAX_TIMEOUT:g}]")
        timeout = float(timeout)
    return action, payload, timeout


def _json(value: Any) -> bytes:
    return compact_bytes(value)


def _properties(**kwargs: Any) -> Any:
    import pika

    return pika.BasicProperties(content_type="application/json", **kwargs)


@inlineCallbacks
def _consume(queue: Any, handler: Any, log: Logger) -> Any:
    """
    Hand every message of a pika consumer queue to C{handler} until the
    queue closes with its channel.
    """
    while True:
        try:
            message = yield queue.get()
        except Exception:
            return
        try:
            handler(message)
        except Exception:
            log.failure("Handling a broker message failed")


class AmqpCommandServer:
    """
    Consumes this instance's command queue and moves the per-charger
    bindings with the chargers (registry listeners).

    @param connection: the L{ocpptw.adapters.amqp.AmqpConnection}.
    @param registry: the L{ChargerRegistry}.
    @param local_bus: the L{ICommandBus} for chargers held here.
    @param instance: this instance's name (defaults to the connection's).
    @param prefetch: commands in progress at once.
    """

    log = Logger()

    def __init__(self, connection: Any, registry: IChargerRegistry, local_bus: Any, instance: str | None = None, prefetch: int = 32) -> None:
        self._connection = connection
        self._topology = connection.topology
        self._registry = registry
        self._local = local_bus
        self.instance = instance or connection.instance
        self._prefetch = prefetch
        self._channel: Any = None
        self._connected_at: dict[str, str] = {}
        self._handover = Handover()
        #: counters for metrics
        self.handled = 0
        self.malformed = 0
        self.claims_lost = 0
        self.forwarded = 0
        registry.add_listener(self._attached, self._detached)
        connection.add_on_ready(self._open)

    @inlineCallbacks
    def _open(self, connection: Any) -> Any:
        t = self._topology
        channel = yield connection.channel()
        yield channel.basic_qos(prefetch_count=self._prefetch)
        for charge_point_id in list(self._registry):
            yield channel.queue_bind(queue=t.command_queue, exchange=t.command_exchange, routing_key=charge_point_id)
        commands, _ = yield channel.basic_consume(queue=t.command_queue, auto_ack=False)
        declared = yield channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        claims_queue = declared.method.queue
        yield channel.queue_bind(queue=claims_queue, exchange=t.claims_exchange, routing_key="")
        claims, _ = yield channel.basic_consume(queue=claims_queue, auto_ack=True)
        channel.on_closed.addBoth(self._channel_closed, channel, connection)
        self._channel = channel
        _consume(commands, self._command, self.log)
        _consume(claims, self._claim, self.log)
        for charge_point_id in list(self._registry):
            self._publish_claim(charge_point_id)

    def _channel_closed(self, reason: Any, channel: Any, connection: Any) -> None:
        if self._channel is channel:
            self._channel = None
        if connection.is_open:
            # closed by the broker while the connection lives: set everything up again
            self.log.warn("RabbitMQ closed the command channel: {reason}", reason=describe_failure(reason))
            connection.close(200, "command channel closed")

    # -- bindings and claims ---------------------------------------------------

    def _attached(self, charge_point_id: str) -> None:
        described = self._registry.describe(charge_point_id) or {}
        self._connected_at[charge_point_id] = described.get("connectedAt", "")
        self._handover.back(charge_point_id)
        channel = self._channel
        if channel is None:
            return  # bound on the next (re)connect
        t = self._topology
        d = channel.queue_bind(queue=t.command_queue, exchange=t.command_exchange, routing_key=charge_point_id)
        d.addErrback(self._quiet, "bind", charge_point_id)
        self._publish_claim(charge_point_id)

    def _detached(self, charge_point_id: str) -> None:
        self._connected_at.pop(charge_point_id, None)
        channel = self._channel
        if channel is None:
            return
        t = self._topology
        d = channel.queue_unbind(queue=t.command_queue, exchange=t.command_exchange, routing_key=charge_point_id)
        d.addErrback(self._quiet, "unbind", charge_point_id)

    def _quiet(self, failure: Any, what: str, charge_point_id: str) -> None:
        # the channel went away; the next (re)connect binds from the registry
        self.log.debug("Could not {what} {chargePointId}: {reason}", what=what, chargePointId=charge_point_id, reason=describe_failure(failure))

    def _publish_claim(self, charge_point_id: str) -> None:
        channel = self._channel
        if channel is None:
            return
        claim = {
            "chargePointId": charge_point_id,
            "instance": self.instance,
            "connectedAt": self._connected_at.get(charge_point_id, ""),
        }
        try:
            channel.basic_publish(self._topology.claims_exchange, "", _json(claim), _properties())
        except Exception as e:
            self.log.debug("Could not publish a claim for {chargePointId}: {reason}", chargePointId=charge_point_id, reason=describe_failure(e))

    def _claim(self, message: Any) -> None:
        if query_of(message.properties) == CENSUS:
            reply = {"ok": True, "result": {"instance": self.instance, "chargers": self._registry.describe_all()}}
            self._reply_query(message, reply)
            return
        try:
            claim = json.loads(message.body)
            charge_point_id = claim["chargePointId"]
            instance = claim["instance"]
            claimed_at = claim.get("connectedAt") or ""
        except (ValueError, KeyError, TypeError):
            self.log.warn("Ignoring a malformed claim on {exchange}", exchange=self._topology.claims_exchange)
            return
        if instance == self.instance:
            return
        connection = self._registry.get(charge_point_id)
        if connection is None:
            return
        ours = self._connected_at.get(charge_point_id, "")
        if (ours, self.instance) > (claimed_at, instance):
            # ours is the newer connection: tell the other instance again
            self._publish_claim(charge_point_id)
            return
        self.claims_lost += 1
        self.log.info(
            "{chargePointId} connected to instance {other}; closing the connection here",
            chargePointId=charge_point_id,
            other=instance,
        )
        # Hand over now: unbind (commands go to the new holder), and no
        # Disconnected event after the other instance's Connected.
        self._handover.moved(charge_point_id, instance)
        self._registry.detach(charge_point_id, connection)
        connection.close(*CLAIMED_ELSEWHERE)

    # -- commands -----------------------------------------------------------------

    def _command(self, message: Any) -> None:
        properties = message.properties
        forwarded = (properties.headers or {}).get(FORWARDED_FOR)
        charge_point_id = forwarded if isinstance(forwarded, str) else message.method.routing_key
        if not self._handover.first_copy(properties, forwarded is not None):
            self._ack(message)  # the other copy of a command sent during a handover runs
            return
        holder = self._handover.holder(charge_point_id)
        if holder is not None and forwarded is None and self._registry.get(charge_point_id) is None:
            self._forward(message, charge_point_id, holder)
            return
        if query_of(properties) == DESCRIBE:
            found = self._registry.describe(charge_point_id)
            reply = {"ok": True, "result": found} if found is not None else {"ok": False, "error": {"code": "ChargerOffline"}}
            self._reply_query(message, reply)
            self._ack(message)
            return
        try:
            action, payload, timeout = parse_command(message.body)
        except MalformedCommand as e:
            self.malformed += 1
            self.log.warn("Malformed command for {chargePointId}: {reason}", chargePointId=charge_point_id, reason=str(e))
            self._answer(message, {"ok": False, "error": {"code": "InvalidPayload", "description": str(e)}})
            return
        d = maybeDeferred(self._local.send, charge_point_id, action, payload, timeout)
        d.addCallbacks(lambda result: {"ok": True, "result": result}, self._error_reply)
        d.addCallback(lambda reply: self._answer(message, reply))
        d.addErrback(lambda f: self.log.failure("Answering a command failed", f))

    def _reply_query(self, message: Any, reply: dict) -> None:
        try:
            answer(message.channel, message.properties, reply)
        except Exception as e:
            self.log.debug("Could not answer a charger lookup: {reason}", reason=describe_failure(e))

    def _forward(self, message: Any, charge_point_id: str, holder: str) -> None:
        queue = f"{self._topology.command_exchange}.{holder}"
        try:
            properties = forwarded_properties(message.properties, charge_point_id)
            message.channel.basic_publish("", queue, message.body, properties)
        except Exception as e:
            self.log.debug("Could not forward a command: {reason}", reason=describe_failure(e))
            return  # not acked: delivered again after the reconnect
        self.forwarded += 1
        self._ack(message)

    def _ack(self, message: Any) -> None:
        try:
            message.channel.basic_ack(delivery_tag=message.method.delivery_tag)
        except Exception as e:
            self.log.debug("Could not acknowledge a command: {reason}", reason=describe_failure(e))

    def _error_reply(self, failure: Any) -> dict:
        if failure.check(ChargerOffline):
            code = "ChargerOffline"
        elif failure.check(CommandTimeout):
            code = "Timeout"
        elif failure.check(InvalidPayload):
            code = "InvalidPayload"
        elif failure.check(CallErrorReceived):
            e = failure.value
            return {"ok": False, "error": {"code": e.code, "description": e.description, "details": e.details}}
        else:
            self.log.failure("A command failed unexpectedly", failure)
            return {"ok": False, "error": {"code": "InternalError", "description": "the gateway failed to run the command"}}
        return {"ok": False, "error": {"code": code, "description": str(failure.value)}}

    def _answer(self, message: Any, reply: dict) -> None:
        self.handled += 1
        properties = message.properties
        channel = message.channel
        try:
            if properties.reply_to:
                channel.basic_publish(
                    "", properties.reply_to, _json(reply), _properties(correlation_id=properties.correlation_id)
                )
            channel.basic_ack(delivery_tag=message.method.delivery_tag)
        except Exception as e:
            # the channel closed meanwhile; the caller times out
            self.log.debug("Could not answer a command: {reason}", reason=describe_failure(e))


@implementer(ICommandBus)
class AmqpCommandBus:
    """
    L{ICommandBus} across instances: local when the charger is held here,
    otherwise RPC through the broker.

    @param connection: the L{ocpptw.adapters.amqp.AmqpConnection}.
    @param local_bus: the L{ICommandBus} for chargers held here (its
        C{check(action, payload)} validates before a command leaves this
        instance).
    @param registry: the L{ChargerRegistry}.
    @param clock: the L{IReactorTime} for the RPC timeouts.
    @param default_timeout: seconds a command waits when none is given.
    @param margin: extra seconds the caller waits beyond the charger's
        timeout for the answer to travel back.
    """

    log = Logger()

    def __init__(
        self,
        connection: Any,
        local_bus: Any,
        registry: IChargerRegistry,
        clock: IReactorTime,
        default_timeout: float = 30.0,
        margin: float = 5.0,
    ) -> None:
        self._connection = connection
        self._local = local_bus
        self._registry = registry
        self._clock = clock
        self._default_timeout = default_timeout
        self._margin = margin
        self._channel: Any = None
        self._pending: dict[str, Deferred] = {}
        connection.add_on_ready(self._open)

    @inlineCallbacks
    def _open(self, connection: Any) -> Any:
        channel = yield connection.channel()
        channel.add_on_return_callback(self._returned)
        replies, _ = yield channel.basic_consume(queue=REPLY_TO, auto_ack=True)
        channel.on_closed.addBoth(self._channel_closed, channel, connection)
        self._channel = channel
        _consume(replies, self._replied, self.log)

    def _channel_closed(self, reason: Any, channel: Any, connection: Any) -> None:
        if self._channel is not channel:
            return
        self._channel = None
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(CommandTimeout("the broker connection was lost before the charger's answer"))
        if connection.is_open:
            self.log.warn("RabbitMQ closed the command RPC channel: {reason}", reason=describe_failure(reason))
            connection.close(200, "command RPC channel closed")

    def check(self, action: str, payload: Any) -> None:
        """
        As the local bus checks: a command is refused here, before it
        leaves this instance.
        """
        self._local.check(action, payload)

    def send(self, charge_point_id: str, action: str, payload: dict, timeout: float | None = None) -> Deferred[dict]:
        if self._registry.get(charge_point_id) is not None:
            return self._local.send(charge_point_id, action, payload, timeout)
        try:
            self.check(action, payload)
        except InvalidPayload as e:
            return fail(e)
        channel = self._channel
        if channel is None:
            return fail(ChargerOffline(f"{charge_point_id} is not connected here and the broker is unavailable"))
        timeout = timeout or self._default_timeout
        correlation_id = uuid.uuid4().hex
        d: Deferred[dict] = Deferred(lambda _: self._forget(correlation_id))
        self._pending[correlation_id] = d
        body = _json({"action": action, "payload": payload, "timeoutSeconds": timeout})
        properties = _properties(
            reply_to=REPLY_TO,
            correlation_id=correlation_id,
            expiration=str(int(timeout * 1000)),
        )
        try:
            channel.basic_publish(self._connection.topology.command_exchange, charge_point_id, body, properties, mandatory=True)
        except Exception as e:
            self._pending.pop(correlation_id, None)
            return fail(ChargerOffline(f"{charge_point_id}: the broker is unavailable ({describe_failure(e)})"))
        d.addTimeout(timeout + self._margin, self._clock)

        def timed_out(failure: Any) -> Any:
            failure.trap(TimeoutError)
            raise CommandTimeout(f"no answer from {charge_point_id} within {timeout:g} s")

        return d.addErrback(timed_out)

    def _forget(self, correlation_id: str) -> None:
        """
        A caller cancelled its request: its late reply is dropped.
        """
        self._pending.pop(correlation_id, None)

    def _returned(self, message: Any) -> None:
        d = self._pending.pop(message.properties.correlation_id or "", None)
        if d is not None:
            d.errback(ChargerOffline(f"{message.method.routing_key} is not connected to any instance"))

    def _replied(self, message: Any) -> None:
        d = self._pending.pop(message.properties.correlation_id or "", None)
        if d is None:
            return  # answered after its timeout
        try:
            reply = json.loads(message.body)
            if reply.get("ok"):
                d.callback(reply.get("result") or {})
                return
            error = reply.get("error") or {}
            code = error.get("code", "InternalError")
            description = error.get("description", "")
        except (ValueError, AttributeError):
            d.errback(CommandTimeout("the answer to the command was not JSON"))
            return
        if code == "ChargerOffline":
            d.errback(ChargerOffline(description))
        elif code == "Timeout":
            d.errback(CommandTimeout(description))
        elif code == "InvalidPayload":
            d.errback(InvalidPayload(description))
        else:
            d.errback(CallErrorReceived(code, description, error.get("details") or {}))
