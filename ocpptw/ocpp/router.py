# -*- test-case-name: tests.test_handlers -*-
"""
The charger-to-server actions of OCPP 1.6 (Core, Firmware Management and
the security extension): payload in, service calls, answer payload out.

L{Router} is the handler of every L{ocpptw.ocpp.session.OcppSession}.
Every answer is valid against the official 1.6 response schemas.  Actions
that need no I/O are answered with a plain dict (the hot path); the others
with a Deferred.

Choices:

  - Boot gating (docs/contract.md section 1): until the charger is accepted
    (L{IChargerService.is_accepted}: its record says it is known and
    enabled, or its last BootNotification was accepted), every CALL other
    than BootNotification gets C{SecurityError}.
  - DataTransfer is answered C{UnknownVendorId}: the gateway implements no
    vendor extension, which is the answer OCPP 1.6 (section 4.3) asks for.
    The frame itself reaches the backend or the broker as an
    C{ocpp.message} event, where an operator may act on it.
  - SignCertificate is answered C{Rejected}: the gateway signs no
    certificates.  The CSR reaches the backend as an C{ocpp.message}; an
    operator's CA may send C{CertificateSigned} through the command API.
  - The notifications (diagnostics, firmware, signed firmware, log status,
    security events) are answered C{{}} and recorded as C{ocpp.message}
    events only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocpptw.clock import iso_z, utcnow
from ocpptw.interfaces import IChargerService, ISessionService, StorageFull
from ocpptw.ocpp.errors import (
    INTERNAL_ERROR,
    NOT_IMPLEMENTED,
    SECURITY_ERROR,
    OcppError,
)

#: Actions whose answer proves a write went through (Authorize may answer from its cache).
_WRITERS = frozenset({"BootNotification", "MeterValues", "StartTransaction", "StatusNotification", "StopTransaction"})

#: C{ocppVersion} in the backend bodies of these chargers.
VERSION = "1.6"

#: The CALLERROR description while DATA_DIR refuses writes.
DISK_FULL = "the gateway cannot record this message now (its disk refuses writes); retry later"


def _empty(_: Any = None) -> dict:
    return {}


class Router:
    """
    C{router(session, action, payload)}: the answer to one CALL from a
    charger, as a dict or a Deferred of one.

    @param chargers: provides L{IChargerService}.
    @param sessions: provides L{ISessionService}.
    @param clock: the time of every answer (C{currentTime}) and of the
        services' records.
    """

    log = Logger()

    #: Actions whose answer proves a write went through.
    writers = _WRITERS

    def __init__(self, chargers: IChargerService, sessions: ISessionService, clock: IReactorTime) -> None:
        self._chargers = chargers
        self._sessions = sessions
        self._clock = clock
        self.refusing = False
        self._actions: dict[str, Callable[[str, dict, datetime], dict | Deferred[dict]]] = {
            "Authorize": self.authorize,
            "BootNotification": self.boot_notification,
            "DataTransfer": self.data_transfer,
            "DiagnosticsStatusNotification": self.notification,
            "FirmwareStatusNotification": self.notification,
            "Heartbeat": self.heartbeat,
            "MeterValues": self.meter_values,
            "StartTransaction": self.start_transaction,
            "StatusNotification": self.status_notification,
            "StopTransaction": self.stop_transaction,
            "SecurityEventNotification": self.notification,
            "SignCertificate": self.sign_certificate,
            "LogStatusNotification": self.notification,
            "SignedFirmwareStatusNotification": self.notification,
        }

    def __call__(self, session: Any, action: str, payload: dict) -> dict | Deferred[dict]:
        handler = self._actions.get(action)
        if handler is None:
            raise OcppError(NOT_IMPLEMENTED, f"{action[:60]} is not answered by this gateway")
        cp = session.charge_point_id
        now = utcnow(self._clock)
        self._chargers.seen(cp, now)
        if action != "BootNotification" and not self._chargers.is_accepted(cp):
            raise OcppError(SECURITY_ERROR, "not accepted: send BootNotification first")
        answer = handler(cp, payload, now)
        if isinstance(answer, Deferred):
            if self.refusing and action in self.writers:
                answer.addCallback(self._written)
            answer.addErrback(self._disk_full)
        return answer

    # -- a full disk ---------------------------------------------------------------

    def _disk_full(self, failure: Any) -> Any:
        """
        A message whose effects cannot be recorded because DATA_DIR refuses
        writes is answered C{InternalError} (the charger keeps it and tries
        again); one error line per outage, not one per message.
        """
        failure.trap(StorageFull)
        if not self.refusing:
            self.refusing = True
            self.log.error(
                "DATA_DIR refuses writes ({error}): messages that must be recorded are answered InternalError"
                " until it accepts them again",
                error=failure.getErrorMessage(),
            )
        raise OcppError(INTERNAL_ERROR, DISK_FULL)

    def _written(self, answer: Any) -> Any:
        if self.refusing:
            self.refusing = False
            self.log.info("DATA_DIR accepts writes again; every message is answered")
        return answer

    # -- answered at once ------------------------------------------------------

    def heartbeat(self, cp: str, payload: dict, now: Any) -> dict:
        return {"currentTime": iso_z(now)}

    def data_transfer(self, cp: str, payload: dict, now: Any) -> dict:
        return {"status": "UnknownVendorId"}

    def sign_certificate(self, cp: str, payload: dict, now: Any) -> dict:
        return {"status": "Rejected"}

    def notification(self, cp: str, payload: dict, now: Any) -> dict:
        return {}

    # -- through the services --------------------------------------------------

    def authorize(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        d = self._sessions.authorize(cp, payload["idTag"], now, extra={"ocppVersion": VERSION})
        return d.addCallback(lambda info: {"idTagInfo": info})

    def boot_notification(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        return self._chargers.boot(cp, payload, now, extra={"ocppVersion": VERSION})

    def status_notification(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        return self._chargers.status(cp, payload, now, version=VERSION).addCallback(_empty)

    def meter_values(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        return self._sessions.meter_values(cp, payload, now).addCallback(_empty)

    def start_transaction(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        return self._sessions.start(cp, dict(payload, ocppVersion=VERSION), now)

    def stop_transaction(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        return self._sessions.stop(cp, dict(payload, ocppVersion=VERSION), now)
