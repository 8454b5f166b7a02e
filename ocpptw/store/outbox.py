# -*- test-case-name: tests.store.test_outbox -*-
"""
The durable outbox: side effects written to C{gateway.sqlite} before the
charger gets its answer, then delivered in order per key (the
chargePointId), retried with exponential backoff and full jitter, and parked
as dead letters when the backend rejects them or after C{OUTBOX_MAX_AGE}.

Delivery is at least once: a crash after a delivery and before its delete
is committed delivers that entry again, so every deliverer is idempotent
(the contract's C{idempotencyKey}, event C{id}s).

Batches (L{Outbox.register_batch}): when the first entry of a key belongs
to an operation with a batch deliverer, up to C{limit} consecutive entries
of that operation and key (and about C{max_bytes} of bodies) go out in one
call, in order.  They succeed together, or fail together and are retried
together (their attempts, backoff and error shared); each one older than
C{OUTBOX_MAX_AGE} is still parked on its own.  A batch the destination
refuses (L{BackendRejected}, L{NotFound}) is not parked whole: its entries
are then delivered one by one through the single deliverer, so only the
ones refused on their own are parked.  A lone entry always goes through the
single deliverer.

Observers for metrics (optional, duck-typed, so this module needs no
Prometheus): C{observer.delivered(operation, seconds)},
C{observer.failed(operation, error)}, C{observer.parked(operation)}, each
called once per entry (also for the entries of a batch).  The same figures
are also kept as counters on the L{Outbox}.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocpptw.interfaces import BackendRejected, IOutbox, NotFound, StorageFull
from ocpptw.ocpp.jsontext import compact
from ocpptw.store.migrations import Component, Schema, run_script, tables

#: The newest layout of the outbox's tables, for a new file.
_CURRENT = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    operation TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS outbox_dead (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    operation TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    parked_at REAL NOT NULL,
    reason TEXT NOT NULL
);
"""


def _legacy(conn: sqlite3.Connection) -> int:
    """
    A file from before versions were recorded has layout 1 (the only one
    so far), completed; 0 for a new file.
    """
    if "outbox" not in tables(conn):
        return 0
    run_script(conn, _CURRENT)
    return 1


#: Tables of the outbox, for C{Database(path, reactor, schema=...)}.
SCHEMA = Schema.of(Component("outbox", _CURRENT, (), _legacy))

_INSERT = "INSERT INTO outbox (key, operation, body, created_at, attempts, next_attempt_at) VALUES (?, ?, ?, ?, 0, 0)"
_LOAD = "SELECT id, key, operation, body, created_at, attempts, next_attempt_at, last_error FROM outbox ORDER BY id"
_ERROR_TEXT = 500


@dataclass(slots=True)
class _Entry:
    id: int
    key: str
    operation: str
    body: str
    created_at: float
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    solo: bool = False  # in a batch the destination refused: delivered on its own


@dataclass(slots=True)
class _Batcher:
    deliver: Callable[[list[dict]], Any]
    limit: int
    max_bytes: int
    linger: float


#: Seconds between two early retries after a destination recovered.
RECOVERY_EVERY = 5.0

#: Body characters in one batch, at most (a batch of one may be larger).
MAX_BATCH_BYTES = 1024 * 1024

#: Seconds between two log lines about refused batches.
_REFUSAL_LOG_EVERY = 60.0


