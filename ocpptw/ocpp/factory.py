# -*- test-case-name: tests.integration.test_v201 -*-
"""
L{SessionFactory}: the one place that turns a charger's negotiated OCPP
version into its session: the same L{OcppSession} for every version, given
that version's validator (schemas, action tables, CALLERROR spellings) and
router (its charger-to-server handlers).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from ocpptw.interfaces import IChargerService, ISessionService
from ocpptw.ocpp.session import OcppSession
from ocpptw.ocpp.validation import Validator
from ocpptw.ocpp.versions import V16, V201, ProtocolVersion


class SessionFactory:
    """
    C{factory(identity, connection, strict) -> OcppSession} for the version
    in C{connection.version} (1.6 when it has none), as the
    L{ocpptw.transport.handshake.Gate} wants it.

    @param routers: version name -> the handler of that version's CALLs.
    @param validators: version name -> its L{Validator}; made (and compiled,
        once per process) for every version of C{routers} when not given.
    """

    def __init__(
        self,
        routers: dict[str, Any],
        clock: IReactorTime,
        call_timeout: float,
        observer: Any = None,
        validators: dict[str, Validator] | None = None,
    ) -> None:
        self._routers = routers
        self._clock = clock
        self._call_timeout = call_timeout
        self._observer = observer
        self.validators = dict(validators or {})
        for name in routers:
            if name not in self.validators:
                self.validators[name] = Validator({V16.name: V16, V201.name: V201}[name])

    def __call__(self, identity: str, connection: Any, strict: bool) -> OcppSession:
        version: ProtocolVersion = getattr(connection, "version", None) or V16
        session = OcppSession(
            identity,
            connection,
            self._routers[version.name],
            self._clock,
            self.validators[version.name],
            call_timeout=self._call_timeout,
            observer=self._observer,
        )
        session.strict = strict
        return session


def routers(chargers: IChargerService, sessions: ISessionService, clock: IReactorTime) -> dict[str, Any]:
    """
    The router of every version, sharing the services.
    """
    from ocpptw.ocpp.router import Router
    from ocpptw.ocpp.router_v201 import Router201

    return {V16.name: Router(chargers, sessions, clock), V201.name: Router201(chargers, sessions, clock)}
