"""
Tests for L{ocpptw.store.outbox} batches (L{Outbox.register_batch}):
consecutive entries of one key delivered in one call, in order, failing
and retried together, refused batches split, old entries parked one by
one, nothing lost across a restart.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed

from ocpptw.interfaces import BackendRejected, BackendUnavailable, NotFound
from ocpptw.store.outbox import SCHEMA, Outbox
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import success_result_of
from tests.store.test_outbox import (  # noqa: F401 (fixtures)
    Observer,
    Recorder,
    assert_each_once_in_order,
    db,
    make,
    play,
    rows,
)


class Batches(Recorder):
    """A batch deliverer: L{Recorder}, each call's list of bodies one entry of C{calls}."""

    @property
    def calls(self):
        return self.bodies


def setup(outbox, limit=3, single="ok", batch="ok", **kwargs):
    singles, batches = Recorder(single), Batches(batch)
    outbox.register("msg", singles)
    outbox.register_batch("msg", batches, limit, **kwargs)
    return singles, batches


def test_consecutive_entries_of_a_key_go_together_in_order(db, make):
    """Up to `limit` entries of one key and operation per call; another operation ends a batch; a lone entry goes alone."""
    outbox = make(db)
    singles, batches = setup(outbox, limit=3)
    other = Recorder()
    outbox.register("status", other)
    for n in range(5):
        outbox.append("A", "msg", {"n": n})
    outbox.append("A", "status", {"n": 5})
    outbox.append("A", "msg", {"n": 6})
    outbox.append("B", "msg", {"n": 7})
    success_result_of(outbox.start())
    assert batches.calls == [[{"n": 0}, {"n": 1}, {"n": 2}], [{"n": 3}, {"n": 4}]]
    assert other.bodies == [{"n": 5}]
    assert singles.bodies == [{"n": 7}, {"n": 6}]
    assert outbox.depth() == 0
    assert rows(db) == []
    assert outbox.delivered_total == 8
    assert outbox.batches_total == 2


def test_one_batch_in_flight_per_key_and_appends_join_the_next(db, make):
    """While a delivery is out, new entries of its key wait and go in the next batch."""
    outbox = make(db)
    singles, batches = setup(outbox, limit=10, single="hold", batch="hold")
    success_result_of(outbox.start())
    success_result_of(outbox.append("A", "msg", {"n": 0}))
    assert singles.bodies == [{"n": 0}]  # alone in its queue, no linger: at once, through the single deliverer
    for n in range(1, 4):
        outbox.append("A", "msg", {"n": n})
    assert batches.calls == []
    singles.pending.pop(0).callback(None)
    assert batches.calls == [[{"n": 1}, {"n": 2}, {"n": 3}]]
    outbox.append("A", "msg", {"n": 4})
    outbox.append("A", "msg", {"n": 5})
    assert len(batches.calls) == 1
    batches.pending.pop(0).callback(None)
    assert batches.calls[1] == [{"n": 4}, {"n": 5}]
    batches.pending.pop(0).callback(None)
    assert outbox.depth() == 0


def test_a_failed_batch_is_retried_together_with_backoff(db, make, clock):
    """An unavailable destination: the whole batch waits 1, 2, 4 s (shared attempts, persisted) and goes again."""
    observer = Observer()
    outbox = make(db, observer=observer)
    _, batches = setup(outbox, limit=3, batch=lambda: BackendUnavailable("down"))
    for n in range(3):
        outbox.append("A", "msg", {"n": n})
    success_result_of(outbox.start())
    for wait in (1, 2, 4):
        clock.advance(wait - 0.01)
        tries = len(batches.calls)
        clock.advance(0.01)
        assert len(batches.calls) == tries + 1
    assert all(call == [{"n": 0}, {"n": 1}, {"n": 2}] for call in batches.calls)
    stored = success_result_of(db.read(lambda c: c.execute("SELECT attempts, next_attempt_at, last_error FROM outbox").fetchall()))
    assert stored == [(4, clock.seconds() + 8, "down")] * 3
    batches.answer = "ok"
    clock.advance(8)
    assert outbox.depth() == 0 and rows(db) == []
    assert outbox.failed_total == 12  # counted per entry, as the metrics are
    assert observer.calls.count(("failed", "msg", "BackendUnavailable")) == 12
    assert observer.calls.count(("delivered", "msg")) == 3


