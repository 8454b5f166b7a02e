"""
Test helpers: trial's synchronous result checks, and bounded waits.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

#: Every wait on the real reactor in a test is bounded by this many seconds.
WAIT = 10.0


def success_result_of(d: Deferred[Any]) -> Any:
    """
    The result of a Deferred that must already have fired successfully.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    if not results:
        raise AssertionError(f"{d!r} has not fired")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def failure_result_of(d: Deferred[Any], *types: type[BaseException]) -> Failure:
    """
    The failure of a Deferred that must already have failed, with one of
    C{types} when given.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    if not results:
        raise AssertionError(f"{d!r} has not fired")
    if not isinstance(results[0], Failure):
        raise AssertionError(f"{d!r} succeeded with {results[0]!r}")
    if types and not results[0].check(*types):
        raise AssertionError(f"{d!r} failed with {results[0]!r}, not {types}")
    return results[0]


def no_result(d: Deferred[Any]) -> None:
    """
    Assert that C{d} has not fired yet.
    """
    results: list[Any] = []
    d.addBoth(lambda r: results.append(r) or r)
    if results:
        raise AssertionError(f"{d!r} fired with {results[0]!r}")


def bounded(d: Deferred[Any], seconds: float = WAIT) -> Deferred[Any]:
    """
    C{d} with a timeout on the global reactor: integration waits never hang.
    """
    from twisted.internet import reactor

    return d.addTimeout(seconds, reactor)


async def until(predicate, seconds: float = WAIT, step: float = 0.01) -> None:
    """
    Wait on the real reactor until C{predicate()} is true, at most C{seconds}.
    For integration tests only.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    waited = 0.0
    while not predicate():
        if waited >= seconds:
            raise AssertionError(f"condition not met within {seconds} s: {predicate}")
        await deferLater(reactor, step, lambda: None)
        waited += step
