"""
The ordered service tree: children start one after the other, each waiting
for the one before, and stop in reverse.
"""

from __future__ import annotations

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed

from ocpptw.app.tree import OrderedMultiService
from tests.helpers import failure_result_of, no_result, success_result_of


class Step(Service):
    def __init__(self, name: str, journal: list, start: Deferred | None = None, fail: Exception | None = None):
        self.setName(name)
        self.journal = journal
        self._start = start
        self._fail = fail
        self.stop_waits: Deferred | None = None

    def privilegedStartService(self):
        super().privilegedStartService()
        self.journal.append(("privileged", self.name))

    def startService(self):
        self.journal.append(("start", self.name))
        if self._fail is not None:
            raise self._fail
        super().startService()
        return self._start

    def stopService(self):
        super().stopService()
        self.journal.append(("stop", self.name))
        return self.stop_waits


def tree(*steps: Step) -> OrderedMultiService:
    parent = OrderedMultiService()
    for step in steps:
        step.setServiceParent(parent)
    return parent


def test_children_start_in_order_each_waiting_for_the_one_before():
    journal: list = []
    loading: Deferred = Deferred()
    parent = tree(Step("db", journal), Step("ledger", journal, start=loading), Step("listener", journal))
    d = parent.startService()
    assert journal == [("start", "db"), ("start", "ledger")]
    no_result(d)
    loading.callback(None)
    assert journal[-1] == ("start", "listener")
    success_result_of(d)


def test_children_stop_in_reverse_each_waiting_for_the_one_after():
    journal: list = []
    db, ledger, listener = Step("db", journal), Step("ledger", journal), Step("listener", journal)
    parent = tree(db, ledger, listener)
    success_result_of(parent.startService())
    journal.clear()
    closing: Deferred = Deferred()
    listener.stop_waits = closing
    d = parent.stopService()
    assert journal == [("stop", "listener")]
    no_result(d)
    closing.callback(None)
    assert journal == [("stop", "listener"), ("stop", "ledger"), ("stop", "db")]
    success_result_of(d)


def test_a_synchronous_start_failure_raises_and_stops_what_started():
    """twistd reports a start that raises before it detaches: the tree raises, after undoing the children started."""
    journal: list = []
    parent = tree(Step("db", journal), Step("listener", journal, fail=OSError("port in use")), Step("late", journal))
    with pytest.raises(OSError, match="port in use"):
        parent.startService()
    assert journal == [("start", "db"), ("start", "listener"), ("stop", "db")]
    assert not parent.running


def test_a_later_start_failure_fails_the_deferred_and_stops_what_started():
    journal: list = []
    loading: Deferred = Deferred()
    parent = tree(Step("db", journal), Step("ledger", journal, start=loading), Step("listener", journal))
    d = parent.startService()
    loading.errback(RuntimeError("corrupt"))
    failure_result_of(d, RuntimeError)
    assert journal == [("start", "db"), ("start", "ledger"), ("stop", "db")]


def test_privileged_start_runs_in_order():
    journal: list = []
    parent = tree(Step("a", journal), Step("b", journal))
    parent.privilegedStartService()
    assert journal == [("privileged", "a"), ("privileged", "b")]


def test_stop_goes_on_past_a_failing_child_and_reports_it():
    journal: list = []
    a, b = Step("a", journal), Step("b", journal)
    parent = tree(a, b)
    success_result_of(parent.startService())
    failing: Deferred = Deferred()
    b.stop_waits = failing
    d = parent.stopService()
    failing.errback(ValueError("close failed"))
    assert ("stop", "a") in journal
    failure_result_of(d, ValueError)


def test_a_child_added_while_running_starts_at_once():
    journal: list = []
    parent = tree(Step("a", journal))
    success_result_of(parent.startService())
    Step("b", journal, start=succeed(None)).setServiceParent(parent)
    assert journal[-1] == ("start", "b")
