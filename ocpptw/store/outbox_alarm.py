# -*- test-case-name: tests.fuzz.test_bounds -*-
"""
An alarm on the local outbox: when more than C{OUTBOX_ALARM_DEPTH} entries
wait (default 100,000) or the oldest has waited longer than
C{OUTBOX_ALARM_AGE} seconds (default 3,600), deliveries to the backend or
the broker are not getting through and C{DATA_DIR} is filling up.  The
alarm logs one error line when it goes off, one info line when it clears
(never one per check), and its state is the metric C{ocpp_outbox_alarm}
(1 while raised).

The outbox keeps the entries (nothing is dropped); the alarm only tells the
operator early, long before C{OUTBOX_MAX_AGE} parks them as dead letters.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocpptw.clock import Periodic
from ocpptw.interfaces import IOutbox


class OutboxAlarm(Periodic):
    """
    Checks the outbox every C{interval} seconds while running.

    @param outbox: provides C{depth()} and C{oldest_age()} (L{ocpptw.store.outbox.Outbox}).
    @param clock: the reactor or a test clock.
    @ivar raised: C{True} while the alarm is on.
    @ivar reason: why, in words, while it is on.
    """

    log = Logger()

    def __init__(
        self,
        outbox: IOutbox,
        clock: IReactorTime,
        max_depth: int = 100_000,
        max_age: float = 3600.0,
        interval: float = 60.0,
    ) -> None:
        super().__init__(clock, interval)
        self._outbox = outbox
        self._clock = clock
        self.max_depth = max_depth
        self.max_age = max_age
        self.raised = False
        self.reason = ""

    job = "the outbox alarm check"

    def tick(self) -> None:
        self.check()

    def check(self) -> bool:
        """
        Compare the outbox with the thresholds now; log when the state
        changes.  Returns whether the alarm is raised.
        """
        depth, age = self._outbox.depth(), self._outbox.oldest_age()
        reasons = []
        if depth > self.max_depth:
            reasons.append(f"{depth} entries wait (alarm above {self.max_depth})")
        if age > self.max_age:
            reasons.append(f"the oldest has waited {age:.0f} s (alarm above {self.max_age:.0f} s)")
        if reasons and not self.raised:
            self.log.error(
                "outbox alarm: {reason}; the backend or the broker is not taking deliveries",
                reason="; ".join(reasons),
                depth=depth,
                oldestAge=age,
            )
        elif not reasons and self.raised:
            self.log.info("outbox alarm cleared: {depth} entries wait", depth=depth)
        self.raised = bool(reasons)
        self.reason = "; ".join(reasons)
        return self.raised
