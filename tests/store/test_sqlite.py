"""
Tests for L{ocpptw.store.sqlite}: grouped commits off the reactor thread.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults

from ocpptw.interfaces import StorageFull
from ocpptw.store.sqlite import (
    Database,
    DatabaseClosed,
    InlineDatabase,
    open_connection,
)
from tests.helpers import bounded, failure_result_of, no_result, success_result_of

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER);"


@pytest.fixture
def db(tmp_path):
    from twisted.internet import reactor

    database = Database(tmp_path / "x.sqlite", reactor, SCHEMA)
    database.open()
    yield database
    database.close()


@pytest_twisted.ensureDeferred
async def test_writes_are_grouped_and_durable(db, tmp_path):
    """Many writes queued together share commits, and all are on disk after."""

    def put(i):
        return lambda c: c.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", i)).rowcount

    results = await bounded(gatherResults([db.write(put(i)) for i in range(200)]))
    assert results == [1] * 200
    assert db.writes == 200
    assert db.commits < 200
    other = sqlite3.connect(tmp_path / "x.sqlite")
    assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 200


@pytest_twisted.ensureDeferred
async def test_failed_write_rolls_back_only_itself(db):
    """A write that raises fails its own Deferred; its neighbours commit."""
    ok1 = db.write(lambda c: c.execute("INSERT INTO t VALUES ('a', 1)"))
    bad = db.write(lambda c: c.execute("INSERT INTO t VALUES ('a', 2)"))
    ok2 = db.write(lambda c: c.execute("INSERT INTO t VALUES ('b', 3)"))
    await bounded(ok1)
    await bounded(ok2)
    with pytest.raises(sqlite3.IntegrityError):
        await bounded(bad)
    rows = await bounded(db.read(lambda c: c.execute("SELECT k, v FROM t ORDER BY k").fetchall()))
    assert rows == [("a", 1), ("b", 3)]


@pytest_twisted.ensureDeferred
async def test_a_full_disk_fails_the_whole_batch_with_storage_full(db):
    """A write that hits a full disk rolls back its batch; every call in it fails with StorageFull."""
    from twisted.internet.defer import DeferredList

    def full(conn):
        conn.execute("INSERT INTO t VALUES ('full', 0)")
        raise sqlite3.OperationalError("database or disk is full")

    # queue both from inside one database-thread call so they share a batch
    running, gate = threading.Event(), threading.Event()
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    blocker = db.read(lambda c: running.set() or gate.wait(5))
    await deferLater(reactor, 0, lambda: None)  # the thread is woken once per reactor turn
    assert running.wait(5)
    first = db.write(lambda c: c.execute("INSERT INTO t VALUES ('a', 1)"))
    second = db.write(full)
    gate.set()
    await bounded(blocker)
    results = await bounded(DeferredList([first, second], consumeErrors=True))
    assert [ok for ok, _ in results] == [False, False]
    assert all(f.check(StorageFull) for _, f in results)
    assert await bounded(db.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0])) == 0
    assert await bounded(db.write(lambda c: c.execute("INSERT INTO t VALUES ('b', 2)").rowcount)) == 1


def test_calls_after_close_fail_their_deferred(tmp_path):
    """After close(), calls fail with DatabaseClosed instead of raising."""
    from twisted.internet import reactor

    database = Database(tmp_path / "x.sqlite", reactor, SCHEMA)
    database.open()
    database.close()
    failure_result_of(database.write(lambda c: None), DatabaseClosed)
    inline = InlineDatabase(tmp_path / "y.sqlite", SCHEMA)
    inline.close()
    failure_result_of(inline.read(lambda c: None), DatabaseClosed)


def test_inline_database_groups_until_commit(tmp_path):
    """InlineDatabase with auto=False runs queued calls as one batch at commit(), in order."""
    database = InlineDatabase(tmp_path / "x.sqlite", SCHEMA, auto=False)
    first = database.write(lambda c: c.execute("INSERT INTO t VALUES ('a', 1)").rowcount)
    bad = database.write(lambda c: c.execute("INSERT INTO t VALUES ('a', 2)"))
    read = database.read(lambda c: c.execute("SELECT v FROM t").fetchall())
    no_result(first)
    assert database.queued == 3
    database.commit()
    assert success_result_of(first) == 1
    failure_result_of(bad, sqlite3.IntegrityError)
    assert success_result_of(read) == [(1,)]
    assert (database.commits, database.writes) == (1, 2)
    database.close()
    other = sqlite3.connect(tmp_path / "x.sqlite")
    assert other.execute("SELECT k, v FROM t").fetchall() == [("a", 1)]
    other.close()


def test_unknown_synchronous_mode_is_refused(tmp_path):
    """A mistyped synchronous mode fails at open, not as SQL."""
    with pytest.raises(ValueError):
        open_connection(str(tmp_path / "z.sqlite"), "", "FUL; DROP")


@pytest_twisted.ensureDeferred
async def test_one_wake_up_per_reactor_turn(db):
    """Calls made in one reactor turn wake the database thread once and share one batch."""
    results = [db.write(lambda c, i=i: c.execute("INSERT INTO t VALUES (?, ?)", (f"w{i}", i)).rowcount) for i in range(50)]
    assert db._wake_pending
    commits = db.commits
    assert await bounded(gatherResults(results)) == [1] * 50
    assert db.commits == commits + 1


@pytest_twisted.ensureDeferred
async def test_results_of_one_batch_leave_room_for_the_network(db, monkeypatch):
    """
    The results of one big batch fire in order, over several reactor turns
    when they take longer than the budget: work scheduled by the first
    result runs before the last result fires.
    """
    from twisted.internet import reactor

    from ocpptw.store import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "DELIVER_BUDGET", 0.0)
    seen = []

    def fired(value, i):
        seen.append(i)
        if i == 0:
            reactor.callLater(0, seen.append, "other work")
        return value

    results = [
        db.write(lambda c, i=i: c.execute("INSERT INTO t VALUES (?, ?)", (f"b{i}", i)).rowcount).addCallback(fired, i)
        for i in range(5)
    ]
    await bounded(gatherResults(results))
    assert [x for x in seen if x != "other work"] == [0, 1, 2, 3, 4]
    assert seen.index("other work") < seen.index(4)


def test_a_failing_write_makes_the_batch_run_again_with_savepoints(tmp_path):
    """
    A batch runs without savepoints; when a write fails, it runs again with
    them, so the other writes of the batch still commit and only the failing
    one is undone.
    """
    database = InlineDatabase(tmp_path / "y.sqlite", SCHEMA, auto=False)
    runs = []

    def good(conn):
        runs.append("good")
        return conn.execute("INSERT INTO t VALUES ('g', 1)").rowcount

    def bad(conn):
        runs.append("bad")
        conn.execute("INSERT INTO t VALUES ('b', 1)")
        raise KeyError("no such thing")

    first, second = database.write(good), database.write(bad)
    database.commit()
    assert success_result_of(first) == 1
    assert failure_result_of(second, KeyError)
    assert runs == ["good", "bad", "good", "bad"]
    rows = database.read(lambda c: c.execute("SELECT k FROM t").fetchall())
    database.commit()
    assert success_result_of(rows) == [("g",)]


def test_nothing_is_opened_before_start(tmp_path):
    """Building a Database opens no file and starts no thread; startService does, stopService undoes it."""
    import threading

    from twisted.internet import reactor

    before = threading.active_count()
    database = Database(tmp_path / "later" / "x.sqlite", reactor, SCHEMA)
    assert not (tmp_path / "later").exists() and threading.active_count() == before
    database.startService()
    try:
        assert (tmp_path / "later" / "x.sqlite").exists() and threading.active_count() == before + 1
    finally:
        database.stopService()
    assert threading.active_count() == before


def test_an_unopenable_file_fails_the_start(tmp_path):
    """A DATA_DIR that cannot be written stops the start with the OS's reason, and leaves no thread."""
    import threading

    from twisted.internet import reactor

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    before = threading.active_count()
    database = Database(blocker / "x.sqlite", reactor, SCHEMA)
    with pytest.raises(OSError):
        database.startService()
    assert threading.active_count() == before


