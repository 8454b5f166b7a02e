# -*- test-case-name: tests.services.test_delivery -*-
"""
How each outbox operation reaches the backend.  The services write these
entries (durably, before a charger gets its answer); the outbox delivers
them in order per charger, retries failures with backoff and parks what a
backend refuses (4xx) or what keeps failing past C{OUTBOX_MAX_AGE}.

Operation names and their entry bodies (always plain JSON; money as
decimal strings):

  - L{UPDATE_STATUS}: C{{deviceId, body}}, C{body} as for C{PATCH
    /api/charger/{deviceId}/status}.
  - L{UPDATE_LAST_SEEN}: C{{deviceId, body: {lastSeen}}}.
  - L{ENSURE_CHARGER}: the C{POST /api/charger/ensure} body; the answer
    refreshes the ledger's charger record.
  - L{START_SESSION}: the C{POST /api/charging-session/start} body with
    the C{transactionId} the gateway assigned; the answer (sessionId,
    userId, prepaidAmount, pricePerKwh, currency) goes into the ledger.
  - L{STOP_SESSION}: C{{deviceId, transactionId, meterStop, stoppedAt,
    reason}}.  The session is resolved at delivery time: from the ledger
    (reconciled by an earlier L{START_SESSION} of the same charger; read
    from disk when the ledger no longer holds it in memory), else
    by reconciling a gateway-assigned start now, else from the backend's
    C{active-sessions} (a transaction this gateway does not know).  Cost and
    refund are computed with L{ocpptw.services.billing}; the stop PATCH
    carries them; a refund above zero becomes a L{WALLET_REFUND} entry.
  - L{WALLET_REFUND}: C{{sessionId, userId, amount, currency}}; the
    C{idempotencyKey} is the sessionId.
  - L{STORE_MESSAGE}: C{{deviceId, body}}, C{body} as for C{POST
    /api/charger/{deviceId}/ocpp-message}.  With C{BACKEND_MESSAGE_BATCH}
    above 1 (and a backend with C{store_messages}), consecutive entries of
    one charger go out together, up to that many per request (C{POST
    /api/charger/{deviceId}/ocpp-messages}); a lone entry still takes the
    single-message endpoint.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ocpptw.interfaces import (
    IBackend,
    IBatchedMessageLog,
    ILedger,
    IOutbox,
    IWalletService,
)
from ocpptw.services.billing import ZERO, money, money_str, refund_amount, session_cost
from ocpptw.services.model import Transaction

UPDATE_STATUS = "backend.update_status"
UPDATE_LAST_SEEN = "backend.update_last_seen"
ENSURE_CHARGER = "backend.ensure_charger"
START_SESSION = "backend.start_session"
STOP_SESSION = "backend.stop_session"
WALLET_REFUND = "wallet.refund"
STORE_MESSAGE = "backend.store_message"

#: Every operation the gateway writes to its outbox.
OPERATIONS: tuple[str, ...] = (
    UPDATE_STATUS,
    UPDATE_LAST_SEEN,
    ENSURE_CHARGER,
    START_SESSION,
    STOP_SESSION,
    WALLET_REFUND,
    STORE_MESSAGE,
)

#: Seconds a batch of messages that could still grow waits for more (from
#: its first message's append), with batching on: a CALL and its answer share
#: a request, also when the answer waited for the backend; the message log
#: at the backend is then up to this much behind.  Never delays another
#: operation: a batch followed by one goes at once.
MESSAGE_BATCH_LINGER = 1.0

log = Logger()


def stop_figures(tx: Any, meter_stop: int) -> tuple[int, Any, Any, bool]:
    """
    C{(energy_wh, cost, refund, anomaly)} of stopping C{tx} at
    C{meter_stop}; C{cost} is C{None} without a tariff, C{refund} is
    C{None} without a prepayment (or without a cost).
    """
    if tx is None or tx.meter_start is None:
        return 0, None, None, False
    energy = meter_stop - tx.meter_start
    anomaly = energy < 0
    energy = max(0, energy)
    cost = refund = None
    if tx.price is not None:
        energy, cost, anomaly = session_cost(tx.meter_start, meter_stop, tx.price)
        if tx.prepaid is not None:
            refund = refund_amount(tx.prepaid, cost)
    return energy, cost, refund, anomaly


class _Deliveries:
    def __init__(self, outbox: IOutbox, backend: IBackend, ledger: ILedger, wallet: IWalletService) -> None:
        self.outbox = outbox
        self.backend = backend
        self.ledger = ledger
        self.wallet = wallet

    def update_status(self, body: dict) -> Deferred:
        return self.backend.update_status(body["deviceId"], body["body"])

    def update_last_seen(self, body: dict) -> Deferred:
        return self.backend.update_last_seen(body["deviceId"], body["body"])

    def store_message(self, body: dict) -> Deferred:
        return self.backend.store_message(body["deviceId"], body["body"])

    def store_messages(self, bodies: list[dict]) -> Deferred:
        return IBatchedMessageLog(self.backend).store_messages([(body["deviceId"], body["body"]) for body in bodies])

    def ensure_charger(self, body: dict) -> Deferred:
        return Deferred.fromCoroutine(self._ensure_charger(body))

    async def _ensure_charger(self, body: dict) -> None:
        record = await self.backend.ensure_charger(body)
        if isinstance(record, dict):
            await self.ledger.remember_charger(body["deviceId"], record)

    def start_session(self, body: dict) -> Deferred:
        return Deferred.fromCoroutine(self._start_session(body))

    async def _start_session(self, body: dict) -> None:
        cp, transaction_id = body["deviceId"], body["transactionId"]
        answer = await self.backend.start_session(body)
        await self._reconciled(cp, transaction_id, answer)

    async def _reconciled(self, cp: str, transaction_id: int, answer: dict) -> Any:
        if answer.get("transactionId") not in (None, transaction_id):
            log.warn(
                "backend gave transaction {transactionId} of {chargePointId} the id {backendId}; "
                "the charger keeps {transactionId}",
                transactionId=transaction_id,
                chargePointId=cp,
                backendId=answer.get("transactionId"),
            )
        tx = await self.ledger.lookup(cp, transaction_id)
        if tx is None:
            log.warn(
                "transaction {transactionId} of {chargePointId} reconciled as session {sessionId} "
                "but no longer in the ledger",
                transactionId=transaction_id,
                chargePointId=cp,
                sessionId=answer.get("sessionId"),
            )
            return None
        await self.ledger.record_session(tx, answer)
        log.info(
            "transaction {transactionId} of {chargePointId} reconciled as session {sessionId}",
            transactionId=transaction_id,
            chargePointId=cp,
            sessionId=tx.session_id,
        )
        return tx

    def stop_session(self, body: dict) -> Deferred:
        return Deferred.fromCoroutine(self._stop_session(body))

    async def _resolve(self, cp: str, transaction_id: int, tx: Transaction | None) -> Any:
        if tx is not None and tx.session_id is not None:
            return tx
        if tx is not None and tx.assigned and tx.timestamp is not None:
            # The reconciling start is normally delivered first; this covers
            # a start whose outbox entry never got written (a crash between
            # the ledger write and the append).
            answer = await self.backend.start_session(tx.start_body())
            return await self._reconciled(cp, transaction_id, answer)
        for session in await self.backend.active_sessions(cp):
            if session.get("transactionId") == transaction_id and session.get("sessionId") is not None:
                if tx is not None:
                    if tx.meter_start is None and session.get("meterStart") is not None:
                        tx.meter_start = int(session["meterStart"])
                    await self.ledger.record_session(tx, session)
                    return tx
                found = Transaction(cp=cp, transaction_id=transaction_id, meter_start=session.get("meterStart"))
                found.apply_session(session)
                return found
        return None

    async def _stop_session(self, body: dict) -> None:
        cp, transaction_id = body["deviceId"], body["transactionId"]
        known = await self.ledger.lookup(cp, transaction_id)
        if known is not None and known.rejected:
            log.info(
                "transaction {transactionId} of {chargePointId} was refused by the backend; nothing to stop",
                transactionId=transaction_id,
                chargePointId=cp,
            )
            return
        tx = await self._resolve(cp, transaction_id, known)
        if tx is None:
            log.warn(
                "StopTransaction {transactionId} from {chargePointId}: the backend has no such session",
                transactionId=transaction_id,
                chargePointId=cp,
            )
            return
        meter_stop = int(body["meterStop"])
        energy, cost, refund, _ = stop_figures(tx, meter_stop)
        stop: dict[str, Any] = {
            "transactionId": transaction_id,
            "meterStop": meter_stop,
            "energyWh": energy,
            "stoppedAt": body["stoppedAt"],
            "reason": body["reason"],
        }
        if body.get("ocppVersion") is not None:
            stop["ocppVersion"] = body["ocppVersion"]
        if cost is not None:
            stop["cost"] = money_str(cost)
        if refund is not None:
            stop["refund"] = money_str(refund)
        await self.backend.stop_session(tx.session_id, stop)
        if refund is None or refund <= ZERO:
            return
        if tx.user_id is None:
            log.warn(
                "refund {amount} of session {sessionId} not posted: the backend gave no userId",
                amount=money_str(refund),
                sessionId=tx.session_id,
            )
            return
        await self.outbox.append(
            cp,
            WALLET_REFUND,
            {"sessionId": tx.session_id, "userId": tx.user_id, "amount": money_str(refund), "currency": tx.currency or ""},
        )

    def refund(self, body: dict) -> Deferred:
        return self.wallet.refund(body["sessionId"], body["userId"], money(body["amount"]), body["currency"])


def register_deliveries(outbox: IOutbox, backend: IBackend, ledger: ILedger, wallet: IWalletService, message_batch: int = 1) -> None:
    """
    Tell C{outbox} how to deliver every operation in L{OPERATIONS}.

    @param outbox: provides L{ocpptw.interfaces.IOutbox}.
    @param backend: provides L{ocpptw.interfaces.IBackend}.
    @param ledger: the L{ocpptw.interfaces.ILedger}.
    @param wallet: provides L{ocpptw.interfaces.IWalletService}.
    @param message_batch: C{BACKEND_MESSAGE_BATCH}: the most L{STORE_MESSAGE}
        entries of one charger delivered in one request; 1 (the default)
        keeps the contract's one request per message.  Without a backend
        C{store_messages} (or an outbox C{register_batch}) it has no effect.
    """
    deliveries = _Deliveries(outbox, backend, ledger, wallet)
    outbox.register(UPDATE_STATUS, deliveries.update_status)
    outbox.register(UPDATE_LAST_SEEN, deliveries.update_last_seen)
    outbox.register(ENSURE_CHARGER, deliveries.ensure_charger)
    outbox.register(START_SESSION, deliveries.start_session)
    outbox.register(STOP_SESSION, deliveries.stop_session)
    outbox.register(WALLET_REFUND, deliveries.refund)
    outbox.register(STORE_MESSAGE, deliveries.store_message)
    if message_batch > 1 and IBatchedMessageLog.providedBy(backend):
        outbox.register_batch(STORE_MESSAGE, deliveries.store_messages, message_batch, linger=MESSAGE_BATCH_LINGER)
