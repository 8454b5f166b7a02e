# -*- test-case-name: tests.adapters.test_amqp_handover,tests.integration.test_instances -*-
"""
Commands while a charger moves between instances.

When a charger reconnects to instance B, B binds its command queue for
the charger and then announces a claim; A, on the claim, drops its own
binding and closes the older socket.  Until A has unbound, the broker
routes a command for the charger to A (alone, before B's binding), or to
A and B (after it).  A does not answer such a command with
C{ChargerOffline}, nor send it to the older socket: it forwards it to B's
queue (default exchange), marked with L{FORWARDED_FOR}.  B may then hold
two copies of one command, the one routed to it and the forwarded one; it
runs the first and drops the other, recognised by C{(reply_to,
correlation_id)}.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

#: Header naming the charger on a forwarded command (its routing key is
#: then the receiving instance's queue).
FORWARDED_FOR = "x-ocpptw-charger"


class Handover:
    """
    Where chargers that left this instance went, and which commands were
    already seen, both bounded.

    @param limit: entries kept in each table.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._moved: OrderedDict[str, str] = OrderedDict()
        self._seen: OrderedDict[tuple[str, str], bool] = OrderedDict()

    def moved(self, charge_point_id: str, instance: str) -> None:
        """
        C{charge_point_id} is now held by C{instance}.
        """
        self._moved.pop(charge_point_id, None)
        self._moved[charge_point_id] = instance
        while len(self._moved) > self._limit:
            self._moved.popitem(last=False)

    def back(self, charge_point_id: str) -> None:
        """
        C{charge_point_id} connected here again.
        """
        self._moved.pop(charge_point_id, None)

    def holder(self, charge_point_id: str) -> str | None:
        """
        The instance C{charge_point_id} moved to, if it moved away from here.
        """
        return self._moved.get(charge_point_id)

    def first_copy(self, properties: Any, forwarded: bool) -> bool:
        """
        False when this command is the second copy of one already seen (one
        routed here, one forwarded); commands without C{correlation_id} are
        never recognised.
        """
        if not properties.correlation_id or not properties.reply_to:
            return True
        key = (properties.reply_to, properties.correlation_id)
        earlier = self._seen.get(key)
        if earlier is not None and earlier != forwarded:
            del self._seen[key]
            return False
        self._seen[key] = forwarded
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return True


def forwarded_properties(properties: Any, charge_point_id: str) -> Any:
    """
    The properties of a command forwarded to another instance: the same
    reply address and correlation, plus L{FORWARDED_FOR}.
    """
    import pika

    headers = dict(properties.headers or {})
    headers[FORWARDED_FOR] = charge_point_id
    return pika.BasicProperties(
        content_type=properties.content_type or "application/json",
        reply_to=properties.reply_to,
        correlation_id=properties.correlation_id,
        expiration=properties.expiration,
        message_id=properties.message_id,
        headers=headers,
    )
