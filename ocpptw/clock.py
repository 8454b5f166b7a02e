# -*- test-case-name: tests.test_clock -*-
"""
Time, always UTC, always read from an injected L{IReactorTime}.
"""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet.interfaces import IReactorTime

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
