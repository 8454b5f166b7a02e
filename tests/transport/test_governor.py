"""
Tests for L{ocpptw.transport.governor}: the accept rate steered by the CPU
a storm costs, on a C{Clock} with a counted CPU time, and its wiring.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from ocpptw.config import load_config
from ocpptw.transport.governor import CEILING, FLOOR, START_RATE, WINDOW, AcceptGovernor
from ocpptw.transport.pacing import AcceptPacer
from tests.helpers import bounded, until
from tests.test_metrics import scrape


class Process:
    """
    The process's CPU time, advanced by hand: C{busy} of a core while the
    clock advances.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds

    def run(self, busy: float, seconds: float) -> None:
        self.seconds += busy * seconds
        self.clock.advance(seconds)


def governed(share: float = 0.25) -> tuple[Clock, Process, AcceptPacer, AcceptGovernor]:
    clock = Clock()
    process = Process(clock)
    pacer = AcceptPacer(clock, per_turn=1)
    governor = AcceptGovernor(clock, [pacer], share, cpu=process)
    governor.startService()
    return clock, process, pacer, governor


def storm(pacer: AcceptPacer, process: Process, busy: float) -> None:
    """One window in which connections waited for the rate."""
    pacer.pauses += 1
    process.run(busy, WINDOW)


def test_pacers_follow_the_start_rate():
    """Steered pacers take the governor's rate, also those added later."""
    clock, _, pacer, governor = governed()
    assert pacer.rate == governor.rate == START_RATE
    later = AcceptPacer(clock)
    governor.steer(later)
    assert later.rate == START_RATE


def test_quiet_windows_learn_the_load_and_keep_the_rate():
    """
    With no connection waiting, the busy share is the connected chargers'
    load (a moving average) and the rate stays.
    """
    _, process, pacer, governor = governed()
    for _ in range(40):
        process.run(0.2, WINDOW)
    assert governor.load == pytest.approx(0.2, abs=0.001)
    assert governor.busy == pytest.approx(0.2)
    assert pacer.rate == START_RATE


def test_a_storm_costing_more_than_the_share_is_slowed():
    """
    Connections waiting and the process busy above load + share: the rate
    falls by share / storm's share, at most by half per window.
    """
    _, process, pacer, governor = governed(share=0.25)
    for _ in range(40):
        process.run(0.1, WINDOW)
    storm(pacer, process, 0.1 + 0.5)  # the storm takes twice its share
    assert pacer.rate == pytest.approx(START_RATE * 0.5, rel=0.01)
    storm(pacer, process, 0.1 + 2.0)  # eight times: still only halved
    assert pacer.rate == pytest.approx(START_RATE * 0.25, rel=0.01)
    assert governor.load == pytest.approx(0.1, abs=0.001)  # a storm is not load


def test_a_cheap_storm_is_sped_up_to_its_share():
    """Connections waiting with CPU to spare: the rate grows, a quarter per window at most."""
    _, process, pacer, _ = governed(share=0.25)
    storm(pacer, process, 0.2)
    assert pacer.rate == pytest.approx(START_RATE * 1.25)
    storm(pacer, process, 0.24)
    assert pacer.rate == pytest.approx(START_RATE * 1.25 * 0.25 / 0.24)


def test_the_rate_stays_between_floor_and_ceiling():
    _, process, pacer, _ = governed()
    for _ in range(30):
        storm(pacer, process, 1.0)
    assert pacer.rate == FLOOR
    for _ in range(100):
        storm(pacer, process, 0.0)
    assert pacer.rate == CEILING


def test_no_storm_leaves_the_rate_where_the_last_one_settled():
    """
    After a storm the rate neither drifts back nor up: the next storm
    starts at a pace the machine has shown it can take.
    """
    _, process, pacer, _ = governed()
    storm(pacer, process, 0.5)
    settled = pacer.rate
    for _ in range(20):
        process.run(0.05, WINDOW)
    assert pacer.rate == settled


def test_a_long_queue_is_admitted_within_max_wait():
    """
    Whatever the share says, a listener with C{n} connections queued
    accepts at least C{n / max_wait} a second, up to the ceiling; the
    governor's own rate still follows the share.
    """
    clock = Clock()
    process = Process(clock)
    pacer = AcceptPacer(clock, per_turn=1)
    governor = AcceptGovernor(clock, [pacer], 0.25, 20.0, cpu=process)
    governor.startService()
    pacer.waiting = lambda: 8000
    process.run(1.0, WINDOW)
    assert governor.rate == START_RATE * 0.5  # far over the share
    assert pacer.rate == 400  # 8,000 in 20 s
    assert governor.waiting() == 8000
    pacer.waiting = lambda: 10**7
    process.run(1.0, WINDOW)
    assert pacer.rate == CEILING
    pacer.waiting = lambda: 10
    process.run(0.2, WINDOW)
    assert pacer.rate == governor.rate


def test_stopping_cancels_the_window():
    clock, _, _, governor = governed()
    assert clock.getDelayedCalls()
    governor.stopService()
    assert not clock.getDelayedCalls()


async def _running(tmp_path, **env):
    from twisted.internet import reactor

    from ocpptw.app.gateway import make_gateway

    settings = {"DATA_DIR": str(tmp_path), "PORT": "0", "WEBSOCKET_HOST": "127.0.0.1", "DRAIN_GRACE": "0.5", **env}
    gateway = make_gateway(load_config("", settings, {}, hostname="test"), reactor)
    gateway.startService()
    await bounded(gateway.started)
    return gateway


@pytest_twisted.ensureDeferred
async def test_auto_is_the_default_and_steers_the_listener(tmp_path):
    """
    By default one running governor steers the listener's pacer, and
    C{/metrics} shows its rate and the busy share it measures.
    """
    gateway = await _running(tmp_path)
    try:
        governor = gateway.accept_governor
        assert governor.running
        assert governor.pacers == [gateway.listener.pacer]
        assert governor.share == 0.25
        await until(lambda: governor.busy > 0)
        samples = scrape(gateway.metrics)
        assert samples["ocpp_accept_rate"][()] == START_RATE
        assert samples["ocpp_cpu_busy_ratio"][()] == governor.busy
        assert samples["ocpp_accept_queue"][()] == 0
    finally:
        await bounded(gateway.stopService())
    assert not governor.running


@pytest_twisted.ensureDeferred
async def test_a_fixed_rate_needs_no_governor(tmp_path):
    gateway = await _running(tmp_path, ACCEPT_RATE="300", ACCEPT_CPU_SHARE="0.5")
    try:
        assert getattr(gateway, "accept_governor", None) is None
        assert gateway.listener.pacer.rate == 300
        assert scrape(gateway.metrics)["ocpp_accept_rate"][()] == 300
    finally:
        await bounded(gateway.stopService())