@implementer(IOutbox)
class Outbox(Service):
    """
    The durable outbox.  See L{IOutbox}.

    @param db: a L{ocpptw.store.sqlite.Database} opened with L{SCHEMA}.
    @param clock: the reactor's time; all backoff runs on it.
    @param max_age: C{OUTBOX_MAX_AGE}: an entry older than this that fails
        again is parked.
    @param initial_delay: the first retry waits up to this long; the cap
        doubles with every attempt up to C{max_delay} (full jitter: the wait
        is uniform between 0 and the cap).
    @param jitter: a L{random.Random} (or anything with C{uniform(a, b)}).
    @param max_concurrent: deliveries in flight at once, over all keys.
    @param delivery_timeout: a delivery that has not fired after this many
        seconds is cancelled and retried.
    @param observer: optional metrics hooks (see the module docstring).

    @ivar writable: C{False} while the disk refuses writes (for C{/ready}).
    @ivar delivered_total: entries delivered since start.
    @ivar failed_total: failed delivery attempts since start.
    @ivar parked_total: entries parked since start.
    @ivar batches_total: batches (of more than one entry) delivered since start.
    """

    log = Logger()

    def __init__(
        self,
        db: Any,
        clock: IReactorTime,
        max_age: float,
        initial_delay: float = 0.5,
        max_delay: float = 60.0,
        jitter: Any = None,
        max_concurrent: int = 64,
        delivery_timeout: float = 60.0,
        observer: Any = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._max_age = max_age
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._jitter = jitter if jitter is not None else random.Random()
        self._max_concurrent = max_concurrent
        self._delivery_timeout = delivery_timeout
        self._observer = observer
        self._deliverers: dict[str, Callable[[dict], Any]] = {}
        self._batchers: dict[str, _Batcher] = {}
        self._last_refusal_log = float("-inf")
        self._entries: dict[int, _Entry] = {}
        self._queues: dict[str, deque[_Entry]] = {}
        self._appending: dict[str, int] = {}
        self._in_flight: dict[str, Deferred[Any]] = {}
        self._timers: dict[str, Any] = {}
        self._lingering: set[str] = set()  # keys whose timer is a batch's linger, not a backoff
        self._runnable: deque[str] = deque()
        self._runnable_set: set[str] = set()
        self._wake: deque[str] = deque()
        self._wake_set: set[str] = set()
        self._pumping = False
        self._ops: list[tuple[Any, ...]] = []
        self._ops_writing = False
        self._flush_waiters: list[tuple[Deferred[bool], Any]] = []
        self._stop_waiters: list[Deferred[None]] = []
        self._quiet_waiters: list[Deferred[bool]] = []
        self._unregistered_logged: set[str] = set()
        self._loaded = False
        self._running = False
        self._dead = 0
        self._last_recovery = float("-inf")
        self.writable = True
        self.delivered_total = 0
        self.failed_total = 0
        self.parked_total = 0
        self.batches_total = 0

    # -- lifecycle -------------------------------------------------------------

    def startService(self) -> Deferred[None]:
        super().startService()
        return self.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.stop()

    def start(self) -> Deferred[None]:
        """
        Load the entries left in the table and begin delivering.  Fires once
        loaded.
        """
        self._running = True
        if self._loaded:
            self._wake_all()
            return succeed(None)

        def load(conn: Any) -> tuple[list[tuple[Any, ...]], int]:
            rows = conn.execute(_LOAD).fetchall()
            return rows, conn.execute("SELECT count(*) FROM outbox_dead").fetchone()[0]

        def loaded(result: tuple[list[tuple[Any, ...]], int]) -> None:
            rows, dead = result
            self._dead += dead
            for row in rows:
                if row[0] not in self._entries:
                    self._add(_Entry(*row))
            # Entries appended before the load committed are already queued; keep id order.
            for queue in self._queues.values():
                if any(queue[i].id > queue[i + 1].id for i in range(len(queue) - 1)):
                    ordered = sorted(queue, key=lambda e: e.id)
                    queue.clear()
                    queue.extend(ordered)
            self._loaded = True
            if rows:
                self.log.info("outbox: {count} entries to deliver from before the restart", count=len(rows))
            if self._running:
                self._wake_all()

        return self._db.read(load).addCallback(loaded)

    def quiesce(self, timeout: float) -> Deferred[bool]:
        """
        Start no more deliveries, and let those in flight finish, for at
        most C{timeout} seconds: fires C{True} once none is in flight,
        C{False} at the timeout.  A delivery cut off by L{stop} leaves the
        backend unsure whether it arrived, and it is delivered again after
        the next start; one that finishes here is settled once.
        """
        self._running = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._lingering.clear()
        self._runnable.clear()
        self._runnable_set.clear()
        if not self._in_flight:
            return succeed(True)
        d: Deferred[bool] = Deferred()
        self._quiet_waiters.append(d)
        timer = self._clock.callLater(timeout, self._quiesce_timed_out, d)

        def settled(quiet: bool) -> bool:
            if timer.active():
                timer.cancel()
            return quiet

        return d.addCallback(settled)

    def _quiesce_timed_out(self, d: Deferred[bool]) -> None:
        if d in self._quiet_waiters:
            self._quiet_waiters.remove(d)
            d.callback(False)

    def stop(self) -> Deferred[None]:
        """
        Stop delivering: cancel timers and in-flight deliveries (their
        entries stay in the table and are delivered after the next start).
        Fires once the bookkeeping already due is written.
        """
        self._running = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._lingering.clear()
        self._runnable.clear()
        self._runnable_set.clear()
        for delivering in list(self._in_flight.values()):
            delivering.cancel()
        for waiter, timeout in self._flush_waiters:
            timeout.cancel()
            waiter.callback(False)
        self._flush_waiters = []
        if not self._ops_writing and self._ops:
            self._write_ops()
        if not self._ops_writing:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._stop_waiters.append(d)
        return d

    # -- IOutbox ---------------------------------------------------------------

    def append(self, key: str, operation: str, body: dict) -> Deferred[int]:
        try:
            text = compact(body)
        except (TypeError, ValueError):
            return fail()
        now = self._clock.seconds()
        self._appending[key] = self._appending.get(key, 0) + 1

        def insert(conn: Any) -> int:
            return conn.execute(_INSERT, (key, operation, text, now)).lastrowid

        def done(result: Any) -> Any:
            left = self._appending[key] - 1
            if left:
                self._appending[key] = left
            else:
                del self._appending[key]
            if isinstance(result, Failure):
                if result.check(StorageFull):
                    self._refused(result)
                self._check_idle()
                return result
            self._accepted()
            if result not in self._entries:
                self._add(_Entry(result, key, operation, text, now))
                self._schedule(key)
            return result

        return self._db.write(insert).addBoth(done)

    def register(self, operation: str, deliver: Callable[[dict], Any]) -> None:
        self._deliverers[operation] = deliver
        self._unregistered_logged.discard(operation)
        self._wake_all()

    def register_batch(
        self,
        operation: str,
        deliver: Callable[[list[dict]], Any],
        limit: int,
        max_bytes: int = MAX_BATCH_BYTES,
        linger: float = 0.0,
    ) -> None:
        """
        Deliver consecutive entries of C{operation} (same key) together:
        C{deliver(bodies)} with up to C{limit} bodies in append order fires
        when all of them are delivered.  The single deliverer given to
        L{register} is still needed: a lone entry, and the entries of a
        refused batch, go through it.  A C{limit} below 2 turns batching off.

        @param linger: a batch that could still grow waits until its first
            entry is this many seconds old (never when it is full, is
            followed by another operation, has failed before, or during a
            L{flush}), so that entries appended close together (a CALL and
            its answer) share a request.
        """
        if limit < 2:
            self._batchers.pop(operation, None)
        else:
            self._batchers[operation] = _Batcher(deliver, limit, max_bytes, linger)
        self._wake_all()

    def depth(self) -> int:
        return len(self._entries)

    def pending(self, key: str) -> int:
        """
        Entries waiting under C{key}, counting appends not yet committed:
        a direct send now would overtake them.
        """
        queue = self._queues.get(key)
        return (len(queue) if queue else 0) + self._appending.get(key, 0)

    def oldest_age(self) -> float:
        if not self._queues:
            return 0.0
        oldest = min(queue[0].created_at for queue in self._queues.values())
        return max(0.0, self._clock.seconds() - oldest)

    def dead_letters(self) -> int:
        return self._dead

    def flush(self, timeout: float) -> Deferred[bool]:
        if self._idle():
            return succeed(True)
        now = self._clock.seconds()
        for queue in self._queues.values():
            if queue[0].next_attempt_at > now:
                queue[0].next_attempt_at = now
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._lingering.clear()
        d: Deferred[bool] = Deferred()
        entry = (d, self._clock.callLater(timeout, self._flush_timed_out, d))
        self._flush_waiters.append(entry)
        self._wake_all()
        return d

    # -- delivery --------------------------------------------------------------

    def _add(self, entry: _Entry) -> None:
        self._entries[entry.id] = entry
        queue = self._queues.get(entry.key)
        if queue is None:
            queue = self._queues[entry.key] = deque()
        queue.append(entry)

    def _wake_all(self) -> None:
        self._schedule(*self._queues)

    def _schedule(self, *keys: str) -> None:
        """
        Look at the first entry of each of C{keys} soon, without recursion:
        a deliverer that fires at once must not deepen the stack per entry.
        """
        for key in keys:
            if key not in self._wake_set:
                self._wake_set.add(key)
                self._wake.append(key)
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._wake:
                next_key = self._wake.popleft()
                self._wake_set.discard(next_key)
                self._kick(next_key)
        finally:
            self._pumping = False

    def _kick(self, key: str) -> None:
        if not self._running or not self._loaded:
            return
        if key in self._lingering:
            if self._may_grow(key):
                return
            self._lingering.discard(key)
            self._timers.pop(key).cancel()
        if key in self._in_flight or key in self._timers or key in self._runnable_set:
            return
        queue = self._queues.get(key)
        if not queue:
            return
        entry = queue[0]
        deliver = self._deliverers.get(entry.operation)
        if deliver is None:
            if entry.operation not in self._unregistered_logged:
                self._unregistered_logged.add(entry.operation)
                self.log.warn("outbox: no deliverer for {operation}; its entries wait", operation=entry.operation)
            return
        now = self._clock.seconds()
        wait = entry.next_attempt_at - now
        if wait > 0:
            self._timers[key] = self._clock.callLater(wait, self._timer_fired, key)
            return
        batcher = self._batchers.get(entry.operation)
        entries = None
        if batcher is not None and not entry.solo:
            entries = _batch(queue, batcher) if len(queue) > 1 else [entry]
            if (
                batcher.linger
                and not entry.attempts
                and len(entries) == len(queue) < batcher.limit
                and not self._flush_waiters
            ):
                wait = entry.created_at + batcher.linger - now
                if wait > 0:
                    self._timers[key] = self._clock.callLater(wait, self._timer_fired, key)
                    self._lingering.add(key)
                    return
        if len(self._in_flight) >= self._max_concurrent:
            self._runnable.append(key)
            self._runnable_set.add(key)
            return
        if entries is not None and len(entries) > 1:
            self._deliver_batch(key, entries, batcher.deliver)  # type: ignore[union-attr]
            return
        self._deliver(key, entry, deliver)

    def _timer_fired(self, key: str) -> None:
        del self._timers[key]
        self._lingering.discard(key)
        self._schedule(key)

    def _may_grow(self, key: str) -> bool:
        """
        Whether the lingering batch of C{key} may still take more entries
        (it took every entry so far; the newest is of its kind).
        """
        queue = self._queues.get(key)
        if not queue:
            return False
        batcher = self._batchers.get(queue[0].operation)
        last = queue[-1]
        return (
            batcher is not None
            and len(queue) < batcher.limit
            and last.operation == queue[0].operation
            and not last.solo
            and not self._flush_waiters
        )

    def _deliver(self, key: str, entry: _Entry, deliver: Callable[[dict], Any]) -> None:
        self._attempt(key, deliver, json.loads(entry.body), self._succeeded, self._failed, entry)

    def _deliver_batch(self, key: str, entries: list[_Entry], deliver: Callable[[list[dict]], Any]) -> None:
        loads = json.loads
        bodies = [loads(entry.body) for entry in entries]
        self._attempt(key, deliver, bodies, self._batch_succeeded, self._batch_failed, entries)

    def _attempt(self, key: str, deliver: Callable[[Any], Any], body: Any, succeeded: Any, failed: Any, what: Any) -> None:
        """
        One delivery of C{body} (an entry's or a batch's) for C{key}, in
        flight until it ends in C{succeeded(result, what, started)} or
        C{failed(failure, what)}.
        """
        started = self._clock.seconds()
        d = maybeDeferred(deliver, body)
        if not d.called:
            d.addTimeout(self._delivery_timeout, self._clock)
        self._in_flight[key] = d
        d.addCallbacks(succeeded, failed, callbackArgs=(what, started), errbackArgs=(what,))
        d.addErrback(lambda f: self.log.failure("outbox bookkeeping failed for {key}", f, key=key))

    def _next(self, entry: _Entry) -> None:
        """
        C{entry}'s delivery is over: give the free slot to the keys waiting
        for one, then look at C{entry}'s key again (behind them: fairness).
        """
        keys: list[str] = []
        while self._runnable and len(self._in_flight) + len(keys) < self._max_concurrent:
            key = self._runnable.popleft()
            self._runnable_set.discard(key)
            keys.append(key)
        keys.append(entry.key)
        self._schedule(*keys)
        self._check_idle()

    def _notify(self, hook: str, *args: Any) -> None:
        observer = self._observer
        if observer is not None:
            try:
                if hook == "delivered":
                    observer.delivered(*args)
                elif hook == "failed":
                    observer.failed(*args)
                else:
                    observer.parked(*args)
            except Exception:
                self.log.failure("outbox observer {hook} failed", hook=hook)

    def _remove(self, entry: _Entry) -> None:
        queue = self._queues[entry.key]
        if queue[0] is entry:
            queue.popleft()
        else:  # parked from inside a failed batch
            queue.remove(entry)
        if not queue:
            del self._queues[entry.key]
        del self._entries[entry.id]

    def _succeeded(self, _: Any, entry: _Entry, started: float) -> None:
        del self._in_flight[entry.key]
        self._remove(entry)
        self.delivered_total += 1
        self._bookkeep(("done", entry.id))
        self._notify("delivered", entry.operation, self._clock.seconds() - started)
        if entry.attempts:
            self._recovered(entry)
        self._next(entry)

    def _batch_succeeded(self, _: Any, entries: list[_Entry], started: float) -> None:
        first = entries[0]
        del self._in_flight[first.key]
        seconds = self._clock.seconds() - started
        recovered = False
        for entry in entries:
            self._remove(entry)
            self._notify("delivered", entry.operation, seconds)
            recovered = recovered or entry.attempts > 0
        self.delivered_total += len(entries)
        self.batches_total += 1
        self._bookkeep_many([("done", entry.id) for entry in entries])
        if recovered:
            self._recovered(first)
        self._next(first)

    def _batch_failed(self, reason: Failure, entries: list[_Entry]) -> None:
        first = entries[0]
        del self._in_flight[first.key]
        if not self._running and reason.check(CancelledError):
            self._check_idle()
            return
        error = reason.value
        self.failed_total += len(entries)
        for entry in entries:
            self._notify("failed", entry.operation, error)
        now = self._clock.seconds()
        text = (str(error) or type(error).__name__)[:_ERROR_TEXT]
        if reason.check(BackendRejected, NotFound):
            # Not parked whole: one refused entry must not take the others with it.
            for entry in entries:
                entry.solo = True
            if now - self._last_refusal_log >= _REFUSAL_LOG_EVERY:
                self._last_refusal_log = now
                self.log.warn(
                    "outbox: a batch of {count} {operation} for {key} was refused ({error}); "
                    "its entries go one by one",
                    count=len(entries), operation=first.operation, key=first.key, error=text,
                )
            self._next(first)
            return
        retried = []
        for entry in entries:
            if now - entry.created_at >= self._max_age:
                self._park(entry, f"still failing after {self._max_age:g} s: {text}", now)
            else:
                retried.append(entry)
        if retried:
            attempts = max(entry.attempts for entry in retried) + 1
            at = now + self._backoff(attempts)
            ops = []
            for entry in retried:
                entry.attempts, entry.next_attempt_at, entry.last_error = attempts, at, text
                ops.append(("retry", attempts, at, text, entry.id))
            if attempts == 1:
                self.log.info(
                    "outbox: a batch of {count} {operation} for {key} failed, retrying with backoff: {error}",
                    count=len(retried), operation=first.operation, key=first.key, error=text,
                )
            self._bookkeep_many(ops)
        self._next(first)

    def _recovered(self, entry: _Entry) -> None:
        """
        An entry got through after failing: the destination is probably
        back.  Entries of other chargers sleeping out a backoff try again
        now rather than up to C{max_delay} later (at most once every
        C{RECOVERY_EVERY} seconds, so a flapping backend is not stormed).
        """
        now = self._clock.seconds()
        if now - self._last_recovery < RECOVERY_EVERY:
            return
        self._last_recovery = now
        keys = []
        for key, timer in list(self._timers.items()):
            if key in self._lingering:
                continue
            timer.cancel()
            del self._timers[key]
            self._queues[key][0].next_attempt_at = now
            keys.append(key)
        if keys:
            self.log.info(
                "outbox: {operation} got through again; retrying {count} waiting chargers now",
                operation=entry.operation, count=len(keys),
            )
            self._schedule(*keys)

    def _failed(self, reason: Failure, entry: _Entry) -> None:
        del self._in_flight[entry.key]
        if not self._running and reason.check(CancelledError):
            self._check_idle()
            return
        error = reason.value
        self.failed_total += 1
        self._notify("failed", entry.operation, error)
        now = self._clock.seconds()
        text = (str(error) or type(error).__name__)[:_ERROR_TEXT]
        if reason.check(BackendRejected, NotFound):
            self._park(entry, f"rejected: {text}", now)
        elif now - entry.created_at >= self._max_age:
            self._park(entry, f"still failing after {self._max_age:g} s: {text}", now)
        else:
            entry.attempts += 1
            entry.next_attempt_at = now + self._backoff(entry.attempts)
            entry.last_error = text
            if entry.attempts == 1:
                self.log.info(
                    "outbox: {operation} for {key} failed, retrying with backoff: {error}",
                    operation=entry.operation, key=entry.key, error=text,
                )
            self._bookkeep(("retry", entry.attempts, entry.next_attempt_at, text, entry.id))
        self._next(entry)

    def _backoff(self, attempts: int) -> float:
        """
        Seconds to wait after the C{attempts}-th failure in a row: full
        jitter under a cap that doubles from C{initial_delay} up to
        C{max_delay}.
        """
        cap = min(self._max_delay, self._initial_delay * 2 ** min(attempts - 1, 64))
        return self._jitter.uniform(0, cap)

    def _park(self, entry: _Entry, reason: str, now: float) -> None:
        self._remove(entry)
        self._dead += 1
        self.parked_total += 1
        self._notify("parked", entry.operation)
        self.log.error(
            "outbox: parked {operation} for {key} (entry {entry_id}) as a dead letter: {reason}",
            operation=entry.operation, key=entry.key, entry_id=entry.id, reason=reason,
        )
        self._bookkeep(("park", entry, reason, now))

    def _flush_timed_out(self, d: Deferred[bool]) -> None:
        self._flush_waiters = [(w, t) for w, t in self._flush_waiters if w is not d]
        d.callback(False)

    def _idle(self) -> bool:
        return not self._entries and not self._appending and not self._ops_writing

    def _check_idle(self) -> None:
        if self._quiet_waiters and not self._in_flight:
            quiet, self._quiet_waiters = self._quiet_waiters, []
            for d in quiet:
                d.callback(True)
        if self._flush_waiters and self._idle():
            waiters, self._flush_waiters = self._flush_waiters, []
            for d, timeout in waiters:
                timeout.cancel()
                d.callback(True)

    # -- bookkeeping writes ----------------------------------------------------

    def _bookkeep(self, op: tuple[Any, ...]) -> None:
        self._ops.append(op)
        if not self._ops_writing:
            self._write_ops()

    def _bookkeep_many(self, ops: list[tuple[Any, ...]]) -> None:
        self._ops.extend(ops)
        if not self._ops_writing:
            self._write_ops()

    def _write_ops(self) -> None:
        ops, self._ops = self._ops, []
        self._ops_writing = True

        def apply(conn: Any) -> None:
            retries = [op[1:] for op in ops if op[0] == "retry"]
            if retries:
                conn.executemany(
                    "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?", retries
                )
            for op in ops:
                if op[0] == "park":
                    e, reason, parked_at = op[1], op[2], op[3]
                    conn.execute(
                        "INSERT OR REPLACE INTO outbox_dead VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (e.id, e.key, e.operation, e.body, e.created_at, e.attempts, e.last_error, parked_at, reason),
                    )
            removed = [(op[1].id if op[0] == "park" else op[1],) for op in ops if op[0] in ("park", "done")]
            if removed:
                conn.executemany("DELETE FROM outbox WHERE id = ?", removed)

        def written(result: Any) -> None:
            self._ops_writing = False
            if isinstance(result, Failure):
                self._ops[:0] = ops
                if result.check(StorageFull):
                    self._refused(result)
                else:
                    self.log.failure("outbox bookkeeping write failed", result)
            else:
                self._accepted()
                if self._ops:
                    self._write_ops()
                    return
            self._check_idle()
            if not self._ops_writing:
                waiters, self._stop_waiters = self._stop_waiters, []
                for d in waiters:
                    d.callback(None)

        self._db.write(apply).addBoth(written)

    def _refused(self, failure: Failure) -> None:
        if self.writable:
            self.writable = False
            self.log.error("outbox: the disk refuses writes: {error}", error=str(failure.value))

    def _accepted(self) -> None:
        if not self.writable:
            self.writable = True
            self.log.info("outbox: the disk accepts writes again")


def _batch(queue: deque[_Entry], batcher: _Batcher) -> list[_Entry]:
    """
    The entries at the head of C{queue} that go out together: consecutive,
    of the head's operation, none of them refused in an earlier batch,
    within the batcher's count and size.
    """
    head = queue[0]
    operation = head.operation
    entries = [head]
    size = len(head.body)
    limit, max_bytes = batcher.limit, batcher.max_bytes
    for index in range(1, min(limit, len(queue))):
        entry = queue[index]
        if entry.operation != operation or entry.solo:
            break
        size += len(entry.body)
        if size > max_bytes:
            break
        entries.append(entry)
    return entries
