# -*- test-case-name: tests.services.test_ledger,tests.services.test_ledger_memory -*-
"""
The gateway's own durable state, in C{DATA_DIR/gateway.sqlite} next to the
outbox: which transactionId belongs to which StartTransaction, which were
stopped, the counter for transactionIds the gateway assigns, the Authorize
cache, the last known charger records and the progress of OCPP 2.0.1
TransactionEvents (L{ocpptw.store.progress_rows}).  It never holds the backend's
data beyond what the gateway needs while the backend is away.

Every transaction is on disk (table C{ledger_transactions}) for its
retention: stopped ones for C{retention} (2 days: chargers repeat a
transaction message within minutes or hours), ones that never stopped for
C{open_retention} (30 days).  Older ones are pruned at start and every
L{PRUNE_EVERY} stops.

Memory holds only what the hot path needs, so it stays flat however many
sessions run (a transaction costs about 1.4 kB of Python heap, 3 kB of
RSS):

  - open transactions started less than L{OPEN_IN_MEMORY} ago (a day);
  - stopped ones: those of the last L{RECENT_AGE} (15 minutes), at most
    L{RECENT_MAX} (5,000), oldest out first.  Repeated StopTransactions and
    the outbox's deliveries normally come within seconds or minutes.

L{Ledger.lookup} and L{Ledger.lookup_start} answer from memory, else read
the disk on the database thread (indexed: the primary key, and
C{(cp, started_at)} for the StartTransaction dedupe key) and keep what
they found in memory like a recent transaction, so every caller shares one
object per transaction.  L{Ledger.start} loads the same set.  Writes go
through L{Database.write} (grouped commits) and return Deferreds; callers
wait for them before they answer a charger.  A start writes the whole row;
a session and a stop write only their own columns (upserts), so an object
that left memory while a caller still held it cannot undo what another
copy wrote.

transactionIds the gateway assigns (see C{docs/architecture.md})::

    0x40000000 | (slot << 20) | counter

C{counter} (20 bits, from 1) is persisted per slot with the transaction
that used it, so a restart never reuses an id; after 2**20 - 1 ids it
wraps, skipping ids still in the ledger.  Which ids of that range some row
holds is a bitmap (128 kB per slot seen), built at start from an index of
those rows and cleared as pruning frees ids.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocpptw.interfaces import ILedger, StorageFull
from ocpptw.services.model import DedupeKey, Transaction
from ocpptw.store.ledger_rows import (
    BY_ID,
    BY_START,
    COUNTER_BITS,
    GATEWAY_ID_BASE,
    GATEWAY_RANGE,
    INSERT,
    SCHEMA,
    SELECT,
    UPSERT_SESSION,
    UPSERT_STOP,
    db_id,
    fetch_one,
    prune_rows,
    statement,
    transaction_from_row,
    transaction_row,
    unheld,
)
from ocpptw.store.progress_rows import read_progress, write_progress

__all__ = [
    "COUNTER_BITS", "COUNTER_MAX", "DAY", "GATEWAY_ID_BASE", "SCHEMA", "DedupeKey", "IdsInUse", "Ledger", "Transaction",
]

COUNTER_MAX = (1 << COUNTER_BITS) - 1
DAY = 86400.0

#: Prune the transactions in memory and on disk after this many stops.
PRUNE_EVERY = 1000

#: Stopped transactions kept in memory: at most this many (about 7 MB of
#: heap)...  At 15 minutes this binds only above 5.5 stops a second; below
#: it L{RECENT_AGE} does.
RECENT_MAX = 5000

#: ... stopped at most this many seconds ago.  Older ones are read from
#: disk when a charger repeats their stop or the outbox delivers it late.
RECENT_AGE = 15 * 60.0

#: Open transactions started longer ago than this leave memory at the next
#: prune (chargers that never send their stop would otherwise pile up for
#: C{open_retention}); their stop reads them from disk.
OPEN_IN_MEMORY = DAY

_COUNTER_MASK = (1 << COUNTER_BITS) - 1
_SLOT_MASK = (GATEWAY_ID_BASE >> COUNTER_BITS) - 1


class IdsInUse:
    """
    Which transactionIds of the gateway's range (C{0x40000000} to
    C{0x7fffffff}) some row of the ledger holds: one bit per counter value,
    a C{bytearray} of 128 kB per slot seen.  Flat, where a set of ints would
    cost about 60 bytes an id.  Ids outside the range are never assigned,
    so they are not tracked.
    """

    def __init__(self) -> None:
        self._slots: dict[int, bytearray] = {}

    @staticmethod
    def _place(transaction_id: Any) -> tuple[int, int] | None:
        if type(transaction_id) is not int or not GATEWAY_ID_BASE <= transaction_id < 2 * GATEWAY_ID_BASE:
            return None
        return (transaction_id >> COUNTER_BITS) & _SLOT_MASK, transaction_id & _COUNTER_MASK

    def add(self, transaction_id: Any) -> None:
        place = self._place(transaction_id)
        if place is None:
            return
        slot, counter = place
        bits = self._slots.get(slot)
        if bits is None:
            bits = self._slots[slot] = bytearray(1 << (COUNTER_BITS - 3))
        bits[counter >> 3] |= 1 << (counter & 7)

    def discard(self, transaction_id: Any) -> None:
        place = self._place(transaction_id)
        if place is None:
            return
        bits = self._slots.get(place[0])
        if bits is not None:
            bits[place[1] >> 3] &= ~(1 << (place[1] & 7)) & 0xFF

    def __contains__(self, transaction_id: Any) -> bool:
        place = self._place(transaction_id)
        if place is None:
            return False
        bits = self._slots.get(place[0])
        return bits is not None and bool(bits[place[1] >> 3] & (1 << (place[1] & 7)))

    def __len__(self) -> int:
        return sum(int.from_bytes(bits, "little").bit_count() for bits in self._slots.values())


@implementer(ILedger)
class Ledger(Service):
    """
    The gateway's durable state: on disk, with the open and the recently
    stopped transactions in memory (see the module's docstring).

    @param db: an L{ocpptw.store.sqlite.Database} whose schema includes
        L{SCHEMA} (it may be shared with the outbox).
    @param clock: gives the times stored for pruning and cache ages.
    @param retention: seconds a stopped transaction is kept.
    @param open_retention: seconds a transaction that never stopped is kept.
    """

    log = Logger()

    def __init__(
        self,
        db: Any,
        clock: IReactorTime,
        retention: float = 2 * DAY,
        open_retention: float = 30 * DAY,
    ) -> None:
        self._db = db
        self._clock = clock
        self._retention = retention
        self._open_retention = open_retention
        self._transactions: dict[tuple[str, int], Transaction] = {}
        self._by_key: dict[DedupeKey, Transaction] = {}
        #: The stopped ones of C{_transactions}, oldest first, with the time
        #: each came into memory.
        self._recent: OrderedDict[tuple[str, int], float] = OrderedDict()
        self.ids_in_use = IdsInUse()
        self._freeing = 0
        self._marked_while_freeing: set[Any] = set()
        self._counters: dict[int, int] = {}
        self._auth: dict[str, tuple[dict, float]] = {}
        self._chargers: dict[str, tuple[dict | None, bool]] = {}
        self._stops_since_prune = 0

    # -- loading ---------------------------------------------------------------

    def startService(self) -> Deferred[None]:
        super().startService()
        return self.start()

    def start(self) -> Deferred[None]:
        """
        Prune, then load the open and the recently stopped transactions,
        the ids in use, the counters, the Authorize cache and the charger
        records.
        """
        now = self._clock.seconds()
        stopped_before, open_before = now - self._retention, now - self._open_retention
        recent_since = max(now - RECENT_AGE, stopped_before)
        open_since = max(now - OPEN_IN_MEMORY, open_before)
        recent_max = RECENT_MAX

        def load(conn: sqlite3.Connection) -> tuple:
            prune_rows(conn, stopped_before, open_before)
            conn.execute("DELETE FROM ledger_auth WHERE stored_at < ?", (stopped_before,))
            return (
                conn.execute(f"{SELECT} WHERE stopped = 0 AND created >= ?", (open_since,)).fetchall(),
                conn.execute(
                    f"{SELECT} WHERE stopped = 1 AND stopped_on >= ? ORDER BY stopped_on DESC LIMIT ?",
                    (recent_since, recent_max),
                ).fetchall(),
                conn.execute(f"SELECT transaction_id FROM ledger_transactions WHERE {GATEWAY_RANGE}").fetchall(),
                conn.execute("SELECT slot, value FROM ledger_counters").fetchall(),
                conn.execute("SELECT id_tag, info, stored_at FROM ledger_auth").fetchall(),
                conn.execute("SELECT cp, record, accepted FROM ledger_chargers").fetchall(),
            )

        return self._db.write(load).addCallback(self._loaded)

    def _loaded(self, rows: tuple) -> None:
        open_rows, stopped_rows, ids, counters, auth, chargers = rows
        for row in open_rows:
            self._remember(transaction_from_row(row))
        for row in reversed(stopped_rows):
            tx = transaction_from_row(row)
            self._remember(tx, since=tx.stopped_on)
        for (transaction_id,) in ids:
            self.ids_in_use.add(transaction_id)
        self._counters = {slot: value for slot, value in counters}
        self._auth = {tag: (json.loads(info), stored_at) for tag, info, stored_at in auth}
        self._chargers = {
            cp: (json.loads(record) if record else None, bool(accepted)) for cp, record, accepted in chargers
        }

    # -- memory ------------------------------------------------------------------

    def _remember(self, tx: Transaction, since: float | None = None) -> None:
        """
        Hold C{tx} in memory: open, or among the recently stopped ones
        (since C{since}, by default now), which are trimmed.
        """
        key = (tx.cp, tx.transaction_id)
        self._transactions[key] = tx
        if tx.stopped:
            self._recent[key] = self._clock.seconds() if since is None else since
            self._recent.move_to_end(key)
        else:
            self._recent.pop(key, None)
        dedupe = tx.dedupe_key
        if dedupe is not None:
            self._by_key[dedupe] = tx
        if tx.stopped:
            self._trim()

    def _evict(self, key: tuple[str, int]) -> None:
        """
        Drop a transaction from memory only (it stays on disk).
        """
        self._recent.pop(key, None)
        tx = self._transactions.pop(key, None)
        if tx is not None:
            dedupe = tx.dedupe_key
            if dedupe is not None and self._by_key.get(dedupe) is tx:
                del self._by_key[dedupe]

    def _trim(self) -> None:
        horizon = self._clock.seconds() - RECENT_AGE
        recent = self._recent
        while recent:
            key, since = next(iter(recent.items()))
            if len(recent) <= RECENT_MAX and since >= horizon:
                break
            self._evict(key)

    # -- transactions ------------------------------------------------------------

    def cached_start(self, key: DedupeKey) -> Transaction | None:
        """
        The transaction an earlier, identical StartTransaction created, when
        it is in memory, else C{None} (see L{lookup_start}).

        @param key: C{(cp, connector_id, id_tag, timestamp, meter_start)}.
        """
        return self._by_key.get(key)

    def lookup(self, cp: str, transaction_id: int) -> Deferred[Transaction | None]:
        """
        The transaction C{transaction_id} of charger C{cp}, from memory or
        else from disk, or C{None}.
        """
        tx = self._transactions.get((cp, transaction_id))
        if tx is not None:
            return succeed(tx)
        return self._db.read(fetch_one(BY_ID, (cp, db_id(transaction_id)))).addCallback(self._found)

    def lookup_start(self, key: DedupeKey) -> Deferred[Transaction | None]:
        """
        The transaction an earlier, identical StartTransaction created, from
        memory or else from disk, or C{None}.

        @param key: C{(cp, connector_id, id_tag, timestamp, meter_start)}.
        """
        tx = self._by_key.get(key)
        if tx is not None:
            return succeed(tx)
        cp, connector_id, id_tag, timestamp, meter_start = key
        if timestamp is None:
            return succeed(None)
        params = (cp, timestamp, connector_id, id_tag, meter_start)
        return self._db.read(fetch_one(BY_START, params)).addCallback(self._found)

    def _found(self, row: tuple | None) -> Transaction | None:
        if row is None:
            return None
        tx = transaction_from_row(row)
        # While the read ran, the same transaction may have come into memory:
        # keep one object per transaction.
        held = self._transactions.get((tx.cp, tx.transaction_id))
        if held is not None:
            return held
        self._remember(tx)
        return tx

    def _mark(self, transaction_id: Any) -> None:
        self.ids_in_use.add(transaction_id)
        if self._freeing:
            self._marked_while_freeing.add(transaction_id)

    def _write_freeing(self, fn: Callable[[sqlite3.Connection], list[int]]) -> Deferred[None]:
        """
        Run C{fn}, a delete that returns the gateway-range ids no row holds
        any more, and clear them in L{ids_in_use}, except those taken again
        while it ran.
        """
        self._freeing += 1

        def done(result: list[int] | Failure) -> Failure | None:
            self._freeing -= 1
            if not isinstance(result, Failure):
                for transaction_id in result:
                    if transaction_id not in self._marked_while_freeing:
                        self.ids_in_use.discard(transaction_id)
            if not self._freeing:
                self._marked_while_freeing.clear()
            return result if isinstance(result, Failure) else None

        return self._db.write(fn).addBoth(done)

    def forget(self, tx: Transaction) -> Deferred[None]:
        """
        Drop C{tx} from memory and from disk: its start (or, for a stub,
        its stop) was not made durable, so a repeat must not find it.
        Failures are logged; the Deferred fires once it is done.
        """
        key = (tx.cp, tx.transaction_id)
        if self._transactions.get(key) is tx:
            self._evict(key)

        def delete(conn: sqlite3.Connection) -> list[int]:
            conn.execute("DELETE FROM ledger_transactions WHERE cp = ? AND transaction_id = ?", (key[0], db_id(key[1])))
            return unheld(conn, [key[1]])

        return self._write_freeing(delete).addErrback(self._failed, "forgetting a transaction")

    def reopen(self, tx: Transaction) -> Deferred[None]:
        """
        The stop of C{tx} was not made durable: it is open again, in memory
        and on disk, so the charger's retry stops it for real.  Failures
        are logged; the Deferred fires once it is done.
        """
        tx.stopped = False
        self._remember(tx)
        return self._db.write(
            statement(
                "UPDATE ledger_transactions SET stopped = 0 WHERE cp = ? AND transaction_id = ?",
                (tx.cp, db_id(tx.transaction_id)),
            )
        ).addErrback(self._failed, "reopening a transaction")

    def _failed(self, failure: Failure, what: str) -> None:
        # A full disk is reported where it refused the charger's message.
        if not failure.check(StorageFull):
            self.log.failure("{what} failed", failure, what=what)

    def assign_transaction_id(self, slot: int) -> int:
        """
        The next gateway-assigned transactionId for C{slot}.  The counter
        is persisted by the L{record_start} of the transaction using it.
        """
        counter = self._counters.get(slot, 0)
        for _ in range(COUNTER_MAX):
            counter = counter % COUNTER_MAX + 1
            candidate = GATEWAY_ID_BASE | (slot << COUNTER_BITS) | counter
            if candidate not in self.ids_in_use:
                self._counters[slot] = counter
                return candidate
        raise RuntimeError(f"every transactionId of slot {slot} is in use")

    def record_start(self, tx: Transaction, slot: int | None = None) -> Deferred[None]:
        """
        Remember a started transaction (and, for a gateway-assigned id, the
        counter of C{slot}).  In memory at once; fires once committed.
        """
        tx.created = tx.created or self._clock.seconds()
        self._remember(tx)
        self._mark(tx.transaction_id)
        row = transaction_row(tx)
        counter = None if slot is None else self._counters.get(slot)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(INSERT, row)
            if counter is not None:
                conn.execute(
                    "INSERT INTO ledger_counters (slot, value) VALUES (?, ?) "
                    "ON CONFLICT (slot) DO UPDATE SET value = excluded.value",
                    (slot, counter),
                )

        return self._db.write(write)

    def record_session(self, tx: Transaction, answer: dict) -> Deferred[None]:
        """
        The backend's session for C{tx} is known now (reconciliation).
        Writes the session's columns (and C{meter_start}) only.
        """
        tx.apply_session(answer)
        return self._db.write(statement(UPSERT_SESSION, transaction_row(tx)))

    def record_stop(
        self,
        cp: str,
        transaction_id: int,
        meter_stop: int,
        stopped_at: str,
        reason: str,
        tx: Transaction | None = None,
    ) -> tuple[Transaction, Deferred[None]]:
        """
        Mark a transaction stopped; an unknown one is remembered as a
        stopped stub, so its repeats are recognised too.  Writes the stop's
        columns only.

        @param tx: the transaction, as L{lookup} found it; by default the
            one in memory, else a stub.
        @return: the transaction and a Deferred that fires once committed.
        """
        if tx is None:
            tx = self._transactions.get((cp, transaction_id))
        if tx is None:
            tx = Transaction(cp=cp, transaction_id=transaction_id, id_tag_info={}, created=self._clock.seconds())
            self._mark(transaction_id)
        tx.stopped = True
        tx.meter_stop = meter_stop
        tx.stopped_at = stopped_at
        tx.reason = reason
        tx.stopped_on = self._clock.seconds()
        self._remember(tx)
        d = self._db.write(statement(UPSERT_STOP, transaction_row(tx)))
        self._stops_since_prune += 1
        if self._stops_since_prune >= PRUNE_EVERY:
            self._stops_since_prune = 0
            self.prune().addErrback(lambda f: self.log.failure("pruning the ledger failed", f))
        return tx, d

    def prune(self) -> Deferred[None]:
        """
        Forget stopped transactions older than C{retention} and open ones
        older than C{open_retention}, in memory and on disk; let open ones
        older than L{OPEN_IN_MEMORY} and stopped ones beyond the recent set
        leave memory.
        """
        now = self._clock.seconds()
        stopped_before, open_before = now - self._retention, now - self._open_retention
        open_since = max(now - OPEN_IN_MEMORY, open_before)
        for key, tx in list(self._transactions.items()):
            if (tx.stopped and (tx.stopped_on or 0) < stopped_before) or (not tx.stopped and tx.created < open_since):
                self._evict(key)
        self._trim()
        return self._write_freeing(lambda conn: prune_rows(conn, stopped_before, open_before))

    # -- Authorize cache -------------------------------------------------------

    def auth_get(self, id_tag: str) -> tuple[dict, float] | None:
        """
        C{(idTagInfo, stored_at)} of the last backend answer for C{id_tag}.
        """
        return self._auth.get(id_tag)

    def auth_put(self, id_tag: str, info: dict) -> Deferred[None]:
        """
        Remember the backend's answer for C{id_tag}.
        """
        stored_at = self._clock.seconds()
        self._auth[id_tag] = (info, stored_at)
        text = json.dumps(info)
        return self._db.write(
            statement("INSERT OR REPLACE INTO ledger_auth (id_tag, info, stored_at) VALUES (?, ?, ?)", (id_tag, text, stored_at))
        )

    # -- charger records -------------------------------------------------------

    def charger(self, cp: str) -> dict | None:
        """
        The last known charger record (as the backend gave it), or C{None}.
        """
        entry = self._chargers.get(cp)
        return None if entry is None else entry[0]

    def charger_accepted(self, cp: str) -> bool:
        """
        Whether this charger's last BootNotification was accepted.
        """
        entry = self._chargers.get(cp)
        return entry is not None and entry[1]

    def remember_charger(self, cp: str, record: dict | None = None, accepted: bool | None = None) -> Deferred[None]:
        """
        Keep C{record} (when given) and the accepted flag (when given).
        Writes only when something changed.
        """
        old_record, old_accepted = self._chargers.get(cp, (None, False))
        new_record = old_record if record is None else record
        new_accepted = old_accepted if accepted is None else accepted
        if cp in self._chargers and new_record == old_record and new_accepted == old_accepted:
            return succeed(None)
        self._chargers[cp] = (new_record, new_accepted)
        text = None if new_record is None else json.dumps(new_record)
        now = self._clock.seconds()
        return self._db.write(
            statement(
                "INSERT OR REPLACE INTO ledger_chargers (cp, record, accepted, updated) VALUES (?, ?, ?, ?)",
                (cp, text, int(new_accepted), now),
            )
        )

    def forget_charger(self, cp: str) -> Deferred[None]:
        """
        The backend no longer knows C{cp}: drop its record and acceptance.
        """
        if self._chargers.pop(cp, None) is None:
            return succeed(None)
        return self._db.write(statement("DELETE FROM ledger_chargers WHERE cp = ?", (cp,)))

    # -- 2.0.1 TransactionEvent progress -----------------------------------------

    def progress(self, cp: str, transaction_id: str) -> Deferred[dict | None]:
        """
        The progress of 2.0.1 transaction C{transaction_id} of C{cp}, from
        disk (L{ocpptw.store.progress_rows}), or C{None}.
        """
        return self._db.read(read_progress(cp, transaction_id))

    def record_progress(self, cp: str, transaction_id: str, progress: dict, ended: bool, new: bool) -> Deferred[None]:
        """
        Keep C{progress}; fires once committed.  Pruned with the stopped
        (C{ended}) or open transactions, and at most
        L{ocpptw.store.progress_rows.MAX_PER_CHARGER} per charger.
        """
        return self._db.write(write_progress(cp, transaction_id, progress, ended, self._clock.seconds(), new))
