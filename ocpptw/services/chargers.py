# -*- test-case-name: tests.services.test_chargers -*-
"""
Chargers: admission at the handshake, BootNotification, status and
presence (docs/contract.md sections 1, 3 and 5).

Acceptance lives in the charger record, not in the socket: a charger the
backend (or the embedded store) knows and that is not disabled is accepted
at once, also when it reconnects to another instance without booting again.
The ledger keeps the last record of every charger, so admission, boot
gating and credentials keep working while the backend is unreachable.

BootNotification while the backend is unreachable is still answered: a
charger the ledger knows as disabled gets C{Rejected}; any other gets
C{Accepted}, and its C{POST /api/charger/ensure} is written to the outbox
and delivered when the backend is back.  (Rejecting would stop every
charger from working during a backend outage; registering late is what an
operator wants.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocpptw.clock import iso_z
from ocpptw.interfaces import (
    BackendRejected,
    BackendUnavailable,
    IBackend,
    IChargerService,
    IEventPublisher,
    ILedger,
    IOutbox,
    NotFound,
    StorageFull,
)
from ocpptw.services.delivery import ENSURE_CHARGER, UPDATE_LAST_SEEN, UPDATE_STATUS
from ocpptw.services.events import (
    CHARGER_LAST_SEEN,
    CHARGER_METADATA_UPDATE,
    CHARGER_STATUS_UPDATE,
    make_event,
)
from ocpptw.services.meter import utc_timestamp

ACCEPTED, REJECTED = "Accepted", "Rejected"

#: BootNotification field -> C{POST /api/charger/ensure} field.
_ENSURE_FIELDS = (
    ("chargePointVendor", "vendor"),
    ("chargePointModel", "model"),
    ("chargePointSerialNumber", "serialNumber"),
    ("chargeBoxSerialNumber", "serialNumber"),
    ("firmwareVersion", "firmwareVersion"),
    ("iccid", "iccid"),
    ("imsi", "imsi"),
    ("meterType", "meterType"),
    ("meterSerialNumber", "meterSerialNumber"),
)


def ensure_body(charge_point_id: str, payload: dict) -> dict:
    """
    The C{POST /api/charger/ensure} body for a BootNotification.  The
    serial number is C{chargePointSerialNumber}, or the deprecated
    C{chargeBoxSerialNumber} when that is all the charger sends.
    """
    body: dict[str, Any] = {"deviceId": charge_point_id}
    for source, target in _ENSURE_FIELDS:
        value = payload.get(source)
        if value is not None and target not in body:
            body[target] = value
    return body


def timestamp_z(text: Any, fallback: datetime) -> str:
    """
    A charger's timestamp as ISO 8601 UTC with a C{Z}; C{fallback} when
    it is missing or unreadable.
    """
    if isinstance(text, str):
        try:
            return utc_timestamp(text)[1]
        except ValueError:
            pass
    return iso_z(fallback)


def durable(*ds: Deferred[Any]) -> Deferred[None]:
    """
    Fires once every Deferred in C{ds} has; fails with the first failure
    (the others' failures are consumed).  What C{gatherResults} did, without
    its list of results: this runs for the writes of every call.
    """
    out: Deferred[None] = Deferred()
    remaining = len(ds)
    if not remaining:
        out.callback(None)
        return out

    def succeeded(_: object) -> None:
        nonlocal remaining
        remaining -= 1
        if not remaining and not out.called:
            out.callback(None)

    def failed(failure: Failure) -> None:
        if not out.called:
            out.errback(failure)

    for d in ds:
        d.addCallbacks(succeeded, failed)
    return out


@implementer(IChargerService)
class ChargerService:
    """
    @param heartbeat_interval: the C{interval} of BootNotification.conf.
    @param allow_unknown: C{OCPP_ALLOW_UNKNOWN_CHARGERS}; when false a
        BootNotification from a charger nobody knows is C{Rejected} (the
        handshake normally refuses it first).
    @param instance: this instance's name, in events.
    @param backend_deadline: seconds BootNotification waits for the
        backend before it is answered from the ledger.
    @param last_seen_every: seconds between two last-seen updates of one
        charger.
    """

    log = Logger()

    def __init__(
        self,
        backend: IBackend,
        outbox: IOutbox,
        publisher: IEventPublisher,
        ledger: ILedger,
        clock: IReactorTime,
        heartbeat_interval: int = 300,
        allow_unknown: bool = True,
        instance: str = "ocpptw",
        backend_deadline: float = 10.0,
        last_seen_every: float = 60.0,
    ) -> None:
        self._backend = backend
        self._outbox = outbox
        self._publisher = publisher
        self._ledger = ledger
        self._clock = clock
        self._interval = heartbeat_interval
        self._allow_unknown = allow_unknown
        self._instance = instance
        self._deadline = backend_deadline
        self._last_seen_every = last_seen_every
        self._last_seen: dict[str, float] = {}

    def _event(self, type: str, charge_point_id: str, data: dict) -> Deferred[None]:
        return self._publisher.publish(make_event(type, charge_point_id, data, self._clock, self._instance))

    # -- admission -----------------------------------------------------------

    def admit(self, charge_point_id: str) -> Deferred[dict | None]:
        return Deferred.fromCoroutine(self._admit(charge_point_id))

    async def _admit(self, charge_point_id: str) -> dict | None:
        try:
            record = await self._backend.charger_by_device(charge_point_id)
        except BackendUnavailable:
            cached = self._ledger.charger(charge_point_id)
            if cached is None:
                raise
            self.log.info("admitting {chargePointId} from its last known record: backend unreachable",
                          chargePointId=charge_point_id)
            return cached
        if record is None:
            if self._ledger.charger(charge_point_id) is not None or self._ledger.charger_accepted(charge_point_id):
                self._remember(charge_point_id, None, False, forget=True)
            return None
        self._remember(charge_point_id, record, None)
        return record

    def _remember(self, charge_point_id: str, record: dict | None, accepted: bool | None, forget: bool = False) -> None:
        d = self._ledger.forget_charger(charge_point_id) if forget else self._ledger.remember_charger(
            charge_point_id, record, accepted
        )
        d.addErrback(lambda f: self.log.failure("keeping the record of {chargePointId} failed", f,
                                                chargePointId=charge_point_id))

    def is_accepted(self, charge_point_id: str) -> bool:
        record = self._ledger.charger(charge_point_id)
        if record is not None:
            return record.get("enabled") is not False
        return self._ledger.charger_accepted(charge_point_id)

    # -- boot ------------------------------------------------------------------

    def boot(self, charge_point_id: str, payload: dict, now: datetime, extra: dict | None = None) -> Deferred[dict]:
        """
        @param extra: fields a protocol version adds to the C{ensure} body
            and the C{charger.metadataUpdate} data (C{ocppVersion}, 2.0.1's
            boot C{reason}); C{None} values are left out.
        """
        return Deferred.fromCoroutine(self._boot(charge_point_id, payload, now, extra))

    async def _boot(self, charge_point_id: str, payload: dict, now: datetime, extra: dict | None = None) -> dict:
        body = ensure_body(charge_point_id, payload)
        if extra:
            body.update((k, v) for k, v in extra.items() if v is not None)
        answer = {"status": REJECTED, "currentTime": iso_z(now), "interval": self._interval}
        known = self._ledger.charger(charge_point_id)
        if not self._allow_unknown and known is None:
            self.log.warn("BootNotification from unknown charger {chargePointId} rejected", chargePointId=charge_point_id)
            return answer
        writes: list[Deferred[Any]] = [self._event(CHARGER_METADATA_UPDATE, charge_point_id, body)]
        record: dict | None = None
        try:
            d = self._backend.ensure_charger(body)
            record = await d.addTimeout(self._deadline, self._clock)
        except (BackendUnavailable, TimeoutError):
            status = REJECTED if (known or {}).get("enabled") is False else ACCEPTED
            self.log.warn(
                "BootNotification of {chargePointId} answered {status} without the backend; registration queued",
                chargePointId=charge_point_id,
                status=status,
            )
            writes.append(self._outbox.append(charge_point_id, ENSURE_CHARGER, body))
        except (BackendRejected, NotFound) as error:
            status = REJECTED
            self.log.warn("backend refused to register {chargePointId}: {error}", chargePointId=charge_point_id,
                          error=str(error))
        else:
            record = record if isinstance(record, dict) else {}
            status = REJECTED if record.get("enabled") is False else ACCEPTED
        writes.append(self._ledger.remember_charger(charge_point_id, record, status == ACCEPTED))
        await durable(*writes)
        answer["status"] = status
        self.log.info(
            "{chargePointId} booted on instance {instance}: {vendor} {model}, firmware {firmwareVersion}: {status}",
            chargePointId=charge_point_id,
            instance=self._instance,
            vendor=body.get("vendor"),
            model=body.get("model"),
            firmwareVersion=body.get("firmwareVersion", "unknown"),
            status=status,
        )
        return answer

    # -- status and presence ---------------------------------------------------

    def status(
        self, charge_point_id: str, payload: dict, now: datetime, extra: dict | None = None, version: str | None = None
    ) -> Deferred[None]:
        """
        @param extra: fields a protocol version adds to the status body and
            the C{charger.statusUpdate} data, before C{connectorId} (2.0.1's
            C{evseId}).
        @param version: the charger's C{ocppVersion}, added to the body.
        """
        body: dict[str, Any] = dict(extra) if extra else {}
        body.update({
            "connectorId": payload["connectorId"],
            "status": payload["status"],
            "errorCode": payload["errorCode"],
        })
        for name in ("info", "vendorErrorCode"):
            if payload.get(name) is not None:
                body[name] = payload[name]
        body["timestamp"] = timestamp_z(payload.get("timestamp"), now)
        if version is not None:
            body["ocppVersion"] = version
        data: dict[str, Any] = dict(extra) if extra else {}
        data.update({
            "connectorId": body["connectorId"],
            "status": body["status"],
            "errorCode": body["errorCode"],
        })
        if "info" in body:
            data["info"] = body["info"]
        data["online"] = True
        return durable(
            self._outbox.append(charge_point_id, UPDATE_STATUS, {"deviceId": charge_point_id, "body": body}),
            self._event(CHARGER_STATUS_UPDATE, charge_point_id, data),
        )

    def connected(self, charge_point_id: str, now: datetime) -> Deferred[None]:
        return self._event(CHARGER_STATUS_UPDATE, charge_point_id, {"status": "Connected", "online": True})

    def disconnected(self, charge_point_id: str, now: datetime) -> Deferred[None]:
        return self._event(CHARGER_STATUS_UPDATE, charge_point_id, {"status": "Disconnected", "online": False})

    def seen(self, charge_point_id: str, now: datetime) -> None:
        if not self.is_accepted(charge_point_id):
            # Not registered yet (this is its BootNotification): the backend
            # would answer 404; the next message after the boot counts.
            return
        at = self._clock.seconds()
        last = self._last_seen.get(charge_point_id)
        if last is not None and at - last < self._last_seen_every:
            return
        self._last_seen[charge_point_id] = at
        stamp = iso_z(now)
        d = durable(
            self._outbox.append(
                charge_point_id, UPDATE_LAST_SEEN, {"deviceId": charge_point_id, "body": {"lastSeen": stamp}}
            ),
            self._event(CHARGER_LAST_SEEN, charge_point_id, {"lastSeen": stamp}),
        )
        d.addErrback(self._seen_failed, charge_point_id, at)

    def _seen_failed(self, failure: Any, charge_point_id: str, at: float) -> None:
        if self._last_seen.get(charge_point_id) == at:
            del self._last_seen[charge_point_id]  # the next frame tries again
        if failure.check(StorageFull):
            # DATA_DIR refuses writes: the outbox says so once, and /ready.
            self.log.debug("last-seen of {chargePointId} not recorded: disk full", chargePointId=charge_point_id)
            return
        self.log.failure("recording last-seen of {chargePointId} failed", failure, chargePointId=charge_point_id)

