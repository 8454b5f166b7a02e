"""
Tests for L{ocpptw.store.outbox}: durable, ordered per key, retried on the
clock, parked as dead letters, recovered after a restart.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from ocpptw.interfaces import (
    BackendRejected,
    BackendUnavailable,
    IOutbox,
    NotFound,
    StorageFull,
)
from ocpptw.store.outbox import SCHEMA, Outbox
from ocpptw.store.sqlite import Database, InlineDatabase
from tests.helpers import bounded, failure_result_of, no_result, success_result_of


class MaxJitter:
    """Full jitter that always picks the cap, so waits are predictable."""

    def __init__(self):
        self.caps = []

    def uniform(self, low, high):
        self.caps.append(high)
        return high


class Recorder:
    """A deliverer that records bodies and answers as told."""

    def __init__(self, answer="ok"):
        self.bodies = []
        self.pending = []
        self.answer = answer

    def __call__(self, body):
        self.bodies.append(body)
        if self.answer == "ok":
            return succeed(None)
        if self.answer == "hold":
            d = Deferred()
            self.pending.append(d)
            return d
        return fail(self.answer())


class Observer:
    """Records the metrics hooks."""

    def __init__(self):
        self.calls = []

    def delivered(self, operation, seconds):
        self.calls.append(("delivered", operation))

    def failed(self, operation, error):
        self.calls.append(("failed", operation, type(error).__name__))

    def parked(self, operation):
        self.calls.append(("parked", operation))


class FullDisk:
    """Wraps a database; while C{full}, every write hits a full disk."""

    def __init__(self, db):
        self.db = db
        self.full = False

    def write(self, fn):
        if not self.full:
            return self.db.write(fn)

        def boom(conn):
            fn(conn)
            raise sqlite3.OperationalError("database or disk is full")

        return self.db.write(boom)

    def read(self, fn):
        return self.db.read(fn)


@pytest.fixture
def db():
    database = InlineDatabase(":memory:", SCHEMA)
    yield database
    database.close()


@pytest.fixture
def make(clock):
    made = []

    def make(database, **kwargs):
        options = dict(max_age=3600.0, initial_delay=1.0, max_delay=8.0, jitter=MaxJitter())
        options.update(kwargs)
        outbox = Outbox(database, clock, **options)
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        outbox.stop()


def rows(db, table="outbox"):
    return success_result_of(db.read(lambda c: c.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()))


def test_provides_the_interface(db, make):
    """The outbox provides IOutbox exactly."""
    assert verifyObject(IOutbox, make(db))


def test_append_fires_only_after_the_commit(make):
    """An append fires with its id once committed, not before; pending counts it meanwhile."""
    database = InlineDatabase(":memory:", SCHEMA, auto=False)
    outbox = make(database)
    d = outbox.append("CP1", "op", {"a": 1})
    no_result(d)
    assert outbox.pending("CP1") == 1
    assert outbox.depth() == 0
    database.commit()
    assert success_result_of(d) == 1
    assert outbox.depth() == 1
    assert outbox.pending("CP1") == 1
    assert outbox.pending("CP2") == 0
    database.close()


def test_appends_share_a_commit(make):
    """Appends queued together are committed in one transaction."""
    database = InlineDatabase(":memory:", SCHEMA, auto=False)
    outbox = make(database)
    ds = [outbox.append("CP1", "op", {"n": n}) for n in range(50)]
    database.commit()
    assert [success_result_of(d) for d in ds] == list(range(1, 51))
    assert database.commits == 1
    database.close()


def test_delivers_in_order_per_key_and_concurrently_across_keys(db, make):
    """One entry per key in flight; other keys proceed meanwhile; delivered entries are deleted."""
    outbox = make(db)
    deliver = Recorder("hold")
    outbox.register("op", deliver)
    for key, n in [("A", 1), ("A", 2), ("B", 1), ("A", 3), ("B", 2)]:
        outbox.append(key, "op", {"key": key, "n": n})
    success_result_of(outbox.start())
    assert deliver.bodies == [{"key": "A", "n": 1}, {"key": "B", "n": 1}]
    deliver.pending.pop(0).callback(None)
    assert deliver.bodies[-1] == {"key": "A", "n": 2}
    deliver.pending.pop(0).callback(None)
    assert deliver.bodies[-1] == {"key": "B", "n": 2}
    while deliver.pending:
        deliver.pending.pop(0).callback(None)
    assert [(b["key"], b["n"]) for b in deliver.bodies] == [("A", 1), ("B", 1), ("A", 2), ("B", 2), ("A", 3)]
    assert outbox.depth() == 0
    assert rows(db) == []
    assert outbox.delivered_total == 5


def test_global_cap_on_concurrent_deliveries(db, make):
    """No more than max_concurrent deliveries run at once; waiting keys get the freed slots."""
    outbox = make(db, max_concurrent=2)
    deliver = Recorder("hold")
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    for key in "ABCDE":
        outbox.append(key, "op", {"key": key})
    outbox.append("A", "op", {"key": "A2"})
    assert [b["key"] for b in deliver.bodies] == ["A", "B"]
    deliver.pending.pop(0).callback(None)
    assert [b["key"] for b in deliver.bodies] == ["A", "B", "C"]
    while deliver.pending:
        assert len(deliver.pending) <= 2
        deliver.pending.pop(0).callback(None)
    assert sorted(b["key"] for b in deliver.bodies) == ["A", "A2", "B", "C", "D", "E"]
    assert outbox.depth() == 0


def test_retries_with_exponential_backoff_on_the_clock(db, make, clock):
    """A failing entry is retried after 1, 2, 4, 8, 8 s (cap) of the injected clock, full jitter."""
    jitter = MaxJitter()
    outbox = make(db, jitter=jitter)
    deliver = Recorder(lambda: BackendUnavailable("down"))
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    success_result_of(outbox.append("A", "op", {"n": 1}))
    outbox.append("A", "op", {"n": 2})
    assert len(deliver.bodies) == 1
    for wait in [1, 2, 4, 8, 8]:
        clock.advance(wait - 0.01)
        attempts = len(deliver.bodies)
        clock.advance(0.01)
        assert len(deliver.bodies) == attempts + 1
    assert jitter.caps == [1, 2, 4, 8, 8, 8]
    assert all(body == {"n": 1} for body in deliver.bodies), "the second entry waits behind the first"
    attempts, next_at, error = success_result_of(
        db.read(lambda c: c.execute("SELECT attempts, next_attempt_at, last_error FROM outbox WHERE id = 1").fetchone())
    )
    assert (attempts, next_at, error) == (6, clock.seconds() + 8, "down")
    deliver.answer = "ok"
    clock.advance(8)
    assert deliver.bodies[-2:] == [{"n": 1}, {"n": 2}]
    assert outbox.depth() == 0
    assert outbox.failed_total == 6


def test_jitter_draws_between_zero_and_the_cap(db, make, clock):
    """The wait is drawn from the jitter source between 0 and the cap."""

    class Half:
        def uniform(self, low, high):
            assert low == 0
            return high / 2

    outbox = make(db, jitter=Half(), initial_delay=4.0)
    deliver = Recorder(lambda: BackendUnavailable("down"))
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    outbox.append("A", "op", {})
    clock.advance(1.99)
    assert len(deliver.bodies) == 1
    clock.advance(0.01)
    assert len(deliver.bodies) == 2


@pytest.mark.parametrize("error", [BackendRejected(422, "bad"), NotFound("no session")])
def test_rejected_entries_are_parked_at_once(db, make, fail_on_logged_errors, error):
    """BackendRejected and NotFound park the entry at once; the key's next entry proceeds."""
    observer = Observer()
    outbox = make(db, observer=observer)
    answers = [error, None]
    outbox.register("stop", lambda body: fail(answers.pop(0)) if answers[0] else succeed(None))
    success_result_of(outbox.start())
    outbox.append("A", "stop", {"secret": "s3cr3t", "n": 1})
    outbox.append("A", "stop", {"n": 2})
    assert outbox.depth() == 0
    assert outbox.dead_letters() == 1
    dead = rows(db, "outbox_dead")
    assert len(dead) == 1
    assert dead[0][1:4] == ("A", "stop", '{"secret":"s3cr3t","n":1}')
    assert dead[0][-1].startswith("rejected: ")
    assert rows(db) == []
    assert observer.calls == [("failed", "stop", type(error).__name__), ("parked", "stop"), ("delivered", "stop")]
    logged = [e for e in fail_on_logged_errors if "parked" in e["log_format"]]
    assert len(logged) == 1 and logged[0]["operation"] == "stop" and logged[0]["key"] == "A"
    assert "s3cr3t" not in repr(logged[0])
    fail_on_logged_errors.remove(logged[0])


