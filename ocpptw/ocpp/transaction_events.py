# -*- test-case-name: tests.ocpp.test_transaction_events -*-
"""
OCPP 2.0.1 TransactionEvent onto the version-neutral session model
(docs/contract.md section 7).

  - The charging station owns the transactionId (a string); the ledger keys
    the transaction by it.
  - The backend session starts at the first event of the transaction that
    carries an C{idToken} (one of type C{NoAuthorization} counts as none),
    through L{SessionService.begin}.  Its C{meterStart} is the first
    energy register value received for that transaction: a sampled value of
    measurand C{Energy.Active.Import.Register} (or of no measurand) without
    a phase, the one of context C{Transaction.Begin} when an event carries
    several; in Wh; 0 when none came.  A transaction that never carries an
    idToken starts no backend session.
  - C{eventType: Ended} stops it through L{SessionService.stop}:
    C{meterStop} is the Ended event's register (the one of context
    C{Transaction.End} when it has several) or the last one seen; the
    reason is C{transactionInfo.stoppedReason} as sent, or C{"Local"}.  An
    Ended event that carries the first idToken starts and then stops it.
  - Meter values of every event go out as C{charging.meterValues} with the
    station's transactionId and C{evseId}.
  - The answer carries C{idTokenInfo} when the event carries an idToken, and
    the Ended answer of a billed session C{totalCost} (a JSON number with two
    decimals; C{0.0} when free), left out when the price is not known.
  - A repeated event (same transactionId and C{seqNo}) gets the first
    answer and causes nothing again, across a restart too.

Per transaction, the progress (the first and last register, the EVSE and
connector, the idTokenInfo, and the answers of its last L{MAX_SEQ}
seqNos) is made durable in the ledger (C{ledger_tx_progress}, bounded per
charger and pruned with the transaction's end) before the event is
answered, so that after a restart a repeat is still recognised and
C{meterStart} still comes from the earliest register.  Memory holds the
open transactions' progress as a cache (at most L{MAX_OPEN}, least
recently used out first); a transaction not in memory is read from disk.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ocpptw.interfaces import ISessionService
from ocpptw.ocpp.model_v201 import (
    NO_AUTHORIZATION,
    VERSION,
    id_token_info,
    sampled_values,
)

#: Answers remembered per transaction, by seqNo (the newest ones).  A
#: charger repeats the event it got no answer for, so the last few suffice;
#: each is written with every event, so few keep that write small.
MAX_SEQ = 16

#: Transactions whose progress is cached in memory.
MAX_OPEN = 20000


class _Open:
    """
    The progress of one transaction: what it takes to answer its next
    event or a repeat, as L{to_json} keeps it on disk.
    """

    __slots__ = ("answers", "connector_id", "evse_id", "first", "info", "last", "new")

    def __init__(self) -> None:
        self.evse_id: int | None = None
        self.connector_id: int | None = None
        self.first: int | None = None
        self.last: int | None = None
        self.info: dict | None = None
        self.answers: OrderedDict[int, dict] = OrderedDict()
        #: not on disk yet
        self.new = True

    def to_json(self) -> dict:
        return {
            "evseId": self.evse_id,
            "connectorId": self.connector_id,
            "first": self.first,
            "last": self.last,
            "info": self.info,
            # most answers are empty: only the others are spelled out
            "seen": list(self.answers),
            "answered": [[seq, answer] for seq, answer in self.answers.items() if answer],
        }

    @classmethod
    def from_json(cls, saved: dict) -> _Open:
        state = cls()
        state.evse_id = saved.get("evseId")
        state.connector_id = saved.get("connectorId")
        state.first = saved.get("first")
        state.last = saved.get("last")
        state.info = saved.get("info")
        answered = {int(seq): answer for seq, answer in saved.get("answered") or []}
        state.answers = OrderedDict((int(seq), dict(answered.get(int(seq)) or {})) for seq in saved.get("seen") or [])
        state.new = False
        return state

    def answered(self, seq: int, answer: dict) -> None:
        self.answers[seq] = answer
        self.answers.move_to_end(seq)
        while len(self.answers) > MAX_SEQ:
            self.answers.popitem(last=False)


def _pick(found: list[tuple[int, str | None]], context: str, last: bool) -> int | None:
    if not found:
        return None
    for value, sample_context in found:
        if sample_context == context:
            return value
    return found[-1][0] if last else found[0][0]


def total_cost(cost: Decimal) -> float:
    """
    A session's cost as 2.0.1's C{totalCost}: a JSON number, two decimals.
    """
    return float(cost.quantize(Decimal("0.01")))


class TransactionEvents:
    """
    @param sessions: the L{ocpptw.services.sessions.SessionService}.
    @param clock: unused but for symmetry with the routers (answers carry
        no time).
    """

    def __init__(self, sessions: ISessionService, clock: IReactorTime) -> None:
        self._sessions = sessions
        self._clock = clock
        self._open: OrderedDict[tuple[str, str], _Open] = OrderedDict()

    def event(self, cp: str, payload: dict, now: Any) -> Deferred[dict]:
        info = payload["transactionInfo"]
        state = self._open.get((cp, info["transactionId"]))
        if state is not None:
            known = state.answers.get(payload["seqNo"])
            if known is not None:
                return succeed(dict(known))
            if payload["eventType"] == "Updated" and (state.info is not None or not _carries_token(payload)):
                # most events: a transaction in memory that this event
                # neither starts nor ends, without a coroutine
                return self._updated(cp, payload, state)
        return Deferred.fromCoroutine(self._event(cp, payload, now, state))

    def _updated(self, cp: str, payload: dict, state: _Open) -> Deferred[dict]:
        transaction_id = payload["transactionInfo"]["transactionId"]
        self._open.move_to_end((cp, transaction_id))
        published = self._meter(cp, transaction_id, payload, state)
        answer: dict[str, Any] = {}
        if _carries_token(payload):
            answer["idTokenInfo"] = id_token_info(state.info)  # type: ignore[arg-type]  # checked by event()
        return self._record(cp, transaction_id, payload["seqNo"], state, answer, False, published)

    def _meter(self, cp: str, transaction_id: str, payload: dict, state: _Open) -> Deferred[None] | None:
        """
        Take the event's EVSE and energy registers into C{state}; publish
        its meter values.
        """
        evse = payload.get("evse")
        if evse:
            if evse.get("id") is not None:
                state.evse_id = evse["id"]
            if evse.get("connectorId") is not None:
                state.connector_id = evse["connectorId"]
        meter_values = payload.get("meterValue")
        if not meter_values:
            return None
        samples = sampled_values(meter_values)
        found = self._sessions.energy_registers(samples)
        if found:
            if state.first is None:
                state.first = _pick(found, "Transaction.Begin", last=False)
            state.last = _pick(found, "Transaction.End", last=True)
        extra = {"evseId": state.evse_id} if state.evse_id is not None else None
        return self._sessions.meter_samples(cp, state.connector_id, transaction_id, samples, extra=extra)

    def _record(
        self, cp: str, transaction_id: str, seq: int, state: _Open, answer: dict, ended: bool, published: Deferred[None] | None
    ) -> Deferred[dict]:
        """
        Remember C{answer} for C{seq} and make the progress durable; fire
        with (a copy of) C{answer} once it and the event's meter values
        (C{published}) are.  If either fails, the charger's retry is handled
        as new.
        """
        state.answered(seq, answer)
        new, state.new = state.new, False

        def undo(failure: Failure) -> Failure:
            # not durable: the charger's retry must be handled as new
            state.answers.pop(seq, None)
            state.new = state.new or new
            return failure

        try:
            recorded = self._sessions.record_progress(cp, transaction_id, state.to_json(), ended, new)
        except BaseException:
            return fail().addErrback(undo)
        if published is None:
            both = recorded
        else:
            # An Updated event's meter values and its progress row are
            # queued in the same turn: one batch of the database thread.
            def not_published(failure: Failure) -> Failure:
                recorded.addErrback(lambda _: None)  # the first failure is the one reported
                return failure

            both = published.addCallbacks(lambda _: recorded, not_published)

        def done(_: object) -> dict:
            if ended:
                # its repeats are answered from disk
                self._open.pop((cp, transaction_id), None)
            return dict(answer)

        return both.addCallbacks(done, undo)

    async def _state(self, cp: str, transaction_id: str) -> _Open:
        state = self._open.get((cp, transaction_id))
        if state is None:
            saved = await self._sessions.progress(cp, transaction_id)
            # while the read ran, the transaction may have come into memory
            state = self._open.get((cp, transaction_id))
            if state is None:
                state = _Open() if saved is None else _Open.from_json(saved)
                self._open[(cp, transaction_id)] = state
        self._open.move_to_end((cp, transaction_id))
        while len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)
        return state

    async def _event(self, cp: str, payload: dict, now: Any, state: _Open | None) -> dict:
        info = payload["transactionInfo"]
        transaction_id = info["transactionId"]
        if state is None:
            state = await self._state(cp, transaction_id)
        else:
            self._open.move_to_end((cp, transaction_id))
        known = state.answers.get(payload["seqNo"])
        if known is not None:
            return dict(known)  # a repeat of an event answered before a restart
        published = self._meter(cp, transaction_id, payload, state)
        answer: dict[str, Any] = {}
        token = payload.get("idToken")
        starts = _carries_token(payload) and state.info is None
        ended = payload["eventType"] == "Ended"
        if published is not None and (starts or ended):
            # what this event starts or stops comes after its meter values
            await published
            published = None
        if token is not None and token.get("type") != NO_AUTHORIZATION:
            if state.info is None:
                tx = await self._sessions.begin(
                    cp,
                    {
                        "transactionId": transaction_id,
                        "evseId": state.evse_id,
                        "connectorId": state.connector_id if state.connector_id is not None else 1,
                        "idTag": token["idToken"],
                        "meterStart": state.first or 0,
                        "timestamp": payload["timestamp"],
                        "ocppVersion": VERSION,
                    },
                    now,
                )
                state.info = dict(tx.id_tag_info)
            answer["idTokenInfo"] = id_token_info(state.info)
        if ended:
            cost = await self._end(cp, payload, state, now)
            if cost is not None:
                answer["totalCost"] = total_cost(cost)
        return await self._record(cp, transaction_id, payload["seqNo"], state, answer, ended, published)

    async def _end(self, cp: str, payload: dict, state: _Open, now: Any) -> Decimal | None:
        info = payload["transactionInfo"]
        transaction_id = info["transactionId"]
        tx = await self._sessions.transaction(cp, transaction_id)
        if tx is None:
            return None  # never carried an idToken: no backend session
        meter_stop = state.last if state.last is not None else (tx.meter_start or 0)
        stop = {
            "transactionId": transaction_id,
            "meterStop": meter_stop,
            "timestamp": payload["timestamp"],
            "reason": info.get("stoppedReason") or "Local",
            "ocppVersion": VERSION,
        }
        if state.evse_id is not None:
            stop["evseId"] = state.evse_id
        await self._sessions.stop(cp, stop, now)
        if tx.rejected or tx.price is None:
            return None
        return self._sessions.stop_cost(tx, tx.meter_stop if tx.meter_stop is not None else meter_stop)


def _carries_token(payload: dict) -> bool:
    """
    Whether the event carries an idToken that counts (one of type
    C{NoAuthorization} does not).
    """
    token = payload.get("idToken")
    return token is not None and token.get("type") != NO_AUTHORIZATION