@pytest.mark.parametrize("error", [BackendRejected(422, "bad"), NotFound("no such charger")])
def test_a_refused_batch_goes_one_by_one_and_only_the_refused_entry_is_parked(db, make, fail_on_logged_errors, error):
    """A 4xx for the batch parks nothing by itself: its entries go singly; the one refused alone is parked."""
    outbox = make(db)
    delivered = []

    def single(body):
        if body["n"] == 1:
            return fail(error)
        delivered.append(body["n"])
        return succeed(None)

    outbox.register("msg", single)
    outbox.register_batch("msg", lambda bodies: fail(error), 3)
    for n in range(5):
        outbox.append("A", "msg", {"n": n})
    success_result_of(outbox.start())
    assert delivered == [0, 2, 3, 4]  # 3 and 4 were not in the refused batch: a batch of two, refused, then singly
    assert outbox.depth() == 0
    assert outbox.dead_letters() == 1
    assert json.loads(rows(db, "outbox_dead")[0][3]) == {"n": 1}
    parked = [e for e in fail_on_logged_errors if "parked" in e["log_format"]]
    assert len(parked) == 1
    fail_on_logged_errors.remove(parked[0])


def test_entries_past_max_age_are_parked_one_by_one_from_a_failing_batch(db, make, clock, fail_on_logged_errors):
    """Only the entries older than max_age are parked; the younger ones of the batch are retried."""
    outbox = make(db, max_age=20.0)
    down = lambda: BackendUnavailable("down")  # noqa: E731
    _, batches = setup(outbox, limit=5, single=down, batch=down)
    success_result_of(outbox.start())
    outbox.append("A", "msg", {"n": 0})  # alone: the single deliverer
    outbox.append("A", "msg", {"n": 1})
    clock.advance(12)
    outbox.append("A", "msg", {"n": 2})
    clock.advance(12)  # the batch failed again at 23 s: entries 0 and 1 were 23 s old, entry 2 11 s
    assert batches.calls[-1] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert outbox.dead_letters() == 2
    assert outbox.depth() == 1
    assert [json.loads(row[3]) for row in rows(db, "outbox_dead")] == [{"n": 0}, {"n": 1}]
    assert [json.loads(row[3]) for row in rows(db)] == [{"n": 2}]
    fail_on_logged_errors.clear()
    batches.answer = "ok"
    outbox.flush(1)
    clock.advance(1)


def test_linger_lets_a_batch_form(db, make, clock):
    """With a linger, a batch that could grow waits until its first entry is that old; a full one goes at once."""
    outbox = make(db)
    singles, batches = setup(outbox, limit=3, linger=0.25)
    success_result_of(outbox.start())
    outbox.append("A", "msg", {"n": 0})
    clock.advance(0.1)
    outbox.append("A", "msg", {"n": 1})
    clock.advance(0.1)
    assert batches.calls == [] and singles.bodies == []
    clock.advance(0.05)
    assert batches.calls == [[{"n": 0}, {"n": 1}]]
    for n in range(2, 5):
        outbox.append("B", "msg", {"n": n})
    assert batches.calls[-1] == [{"n": 2}, {"n": 3}, {"n": 4}]  # full: no wait
    outbox.append("C", "msg", {"n": 5})
    clock.advance(0.25)
    assert singles.bodies == [{"n": 5}]  # nothing joined it
    assert outbox.depth() == 0


def test_no_linger_behind_another_operation_or_during_a_flush(db, make, clock):
    """A batch that cannot grow (another operation follows) goes at once; flush does not wait out the linger."""
    outbox = make(db)
    singles, batches = setup(outbox, limit=3, linger=5.0)
    other = Recorder()
    outbox.register("status", other)
    success_result_of(outbox.start())
    outbox.append("A", "msg", {"n": 0})
    outbox.append("A", "status", {"n": 1})
    assert singles.bodies == [{"n": 0}] and other.bodies == [{"n": 1}]
    outbox.append("B", "msg", {"n": 2})
    assert singles.bodies == [{"n": 0}]
    flushed = outbox.flush(1.0)
    assert singles.bodies == [{"n": 0}, {"n": 2}]
    assert success_result_of(flushed) is True


