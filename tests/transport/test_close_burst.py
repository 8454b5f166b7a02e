"""
Unit tests of the gate's close budget: a burst of closes (thousands of
chargers dropping at once) does its bookkeeping over several reactor turns,
in order, without holding up the connected chargers; a charger that comes
back first has its old connection's bookkeeping done before its new one is
registered; the drain finishes whatever waits.
"""

from __future__ import annotations

from ocpptw.ocpp.session import OcppSession
from ocpptw.ocpp.validation import Validator
from ocpptw.services.registry import ChargerRegistry
from ocpptw.transport.handshake import Gate
from tests.helpers import success_result_of
from tests.transport.test_gate_hardening import Protocol
from tests.transport.test_websocket import Chargers

BUDGET = 0.002


class Timer:
    """A CPU clock the test moves: each close's bookkeeping 'takes' `step`."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def gate(clock, timer, budget=BUDGET):
    validator = Validator()
    registry = ChargerRegistry("gw", clock)

    def session_factory(identity, connection, strict):
        return OcppSession(identity, connection, lambda *a: {}, clock, validator)

    g = Gate(prefix="/ocpp", chargers=Chargers(), registry=registry, session_factory=session_factory,
             clock=clock, close_budget=budget, timer=timer)
    return g, registry


def run_one_turn(clock):
    """Run the one call due now (Clock.advance(0) would also run what it schedules for the next turn)."""
    (call,) = clock.getDelayedCalls()
    clock.calls.remove(call)
    call.func(*call.args, **call.kw)


def disconnected(g):
    return [cp for what, cp in g._chargers.events if what == "disconnected"]


def test_a_single_close_is_done_at_once(clock):
    """Outside a burst nothing waits: unregistered and announced in the same call."""
    g, registry = gate(clock, Timer(step=0.0001))
    connection = g.opened("CP1", Protocol(), None)
    g.closed(connection)
    assert registry.get("CP1") is None
    assert disconnected(g) == ["CP1"]
    assert not clock.getDelayedCalls()


def test_a_burst_over_the_budget_is_finished_over_later_turns_in_order(clock):
    """
    1,000 closes at once, each 'taking' 0.5 ms: those within the budget are
    done at once, the rest a budget's worth per reactor turn, in the order
    they closed; every connection stops at once.
    """
    timer = Timer()
    g, registry = gate(clock, timer)
    connections = [g.opened(f"CP{i}", Protocol(), None) for i in range(1000)]
    timer.step = 0.0005
    for connection in connections:
        g.closed(connection)
    assert all(not c._open for c in connections)
    done_at_once = len(disconnected(g))
    assert 1 <= done_at_once <= 5
    assert len(registry) == 1000 - done_at_once
    assert g.waiting_closes() == 1000 - done_at_once
    turns = 0
    while g.waiting_closes():
        before = len(disconnected(g))
        run_one_turn(clock)
        turns += 1
        assert 1 <= len(disconnected(g)) - before <= 5
    assert turns >= 200
    assert disconnected(g) == [f"CP{i}" for i in range(1000)]
    assert len(registry) == 0
    assert not clock.getDelayedCalls()


def test_a_charger_back_before_its_close_is_done_is_unregistered_first(clock):
    """
    A charger whose old connection's bookkeeping still waits connects again:
    the old one is unregistered and announced first, then the new one is
    registered (and stays), and the waiting entry is not done twice.
    """
    timer = Timer()
    g, registry = gate(clock, timer)
    connections = [g.opened(f"CP{i}", Protocol(), None) for i in range(20)]
    timer.step = 0.001
    for connection in connections:
        g.closed(connection)
    assert registry.get("CP15") is connections[15]  # its bookkeeping waits
    again = g.opened("CP15", Protocol(), None)
    assert registry.get("CP15") is again
    assert g._chargers.events[-2:] == [("disconnected", "CP15"), ("connected", "CP15")]
    while clock.getDelayedCalls():
        clock.advance(0)
    assert registry.get("CP15") is again
    assert disconnected(g).count("CP15") == 1
    assert sorted(disconnected(g)) == sorted(f"CP{i}" for i in range(20))


def test_the_drain_finishes_every_waiting_close(clock):
    """settled() does the waiting bookkeeping at once: the drain loses no Disconnected."""
    timer = Timer()
    g, registry = gate(clock, timer)
    connections = [g.opened(f"CP{i}", Protocol(), None) for i in range(50)]
    timer.step = 0.001
    for connection in connections:
        g.closed(connection)
    assert g.waiting_closes()
    success_result_of(g.settled())
    assert g.waiting_closes() == 0
    assert len(registry) == 0
    assert sorted(disconnected(g)) == sorted(f"CP{i}" for i in range(50))
    clock.advance(0)  # the scheduled turn finds nothing left
    assert not clock.getDelayedCalls()


def test_without_a_budget_every_close_is_done_at_once(clock):
    timer = Timer()
    g, registry = gate(clock, timer, budget=None)
    connections = [g.opened(f"CP{i}", Protocol(), None) for i in range(100)]
    timer.step = 0.01
    for connection in connections:
        g.closed(connection)
    assert len(registry) == 0 and len(disconnected(g)) == 100
    assert not clock.getDelayedCalls()
