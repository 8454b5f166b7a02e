# -*- test-case-name: tests.test_clock,tests.test_events -*-
"""
Time, always UTC, always read from an injected L{IReactorTime}; and
L{Periodic}, the one base for work the gateway repeats (heap collections,
the outbox alarm, log retention, certificate checks, the accept governor).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

_UTC = timezone.utc


def utcnow(clock: IReactorTime) -> datetime:
    """
    The clock's current time as an aware UTC datetime.
    """
    return datetime.fromtimestamp(clock.seconds(), tz=_UTC)


def iso_z(moment: datetime) -> str:
    """
    ISO 8601 with milliseconds and a C{Z}: C{2026-11-24T10:00:00.000Z}.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    return moment.astimezone(_UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_z(clock: IReactorTime) -> str:
    """
    The clock's current time as an ISO 8601 UTC string with a C{Z}, as
    L{iso_z} gives it, formatted directly (it stamps every frame and every
    event).
    """
    m = datetime.fromtimestamp(clock.seconds(), _UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (m.year, m.month, m.day, m.hour, m.minute, m.second, m.microsecond // 1000)


def parse_iso(text: str) -> datetime:
    """
    Parse an ISO 8601 timestamp as chargers send it.  A missing offset is
    taken as UTC (many chargers omit it); a trailing C{Z} is accepted.

    @raise ValueError: when C{text} is not a timestamp, or names one that
        leaves the calendar in UTC (C{9999-12-31T23:59:59-05:00}).
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    try:
        return moment.astimezone(_UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is not a time in UTC's calendar") from None


class Periodic(Service):
    """
    Calls L{tick} every C{interval} seconds on C{clock} while running.

    A tick that returns a L{Deferred} delays the next one until it fires
    (L{LoopingCall}'s rule), and L{stopService} waits for it.  A tick that
    fails is logged and the next one runs on time: periodic work never stops
    because one round went wrong.

    @param clock: the reactor, or a L{twisted.internet.task.Clock} in tests.
    @param interval: seconds between two ticks.
    @param now: also tick at start.
    """

    log = Logger()
    #: What the job does, in words, for the log line of a failed tick.
    job = "periodic work"

    def __init__(self, clock: IReactorTime, interval: float, now: bool = False) -> None:
        self.clock = clock
        self.interval = interval
        self._now = now
        self._loop: LoopingCall | None = None
        self._running_tick: Deferred[Any] | None = None

    def tick(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement tick()")

    def _guarded_tick(self) -> Any:
        try:
            result = self.tick()
        except Exception:
            self.log.failure("{job} failed", job=self.job)
            return None
        if isinstance(result, Deferred):
            self._running_tick = result
            return result.addErrback(self._failed).addBoth(self._tick_done)
        return None

    def _failed(self, failure: Any) -> None:
        self.log.failure("{job} failed", failure, job=self.job)

    def _tick_done(self, result: Any) -> Any:
        self._running_tick = None
        return result

    def startService(self) -> None:
        super().startService()
        loop = self._loop = LoopingCall(self._guarded_tick)
        loop.clock = self.clock
        loop.start(self.interval, now=self._now)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        running = self._running_tick
        if running is None:
            return None
        waiter: Deferred[None] = Deferred()

        def over(result: object) -> object:
            waiter.callback(None)
            return result

        running.addBoth(over)
        return waiter
