# -*- test-case-name: tests.test_sim -*-
"""
The connection ramp of a simulator worker: chargers connect at a bounded
rate with a bounded number of handshakes and first calls under way.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import Deferred

from ocpptw.sim.charger import Charger

perf = time.perf_counter


class Ramp:
    """
    Connects chargers at most C{rate} a second (0: as fast as possible) with
    at most C{concurrency} handshakes and first calls under way; fires
    C{done} once every charger is resolved, or at the deadline.
    """

    def __init__(self, worker: Any, chargers: list[Charger], rate: float, concurrency: int):
        self.worker = worker
        self.queue = list(reversed(chargers))
        self.rate = rate
        self.concurrency = concurrency
        self.remaining = len(chargers)
        self.started = 0
        self.under_way = 0
        self.t0 = perf()
        self.last_open = self.t0
        self.last_done = self.t0
        self.done: Deferred[None] = Deferred()
        self._tick_call = None
        self._deadline = None

    def start(self, deadline: float) -> Deferred[None]:
        reactor = self.worker.reactor
        if not self.remaining:
            reactor.callLater(0, self._finish)
        else:
            self._deadline = reactor.callLater(deadline, self._expired)
            self.pump()
        return self.done

    def pump(self) -> None:
        if self._tick_call is not None and self._tick_call.active():
            self._tick_call.cancel()
        self._tick_call = None
        allowed = self.started + len(self.queue)
        if self.rate:
            allowed = min(allowed, int((perf() - self.t0) * self.rate) + 1)
        while self.queue and self.started < allowed and self.under_way < self.concurrency:
            self.started += 1
            self.under_way += 1
            self.worker.connect(self.queue.pop())
        if self.queue and self.under_way < self.concurrency:
            delay = max(0.002, 1.0 / self.rate) if self.rate else 0.002
            self._tick_call = self.worker.reactor.callLater(delay, self.pump)

    def resolved(self) -> None:
        self.under_way -= 1
        self.remaining -= 1
        self.last_done = perf()
        if self.remaining <= 0:
            self._finish()
        elif self.queue:
            self.pump()

    def _expired(self) -> None:
        self._deadline = None
        self.worker.ramp_expired(self.queue)
        self.queue = []
        self._finish()

    def _finish(self) -> None:
        for call in (self._tick_call, self._deadline):
            if call is not None and call.active():
                call.cancel()
        if not self.done.called:
            self.done.callback(None)