def test_entries_older_than_max_age_are_parked_when_they_fail_again(db, make, clock, fail_on_logged_errors):
    """A failing entry is retried until max_age, then parked on its next failure."""
    outbox = make(db, max_age=20.0)
    deliver = Recorder(lambda: BackendUnavailable("down"))
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    outbox.append("A", "op", {})
    clock.advance(19)
    assert outbox.dead_letters() == 0
    assert outbox.depth() == 1
    clock.advance(8)
    assert outbox.dead_letters() == 1
    assert outbox.depth() == 0
    assert "20 s" in rows(db, "outbox_dead")[0][-1]
    fail_on_logged_errors.clear()


def test_an_operation_without_deliverer_waits_and_is_logged_once(db, make):
    """Entries of an unregistered operation wait (one warning) and go once it is registered."""
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        outbox = make(db)
        success_result_of(outbox.start())
        outbox.append("A", "later", {"n": 1})
        outbox.append("B", "later", {"n": 2})
        assert outbox.depth() == 2
        deliver = Recorder()
        outbox.register("later", deliver)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert deliver.bodies == [{"n": 1}, {"n": 2}]
    assert len([e for e in events if "no deliverer" in e.get("log_format", "")]) == 1


def test_restart_delivers_what_was_left_in_order(tmp_path, clock, make):
    """Entries left in the table (with their attempts) are delivered after a restart, in order."""
    path = tmp_path / "gateway.sqlite"
    first = InlineDatabase(path, SCHEMA)
    outbox = make(first)
    outbox.register("op", Recorder(lambda: BackendUnavailable("down")))
    success_result_of(outbox.start())
    for n in range(5):
        outbox.append("A" if n % 2 else "B", "op", {"n": n})
    success_result_of(outbox.stop())
    first.close()

    second = InlineDatabase(path, SCHEMA)
    again = make(second)
    deliver = Recorder("hold")
    again.register("op", deliver)
    success_result_of(again.start())
    assert again.depth() == 5
    clock.advance(1)  # the first entries wait out the backoff they had reached
    while deliver.pending:
        deliver.pending.pop(0).callback(None)
    assert [b["n"] for b in deliver.bodies if b["n"] % 2] == [1, 3]
    assert [b["n"] for b in deliver.bodies if not b["n"] % 2] == [0, 2, 4]
    assert again.depth() == 0
    assert rows(second) == []
    second.close()


