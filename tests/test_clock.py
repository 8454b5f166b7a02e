"""
L{ocpptw.clock.Periodic}: the one base of the gateway's periodic work.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ocpptw.clock import Periodic
from tests.helpers import no_result, success_result_of


class Counting(Periodic):
    job = "counting"

    def __init__(self, clock, interval, now=False, result=None, fail_at=()):
        super().__init__(clock, interval, now)
        self.ticks = 0
        self.result = result
        self.fail_at = fail_at

    def tick(self):
        self.ticks += 1
        if self.ticks in self.fail_at:
            raise RuntimeError("boom")
        return self.result


def test_ticks_on_the_injected_clock_only_while_running():
    clock = Clock()
    job = Counting(clock, 10)
    assert clock.getDelayedCalls() == []  # building schedules nothing
    job.startService()
    clock.advance(9)
    assert job.ticks == 0
    clock.advance(1)
    assert job.ticks == 1
    job.stopService()
    clock.advance(100)
    assert job.ticks == 1 and clock.getDelayedCalls() == []


def test_now_ticks_at_start():
    clock = Clock()
    job = Counting(clock, 10, now=True)
    job.startService()
    assert job.ticks == 1
    job.stopService()


def test_a_failing_tick_is_logged_and_the_next_runs(fail_on_logged_errors):
    clock = Clock()
    job = Counting(clock, 1, fail_at=(1,))
    job.startService()
    clock.advance(1)
    clock.advance(1)
    job.stopService()
    assert job.ticks == 2
    assert [e.get("job") for e in fail_on_logged_errors] == ["counting"]
    fail_on_logged_errors.clear()


def test_stop_waits_for_a_tick_in_progress():
    clock = Clock()
    running: Deferred = Deferred()
    job = Counting(clock, 1, result=running)
    job.startService()
    clock.advance(1)
    stopped = job.stopService()
    no_result(stopped)
    running.callback(3)
    success_result_of(stopped)
