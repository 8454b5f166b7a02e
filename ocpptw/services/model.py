# -*- test-case-name: tests.services.test_delivery,tests.services.test_ledger -*-
"""
The records the services work on and the stores keep: a L{Transaction} as
the gateway knows it, and the key that recognises a repeated
StartTransaction.  How they are stored is the store's business
(L{ocpptw.store.ledger_rows}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ocpptw.services.billing import money

__all__ = ["DedupeKey", "Transaction"]

#: C{(cp, connector_id, id_tag, timestamp, meter_start)} of a StartTransaction.
DedupeKey = tuple[str, Any, Any, Any, Any]


@dataclass
class Transaction:
    """
    One transaction as the gateway knows it.

    @ivar assigned: the gateway assigned the id (the backend was away);
        the session is reconciled later.
    @ivar rejected: the backend refused the start (4xx); there is nothing
        to reconcile or stop at the backend.
    @ivar session_id: the backend's session, C{None} until reconciled.
    @ivar timestamp: StartTransaction's C{timestamp} exactly as sent (part
        of the dedupe key).
    @ivar transaction_id: an C{int} (OCPP 1.6, the backend's or the
        gateway's), or the charger's C{str} (OCPP 2.0.1).
    @ivar evse_id: the 2.0.1 EVSE, for the start body (stored with the
        transaction).
    @ivar ocpp_version: C{ocppVersion} for the start body (stored with the
        transaction, so a start replayed after a restart carries it).
    """

    cp: str
    transaction_id: int
    connector_id: int | None = None
    id_tag: str | None = None
    meter_start: int | None = None
    timestamp: str | None = None
    reservation_id: int | None = None
    assigned: bool = False
    rejected: bool = False
    session_id: str | None = None
    user_id: str | None = None
    prepaid: Decimal | None = None
    price: Decimal | None = None
    currency: str | None = None
    id_tag_info: dict = field(default_factory=lambda: {"status": "Accepted"})
    created: float = 0.0
    stopped: bool = False
    meter_stop: int | None = None
    stopped_at: str | None = None
    reason: str | None = None
    stopped_on: float | None = None
    evse_id: int | None = None
    ocpp_version: str | None = None

    @property
    def dedupe_key(self) -> DedupeKey | None:
        if self.timestamp is None:
            return None
        return (self.cp, self.connector_id, self.id_tag, self.timestamp, self.meter_start)

    def start_body(self) -> dict:
        """
        The C{POST /api/charging-session/start} body that reconciles a
        gateway-assigned transaction (with C{transactionId}).
        """
        body: dict[str, Any] = {
            "deviceId": self.cp,
            "connectorId": self.connector_id,
            "idTag": self.id_tag,
            "meterStart": self.meter_start,
            "timestamp": self.timestamp,
        }
        if self.reservation_id is not None:
            body["reservationId"] = self.reservation_id
        body["transactionId"] = self.transaction_id
        if self.evse_id is not None:
            body["evseId"] = self.evse_id
        # a string id is the charger's own: OCPP 2.0.1
        version = self.ocpp_version or ("2.0.1" if type(self.transaction_id) is str else None)
        if version is not None:
            body["ocppVersion"] = version
        return body

    def apply_session(self, answer: dict) -> None:
        """
        Take the backend's session data (C{POST /api/charging-session/start}
        answer, or an C{active-sessions} entry).
        """
        if answer.get("sessionId") is not None:
            self.session_id = str(answer["sessionId"])
        if answer.get("userId") is not None:
            self.user_id = str(answer["userId"])
        if answer.get("prepaidAmount") is not None:
            self.prepaid = money(answer["prepaidAmount"])
        if answer.get("pricePerKwh") is not None:
            self.price = money(answer["pricePerKwh"])
        if answer.get("currency") is not None:
            self.currency = str(answer["currency"])
