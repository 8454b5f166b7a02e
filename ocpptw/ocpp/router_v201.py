# -*- test-case-name: tests.ocpp.test_transaction_events -*-
"""
The charger-to-CSMS actions of OCPP 2.0.1: payload in, the version-neutral
services, answer payload out (docs/contract.md section 7).  The services see one
model (charger, connector, session, meter samples, idTag); this module
translates 2.0.1's shapes into it and the answers back.

L{Router201} is the handler of every 2.0.1 L{ocpptw.ocpp.session.OcppSession}.
Boot gating, the full-disk answer and last-seen work as for 1.6 (it shares
L{ocpptw.ocpp.router.Router}'s dispatch).

Answers that need no service, chosen as an operator would expect from a
gateway that implements no vendor extension, signs no certificates and
computes no charging schedules (each frame still reaches the backend or the
broker as an C{ocpp.message} event, where an operator may act on it):

  - the notifications and reports (NotifyReport, NotifyEvent,
    NotifyMonitoringReport, SecurityEventNotification,
    FirmwareStatusNotification, LogStatusNotification, NotifyChargingLimit,
    ReportChargingProfiles, ClearedChargingLimit, NotifyDisplayMessages,
    NotifyCustomerInformation, ReservationStatusUpdate,
    PublishFirmwareStatusNotification) -> C{{}};
  - NotifyEVChargingNeeds -> C{Rejected} (no schedule will follow);
  - NotifyEVChargingSchedule -> C{Accepted} (received);
  - SignCertificate -> C{Rejected}; Get15118EVCertificate -> C{Failed};
    GetCertificateStatus -> C{Failed};
  - DataTransfer -> C{UnknownVendorId}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from ocpptw.interfaces import IChargerService, ISessionService
from ocpptw.ocpp.model_v201 import (
    NO_AUTHORIZATION,
    VERSION,
    boot_fields,
    id_token_info,
    sampled_values,
    status_fields,
)
from ocpptw.ocpp.router import Router, _empty
from ocpptw.ocpp.transaction_events import TransactionEvents

#: Actions whose answer proves a write went through.
WRITERS = frozenset({"BootNotification", "MeterValues", "StatusNotification", "TransactionEvent"})

_NOTIFICATIONS = (
    "ClearedChargingLimit",
    "FirmwareStatusNotification",
    "LogStatusNotification",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "NotifyReport",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "SecurityEventNotification",
)

_FIXED: dict[str, dict] = {
    "DataTransfer": {"status": "UnknownVendorId"},
    "Get15118EVCertificate": {"status": "Failed", "exiResponse": ""},
    "GetCertificateStatus": {"status": "Failed"},
    "NotifyEVChargingNeeds": {"status": "Rejected"},
    "NotifyEVChargingSchedule": {"status": "Accepted"},
    "SignCertificate": {"status": "Rejected"},
}


class Router201(Router):
    """
    C{router(session, action, payload)} for OCPP 2.0.1 chargers.

    @param chargers: provides L{IChargerService}.
    @param sessions: provides L{ISessionService}.
    @param clock: the time of every answer and record.
    """

    writers = WRITERS

    def __init__(self, chargers: IChargerService, sessions: ISessionService, clock: IReactorTime) -> None:
        super().__init__(chargers, sessions, clock)
        self.transactions = TransactionEvents(sessions, clock)
        actions: dict[str, Any] = {
            "Authorize": self.authorize,
            "BootNotification": self.boot_notification,
            "Heartbeat": self.heartbeat,
            "MeterValues": self.meter_values,
            "StatusNotification": self.status_notification,
            "TransactionEvent": self.transaction_event,
        }
        for action in _NOTIFICATIONS:
            actions[action] = self.notification
        for action, answer in _FIXED.items():
            actions[action] = self._fixed(answer)
        self._actions = actions

    def actions(self) -> frozenset[str]:
        """
        The actions this router answers.
        """
        return frozenset(self._actions)

    @staticmethod
    def _fixed(answer: dict) -> Any:
        def handler(cp: str, payload: dict, now: Any) -> dict:
            return dict(answer)

        return handler

    # -- through the services --------------------------------------------------

    def boot_notification(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        fields, extra = boot_fields(payload)
        return self._chargers.boot(cp, fields, now, extra=extra)

    def status_notification(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        fields, extra = status_fields(payload)
        return self._chargers.status(cp, fields, now, extra=extra, version=VERSION).addCallback(_empty)

    def authorize(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        token = payload["idToken"]
        if token.get("type") == NO_AUTHORIZATION:
            return succeed({"idTokenInfo": {"status": "Accepted"}})
        d = self._sessions.authorize(cp, token["idToken"], now, extra={"idTokenType": token["type"], "ocppVersion": VERSION})
        return d.addCallback(lambda info: {"idTokenInfo": id_token_info(info)})

    def meter_values(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        evse_id = payload["evseId"]
        d = self._sessions.meter_samples(cp, evse_id, None, sampled_values(payload["meterValue"]), extra={"evseId": evse_id})
        return d.addCallback(_empty)

    def transaction_event(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        return self.transactions.event(cp, payload, now)