def test_appends_before_start_are_not_delivered_twice(db, make):
    """Entries appended before start() and found again by the load are queued once."""
    outbox = make(db)
    deliver = Recorder()
    outbox.register("op", deliver)
    outbox.append("A", "op", {"n": 1})
    outbox.append("A", "op", {"n": 2})
    assert deliver.bodies == []
    success_result_of(outbox.start())
    assert deliver.bodies == [{"n": 1}, {"n": 2}]


def test_flush_retries_now_ignoring_backoff(db, make, clock):
    """flush() retries entries waiting out their backoff at once and fires True when empty."""
    outbox = make(db, initial_delay=60.0, max_delay=60.0)
    deliver = Recorder(lambda: BackendUnavailable("down"))
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    outbox.append("A", "op", {})
    outbox.append("B", "op", {})
    assert len(deliver.bodies) == 2
    deliver.answer = "ok"
    d = outbox.flush(5)
    assert success_result_of(d) is True
    assert len(deliver.bodies) == 4
    assert outbox.depth() == 0


def test_flush_waits_for_deliveries_in_flight(db, make, clock):
    """flush() fires True once the deliveries in flight succeed."""
    outbox = make(db)
    deliver = Recorder("hold")
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    outbox.append("A", "op", {})
    d = outbox.flush(5)
    no_result(d)
    deliver.pending.pop().callback(None)
    assert success_result_of(d) is True


def test_flush_fires_false_on_timeout(db, make, clock):
    """flush() fires False when the clock passes its timeout first."""
    outbox = make(db)
    outbox.register("op", Recorder(lambda: BackendUnavailable("down")))
    success_result_of(outbox.start())
    outbox.append("A", "op", {})
    d = outbox.flush(3)
    clock.advance(2.9)
    no_result(d)
    clock.advance(0.1)
    assert success_result_of(d) is False
    assert outbox.depth() == 1


def test_flush_of_an_empty_outbox_is_true(db, make):
    """Nothing to deliver: flush() fires True at once."""
    assert success_result_of(make(db).flush(1)) is True


