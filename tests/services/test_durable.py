"""
Tests for L{ocpptw.services.chargers.durable}: one Deferred for a call's writes.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ocpptw.services.chargers import durable


def test_fires_once_every_write_has():
    """Not before the last write lands, and with None."""
    a, b = Deferred(), Deferred()
    results = []
    durable(a, b).addCallback(results.append)
    a.callback("row")
    assert results == []
    b.callback("row")
    assert results == [None]


def test_no_writes_fire_at_once():
    results = []
    durable().addCallback(results.append)
    assert results == [None]


def test_first_failure_wins_and_the_others_are_consumed():
    """The caller sees the first write's own failure; a later failure is not left unhandled."""
    a, b, c = Deferred(), Deferred(), Deferred()
    failures = []
    durable(a, b, c).addErrback(failures.append)
    b.errback(Failure(ValueError("disk full")))
    a.errback(Failure(KeyError("later")))
    c.callback(None)
    assert len(failures) == 1 and failures[0].check(ValueError)
    for d in (a, b, c):
        assert d.result is None  # consumed: no "Unhandled error in Deferred"