def test_batches_are_bounded_in_size(db, make):
    """A batch stops before max_bytes of bodies; an entry larger than that still goes, alone."""
    outbox = make(db)
    singles, batches = setup(outbox, limit=10, max_bytes=100)
    for n in range(4):
        outbox.append("A", "msg", {"n": n, "pad": "x" * 30})
    outbox.append("A", "msg", {"n": 4, "pad": "x" * 200})
    success_result_of(outbox.start())
    assert [[body["n"] for body in call] for call in batches.calls] == [[0, 1], [2, 3]]
    assert [body["n"] for body in singles.bodies] == [4]


def test_a_limit_below_two_turns_batching_off(db, make):
    """register_batch with limit 1 delivers every entry through the single deliverer."""
    outbox = make(db)
    singles, batches = setup(outbox, limit=3)
    outbox.register_batch("msg", batches, 1)
    for n in range(3):
        outbox.append("A", "msg", {"n": n})
    success_result_of(outbox.start())
    assert batches.calls == []
    assert [body["n"] for body in singles.bodies] == [0, 1, 2]


def test_a_batch_cut_short_by_a_stop_is_delivered_after_the_restart(tmp_path, clock, make):
    """Entries of a batch in flight at stop stay in the table and go again, in order, after a restart."""
    path = tmp_path / "gateway.sqlite"
    first = InlineDatabase(path, SCHEMA)
    outbox = make(first)
    _, batches = setup(outbox, limit=10, batch="hold")
    for n in range(4):
        outbox.append("A", "msg", {"n": n})
    success_result_of(outbox.start())
    assert len(batches.calls) == 1
    success_result_of(outbox.stop())
    first.close()
    second = InlineDatabase(path, SCHEMA)
    again = make(second)
    _, batches = setup(again, limit=10)
    success_result_of(again.start())
    assert batches.calls == [[{"n": n} for n in range(4)]]
    assert rows(second) == []
    second.close()


def test_a_hanging_batch_is_timed_out_and_retried(db, make, clock):
    """A batch that never answers is cancelled after delivery_timeout and retried whole."""
    outbox = make(db, delivery_timeout=30.0)
    _, batches = setup(outbox, limit=3, batch="hold")
    for n in range(3):
        outbox.append("A", "msg", {"n": n})
    success_result_of(outbox.start())
    clock.advance(30)
    assert outbox.failed_total == 3
    batches.answer = "ok"
    clock.advance(1)
    assert len(batches.calls) == 2 and batches.calls[0] == batches.calls[1]
    assert outbox.depth() == 0


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.sampled_from("AB"), st.sampled_from(["msg", "msg", "other"]), st.sampled_from(["ok", "fail", "hold", "refuse"]), st.floats(0, 3)),
        min_size=1,
        max_size=40,
    ),
    limit=st.integers(2, 5),
    linger=st.sampled_from([0.0, 0.5]),
)
def test_random_batches_never_reorder_lose_or_split_a_key(plan, limit, linger):
    """Whatever fails, waits or is refused, every entry gets through once, each key in append order, one call per key at a time."""
    from twisted.internet.task import Clock

    clock = Clock()
    database = InlineDatabase(":memory:", SCHEMA)
    outbox = Outbox(database, clock, max_age=1e9, initial_delay=0.5, max_delay=2.0, max_concurrent=2)
    answers = {}
    succeeded = []
    held = []
    in_flight = set()

    def attempt(bodies):
        key = bodies[0]["key"]
        assert key not in in_flight, "two deliveries of one key in flight"
        assert all(body["key"] == key for body in bodies)
        firsts = [answers[body["n"]].pop(0) if answers[body["n"]] else "ok" for body in bodies]
        if "fail" in firsts:
            return fail(BackendUnavailable("down"))
        if "refuse" in firsts and len(bodies) > 1:
            return fail(BackendRejected(400, "bad batch"))
        d = Deferred()
        in_flight.add(key)

        def done(_):
            in_flight.discard(key)
            succeeded.extend((key, body["n"]) for body in bodies)

        d.addCallback(done)
        if "hold" in firsts:
            held.append(d)
        else:
            d.callback(None)
        return d

    outbox.register("msg", lambda body: attempt([body]))
    outbox.register("other", lambda body: attempt([body]))
    outbox.register_batch("msg", attempt, limit, linger=linger)
    success_result_of(outbox.start())
    play(clock, outbox, held, answers, plan)
    assert outbox.depth() == 0
    assert outbox.dead_letters() == 0
    assert_each_once_in_order(succeeded, len(plan), "AB")
    success_result_of(outbox.stop())
    assert [c for c in clock.getDelayedCalls() if c.active()] == []
    database.close()