def test_storage_full_fails_append_and_recovers(db, make, fail_on_logged_errors):
    """A full disk fails append with StorageFull and clears writable; the next good write restores it."""
    disk = FullDisk(db)
    outbox = make(disk)
    success_result_of(outbox.start())
    disk.full = True
    failure_result_of(outbox.append("A", "op", {}), StorageFull)
    assert outbox.writable is False
    assert outbox.pending("A") == 0
    assert outbox.depth() == 0
    assert rows(db) == []
    assert len(fail_on_logged_errors) == 1
    fail_on_logged_errors.clear()
    disk.full = False
    assert success_result_of(outbox.append("A", "op", {})) >= 1
    assert outbox.writable is True


def test_deletes_are_written_in_batches(make):
    """Deliveries that finish while a bookkeeping write is pending share the next write."""
    database = InlineDatabase(":memory:", SCHEMA, auto=False)
    outbox = make(database)
    deliver = Recorder("hold")
    outbox.register("op", deliver)
    start = outbox.start()
    for key in "ABCDEFGH":
        outbox.append(key, "op", {})
    database.commit()
    success_result_of(start)
    commits = database.commits
    for d in list(deliver.pending):
        d.callback(None)
    assert database.queued == 1
    database.commit()
    assert database.commits - commits == 2  # the first delete alone, then the other seven together
    database.auto = True
    assert rows(database) == []
    database.close()


def test_stop_cancels_deliveries_and_keeps_entries(db, make):
    """stop() cancels what is in flight; the entry stays in the table for the next start."""
    outbox = make(db)
    held = Deferred()
    outbox.register("op", lambda body: held)
    success_result_of(outbox.start())
    outbox.append("A", "op", {"n": 1})
    success_result_of(outbox.stop())
    assert held.called
    assert len(rows(db)) == 1
    assert outbox.depth() == 1
    deliver = Recorder()
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    assert deliver.bodies == [{"n": 1}]


def test_quiesce_lets_deliveries_in_flight_finish_and_starts_no_more(db, make, clock):
    """quiesce() (the drain) waits for what is in flight, delivered once, and starts nothing new."""
    outbox = make(db)
    deliver = Recorder("hold")
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    outbox.append("A", "op", {"n": 1})
    outbox.append("A", "op", {"n": 2})
    assert deliver.bodies == [{"n": 1}]
    d = outbox.quiesce(5)
    no_result(d)
    deliver.pending.pop().callback(None)
    assert success_result_of(d) is True
    assert deliver.bodies == [{"n": 1}]  # the second waits for the next start
    assert [r[0] for r in rows(db)] and outbox.depth() == 1
    assert clock.getDelayedCalls() == []


def test_quiesce_gives_up_at_its_timeout(db, make, clock):
    outbox = make(db)
    deliver = Recorder("hold")
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    outbox.append("A", "op", {})
    d = outbox.quiesce(2)
    clock.advance(2)
    assert success_result_of(d) is False
    success_result_of(outbox.stop())
    assert outbox.depth() == 1


def test_quiesce_with_nothing_in_flight_is_true(db, make):
    outbox = make(db)
    success_result_of(outbox.start())
    assert success_result_of(outbox.quiesce(1)) is True


def test_a_delivery_that_hangs_is_timed_out_and_retried(db, make, clock):
    """A deliverer that never answers is cancelled after delivery_timeout and retried with backoff."""
    outbox = make(db, delivery_timeout=10.0)
    deliver = Recorder("hold")
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    outbox.append("A", "op", {})
    clock.advance(10)
    assert deliver.pending[0].called
    assert len(deliver.bodies) == 1
    clock.advance(1)
    assert len(deliver.bodies) == 2
    deliver.pending[1].callback(None)
    assert outbox.depth() == 0


def test_many_entries_delivered_at_once_do_not_recurse(db, make):
    """A deliverer that fires synchronously does not deepen the stack per entry."""
    outbox = make(db)
    deliver = Recorder()
    outbox.register("op", deliver)
    for n in range(3000):
        outbox.append("A", "op", {"n": n})
    success_result_of(outbox.start())
    assert [b["n"] for b in deliver.bodies] == list(range(3000))


def test_oldest_age_and_depth(db, make, clock):
    """oldest_age is the wait of the oldest entry on the clock; 0 when empty."""
    outbox = make(db)
    assert outbox.oldest_age() == 0.0
    outbox.append("A", "op", {})
    clock.advance(5)
    outbox.append("B", "op", {})
    clock.advance(2)
    assert outbox.oldest_age() == 7.0
    assert outbox.depth() == 2
    assert outbox.pending("A") == 1


