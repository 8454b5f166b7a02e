# -*- test-case-name: tests.transport.test_websocket,tests.integration.test_amqp_commands -*-
"""
Server-to-charger commands for chargers connected to this instance.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from zope.interface import implementer

from ocpptw.interfaces import ChargerOffline, ICommandBus, InvalidPayload
from ocpptw.ocpp.actions import SERVER_TO_CHARGER
from ocpptw.ocpp.errors import OcppError

#: Longest time a command may wait for the charger's answer, through REST
#: (C{?timeout=}) and through RabbitMQ (C{timeoutSeconds}) alike.
MAX_COMMAND_TIMEOUT = 300.0


@implementer(ICommandBus)
class LocalCommandBus:
    """
    Validates a command against the OCPP 1.6 schema before anything is
    sent, then calls the charger through its session.

    @param registry: the L{ocpptw.services.registry.ChargerRegistry}.
    @param validator: an L{ocpptw.ocpp.validation.Validator}.
    """

    def __init__(self, registry: Any, validator: Any, default_timeout: float) -> None:
        self._registry = registry
        self._validator = validator
        self._default_timeout = default_timeout

    def check(self, action: str, payload: Any) -> None:
        """
        @raise InvalidPayload: C{action} is not a server-to-charger action
            of OCPP 1.6, or C{payload} does not match its schema.
        """
        if action not in SERVER_TO_CHARGER:
            raise InvalidPayload(f"{action} is not a server-to-charger action of OCPP 1.6")
        if not isinstance(payload, dict):
            raise InvalidPayload("the payload must be a JSON object")
        try:
            self._validator.check_request(action, payload)
        except OcppError as e:
            raise InvalidPayload(f"{e.code}: {e.description}") from None

    def send(self, charge_point_id: str, action: str, payload: dict, timeout: float | None = None) -> Deferred[dict]:
        try:
            self.check(action, payload)
        except InvalidPayload as e:
            return fail(e)
        connection = self._registry.get(charge_point_id)
        if connection is None:
            return fail(ChargerOffline(f"{charge_point_id} is not connected"))
        return connection.session.call(action, payload, timeout=timeout or self._default_timeout)