# -- handing a turn's calls over at once (on a Clock: the database is not opened) --


def _gathered(database):
    return [fn for fn, _, _ in database._gathered]


def _handed_over(database):
    return [fn for fn, _, _ in database._queue]


def test_a_turns_calls_reach_the_database_thread_together_at_its_end(tmp_path):
    """
    Calls are gathered on the reactor thread and handed over in one go after
    the turn: the database thread never starts on part of a turn's calls.
    """
    from twisted.internet.task import Clock

    clock = Clock()
    database = Database(tmp_path / "x.sqlite", clock, SCHEMA)
    first, second = (lambda c: 1), (lambda c: 2)
    database.write(first)
    database.read(second)
    assert _handed_over(database) == []
    assert _gathered(database) == [first, second]
    clock.advance(0)
    assert _handed_over(database) == [first, second]
    assert _gathered(database) == []
    assert not clock.getDelayedCalls()


def test_what_a_hook_writes_joins_the_turns_batch(tmp_path):
    """
    A hook registered with before_wake runs once, just before the hand-over,
    and its writes go with the turn's other calls, after them.
    """
    from twisted.internet.task import Clock

    clock = Clock()
    database = Database(tmp_path / "x.sqlite", clock, SCHEMA)
    mine, gathered_late = (lambda c: "turn"), (lambda c: "hook")
    ran = []

    def hook():
        ran.append(1)
        database.write(gathered_late)

    database.before_wake(hook)
    database.write(mine)
    assert ran == []
    clock.advance(0)
    assert ran == [1]
    assert _handed_over(database) == [mine, gathered_late]
    assert len(clock.getDelayedCalls()) == 0  # the hook's write scheduled no wake of its own
    clock.advance(0)
    assert ran == [1]