def test_dead_letters_survive_a_restart(tmp_path, make, fail_on_logged_errors):
    """The dead-letter count is loaded from the table at start."""
    path = tmp_path / "gateway.sqlite"
    first = InlineDatabase(path, SCHEMA)
    outbox = make(first)
    outbox.register("op", lambda body: fail(BackendRejected(400)))
    success_result_of(outbox.start())
    outbox.append("A", "op", {})
    success_result_of(outbox.stop())
    first.close()
    fail_on_logged_errors.clear()
    second = InlineDatabase(path, SCHEMA)
    again = make(second)
    success_result_of(again.start())
    assert again.dead_letters() == 1
    second.close()


def test_money_as_decimal_is_stored_as_a_string(db, make):
    """A Decimal in a body is written as its decimal string."""
    from decimal import Decimal

    outbox = make(db)
    deliver = Recorder()
    outbox.register("refund", deliver)
    outbox.append("A", "refund", {"amount": Decimal("6.29")})
    success_result_of(outbox.start())
    assert deliver.bodies == [{"amount": "6.29"}]


@pytest_twisted.ensureDeferred
async def test_grouped_appends_on_the_database_thread(tmp_path):
    """Concurrent appends through the real Database share commits and all fire with ordered ids."""
    from twisted.internet import reactor

    database = Database(tmp_path / "gateway.sqlite", reactor, SCHEMA)
    database.open()
    outbox = Outbox(database, reactor, max_age=3600.0)
    try:
        ids = await bounded(gatherResults([outbox.append(f"CP{n % 3}", "op", {"n": n}) for n in range(500)]))
        assert ids == list(range(1, 501))
        assert database.writes == 500
        assert database.commits < 500
        assert outbox.depth() == 500
    finally:
        await bounded(outbox.stop())
        database.close()


@pytest_twisted.ensureDeferred
async def test_kill_9_after_the_commit_loses_nothing(tmp_path):
    """A process killed with SIGKILL after its appends fired loses none: all are delivered once, in order."""
    from twisted.internet import protocol, reactor

    count = 300

    class Child(protocol.ProcessProtocol):
        def __init__(self):
            self.output = b""
            self.committed = Deferred()
            self.ended = Deferred()

        def outReceived(self, data):
            self.output += data
            if b"\n" in self.output and not self.committed.called:
                self.committed.callback(self.output.decode())

        def errReceived(self, data):
            self.output += data

        def processEnded(self, reason):
            if not self.committed.called:
                self.committed.errback(AssertionError(f"child ended early: {self.output.decode()}"))
            self.ended.callback(None)

    child = Child()
    root = str(Path(__file__).resolve().parents[2])
    script = str(Path(__file__).with_name("outbox_crash_child.py"))
    transport = reactor.spawnProcess(
        child, sys.executable, [sys.executable, script, str(tmp_path), str(count)], env=dict(os.environ), path=root
    )
    try:
        line = await bounded(child.committed)
        assert line.strip() == f"committed {count}"
    finally:
        if transport.pid is not None:
            transport.signalProcess("KILL")
        await bounded(child.ended)

    database = Database(tmp_path / "gateway.sqlite", reactor, SCHEMA)
    database.open()
    outbox = Outbox(database, reactor, max_age=3600.0)
    delivered = []
    outbox.register("op", lambda body: delivered.append(body))
    try:
        await bounded(outbox.start())
        assert await bounded(outbox.flush(5.0)) is True
        assert len(delivered) == count
        for key in {body["key"] for body in delivered}:
            numbers = [body["n"] for body in delivered if body["key"] == key]
            assert numbers == sorted(numbers)
        assert sorted(body["n"] for body in delivered) == list(range(count))
        left = await bounded(database.read(lambda c: c.execute("SELECT count(*) FROM outbox").fetchone()[0]))
        assert left == 0
    finally:
        await bounded(outbox.stop())
        database.close()


def play(clock, outbox, held, answers, steps):
    """
    Append each C{(key, operation, answer, wait)} step (the answer is the
    entry's first attempt's), letting held deliveries go now and then, and
    finally let everything settle.
    """
    for n, (key, operation, answer, wait) in enumerate(steps):
        answers[n] = [answer]
        outbox.append(key, operation, {"key": key, "n": n})
        clock.advance(wait)
        if held and wait > 1:
            held.pop(0).callback(None)
    for _ in range(2 * len(steps) + 2):
        while held:
            held.pop(0).callback(None)
        clock.advance(2)


