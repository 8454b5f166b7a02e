"""
Tests for L{ocpptw.transport.token_bucket}: the one token bucket of the accept
pace and the per-address handshake rate.
"""

from __future__ import annotations

import pytest

from ocpptw.transport.token_bucket import TokenBucket


def test_starts_full_and_refills_at_the_rate_up_to_the_burst():
    """A new bucket holds its burst; spent tokens come back at the rate, never above the burst."""
    bucket = TokenBucket(rate=2.0, burst=3.0, now=100.0)
    assert [bucket.try_take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.refill(100.25) == pytest.approx(0.5)
    assert not bucket.try_take(100.25)
    assert bucket.try_take(100.5)
    assert bucket.refill(200.0) == 3.0


def test_a_refusal_still_brings_the_bucket_up_to_date():
    """A refused take keeps what accrued and counts from its own time."""
    bucket = TokenBucket(rate=1.0, burst=1.0, now=0.0)
    assert bucket.try_take(0.0)
    assert not bucket.try_take(0.5)
    assert (bucket.tokens, bucket.then) == (pytest.approx(0.5), 0.5)
    assert bucket.try_take(1.0)


def test_taking_more_than_held_goes_below_zero_and_waits_longer():
    """take() may overdraw; wait() is the time until one whole token is back."""
    bucket = TokenBucket(rate=4.0, burst=2.0, now=0.0)
    bucket.take(3)
    assert bucket.tokens == -1.0
    assert bucket.wait() == pytest.approx(0.5)
    assert bucket.refill(0.5) == pytest.approx(1.0)
    assert bucket.wait() == 0.0


def test_a_changed_rate_applies_from_the_next_refill():
    """The accept governor changes the rate: what accrued since the last refill counts at the new rate."""
    bucket = TokenBucket(rate=1.0, burst=10.0, now=0.0)
    bucket.take(10)
    bucket.rate = 4.0
    assert bucket.refill(1.0) == pytest.approx(4.0)


def test_no_rate_never_waits():
    """With rate 0 there is nothing to wait for (the pace is off)."""
    assert TokenBucket(rate=0.0, burst=1.0, now=0.0).wait() == 0.0


def test_full_at_tells_when_forgetting_the_bucket_changes_nothing():
    """full_at is true once the bucket would have refilled to its burst."""
    bucket = TokenBucket(rate=1.0, burst=2.0, now=0.0)
    assert bucket.full_at(0.0)
    bucket.take(2)
    assert not bucket.full_at(1.9)
    assert bucket.full_at(2.0)
