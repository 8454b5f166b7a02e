"""
The parent of C{WORKERS}: starts every worker, starts one that exits again
after a backoff that doubles with every crash in a row and resets once a
worker ran long enough, and on stop sends SIGTERM to all, SIGKILL to a
worker that outlasts the drain's bound, and fires once every one exited.
All on a L{Clock}, with process transports that record signals.
"""

from __future__ import annotations

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ocpptw.app.supervisor import STABLE, STARTING, Backoff, WorkerPool, worker_argv


class FakeProcess:
    def __init__(self, index: int) -> None:
        self.index = index
        self.signals: list[str] = []
        self.pid = 1000 + index

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class Spawner:
    def __init__(self) -> None:
        self.started: list[tuple[int, FakeProcess]] = []
        self.protocols: dict[int, object] = {}

    def __call__(self, protocol, index: int) -> FakeProcess:
        process = FakeProcess(index)
        self.started.append((index, process))
        self.protocols[index] = protocol
        return process

    def exit(self, index: int, code: int | None = 0, signal: int | None = None) -> None:
        reason = ProcessDone(0) if code == 0 and signal is None else ProcessTerminated(code, signal)
        self.protocols[index].processEnded(Failure(reason))


def make(count: int = 3):
    clock = Clock()
    spawner = Spawner()
    pool = WorkerPool(count, spawner, clock, stop_bound=30.0, backoff=Backoff(1.0, 8.0))
    pool.startService()
    return clock, spawner, pool


def test_every_worker_starts_with_its_number():
    clock, spawner, pool = make(3)
    assert [index for index, _ in spawner.started] == [1, 2, 3]
    assert sorted(pool.processes) == [1, 2, 3]


def test_a_crashed_worker_is_started_again_after_a_doubling_backoff():
    clock, spawner, pool = make(2)
    spawner.exit(2, signal=9)
    assert 2 not in pool.processes
    clock.advance(0.99)
    assert len(spawner.started) == 2
    clock.advance(0.01)
    assert [i for i, _ in spawner.started] == [1, 2, 2]
    # crashing again at once: 2 s, then 4 s, then at most 8 s
    waits = []
    for _ in range(4):
        spawner.exit(2, code=1)
        before = len(spawner.started)
        waited = 0.0
        while len(spawner.started) == before:
            clock.advance(0.5)
            waited += 0.5
        waits.append(waited)
    assert waits == [2.0, 4.0, 8.0, 8.0]
    assert pool.restarts == 5
    assert 1 in pool.processes and pool.protocols[1] is spawner.protocols[1]


def test_a_worker_that_ran_long_enough_starts_again_after_the_first_delay():
    clock, spawner, pool = make(1)
    for n in range(3):
        if n:
            spawner.exit(1, code=1)
        else:
            spawner.exit(1, code=None, signal=9)  # (a first start that fails with a status is fatal)
        clock.advance(10)
    assert pool.crashes[1] == 3
    clock.advance(STABLE)
    spawner.exit(1, code=1)
    assert pool.crashes[1] == 1
    clock.advance(1.0)
    assert len(spawner.started) == 5


def test_stop_terms_every_worker_and_fires_when_all_exited():
    clock, spawner, pool = make(3)
    spawner.exit(3, signal=9)  # one is waiting for its restart
    d = pool.stopService()
    fired = []
    d.addCallback(fired.append)
    assert [p.signals for _, p in spawner.started] == [["TERM"], ["TERM"], []]
    clock.advance(5)  # the pending restart is cancelled
    assert len(spawner.started) == 3
    spawner.exit(1)
    assert not fired
    spawner.exit(2)
    assert fired
    assert not clock.getDelayedCalls()


def test_a_worker_that_does_not_drain_in_time_is_killed():
    clock, spawner, pool = make(2)
    d = pool.stopService()
    fired = []
    d.addCallback(fired.append)
    spawner.exit(1)
    clock.advance(29.9)
    assert spawner.started[1][1].signals == ["TERM"]
    clock.advance(0.1)
    assert spawner.started[1][1].signals == ["TERM", "KILL"]
    spawner.exit(2, signal=9)
    assert fired
    assert pool.processes == {}


def test_a_worker_that_cannot_be_spawned_is_tried_again():
    clock = Clock()
    calls = []

    def spawn(protocol, index):
        calls.append(index)
        if len(calls) == 1:
            raise OSError("no such file")
        return FakeProcess(index)

    pool = WorkerPool(1, spawn, clock, stop_bound=5.0)
    pool.startService()
    assert pool.processes == {}
    clock.advance(1.0)
    assert calls == [1, 1] and 1 in pool.processes


def test_worker_command_line_runs_twistd_in_the_foreground_with_the_parents_options():
    argv = worker_argv(["--port=9000", "--workers=3"], 2)
    assert argv[3:] == ["--nodaemon", "--pidfile=", "ocpp", "--port=9000", "--workers=3", "--worker=2"]


def test_a_worker_whose_first_start_fails_stops_the_pool(fail_on_logged_errors):
    """
    A worker that exits with a non-zero status soon after its first start
    (its port taken, DATA_DIR refused) would fail again: the pool says so
    in one line through on_fatal and starts nothing again.
    """
    clock = Clock()
    spawner = Spawner()
    fatal: list[str] = []
    pool = WorkerPool(2, spawner, clock, stop_bound=30.0, backoff=Backoff(1.0, 8.0), on_fatal=fatal.append)
    pool.startService()
    clock.advance(STARTING - 1)
    spawner.exit(2, code=1)
    assert fatal == ["worker 2 could not start (it exited with status 1; its lines above say why)"]
    assert pool.failed
    [logged] = fail_on_logged_errors
    assert logged["line"] == fatal[0]
    fail_on_logged_errors.clear()
    clock.advance(60)
    assert [index for index, _ in spawner.started] == [1, 2]  # not started again
    spawner.exit(1, code=1)  # the others' exits from now on are the stop's
    assert len(fatal) == 1


def test_only_a_first_start_that_fails_is_fatal():
    """
    A worker killed by a signal, or one that exits non-zero after running
    STARTING seconds, or after a restart, is started again as before.
    """
    clock = Clock()
    spawner = Spawner()
    fatal: list[str] = []
    pool = WorkerPool(3, spawner, clock, stop_bound=30.0, backoff=Backoff(1.0, 8.0), on_fatal=fatal.append)
    pool.startService()
    spawner.exit(1, signal=9)  # OOM killer, an operator's kill -9
    clock.advance(STARTING)
    spawner.exit(2, code=1)  # ran long enough to have started
    clock.advance(1)
    assert [index for index, _ in spawner.started][-2:] == [1, 2]
    spawner.exit(1, code=1)  # the restarted worker 1 fails at once: not its first start
    clock.advance(2)
    assert fatal == [] and not pool.failed
    assert [index for index, _ in spawner.started].count(1) == 3


def test_a_first_start_that_fails_before_greeting_is_fatal_however_long_it_took(fail_on_logged_errors):
    """On a loaded host a start can take longer than STARTING: a worker that never said hello did not start."""
    clock = Clock()
    spawner = Spawner()
    fatal: list[str] = []
    greeted: set[int] = {1}
    pool = WorkerPool(2, spawner, clock, stop_bound=30.0, on_fatal=fatal.append, greeted=greeted.__contains__)
    pool.startService()
    clock.advance(STARTING * 3)
    spawner.exit(1, code=1)  # started, greeted, then failed: started again
    assert fatal == []
    spawner.exit(2, code=1)  # never greeted
    assert fatal == ["worker 2 could not start (it exited with status 1; its lines above say why)"]
    fail_on_logged_errors.clear()
