"""
Tests for L{ocpptw.transport.admission}: the handshake cap and the
per-address token bucket, on a C{Clock}.
"""

from __future__ import annotations

import pytest

from ocpptw.transport.admission import BUSY, RATE, HandshakeAdmission


def test_concurrency_cap_and_leave(clock):
    """Beyond the cap handshakes are refused until one leaves."""
    admission = HandshakeAdmission(clock, max_concurrent=2)
    assert admission.try_enter("10.0.0.1")
    assert admission.try_enter("10.0.0.2")
    assert not admission.try_enter("10.0.0.3")
    assert admission.last_refusal == BUSY
    admission.leave()
    assert admission.try_enter("10.0.0.3")
    assert admission.in_progress == 2
    assert admission.refusals == {BUSY: 1, RATE: 0}


def test_leave_never_goes_negative(clock):
    """An extra leave does not open extra room."""
    admission = HandshakeAdmission(clock, max_concurrent=1)
    admission.leave()
    assert admission.in_progress == 0
    assert admission.try_enter("a")
    assert not admission.try_enter("b")


def test_per_address_rate_refills_with_time(clock):
    """One address gets its burst, then the rate; other addresses are unaffected."""
    admission = HandshakeAdmission(clock, max_concurrent=1000, rate_per_ip=2)
    assert [admission.try_enter("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert admission.last_refusal == RATE
    assert admission.try_enter("10.0.0.2")
    clock.advance(0.4)
    assert not admission.try_enter("10.0.0.1")
    clock.advance(0.1)
    assert admission.try_enter("10.0.0.1")
    clock.advance(10)
    assert [admission.try_enter("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert admission.refusals[RATE] == 3


def test_sustained_rate_is_bounded(clock):
    """Over 10 s one address at 50 attempts a second gets rate x time + burst."""
    admission = HandshakeAdmission(clock, max_concurrent=10_000, rate_per_ip=5)
    admitted = 0
    for _ in range(500):
        if admission.try_enter("192.0.2.1"):
            admitted += 1
            admission.leave()
        clock.advance(0.02)
    assert 5 * 10 <= admitted <= 5 * 10 + 5 + 1


def test_refused_by_cap_costs_no_token(clock):
    """A handshake refused for the cap does not use up the address's rate."""
    admission = HandshakeAdmission(clock, max_concurrent=1, rate_per_ip=1)
    assert admission.try_enter("other")
    assert not admission.try_enter("10.0.0.1")
    admission.leave()
    assert admission.try_enter("10.0.0.1")


def test_no_rate_limit_tracks_nothing(clock):
    """Without a per-address rate no address state is kept."""
    admission = HandshakeAdmission(clock, max_concurrent=10_000)
    for i in range(1000):
        assert admission.try_enter(f"10.0.{i // 256}.{i % 256}")
    assert admission.tracked == 0


def test_tracked_addresses_are_bounded(clock):
    """Address spraying cannot grow memory past the bound."""
    admission = HandshakeAdmission(clock, max_concurrent=1_000_000, rate_per_ip=1, max_tracked=100)
    for i in range(1000):
        admission.try_enter(f"2001:db8::{i:x}")
    assert admission.tracked <= 100
    clock.advance(5)
    admission.try_enter("2001:db8::ffff")
    assert admission.tracked <= 100


def test_burst_is_configurable(clock):
    """An explicit burst lets a few quick reconnects through at a low rate."""
    admission = HandshakeAdmission(clock, max_concurrent=100, rate_per_ip=0.5, burst=3)
    assert [admission.try_enter("a") for _ in range(4)] == [True, True, True, False]
    clock.advance(2)
    assert admission.try_enter("a")


def test_bad_parameters():
    """A cap below one or a negative rate is a mistake."""
    from twisted.internet.task import Clock

    with pytest.raises(ValueError):
        HandshakeAdmission(Clock(), max_concurrent=0)
    with pytest.raises(ValueError):
        HandshakeAdmission(Clock(), max_concurrent=1, rate_per_ip=-1)
