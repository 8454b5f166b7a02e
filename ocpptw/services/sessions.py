# -*- test-case-name: tests.services.test_sessions -*-
"""
Charging sessions: Authorize, StartTransaction, MeterValues and
StopTransaction, with docs/contract.md section 5's guarantees.

  - A transaction message is answered once what it causes is durable: the
    ledger write, the outbox entries and the events (broker-confirmed or in
    the outbox).  It is never answered with a CALLERROR because the backend
    or the broker is slow or down.
  - StartTransaction waits for the backend at most C{start_deadline}
    (C{BACKEND_START_DEADLINE}).  Past it, or when the backend is
    unreachable, the gateway assigns the transactionId itself
    (L{ocpptw.store.ledger}), answers C{Accepted} with idTagInfo
    C{Accepted} (the charger has normally authorized the idTag already;
    refusing would strand drivers during an outage), publishes
    C{charging.started} with C{sessionId: null}, and writes the start with
    its C{transactionId} to the outbox for reconciliation.  A backend that
    answers late is not listened to: the reconciling start carries the id
    the charger got.
  - A backend that refuses the start (4xx) gets the charger an idTagInfo
    C{Invalid} with a gateway-assigned id; nothing is reconciled or stopped
    at the backend for it.
  - A StartTransaction sent again (same connector, idTag, timestamp and
    meterStart) gets the same transactionId, also while the first is still
    waiting for the backend, and also once the ledger keeps it only on disk
    (a start the ledger's memory does not hold is looked up on disk before
    the backend is asked; identical starts arriving meanwhile wait for it).
  - StopTransaction is always answered: for C{-1}, an unknown id and a
    repeat too; a repeat (found in the ledger's memory or on disk) stops
    and refunds nothing twice; identical stops are handled one at a time.
    The stop is written to the outbox (C{backend.stop_session}), which
    resolves the session, bills it and posts the refund
    (L{ocpptw.services.delivery}).
    C{charging.stopped} is published for transactions the gateway started;
    for an unknown id the outbox still finds and stops the backend's
    session through C{active-sessions}.
  - Authorize asks the backend (at most C{start_deadline}); while it is
    unreachable, the last answer for the idTag within C{auth_cache_ttl}
    is reused (an C{Accepted} whose C{expiryDate} has passed becomes
    C{Expired}), else C{Invalid}.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocpptw.clock import iso_z, parse_iso
from ocpptw.interfaces import (
    BackendRejected,
    BackendUnavailable,
    IBackend,
    IEventPublisher,
    ILedger,
    IOutbox,
    ISessionService,
    NotFound,
    StorageFull,
)
from ocpptw.services import meter
from ocpptw.services.billing import money_str
from ocpptw.services.chargers import durable, timestamp_z
from ocpptw.services.delivery import START_SESSION, STOP_SESSION, stop_figures
from ocpptw.services.events import (
    CHARGING_METER_VALUES,
    CHARGING_STARTED,
    CHARGING_STOPPED,
    make_event,
)
from ocpptw.services.model import Transaction

ACCEPTED = "Accepted"
_STATUSES = frozenset(("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"))
_UNREACHABLE = (BackendUnavailable, TimeoutError)
_REFUSED = (BackendRejected, NotFound)


def id_tag_info(raw: Any) -> dict:
    """
    The backend's C{idTagInfo} cut to what OCPP 1.6 allows: a known
    C{status} (else C{Invalid}), C{expiryDate} in ISO Z, C{parentIdTag}.
    """
    if not isinstance(raw, dict):
        return {"status": "Invalid"}
    status = raw.get("status")
    info: dict[str, Any] = {"status": status if status in _STATUSES else "Invalid"}
    expiry = raw.get("expiryDate")
    if isinstance(expiry, str):
        try:
            info["expiryDate"] = iso_z(parse_iso(expiry))
        except ValueError:
            pass
    parent = raw.get("parentIdTag")
    if isinstance(parent, str) and 0 < len(parent) <= 20:
        info["parentIdTag"] = parent
    return info


@implementer(ISessionService)
class SessionService:
    """
    @param start_deadline: seconds StartTransaction and Authorize wait for
        the backend.
    @param auth_cache_ttl: seconds a cached Authorize answer may be reused.
    @param instance_slot: this instance's slot in gateway-assigned ids.
    @param instance: this instance's name, in events.
    """

    log = Logger()

    def __init__(
        self,
        backend: IBackend,
        outbox: IOutbox,
        publisher: IEventPublisher,
        ledger: ILedger,
        clock: IReactorTime,
        start_deadline: float = 5.0,
        auth_cache_ttl: float = 3600.0,
        instance_slot: int = 0,
        instance: str = "ocpptw",
    ) -> None:
        self._backend = backend
        self._outbox = outbox
        self._publisher = publisher
        self._ledger = ledger
        self._clock = clock
        self._deadline = start_deadline
        self._ttl = auth_cache_ttl
        self._slot = instance_slot
        self._instance = instance
        self._starting: dict[tuple, list[Deferred]] = {}
        self._stopping: dict[tuple[str, int], Deferred] = {}

    def _event(self, type: str, charge_point_id: str, data: dict) -> Deferred[None]:
        return self._publisher.publish(make_event(type, charge_point_id, data, self._clock, self._instance))

    def _ask(self, d: Deferred) -> Deferred:
        return d.addTimeout(self._deadline, self._clock)

    # -- Authorize -----------------------------------------------------------

    def authorize(self, charge_point_id: str, id_tag: str, now: datetime, extra: dict | None = None) -> Deferred[dict]:
        """
        @param extra: fields a protocol version adds to the backend's
            authorize body (2.0.1: C{idTokenType}, C{ocppVersion}).
        """
        return Deferred.fromCoroutine(self._authorize(charge_point_id, id_tag, now, extra))

    async def _authorize(self, charge_point_id: str, id_tag: str, now: datetime, extra: dict | None = None) -> dict:
        try:
            asked = (
                self._backend.authorize(charge_point_id, id_tag, extra=extra)
                if extra
                else self._backend.authorize(charge_point_id, id_tag)
            )
            answer = await self._ask(asked)
        except _UNREACHABLE:
            info = self.cached_tag(id_tag, now)
            self.log.warn(
                "Authorize from {chargePointId} answered {status} from the cache: backend unreachable",
                chargePointId=charge_point_id,
                status=info["status"],
            )
            return info
        except _REFUSED as error:
            self.log.warn("backend refused Authorize from {chargePointId}: {error}", chargePointId=charge_point_id,
                          error=str(error))
            return {"status": "Invalid"}
        info = id_tag_info((answer or {}).get("idTagInfo"))
        self._ledger.auth_put(id_tag, info).addErrback(
            lambda f: None if f.check(StorageFull) else self.log.failure("caching an Authorize answer failed", f)
        )
        return info

    def cached_tag(self, id_tag: str, now: datetime) -> dict:
        """
        The cached idTagInfo for C{id_tag} when fresh, else C{Invalid}.
        """
        entry = self._ledger.auth_get(id_tag)
        if entry is None or self._clock.seconds() - entry[1] > self._ttl:
            return {"status": "Invalid"}
        info = dict(entry[0])
        expiry = info.get("expiryDate")
        if info["status"] == ACCEPTED and expiry is not None and parse_iso(expiry) < now:
            info["status"] = "Expired"
        return info

    # -- StartTransaction --------------------------------------------------------

    def start(self, charge_point_id: str, payload: dict, now: datetime) -> Deferred[dict]:
        key = (charge_point_id, payload["connectorId"], payload["idTag"], payload["timestamp"], payload["meterStart"])
        waiting = self._starting.get(key)
        if waiting is not None:
            # The first is still being looked up or made durable.
            d: Deferred[dict] = Deferred()
            waiting.append(d)
            return d
        known = self._ledger.cached_start(key)
        if known is not None:
            return succeed(self._repeated_start(known))
        self._starting[key] = []
        return Deferred.fromCoroutine(self._start(charge_point_id, payload, key)).addBoth(self._started, key)

    def _repeated_start(self, known: Transaction) -> dict:
        self.log.info(
            "StartTransaction from {chargePointId} repeated: transaction {transactionId} again",
            chargePointId=known.cp,
            transactionId=known.transaction_id,
        )
        return _start_answer(known)

    def _started(self, result: Any, key: tuple) -> Any:
        for waiter in self._starting.pop(key, []):
            if isinstance(result, dict):
                waiter.callback(dict(result))
            else:
                waiter.errback(result)
        return result

    async def _start(self, charge_point_id: str, payload: dict, key: tuple) -> dict:
        # Not in memory; it may still be on disk.  Identical starts wait in
        # _starting meanwhile.
        known = await self._ledger.lookup_start(key)
        if known is not None:
            return self._repeated_start(known)
        tx = Transaction(
            cp=charge_point_id,
            transaction_id=0,
            connector_id=payload["connectorId"],
            id_tag=payload["idTag"],
            meter_start=payload["meterStart"],
            timestamp=payload["timestamp"],
            reservation_id=payload.get("reservationId"),
            ocpp_version=payload.get("ocppVersion"),
        )
        body = {k: v for k, v in tx.start_body().items() if k != "transactionId"}
        try:
            answer = await self._ask(self._backend.start_session(body))
            tx.transaction_id = int(answer["transactionId"])
        except _UNREACHABLE:
            return await self._start_alone(tx)
        except _REFUSED as error:
            return await self._start_refused(tx, error)
        except (KeyError, TypeError, ValueError):
            self.log.error(
                "backend's answer to StartTransaction from {chargePointId} has no usable transactionId",
                chargePointId=charge_point_id,
            )
            return await self._start_alone(tx)
        tx.id_tag_info = id_tag_info(answer.get("idTagInfo"))
        tx.apply_session(answer)
        writes = [self._ledger.record_start(tx)]
        if tx.id_tag_info["status"] == ACCEPTED:
            writes.append(self._started_event(tx))
        await self._durable_start(tx, *writes)
        return _start_answer(tx)

    async def _start_alone(self, tx: Transaction) -> dict:
        tx.transaction_id = self._ledger.assign_transaction_id(self._slot)
        tx.assigned = True
        tx.id_tag_info = {"status": ACCEPTED}
        self.log.warn(
            "StartTransaction from {chargePointId} answered without the backend: transaction {transactionId}, "
            "reconciled later",
            chargePointId=tx.cp,
            transactionId=tx.transaction_id,
        )
        await self._durable_start(
            tx,
            self._ledger.record_start(tx, self._slot),
            self._outbox.append(tx.cp, START_SESSION, tx.start_body()),
            self._started_event(tx),
        )
        return _start_answer(tx)

    async def _durable_start(self, tx: Transaction, *writes: Deferred) -> None:
        try:
            await durable(*writes)
        except BaseException:
            # Not durable: a repeat of this StartTransaction must not be
            # answered from memory as if it were.
            self._ledger.forget(tx)
            raise

    async def _start_refused(self, tx: Transaction, error: Exception) -> dict:
        tx.transaction_id = self._ledger.assign_transaction_id(self._slot)
        tx.assigned = tx.rejected = True
        tx.id_tag_info = {"status": "Invalid"}
        self.log.warn(
            "backend refused StartTransaction from {chargePointId} ({error}): answered Invalid as {transactionId}",
            chargePointId=tx.cp,
            error=str(error),
            transactionId=tx.transaction_id,
        )
        await self._durable_start(tx, self._ledger.record_start(tx, self._slot))
        return _start_answer(tx)

    def _started_event(self, tx: Transaction) -> Deferred[None]:
        data = {
            "sessionId": tx.session_id,
            "transactionId": tx.transaction_id,
            "connectorId": tx.connector_id,
            "idTag": tx.id_tag,
            "meterStart": tx.meter_start,
        }
        if tx.evse_id is not None:
            data["evseId"] = tx.evse_id
        return self._event(CHARGING_STARTED, tx.cp, data)

    # -- transactions whose id the charger owns (OCPP 2.0.1) ------------------

    def energy_registers(self, meter_values: list) -> list[tuple[int, str | None]]:
        """
        The energy register readings (Wh, context) of C{meter_values}
        (L{ocpptw.services.meter.energy_registers}).
        """
        return meter.energy_registers(meter_values)

    def stop_cost(self, tx: Transaction, meter_stop: int) -> Any:
        """
        What stopping C{tx} at C{meter_stop} costs (a L{Decimal}), or
        C{None} without a tariff (L{ocpptw.services.delivery.stop_figures}).
        """
        return stop_figures(tx, meter_stop)[1]

    def transaction(self, charge_point_id: str, transaction_id: Any) -> Deferred[Transaction | None]:
        """
        The transaction as the ledger knows it (from memory or disk), or
        C{None}.
        """
        return self._ledger.lookup(charge_point_id, transaction_id)

    def progress(self, charge_point_id: str, transaction_id: str) -> Deferred[dict | None]:
        """
        What the ledger keeps of a 2.0.1 transaction's TransactionEvents
        (L{ocpptw.ocpp.transaction_events}), or C{None}.
        """
        return self._ledger.progress(charge_point_id, transaction_id)

    def record_progress(
        self, charge_point_id: str, transaction_id: str, progress: dict, ended: bool, new: bool
    ) -> Deferred[None]:
        """
        Make C{progress} durable in the ledger (bounded there).
        """
        return self._ledger.record_progress(charge_point_id, transaction_id, progress, ended, new)

    def begin(self, charge_point_id: str, fields: dict, now: datetime) -> Deferred[Transaction]:
        """
        Start the backend session of a transaction whose id the charger
        chose (a string): C{fields} holds C{transactionId}, C{connectorId},
        C{idTag}, C{meterStart}, C{timestamp} and optionally C{evseId} and
        C{ocppVersion}, which go into the start body.  A transaction the
        ledger knows already is not started again.  Waits for the backend
        at most C{start_deadline}; past it, or while it is unreachable, the
        start goes to the outbox (the session is reconciled later) and the
        idTag counts as C{Accepted}; a backend that refuses it (4xx) makes
        it C{Invalid}, with nothing to stop later.  Fires with the
        transaction once what it causes is durable.
        """
        return Deferred.fromCoroutine(self._begin(charge_point_id, fields))

    async def _begin(self, charge_point_id: str, fields: dict) -> Transaction:
        transaction_id = fields["transactionId"]
        known = await self._ledger.lookup(charge_point_id, transaction_id)
        if known is not None:
            return known
        tx = Transaction(
            cp=charge_point_id,
            transaction_id=transaction_id,
            connector_id=fields["connectorId"],
            id_tag=fields["idTag"],
            meter_start=fields["meterStart"],
            timestamp=fields["timestamp"],
            evse_id=fields.get("evseId"),
            ocpp_version=fields.get("ocppVersion"),
        )
        body = tx.start_body()
        try:
            answer = await self._ask(self._backend.start_session(body))
        except _UNREACHABLE:
            tx.assigned = True
            tx.id_tag_info = {"status": ACCEPTED}
            self.log.warn(
                "transaction {transactionId} of {chargePointId} started without the backend; reconciled later",
                transactionId=transaction_id,
                chargePointId=charge_point_id,
            )
            await self._durable_start(
                tx,
                self._ledger.record_start(tx),
                self._outbox.append(charge_point_id, START_SESSION, body),
                self._started_event(tx),
            )
            return tx
        except _REFUSED as error:
            tx.rejected = True
            tx.id_tag_info = {"status": "Invalid"}
            self.log.warn(
                "backend refused transaction {transactionId} of {chargePointId} ({error})",
                transactionId=transaction_id,
                chargePointId=charge_point_id,
                error=str(error),
            )
            await self._durable_start(tx, self._ledger.record_start(tx))
            return tx
        tx.id_tag_info = id_tag_info((answer or {}).get("idTagInfo"))
        tx.apply_session(answer or {})
        if tx.id_tag_info["status"] != ACCEPTED and tx.session_id is None:
            tx.rejected = True
        writes = [self._ledger.record_start(tx)]
        if tx.id_tag_info["status"] == ACCEPTED:
            writes.append(self._started_event(tx))
        await self._durable_start(tx, *writes)
        return tx

    # -- MeterValues -----------------------------------------------------------

    def meter_values(self, charge_point_id: str, payload: dict, now: datetime) -> Deferred[None]:
        return self._meter_event(
            charge_point_id, payload["connectorId"], payload.get("transactionId"), payload["meterValue"]
        )

    def meter_samples(
        self,
        charge_point_id: str,
        connector_id: Any,
        transaction_id: Any,
        meter_values: list,
        extra: dict | None = None,
    ) -> Deferred[None]:
        """
        Publish C{charging.meterValues} for C{meter_values} (the 1.6 shape
        of C{meterValue}); C{connector_id} may be C{None} (left out), and
        C{extra} (2.0.1's C{evseId}) is added to the data.
        """
        return self._meter_event(charge_point_id, connector_id, transaction_id, meter_values, extra)

    def _meter_event(
        self,
        charge_point_id: str,
        connector_id: Any,
        transaction_id: Any,
        meter_values: list,
        extra: dict | None = None,
    ) -> Deferred[None]:
        data: dict[str, Any] = {}
        if transaction_id is not None:
            data["transactionId"] = transaction_id
        if extra:
            data.update(extra)
        if connector_id is not None:
            data["connectorId"] = connector_id
        data["samples"] = meter.normalise(meter_values, charge_point_id)
        return self._event(CHARGING_METER_VALUES, charge_point_id, data)

    # -- StopTransaction ---------------------------------------------------------

    def stop(self, charge_point_id: str, payload: dict, now: datetime) -> Deferred[dict]:
        return Deferred.fromCoroutine(self._stop(charge_point_id, payload, now))

    async def _stop(self, charge_point_id: str, payload: dict, now: datetime) -> dict:
        key = (charge_point_id, payload["transactionId"])
        while (earlier := self._stopping.get(key)) is not None:
            # The same stop is being looked up or made durable: go on once
            # it is (then it is a repeat, unless it failed).
            waiter: Deferred[None] = Deferred()
            def release(result: object, waiter: Deferred[None] = waiter) -> object:
                waiter.callback(None)
                return result

            earlier.addBoth(release)
            await waiter
        done: Deferred[None] = Deferred()
        self._stopping[key] = done
        try:
            return await self._stop_once(charge_point_id, payload, now)
        finally:
            del self._stopping[key]
            done.callback(None)

    async def _stop_once(self, charge_point_id: str, payload: dict, now: datetime) -> dict:
        transaction_id = payload["transactionId"]
        id_tag = payload.get("idTag")
        tx = None if transaction_id == -1 else await self._ledger.lookup(charge_point_id, transaction_id)
        answer: dict[str, Any] = {}
        if id_tag is not None:
            answer["idTagInfo"] = self._stop_tag(id_tag, tx, now)
        if tx is not None and tx.stopped:
            self.log.info(
                "StopTransaction {transactionId} from {chargePointId} repeated: already stopped",
                transactionId=transaction_id,
                chargePointId=charge_point_id,
            )
            return answer
        await self._record_stop(charge_point_id, payload, tx, now)
        return answer

    async def _record_stop(self, charge_point_id: str, payload: dict, tx: Transaction | None, now: datetime) -> None:
        transaction_id, meter_stop = payload["transactionId"], payload["meterStop"]
        writes: list[Deferred[Any]] = []
        data = payload.get("transactionData")
        connector_id = tx.connector_id if tx is not None and tx.connector_id is not None else 0
        if data:
            writes.append(self._meter_event(charge_point_id, connector_id, transaction_id, data))
        if transaction_id == -1:
            self.log.info(
                "StopTransaction -1 from {chargePointId}: a transaction the charger never got an id for",
                chargePointId=charge_point_id,
            )
            await durable(*writes)
            return
        if tx is None:
            self.log.warn(
                "StopTransaction for unknown transaction {transactionId} from {chargePointId}; "
                "looking for it at the backend",
                transactionId=transaction_id,
                chargePointId=charge_point_id,
            )
        energy, cost, refund, anomaly = stop_figures(tx, meter_stop)
        if anomaly:
            self.log.warn(
                "meter of {chargePointId} ran backwards in transaction {transactionId}: "
                "meterStart {meterStart}, meterStop {meterStop}; billed as 0 Wh",
                chargePointId=charge_point_id,
                transactionId=transaction_id,
                meterStart=tx.meter_start if tx is not None else None,
                meterStop=meter_stop,
            )
        stopped_at = timestamp_z(payload.get("timestamp"), now)
        reason = payload.get("reason") or "Local"
        known = tx is not None
        # Only what the backend has (or may have) a session for is stopped
        # there; charging.stopped follows charging.started.
        sessionless = tx is not None and (tx.rejected or (not tx.assigned and tx.session_id is None))
        started = tx is not None and not sessionless and tx.id_tag_info.get("status") == ACCEPTED
        tx, written = self._ledger.record_stop(charge_point_id, transaction_id, meter_stop, stopped_at, reason, tx)
        writes.append(written)
        if not sessionless:
            body = {
                "deviceId": charge_point_id,
                "transactionId": transaction_id,
                "meterStop": meter_stop,
                "stoppedAt": stopped_at,
                "reason": reason,
            }
            if payload.get("ocppVersion") is not None:
                body["ocppVersion"] = payload["ocppVersion"]
            writes.append(self._outbox.append(charge_point_id, STOP_SESSION, body))
        if started:
            event: dict[str, Any] = {
                "sessionId": tx.session_id,
                "transactionId": transaction_id,
                "meterStop": meter_stop,
                "energyWh": energy,
            }
            if payload.get("evseId") is not None:
                event["evseId"] = payload["evseId"]
            if cost is not None:
                event["cost"] = money_str(cost)
            if refund is not None:
                event["refund"] = money_str(refund)
            event["reason"] = reason
            writes.append(self._event(CHARGING_STOPPED, charge_point_id, event))
        try:
            await durable(*writes)
        except BaseException:
            # Not durable: the charger's retry must stop it for real.
            if known:
                self._ledger.reopen(tx)
            else:
                self._ledger.forget(tx)
            raise

    def _stop_tag(self, id_tag: str, tx: Transaction | None, now: datetime) -> dict:
        entry = self._ledger.auth_get(id_tag)
        if entry is not None and self._clock.seconds() - entry[1] <= self._ttl:
            return self.cached_tag(id_tag, now)
        if tx is not None and tx.id_tag == id_tag and tx.id_tag_info.get("status"):
            return dict(tx.id_tag_info)
        return {"status": ACCEPTED}


def _start_answer(tx: Transaction) -> dict:
    return {"transactionId": tx.transaction_id, "idTagInfo": dict(tx.id_tag_info)}
