# -*- test-case-name: tests.transport.test_governor -*-
"""
The accept pace of a connection storm, set from the CPU it costs: new
chargers get a bounded share of the processor, the chargers already
connected keep the rest.

A fixed accept rate is right for one machine and one kind of connection
only: a TLS handshake with a client certificate costs several times a plain
one, and a faster machine could take a storm sooner.  What the chargers
already connected feel is how busy the process is: a frame that arrives
while the reactor (or a thread holding the interpreter) is busy waits.  So
every C{window} seconds the process's CPU time is read:

  - while no connection waits for the rate (no storm), the busy share of a
    core is the connected chargers' load, followed as a moving average;
  - while connections wait, the storm's share is the busy share above that
    load, and the rate is scaled by C{share} / storm's share (by at most
    half or a quarter more per window), so that new connections take about
    C{share} of a core, between C{floor} and C{ceiling} accepts a second.

The rate stays where the last storm left it when the storm is over, so the
next one starts from a pace this machine has shown it can take.  Every
listener's L{AcceptPacer} follows the one rate: they share one process.

One bound overrides the share: no charger should wait in the listen queue
much longer than C{max_wait} seconds, or it gives up, tries again at the back
of the queue and the storm never ends.  So a listener whose queue holds
C{n} connections accepts at least C{n / max_wait} a second (up to the
ceiling): a storm too big for the share is admitted in about C{max_wait}
seconds at the connected chargers' expense, as fast as the process can.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ocpptw.clock import Periodic

#: Accepts a second before the first storm.
START_RATE = 100.0
#: Lowest and highest accepts a second.
FLOOR, CEILING = 20.0, 5000.0
#: Seconds between decisions.
WINDOW = 0.25
#: Most a rate may change in one window, down and up.
MOST_CUT, MOST_GROWTH = 0.5, 1.25
#: Weight of a quiet window in the connected chargers' load.
LOAD_WEIGHT = 0.2


class AcceptGovernor(Periodic):
    """
    Sets the C{rate} of C{pacers} from the process's CPU time while running.

    @param clock: the reactor.
    @param pacers: the L{ocpptw.transport.pacing.AcceptPacer}s to steer.
    @param share: the share of one core a storm's new connections may take.
    @param max_wait: seconds a connection should wait in a listen queue at
        most.
    @param cpu: seconds of CPU the process has used (C{time.process_time}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        pacers: list[Any],
        share: float,
        max_wait: float = 30.0,
        *,
        start: float = START_RATE,
        floor: float = FLOOR,
        ceiling: float = CEILING,
        window: float = WINDOW,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        super().__init__(clock, window)
        self._clock = clock
        self._cpu = cpu
        self.pacers = pacers
        self.share = share
        self.max_wait = max_wait
        self.floor = floor
        self.ceiling = ceiling
        self.window = window
        self.rate = min(ceiling, max(floor, start))
        #: The busy share of a core in the last window.
        self.busy = 0.0
        #: The connected chargers' load: the busy share while no storm.
        self.load = 0.0
        self._then = 0.0
        self._cpu_then = 0.0
        self._pauses = 0
        for pacer in pacers:
            pacer.rate = self.rate

    def steer(self, pacer: Any) -> None:
        """
        Set C{pacer}'s rate from now on, too.
        """
        self.pacers.append(pacer)
        pacer.rate = self.rate

    def startService(self) -> None:
        super().startService()
        self._then, self._cpu_then = self._clock.seconds(), self._cpu()
        self._pauses = self._paused()

    job = "steering the accept rate"

    def tick(self) -> None:
        """
        One window is over: measure it and decide.
        """
        now, cpu = self._clock.seconds(), self._cpu()
        if now > self._then:
            paused = self._paused()
            waiting = [pacer.waiting() for pacer in self.pacers]
            self.decide((cpu - self._cpu_then) / (now - self._then), paused != self._pauses or any(waiting))
            self._pauses = paused
            for pacer, queued in zip(self.pacers, waiting):
                pacer.rate = min(self.ceiling, max(self.rate, queued / self.max_wait))
        self._then, self._cpu_then = now, cpu

    def decide(self, busy: float, limited: bool) -> None:
        """
        Set the rate from one window's C{busy} share of a core; C{limited}
        says whether connections waited for the rate in it.
        """
        self.busy = busy
        if not limited:
            self.load += LOAD_WEIGHT * (busy - self.load)
            return
        storm = max(busy - self.load, 0.01)
        factor = min(MOST_GROWTH, max(MOST_CUT, self.share / storm))
        self.rate = min(self.ceiling, max(self.floor, self.rate * factor))
        for pacer in self.pacers:
            pacer.rate = self.rate

    def waiting(self) -> int:
        """
        Connections waiting in the listen queues now.
        """
        return sum(pacer.waiting() for pacer in self.pacers)

    def _paused(self) -> int:
        return sum(pacer.pauses for pacer in self.pacers)
