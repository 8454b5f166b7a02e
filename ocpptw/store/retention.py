# -*- test-case-name: tests.store.test_retention -*-
"""
Retention of the embedded store's message log and events: rows older than
C{EMBEDDED_LOG_RETENTION} are deleted, oldest first, a chunk per write, so
the store does not grow until the disk is full and other writes are never
held up for long.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
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
    """

    log = Logger()

    def __init__(self, db: Any, clock: IReactorTime, retention: float, every: float = 600.0, chunk: int = 5000) -> None:
        super().__init__(clock, every, now=True)
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

    def stopService(self) -> Deferred[None] | None:
        self._stopping = True
        return super().stopService()

    def tick(self) -> Deferred[int] | None:
        return self.prune()

    def prune(self) -> Deferred[int] | None:
        """
        Delete what is older than the retention; fires with the rows deleted.
        """
        if self._running_prune is not None:
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
