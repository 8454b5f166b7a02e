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

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocpptw.clock import Periodic


class HeapService(Periodic):
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
        super().__init__(clock, young_every)
        self._gc = collector
        self.young_every = young_every
        self.full_every = full_every
        self._full = _FullCollections(self, clock, full_every) if full_every else None
        #: Full collections made, and the duration of the last one (seconds).
        self.full_collections = 0
        self.last_full_seconds = 0.0

    def startService(self) -> None:
        super().startService()
        self._gc.collect()
        self._gc.freeze()
        if self._full is not None:
            self._full.startService()

    def stopService(self) -> Any:
        if self._full is not None and self._full.running:
            self._full.stopService()
        self._gc.unfreeze()
        return super().stopService()

    job = "a young garbage collection"

    def tick(self) -> None:
        self.young()

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


class _FullCollections(Periodic):
    """
    The full collections of a L{HeapService}, on their own pace.
    """

    job = "a full garbage collection"

    def __init__(self, heap: HeapService, clock: IReactorTime, every: float) -> None:
        super().__init__(clock, every)
        self._heap = heap

    def tick(self) -> None:
        self._heap.full()
