# -*- test-case-name: tests.transport.test_token_bucket,tests.transport.test_pacing,tests.transport.test_admission -*-
"""
A token bucket: C{rate} tokens a second, at most C{burst} held, full at
first.  Pure: the caller passes the time.  Used by the accept pace
(L{ocpptw.transport.pacing.AcceptPacer}) and by the per-address handshake
rate (L{ocpptw.transport.admission.HandshakeAdmission}).
"""

from __future__ import annotations


class TokenBucket:
    """
    @ivar rate: tokens added a second (may be changed at any time: what
        accrued before counts at the rate of the next L{refill}).
    @ivar burst: the most tokens held.
    @ivar tokens: tokens held at L{then}.
    @ivar then: when L{tokens} was last brought up to date.
    """

    __slots__ = ("burst", "rate", "then", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.then = now

    def refill(self, now: float) -> float:
        """
        Bring the tokens up to C{now}; return them.
        """
        self.tokens = min(self.burst, self.tokens + (now - self.then) * self.rate)
        self.then = now
        return self.tokens

    def take(self, count: float = 1.0) -> None:
        """
        Spend C{count} tokens (what was taken without asking, too: the
        bucket may go below zero and refills from there).
        """
        self.tokens -= count

    def try_take(self, now: float) -> bool:
        """
        Spend one token if one is there at C{now}.
        """
        if self.refill(now) < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait(self) -> float:
        """
        Seconds from L{then} until one token is there.
        """
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate else 0.0

    def full_at(self, now: float) -> bool:
        """
        Whether the bucket would be full at C{now} (forgetting it then
        changes nothing).
        """
        return self.tokens + (now - self.then) * self.rate >= self.burst