def assert_each_once_in_order(succeeded, count, keys):
    """Every entry succeeded once, and each key's entries in append order."""
    assert sorted(n for _, n in succeeded) == list(range(count))
    for key in keys:
        numbers = [n for k, n in succeeded if k == key]
        assert numbers == sorted(numbers)


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.sampled_from("ABC"), st.sampled_from(["ok", "fail", "hold"]), st.floats(0, 3)), min_size=1, max_size=40
    ),
    cap=st.integers(1, 3),
)
def test_random_failures_never_reorder_or_duplicate(plan, cap):
    """Whatever fails, waits or succeeds, each key's entries succeed once each, in append order."""
    from twisted.internet.task import Clock

    clock = Clock()
    database = InlineDatabase(":memory:", SCHEMA)
    outbox = Outbox(database, clock, max_age=1e9, initial_delay=0.5, max_delay=2.0, max_concurrent=cap)
    answers = {}  # entry n -> remaining answers for its attempts
    succeeded = []
    held = []
    in_flight = set()

    def deliver(body):
        n = body["n"]
        assert body["key"] not in in_flight, "two entries of one key in flight"
        answer = answers[n].pop(0) if answers[n] else "ok"
        if answer == "fail":
            return fail(BackendUnavailable("down"))
        d = Deferred()
        in_flight.add(body["key"])

        def done(_):
            in_flight.discard(body["key"])
            succeeded.append((body["key"], n))

        d.addCallback(done)
        if answer == "hold":
            held.append(d)
        else:
            d.callback(None)
        return d

    outbox.register("op", deliver)
    success_result_of(outbox.start())
    play(clock, outbox, held, answers, [(key, "op", answer, wait) for key, answer, wait in plan])
    assert outbox.depth() == 0
    assert_each_once_in_order(succeeded, len(plan), "ABC")
    success_result_of(outbox.stop())
    assert [c for c in clock.getDelayedCalls() if c.active()] == []
    database.close()


def test_recovery_retries_other_chargers_at_once(db, make, clock):
    """When one charger's entry gets through after failing, the others stop sleeping out their backoff."""
    outbox = make(db, max_delay=60.0)
    deliver = Recorder(lambda: BackendUnavailable("down"))
    outbox.register("op", deliver)
    success_result_of(outbox.start())
    for key in ("A", "B", "C"):
        success_result_of(outbox.append(key, "op", {"key": key}))
    for _ in range(6):  # backoffs grow towards the 60 s cap
        clock.advance(60)
    deliver.answer = "ok"
    before = len(deliver.bodies)
    clock.pump([0.0])
    # the next retry of one key succeeds; the other two follow at once, not a backoff later
    while len(deliver.bodies) == before:
        clock.advance(1)
    first_success = clock.seconds()
    assert outbox.depth() == 0
    assert clock.seconds() == first_success
    assert sorted(b["key"] for b in deliver.bodies[before:]) == ["A", "B", "C"]


def test_recovery_is_not_a_storm(db, make, clock):
    """Early retries after a recovery happen at most once every RECOVERY_EVERY seconds."""
    outbox = make(db, initial_delay=2.0, max_delay=60.0)
    down = {"A", "B", "C"}
    tries = []

    def deliver(body):
        tries.append(body["key"])
        return fail(BackendUnavailable("down")) if body["key"] in down else succeed(None)

    outbox.register("op", deliver)
    success_result_of(outbox.start())
    for key, at in (("A", 0.0), ("B", 0.5), ("C", 1.0)):
        clock.advance(at - clock.seconds())
        success_result_of(outbox.append(key, "op", {"key": key}))
    down = {"B", "D"}
    clock.advance(2.0 - clock.seconds())
    # A got through (a recovery): B and C were retried at once.
    assert tries == ["A", "B", "C", "A", "B", "C"]
    clock.advance(0.5)
    success_result_of(outbox.append("D", "op", {"key": "D"}))  # fails, retried at 4.5
    down = {"B"}
    clock.advance(2.0)
    # D got through at 4.5, within RECOVERY_EVERY of the last recovery: B
    # keeps sleeping out its backoff (until 6) instead of being retried again.
    assert tries[6:] == ["D", "D"]
    clock.advance(1.5)
    assert tries[8:] == ["B"]
