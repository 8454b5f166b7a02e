# -*- test-case-name: tests.store.test_sqlite -*-
"""
SQLite in C{DATA_DIR}, off the reactor thread, with grouped commits.

One dedicated thread owns the connection.  L{Database.write} queues a
function; the thread runs every queued function in one transaction and one
commit, then fires each caller's L{Deferred} on the reactor thread.  Under
load many writes share one fsync, so durability does not cap throughput.
The calls of one reactor turn are gathered on the reactor thread and handed
over together after it (one wake-up, one hand-over of the GIL, never a
commit for part of a turn); writers that gather rows of their own (the
message log) join that hand-over through L{Database.before_wake}.

L{InlineDatabase} offers the same API on the calling thread, for unit tests
on a L{twisted.internet.task.Clock} and for tools without a reactor.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocpptw.interfaces import StorageFull
from ocpptw.store.migrations import Schema
from ocpptw.store.migrations import upgrade as upgrade_schema

T = TypeVar("T")

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _is_storage_full(error: BaseException) -> bool:
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return "full" in text or "readonly" in text or "disk i/o" in text
    return isinstance(error, OSError) and error.errno in _FULL_ERRNOS


#: Seconds the reactor spends at most firing database results before it
#: serves the network again (see L{Database._fire_some}).
DELIVER_BUDGET = 0.002


class UnstorableValue(TypeError):
    """
    A parameter of a type SQLite cannot bind (a list or an object where a
    column wants a scalar), an integer beyond 64 bits, or C{None} for a
    C{NOT NULL} column: the data's fault, as for any L{TypeError}.
    """


class DatabaseClosed(RuntimeError):
    """
    A call came after L{Database.close} (a shutdown ordering bug).
    """


class Database(Service):
    """
    A SQLite database used from the reactor thread through Deferreds.

    Nothing is opened until L{open} (C{startService}): the file and the
    thread that owns it belong to the running gateway, not to its
    construction (twistd forks after building the service tree, and a
    thread started before the fork is gone after it).

    @param path: the database file (C{":memory:"} for tests).
    @param reactor: provides C{callFromThread}; the results are delivered
        through it, so a test reactor that runs C{callFromThread} at once
        works.
    @param schema: the file's tables: a L{Schema}, created or upgraded at
        open, or SQL run once at open (C{CREATE TABLE IF NOT EXISTS ...}).
    @param synchronous: C{FULL} survives power loss; C{NORMAL} survives a
        killed process.  Both are WAL mode.
    """

    log = Logger()

    def __init__(
        self,
        path: str | Path,
        reactor: Any,
        schema: str | Schema = "",
        synchronous: str = "FULL",
        upgrade: Callable[[sqlite3.Connection], Any] | None = None,
    ) -> None:
        self._reactor = reactor
        self._upgrade = upgrade
        self._path = str(path)
        self._schema = schema
        self._synchronous = synchronous
        #: C{False} from a batch the disk refused until the next committed write.
        self.writable = True
        self._probing = False
        #: calls of this reactor turn, not yet handed over (reactor thread only)
        self._gathered: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any], bool]] = []
        #: calls handed over to the database thread (under C{_wake})
        self._queue: deque[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any], bool]] = deque()
        self._wake = threading.Condition()
        self._wake_pending = False
        self._before_wake: list[Callable[[], object]] = []
        self._hooks_due: Any = None
        self._results: deque[tuple[Deferred[Any], bool, Any]] = deque()
        self._firing = False
        #: set on the reactor thread by L{close}: later calls fail at once
        self._closing = False
        #: the same, for the database thread (under C{_wake})
        self._closing_thread = False
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.commits = 0
        self.writes = 0

    def open(self) -> None:
        """
        Create the file's directory, open the file and start the thread
        that owns it; return once it is open.

        @raise OSError: the directory cannot be made.
        @raise sqlite3.Error: the file cannot be opened or its schema set up.
        """
        if self._thread is not None:
            return
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self._open_error = None
        thread = threading.Thread(
            target=self._run, args=(self._schema, self._synchronous, self._upgrade), name=f"sqlite:{Path(self._path).name}", daemon=True
        )
        thread.start()
        self._ready.wait()
        if self._open_error is not None:
            thread.join()
            raise self._open_error
        self._thread = thread

    def startService(self) -> None:
        self.open()
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        self.close()

    # -- reactor side ------------------------------------------------------

    def probe(self) -> bool:
        """
        Whether the last batch was written; when the disk refused it, also
        start a small real write, so that the next call tells whether the
        disk accepts writes again even when no traffic comes (for C{/ready}).
        """
        if not self.writable and not self._probing:
            self._probing = True
            d = self.write(_probe_write)
            d.addBoth(lambda _: setattr(self, "_probing", False))
        return self.writable

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        Run C{fn(connection)} inside the next grouped transaction.  Fires
        with its result after the commit, or fails with L{StorageFull} when
        the disk refuses (the batch is rolled back), or with C{fn}'s error
        (only C{fn}'s own changes are rolled back, through a savepoint), or
        with L{DatabaseClosed} after L{close}.  C{fn} may run twice (see
        L{_execute_optimistic}): it must touch nothing but the connection.
        """
        return self._submit(fn, True)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        Run C{fn(connection)} on the database thread, in order with writes.
        """
        return self._submit(fn, False)

    def _submit(self, fn: Callable[[sqlite3.Connection], Any], is_write: bool) -> Deferred[Any]:
        if not is_write and self._before_wake:
            # A read sees what was gathered before it (the message log's frames).
            self._run_hooks()
        d: Deferred[Any] = Deferred()
        if self._closing:
            d.errback(Failure(DatabaseClosed(f"{self._path} is closed")))
            return d
        # Gathered here, on the reactor thread, and handed over at the end of
        # the turn: the database thread never takes part of a turn's calls
        # (a batch of its own for the rest), and no lock is taken per call.
        self._gathered.append((fn, d, is_write))
        if not self._wake_pending:
            # Wake the database thread once per reactor turn, not once per
            # call: every wake-up is a hand-over of the GIL, and the calls of
            # one turn make one batch anyway.
            self._wake_pending = True
            self._reactor.callLater(0, self._notify)
        return d

    def before_wake(self, fn: Callable[[], object], within: float = 0.0) -> None:
        """
        Call C{fn()} on the reactor thread once, just before the calls of a
        reactor turn are next handed to the database thread.  What C{fn}
        writes joins them: one batch, one commit and one hand-over of the
        GIL instead of two.  A writer that gathers its rows during a turn
        (the message log) registers its flush here instead of a
        C{callLater(0)} of its own.

        @param within: seconds C{fn} may wait for a hand-over that other
            writes cause (0: one is scheduled for this turn).  Only for
            writes nobody waits on to answer a charger (the frames of the
            message log): they ride along with the next batch instead of
            costing a commit of their own.  L{close} runs what waits.
        """
        self._before_wake.append(fn)
        if self._wake_pending:
            return
        if within <= 0:
            self._wake_pending = True
            self._reactor.callLater(0, self._notify)
        elif self._hooks_due is None:
            self._hooks_due = self._reactor.callLater(within, self._hooks_timed_out)

    def _hooks_timed_out(self) -> None:
        self._hooks_due = None
        if not self._wake_pending:
            self._wake_pending = True
            self._notify()

    def _run_hooks(self) -> None:
        if self._hooks_due is not None:
            if self._hooks_due.active():
                self._hooks_due.cancel()
            self._hooks_due = None
        while self._before_wake:
            hooks, self._before_wake = self._before_wake, []
            for hook in hooks:
                try:
                    hook()
                except Exception:
                    self.log.failure("gathering writes for {path} failed", path=self._path)

    def _notify(self) -> None:
        # Writes made by the hooks join this batch: the wake is still pending
        # while they run, so they schedule none of their own.
        self._run_hooks()
        self._wake_pending = False
        self._hand_over()

    def _hand_over(self) -> None:
        gathered, self._gathered = self._gathered, []
        with self._wake:
            self._queue.extend(gathered)
            self._wake.notify()

    def close(self) -> None:
        """
        Finish what is queued, then close the connection and the thread.
        """
        if not self._closing:
            self._wake_pending = True  # what the hooks write is gathered, not scheduled
            self._run_hooks()
            self._wake_pending = False
            self._closing = True
        gathered, self._gathered = self._gathered, []
        with self._wake:
            self._queue.extend(gathered)
            self._closing_thread = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # -- database thread -------------------------------------------------------

    def _run(self, schema: str | Schema, synchronous: str, upgrade: Callable[[sqlite3.Connection], Any] | None) -> None:
        try:
            conn = open_connection(self._path, schema, synchronous, upgrade)
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._open_error = e
            self._ready.set()
            return
        self._ready.set()
        while True:
            with self._wake:
                while not self._queue and not self._closing_thread:
                    self._wake.wait()
                if not self._queue and self._closing_thread:
                    break
                batch = list(self._queue)
                self._queue.clear()
            self._run_batch(conn, batch)
        conn.close()

    def _run_batch(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any], bool]],
    ) -> None:
        results, writes = execute_batch(conn, batch)
        self._reactor.callFromThread(self._deliver, results, writes)

    def _deliver(self, results: list[tuple[Deferred[Any], bool, Any]], writes: int) -> None:
        if writes:
            self.commits += 1
            self.writes += writes
            self.writable = True
        elif results and not results[0][1] and results[0][2].check(StorageFull):
            self.writable = False  # the disk refused the whole batch (for /ready)
        self._results.extend(results)
        if not self._firing:
            self._fire_some()

    def _fire_some(self) -> None:
        """
        Fire the waiting results in order, for at most L{DELIVER_BUDGET}
        seconds; the rest go on in the next reactor turn, after the network.
        A batch holds every write of one commit (hundreds in a reconnect
        storm), and each result resumes a handler that may answer a charger:
        fired in one go they would hold up every connected charger.
        """
        results = self._results
        deadline = perf_counter() + DELIVER_BUDGET
        while results:
            d, ok, value = results.popleft()
            if ok:
                d.callback(value)
            else:
                d.errback(value)
            if results and perf_counter() >= deadline:
                self._firing = True
                self._reactor.callLater(0, self._fire_some)
                return
        self._firing = False


class InlineDatabase:
    """
    L{Database}'s API on the calling thread, for unit tests on a
    L{twisted.internet.task.Clock} and for tools without a reactor.  It
    blocks while SQLite works, so the running gateway never uses it.

    With C{auto=True} every call runs (and commits) at once and its
    L{Deferred} has fired on return.  With C{auto=False} calls queue until
    L{commit}, which runs them as one grouped batch, as the database thread
    does: a test can see what happens before and after a commit.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        schema: str | Schema = "",
        auto: bool = True,
        upgrade: Callable[[sqlite3.Connection], Any] | None = None,
    ) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = open_connection(self._path, schema, "FULL", upgrade)
        self._queue: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any], bool]] = []
        self.auto = auto
        self.commits = 0
        self.writes = 0

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        As L{Database.write}.
        """
        return self._submit(fn, True)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        As L{Database.read}.
        """
        return self._submit(fn, False)

    def _submit(self, fn: Callable[[sqlite3.Connection], Any], is_write: bool) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if self._conn is None:
            d.errback(Failure(DatabaseClosed(f"{self._path} is closed")))
            return d
        self._queue.append((fn, d, is_write))
        if self.auto:
            self.commit()
        return d

    @property
    def queued(self) -> int:
        """
        Calls waiting for L{commit}.
        """
        return len(self._queue)

    def commit(self) -> None:
        """
        Run everything queued as one batch and fire its Deferreds.
        """
        assert self._conn is not None, "database is closed"
        while self._queue:
            batch, self._queue = self._queue, []
            results, writes = execute_batch(self._conn, batch)
            if writes:
                self.commits += 1
                self.writes += writes
            _fire(results)

    def close(self) -> None:
        """
        Run what is queued, then close the connection.
        """
        if self._conn is not None:
            self.commit()
            self._conn.close()
            self._conn = None


