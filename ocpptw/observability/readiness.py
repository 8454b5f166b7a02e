# -*- test-case-name: tests.test_readiness -*-
"""
What C{GET /ready} answers (docs/contract.md section 6).

Two kinds of check:

    - blocking: this instance cannot serve chargers or keep its promises
      (the listener is not up, it is draining, the outbox in C{DATA_DIR}
      refuses writes or has no room).  Any one failing makes C{/ready} 503,
      so the load balancer sends chargers elsewhere.
    - degrading: something every instance shares is down (the backend, the
      broker).  C{/ready} stays 200 with C{{"status": "degraded",
      "reasons": [...]}}: the outbox and the Authorize cache carry the
      work through the outage, and taking every pod out of the Service at
      once would turn a backend outage into a total one.

Every change of state or reasons is one log line and moves the
C{ocpp_readiness} gauge.  The state is evaluated on every C{/ready} and
every C{interval} seconds while the service runs, so the log line and the
metric do not depend on a probe coming.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

Check = Callable[[], "tuple[bool, str]"]

READY = "ready"
DEGRADED = "degraded"
UNAVAILABLE = "unavailable"
STATES = (READY, DEGRADED, UNAVAILABLE)

#: Free bytes under which C{DATA_DIR} has no room for the outbox: a write
#: of a few pages would fail, so the instance stops taking chargers first.
MIN_FREE_BYTES = 1024 * 1024


def free_bytes(path: str) -> int:
    """
    Bytes an unprivileged writer may still use in the file system of C{path}.
    """
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def room_check(path: str, minimum: int = MIN_FREE_BYTES, measure: Callable[[str], int] = free_bytes) -> Check:
    """
    A blocking check: C{path} has at least C{minimum} bytes free.
    """

    def check() -> tuple[bool, str]:
        try:
            free = measure(path)
        except OSError as e:
            return False, f"cannot inspect {path}: {e.strerror or e}"
        if free < minimum:
            return False, f"no room in {path}: {free} bytes free"
        return True, ""

    return check


class Readiness(Service):
    """
    The instance's readiness, from its checks.

    @param blocking: checks C{() -> (ok, reason)} whose failure makes the
        instance unavailable (503).
    @param degrading: checks whose failure only degrades it (200).
    @param clock: an L{IReactorTime} for the periodic evaluation.
    @param observer: optional, with C{readiness(state)} (L{Metrics}).
    @param interval: seconds between evaluations while running.
    """

    log = Logger()

    def __init__(
        self,
        blocking: list[Check],
        degrading: list[Check] | None = None,
        clock: Any = None,
        observer: Any = None,
        interval: float = 1.0,
    ) -> None:
        self._blocking = list(blocking)
        self._degrading = list(degrading or [])
        self._clock = clock
        self._observer = observer
        self._interval = interval
        self._loop: LoopingCall | None = None
        self._last: tuple[str, tuple[str, ...]] | None = None

    def evaluate(self) -> tuple[str, list[str]]:
        """
        The state (C{ready}, C{degraded} or C{unavailable}) and the
        reasons; logs and updates the metric when they changed.
        """
        blocked = _failing(self._blocking)
        degraded = _failing(self._degrading)
        if blocked:
            state, reasons = UNAVAILABLE, blocked + degraded
        elif degraded:
            state, reasons = DEGRADED, degraded
        else:
            state, reasons = READY, []
        self._changed(state, reasons)
        return state, reasons

    def answer(self) -> tuple[int, dict]:
        """
        The HTTP status and JSON body of C{GET /ready}.
        """
        state, reasons = self.evaluate()
        if state == READY:
            return 200, {"status": READY}
        return (503 if state == UNAVAILABLE else 200), {"status": state, "reasons": reasons}

    def _changed(self, state: str, reasons: list[str]) -> None:
        current = (state, tuple(reasons))
        if current == self._last:
            return
        first = self._last is None
        self._last = current
        if self._observer is not None:
            self._observer.readiness(state)
        if state == READY:
            if not first:
                self.log.info("ready: serving chargers normally again")
        elif state == DEGRADED:
            self.log.warn("ready, degraded: {reasons}", reasons="; ".join(reasons), state=state)
        else:
            self.log.warn("not ready: {reasons}", reasons="; ".join(reasons), state=state)

    def startService(self) -> None:
        super().startService()
        if self._clock is not None and self._interval > 0:
            self._loop = LoopingCall(self.evaluate)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=False).addErrback(
                lambda f: self.log.failure("evaluating readiness failed", f)
            )

    def stopService(self) -> Any:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return super().stopService()


def _failing(checks: list[Check]) -> list[str]:
    reasons = []
    for check in checks:
        ok, reason = check()
        if not ok:
            reasons.append(reason)
    return reasons
