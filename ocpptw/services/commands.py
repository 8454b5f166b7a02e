# -*- test-case-name: tests.transport.test_websocket,tests.integration.test_amqp_commands,tests.ocpp.test_versions -*-
"""
Server-to-charger commands for chargers connected to this instance.

A command is checked against the charger's own OCPP version: an action that
version does not send to chargers is refused (400 at the API) with a
description naming the version, and the payload is validated against that
version's schemas before anything is sent.  Where the charger is not known
yet (a command that another instance will carry), the action must be a
server-to-charger action of some version and its payload valid against one
of them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from zope.interface import implementer

from ocpptw.interfaces import (
    ChargerOffline,
    IChargerRegistry,
    ICommandBus,
    InvalidPayload,
)
from ocpptw.ocpp.errors import OcppError
from ocpptw.ocpp.validation import Validator
from ocpptw.ocpp.versions import V16, VERSIONS, ProtocolVersion

#: Longest time a command may wait for the charger's answer, through REST
#: (C{?timeout=}) and through RabbitMQ (C{timeoutSeconds}) alike.
MAX_COMMAND_TIMEOUT = 300.0


@implementer(ICommandBus)
class LocalCommandBus:
    """
    Validates a command against the schema of the charger's OCPP version
    before anything is sent, then calls the charger through its session.

    @param registry: the L{ocpptw.services.registry.ChargerRegistry}.
    @param validator: an L{ocpptw.ocpp.validation.Validator} (of 1.6; the
        other versions' validators are made on first use).
    """

    def __init__(self, registry: IChargerRegistry, validator: Any, default_timeout: float) -> None:
        self._registry = registry
        self._validators: dict[str, Any] = {getattr(validator, "version", V16).name: validator}
        self._default_timeout = default_timeout

    def _validator(self, version: ProtocolVersion) -> Any:
        validator = self._validators.get(version.name)
        if validator is None:
            validator = self._validators[version.name] = Validator(version)
        return validator

    def check(self, action: str, payload: Any, version: ProtocolVersion | None = None) -> None:
        """
        @param version: the charger's version, or C{None} when it is not
            known here.
        @raise InvalidPayload: C{action} is not a server-to-charger action
            of C{version} (of any version, when C{None}), or C{payload}
            does not match its schema.
        """
        candidates = [version] if version is not None else [v for v in VERSIONS if action in v.server_to_charger]
        if version is not None and action not in version.server_to_charger:
            raise InvalidPayload(f"{action} is not a server-to-charger action of OCPP {version.name}, the charger's version")
        if not candidates:
            raise InvalidPayload(f"{action} is not a server-to-charger action of OCPP 1.6 or 2.0.1")
        if not isinstance(payload, dict):
            raise InvalidPayload("the payload must be a JSON object")
        first: OcppError | None = None
        for candidate in candidates:
            try:
                self._validator(candidate).check_request(action, payload)
                return
            except OcppError as e:
                first = first or e
        assert first is not None
        raise InvalidPayload(f"{first.code}: {first.description}") from None

    def send(self, charge_point_id: str, action: str, payload: dict, timeout: float | None = None) -> Deferred[dict]:
        connection = self._registry.get(charge_point_id)
        version = getattr(getattr(connection, "session", None), "version", None)
        try:
            self.check(action, payload, version)
        except InvalidPayload as e:
            return fail(e)
        if connection is None:
            return fail(ChargerOffline(f"{charge_point_id} is not connected"))
        return connection.session.call(action, payload, timeout=timeout or self._default_timeout)