def open_connection(
    path: str,
    schema: str | Schema = "",
    synchronous: str = "FULL",
    upgrade: Callable[[sqlite3.Connection], Any] | None = None,
) -> sqlite3.Connection:
    """
    Open C{path} in WAL mode in autocommit (we issue C{BEGIN} ourselves),
    and bring its tables to C{schema}: a L{Schema}'s components are created
    or upgraded to their newest version (L{ocpptw.store.migrations}); a
    string is run as it is (tables of tests and tools, unversioned).  Then
    C{upgrade(connection)}, in a transaction, before anything else uses it.

    @raise SchemaTooNew: the file was written by a newer gateway.
    """
    if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
        raise ValueError(f"unknown synchronous mode {synchronous!r}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        if isinstance(schema, Schema):
            upgrade_schema(conn, schema, Path(path).name)
        elif schema:
            conn.executescript(schema)
        if upgrade is not None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                upgrade(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def _unstorable(error: BaseException) -> bool:
    """A value of the wrong type or a missing one, rather than our SQL: the data's fault."""
    if isinstance(error, (sqlite3.InterfaceError, sqlite3.ProgrammingError)):
        return "binding parameter" in str(error)
    if isinstance(error, OverflowError):  # an integer beyond 64 bits (lenient validation lets it through)
        return "SQLite INTEGER" in str(error)
    return isinstance(error, sqlite3.IntegrityError) and str(error).startswith("NOT NULL constraint failed")


def _probe_write(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY, at REAL)")
    conn.execute("INSERT OR REPLACE INTO write_probe VALUES (1, julianday('now'))")


def execute_batch(
    conn: sqlite3.Connection,
    batch: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any], bool]],
) -> tuple[list[tuple[Deferred[Any], bool, Any]], int]:
    """
    Run one batch of C{(fn, deferred, is_write)} in one transaction and one
    commit.  Each write runs in a savepoint, so a failing C{fn} undoes only
    its own changes; a full disk rolls the whole batch back and fails every
    call with L{StorageFull}.

    @return: C{(results, writes)}: C{(deferred, ok, value or Failure)} per
        call in order, and how many writes were committed (0 when none).
    """
    writes = sum(1 for item in batch if item[2])
    if writes:
        done = _execute_optimistic(conn, batch, writes)
        if done is not None:
            return done
    results: list[tuple[Deferred[Any], bool, Any]] = []
    try:
        if writes:
            conn.execute("BEGIN IMMEDIATE")
        for index, (fn, d, is_write) in enumerate(batch):
            if is_write:
                conn.execute(f"SAVEPOINT w{index}")
            try:
                value = fn(conn)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                if is_write:
                    conn.execute(f"ROLLBACK TO w{index}")
                    conn.execute(f"RELEASE w{index}")
                if _is_storage_full(e):
                    raise
                if _unstorable(e):
                    e = UnstorableValue(f"a value SQLite cannot store: {e}")
                results.append((d, False, Failure(e)))
            else:
                if is_write:
                    conn.execute(f"RELEASE w{index}")
                results.append((d, True, value))
        if writes:
            conn.execute("COMMIT")
    except BaseException as e:  # noqa: BLE001 - the whole batch failed
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        error: BaseException = StorageFull(str(e)) if _is_storage_full(e) else e
        return [(d, False, Failure(error)) for _, d, _ in batch], 0
    return results, writes


def _execute_optimistic(
    conn: sqlite3.Connection,
    batch: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any], bool]],
    writes: int,
) -> tuple[list[tuple[Deferred[Any], bool, Any]], int] | None:
    """
    The batch in one transaction without a savepoint per write (two
    statements each, about as much as a small insert): writes almost never
    fail.  When one does, everything is rolled back and C{None} tells the
    caller to run the batch again, with savepoints, so that only the failing
    write is undone.  A write's C{fn} may therefore run twice: it must touch
    nothing but the connection.  A full disk fails the whole batch either
    way.
    """
    results: list[tuple[Deferred[Any], bool, Any]] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for fn, d, _ in batch:
            results.append((d, True, fn(conn)))
        conn.execute("COMMIT")
    except BaseException as e:  # noqa: BLE001 - the batch is run again or failed whole
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        if _is_storage_full(e):
            return [(d, False, Failure(StorageFull(str(e)))) for _, d, _ in batch], 0
        return None
    return results, writes


def _fire(results: list[tuple[Deferred[Any], bool, Any]]) -> None:
    for d, ok, value in results:
        if ok:
            d.callback(value)
        else:
            d.errback(value)
