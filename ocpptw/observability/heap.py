# -*- test-case-name: tests.test_heap -*-
"""
Keep Python's cyclic garbage collector from pausing the gateway.

Reference counting frees almost everything the gateway drops; the cyclic
collector exists for the rest.  Its full collections visit every object in
the process, and the process holds tens of objects per connected charger: at
a few thousand chargers a full collection takes 50-100 ms, and a reconnect
storm triggers several of them (the new connections' objects all look
young), exactly when the chargers already connected need their answers.

So the gateway collects young objects often and cheaply, then freezes the
survivors (C{gc.freeze()}: the collector ignores them from then on):

  - every C{young_every} seconds, C{gc.collect()} (which only visits
    objects not frozen: those made since the last pass) and C{gc.freeze()};
  - every C{full_every} seconds, one full collection of everything
    (C{gc.unfreeze()}, C{gc.collect()}, C{gc.freeze()}), which finds the
    cycles that became garbage after they were frozen (a closed connection
    whose objects refer to each other, say).  That pause is the one the
    collector would otherwise take at random, taken at a known pace and
    logged with its duration.

Objects freed by reference counting are freed at once, frozen or not; only
cyclic garbage waits for the next full collection.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


class HeapService(Service):
    """
    The collection pace above, while the service runs.

    @param clock: drives the passes.
    @param young_every: seconds between young passes (collect, freeze).
    @param full_every: seconds between full collections; 0 for none (only
        when the gateway is known to make no reference cycles).
    @param collector: the C{gc} module (a fake in tests).
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, young_every: float = 0.1, full_every: float = 900.0, collector: Any = gc) -> None:
        self._clock = clock
        self._gc = collector
        self.young_every = young_every
        self.full_every = full_every
        self._young = LoopingCall(self.young)
        self._young.clock = clock
        self._full = LoopingCall(self.full)
        self._full.clock = clock
        #: Full collections made, and the duration of the last one (seconds).
        self.full_collections = 0
        self.last_full_seconds = 0.0

    def startService(self) -> None:
        super().startService()
        self._gc.collect()
        self._gc.freeze()
        self._young.start(self.young_every, now=False)
        if self.full_every:
            self._full.start(self.full_every, now=False)

    def stopService(self) -> Any:
        for loop in (self._young, self._full):
            if loop.running:
                loop.stop()
        self._gc.unfreeze()
        return super().stopService()

    def young(self) -> None:
        """
        Collect what is not frozen, then freeze the survivors.
        """
        self._gc.collect()
        self._gc.freeze()

    def full(self) -> None:
        """
        Collect everything, frozen or not, then freeze the survivors.
        """
        began = time.perf_counter()
        self._gc.unfreeze()
        found = self._gc.collect()
        self._gc.freeze()
        self.full_collections += 1
        self.last_full_seconds = time.perf_counter() - began
        self.log.debug(
            "full garbage collection: {found} unreachable objects, {ms:.1f} ms, {frozen} objects kept",
            found=found,
            ms=self.last_full_seconds * 1000,
            frozen=self._gc.get_freeze_count(),
        )
