# -*- test-case-name: tests.app.test_tree -*-
"""
A service tree whose children start one after the other and stop in
reverse order, each waiting for the one before when its start or stop
returns a L{Deferred} (buildbot's C{AsyncMultiService}, made sequential).

Twisted's L{MultiService} starts its children at once and ignores what
their C{startService} returns; the gateway needs its database open before
the ledger loads, the ledger loaded before the listener accepts, and the
reverse on the way down.
"""

from __future__ import annotations

from typing import Any, Generator

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.python.failure import Failure


class OrderedMultiService(MultiService):
    """
    Children start in the order they were added and stop in reverse.

    L{startService} returns a L{Deferred} that fires once every child has
    started; when a child's start fails, the children started before it are
    stopped again (in reverse) and the failure is passed on.  A child whose
    start raised synchronously makes L{startService} raise too, so that
    twistd reports it before it detaches (L{StartFailed}).
    """

    def startService(self) -> Deferred[None]:
        self.running = 1
        d = self._start_children()
        failures: list[Failure] = []

        def seen(failure: Failure) -> Failure:
            failures.append(failure)
            return failure

        d.addErrback(seen)
        if failures:  # a child raised before the first asynchronous step
            d.addErrback(lambda _: None)
            self.running = 0
            failures[0].raiseException()
        return d

    @inlineCallbacks
    def _start_children(self) -> Generator[Any, Any, None]:
        started: list[Any] = []
        try:
            for child in list(self):
                yield maybeDeferred(child.startService)
                started.append(child)
        except BaseException:
            for child in reversed(started):
                try:
                    yield maybeDeferred(child.stopService)
                except Exception:  # noqa: BLE001 - the start failure is the one to report
                    pass
            raise

    def privilegedStartService(self) -> None:
        for child in list(self):
            child.privilegedStartService()

    @inlineCallbacks
    def stopService(self) -> Generator[Any, Any, None]:
        self.running = 0
        failure = None
        for child in reversed(list(self)):
            if not child.running:
                continue
            try:
                yield maybeDeferred(child.stopService)
            except Exception as e:  # noqa: BLE001 - stop the rest, then report the first
                failure = failure or e
        if failure is not None:
            raise failure