def test_a_hook_with_within_waits_for_other_writes_at_most_that_long(tmp_path):
    """
    before_wake(fn, within) rides along with the next hand-over that other
    writes cause; with none, it runs after `within` seconds by itself.
    """
    from twisted.internet.task import Clock

    clock = Clock()
    database = Database(tmp_path / "x.sqlite", clock, SCHEMA)
    log_write = lambda c: "frames"  # noqa: E731
    database.before_wake(lambda: database.write(log_write), within=0.05)
    clock.advance(0.01)
    assert _gathered(database) == [] and _handed_over(database) == []
    other = lambda c: "boot"  # noqa: E731
    database.write(other)
    clock.advance(0)
    assert _handed_over(database) == [other, log_write]
    assert not clock.getDelayedCalls()  # the timer of `within` is gone

    alone = lambda c: "alone"  # noqa: E731
    database.before_wake(lambda: database.write(alone), within=0.05)
    clock.advance(0.049)
    assert _handed_over(database) == [other, log_write]
    clock.advance(0.001)
    assert _handed_over(database) == [other, log_write, alone]


def test_a_read_sees_what_waiting_hooks_gather(tmp_path):
    """A read runs the waiting hooks first: what they write is ahead of it."""
    from twisted.internet.task import Clock

    clock = Clock()
    database = Database(tmp_path / "x.sqlite", clock, SCHEMA)
    frames = lambda c: "frames"  # noqa: E731
    database.before_wake(lambda: database.write(frames), within=0.05)
    query = lambda c: "query"  # noqa: E731
    database.read(query)
    assert _gathered(database) == [frames, query]
    clock.advance(0)
    assert _handed_over(database) == [frames, query]
    assert not clock.getDelayedCalls()


def test_a_failing_hook_is_logged_and_the_turn_still_handed_over(tmp_path, fail_on_logged_errors):
    """A hook that raises (a bug) is logged; the turn's calls are still handed over."""
    from twisted.internet.task import Clock

    clock = Clock()
    database = Database(tmp_path / "x.sqlite", clock, SCHEMA)

    def broken():
        raise RuntimeError("bug")

    database.before_wake(broken)
    write = lambda c: 1  # noqa: E731
    database.write(write)
    clock.advance(0)
    assert _handed_over(database) == [write]
    assert [e["log_failure"].check(RuntimeError) for e in fail_on_logged_errors] == [RuntimeError]
    fail_on_logged_errors.clear()


def test_close_runs_the_waiting_hooks_and_commits_what_they_write(tmp_path):
    """Frames waiting for a hand-over when the gateway stops are written, not lost."""
    from twisted.internet import reactor

    database = Database(tmp_path / "x.sqlite", reactor, SCHEMA)
    database.open()
    database.before_wake(lambda: database.write(lambda c: c.execute("INSERT INTO t VALUES ('late', 1)")), within=60)
    database.close()
    other = sqlite3.connect(tmp_path / "x.sqlite")
    assert other.execute("SELECT k FROM t").fetchall() == [("late",)]
    other.close()
    failure_result_of(database.write(lambda c: None), DatabaseClosed)


@pytest_twisted.ensureDeferred
async def test_a_hooks_writes_share_the_commit_of_the_turn(db):
    """With the thread running: the turn's writes and a hook's, one commit."""
    hooked = []
    db.before_wake(lambda: hooked.append(db.write(lambda c: c.execute("INSERT INTO t VALUES ('h', 1)").rowcount)))
    mine = db.write(lambda c: c.execute("INSERT INTO t VALUES ('m', 2)").rowcount)
    commits = db.commits
    assert await bounded(mine) == 1
    assert await bounded(hooked[0]) == 1
    assert db.commits == commits + 1
