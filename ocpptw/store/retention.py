# -*- test-case-name: tests.store.test_retention -*-
"""
Retention of the embedded store's message log and events: rows older than
C{EMBEDDED_LOG_RETENTION} are deleted, oldest first, a chunk per write, so
the store does not grow until the disk is full and other writes are never
held up for long; and, whatever their age, the message log's oldest rows
once it is larger than C{MESSAGE_LOG_MAX_TOTAL_BYTES} (L{LogBound}).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocpptw.clock import Periodic, iso_z

#: (table, key column, time column) pruned, oldest key first.
TABLES = (("messages", "id", "timestamp"), ("events", "rowid", "received_at"))


def _prune_chunk(table: str, key: str, column: str, before: str, chunk: int) -> Any:
    def prune(conn: sqlite3.Connection) -> int:
        oldest = conn.execute(f"SELECT {column} FROM {table} ORDER BY {key} LIMIT 1").fetchone()
        if oldest is None or oldest[0] is None or oldest[0] >= before:
            return 0
        return conn.execute(
            f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} ORDER BY {key} LIMIT ?) AND {column} < ?",
            (chunk, before),
        ).rowcount

    return prune


class LogRetention(Periodic):
    """
    Every C{every} seconds, delete message-log rows and events older than
    C{retention} seconds.

    @param db: the embedded store's L{ocpptw.store.sqlite.Database}.
    @param retention: seconds kept; C{0}: no age limit.
    @param bound: a L{LogBound} on the same log, started and stopped with
        this service (one service looks after the log).
    """

    log = Logger()

    def __init__(
        self,
        db: Any,
        clock: IReactorTime,
        retention: float,
        every: float = 600.0,
        chunk: int = 5000,
        bound: LogBound | None = None,
    ) -> None:
        super().__init__(clock, every, now=True)
        self.bound = bound
        self._db = db
        self._clock = clock
        self._retention = retention
        self._chunk = chunk
        self._running_prune: Deferred[int] | None = None
        self._stopping = False

    job = "pruning the message log"

    def startService(self) -> None:
        self._stopping = False
        super().startService()
        if self.bound is not None:
            self.bound.startService()

    def stopService(self) -> Deferred[None] | None:
        self._stopping = True
        waits = [d for d in (self.bound.stopService() if self.bound is not None else None, super().stopService()) if d]
        if not waits:
            return None
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    def tick(self) -> Deferred[int] | None:
        return self.prune()

    def prune(self) -> Deferred[int] | None:
        """
        Delete what is older than the retention; fires with the rows deleted.
        """
        if self._running_prune is not None or not self._retention:
            return None
        moment = datetime.fromtimestamp(self._clock.seconds(), tz=timezone.utc) - timedelta(seconds=self._retention)
        d = self._prune(iso_z(moment))
        self._running_prune = d

        def done(result: Any) -> Any:
            self._running_prune = None
            return result

        def failed(failure: Failure) -> int:
            self.log.failure("pruning the message log failed", failure)
            return 0

        return d.addBoth(done).addErrback(failed)

    @inlineCallbacks
    def _prune(self, before: str) -> Any:
        deleted = 0
        for table, key, column in TABLES:
            while not self._stopping:
                count = yield self._db.write(_prune_chunk(table, key, column, before, self._chunk))
                deleted += count
                if count < self._chunk:
                    break
        if deleted:
            self.log.info("message log: deleted {count} rows older than {before}", count=deleted, before=before)
        return deleted


#: Bytes a message-log row costs besides its text columns (time, index, row).
ROW_OVERHEAD = 96

#: A message-log row's size in bytes, as the bound counts it: every text column.
ROW_SIZE = (
    "(COALESCE(length(CAST(payload AS BLOB)), 0) + COALESCE(length(CAST(action AS BLOB)), 0)"
    " + COALESCE(length(CAST(error_code AS BLOB)), 0) + COALESCE(length(CAST(message_id AS BLOB)), 0)"
    f" + COALESCE(length(CAST(device_id AS BLOB)), 0) + {ROW_OVERHEAD})"
)


class LogBound(Periodic):
    """
    Keeps the embedded store's message log within C{max_bytes}
    (C{MESSAGE_LOG_MAX_TOTAL_BYTES}): every C{every} seconds the rows added
    since the last look are measured, and while the log is larger the
    oldest rows go, a chunk per write, down to 90% of the bound.  Only new
    rows are read on each look; the whole log is measured again only when
    something else (the age retention) deleted rows.
    """

    log = Logger()
    job = "bounding the message log"

    def __init__(self, db: Any, clock: IReactorTime, max_bytes: int, every: float = 60.0, chunk: int = 2000) -> None:
        super().__init__(clock, every, now=True)
        self._db = db
        self.max_bytes = max_bytes
        self._chunk = chunk
        self._running: Deferred[int] | None = None
        self._stopping = False
        #: bytes of rows with ids in (first, last], and those ids; None: not measured yet
        self.total: int | None = None
        self._first = 0
        self._last = 0

    def startService(self) -> None:
        self._stopping = False
        super().startService()

    def stopService(self) -> Deferred[None] | None:
        self._stopping = True
        return super().stopService()

    def tick(self) -> Deferred[int] | None:
        return self.check()

    def check(self) -> Deferred[int] | None:
        """
        Measure, and delete the oldest rows when over the bound; fires with
        the rows deleted.
        """
        if self._running is not None:
            return None
        d = self._check()
        self._running = d

        def done(result: Any) -> Any:
            self._running = None
            return result

        return d.addBoth(done)

    def _measure(self, conn: Any) -> None:
        oldest = conn.execute("SELECT MIN(id) FROM messages").fetchone()[0]
        if self.total is None or (oldest is not None and oldest - 1 > self._first) or oldest is None:
            # first look, or rows went that we did not delete: measure it all
            size, last = conn.execute(f"SELECT COALESCE(SUM({ROW_SIZE}), 0), COALESCE(MAX(id), 0) FROM messages").fetchone()
            self.total, self._first, self._last = size, (oldest or 1) - 1, max(last, self._last)
            return
        size, last = conn.execute(
            f"SELECT COALESCE(SUM({ROW_SIZE}), 0), MAX(id) FROM messages WHERE id > ?", (self._last,)
        ).fetchone()
        self.total += size
        if last is not None:
            self._last = last

    def _delete_oldest(self, conn: Any) -> int:
        row = conn.execute(
            f"SELECT MAX(id), COALESCE(SUM(size), 0), COUNT(*) FROM"
            f" (SELECT id, {ROW_SIZE} AS size FROM messages WHERE id <= ? ORDER BY id LIMIT ?)",
            (self._last, self._chunk),
        ).fetchone()
        upto, size, count = row
        if not count:
            return 0
        conn.execute("DELETE FROM messages WHERE id <= ?", (upto,))
        self.total = max(0, (self.total or 0) - size)
        self._first = upto
        return count

    @inlineCallbacks
    def _check(self) -> Any:
        yield self._db.read(self._measure)
        deleted = 0
        target = self.max_bytes * 9 // 10
        if (self.total or 0) <= self.max_bytes:
            return 0
        while not self._stopping and (self.total or 0) > target:
            count = yield self._db.write(self._delete_oldest)
            if not count:
                break
            deleted += count
        if deleted:
            self.log.warn(
                "message log over MESSAGE_LOG_MAX_TOTAL_BYTES={limit}: deleted its {count} oldest rows",
                limit=self.max_bytes,
                count=deleted,
            )
        return deleted
