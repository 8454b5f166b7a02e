# -*- test-case-name: tests.transport.test_admission -*-
"""
Connection-storm control at the WebSocket handshake.  After a restart or a
network outage thousands of chargers reconnect at once, and each handshake
costs CPU (TLS, the charger-record lookup): admit them at a bounded pace,
answer the rest 503, and chargers retry with their own backoff.

Two limits:
  - at most C{max_concurrent} handshakes in progress at once (the record
    lookup is the slow part);
  - per peer address, a token bucket of C{rate_per_ip} handshakes a second
    (burst of the same size), so one misbehaving charger or NAT cannot take
    the whole budget.  Behind a proxy every charger has the proxy's
    address: keep the per-address rate off there (0).

Pure: time comes from the injected clock.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from ocpptw.transport.token_bucket import TokenBucket

#: Reasons in L{HandshakeAdmission.refusals}.
BUSY = "busy"
RATE = "rate"


class HandshakeAdmission:
    """
    Admission of WebSocket handshakes.

    @param clock: the time source.
    @param max_concurrent: handshakes in progress at once.
    @param rate_per_ip: handshakes a second from one address; 0 for no
        per-address limit.
    @param burst: handshakes one address may make at once before the rate
        applies; C{rate_per_ip} (at least 1) by default.
    @param max_tracked: addresses tracked before idle ones are forgotten
        (bounded memory against address spraying).

    @ivar in_progress: handshakes admitted and not yet left.
    @ivar refusals: refusals by reason (L{BUSY}, L{RATE}).
    @ivar last_refusal: the reason of the latest refusal, or C{None}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        max_concurrent: int,
        rate_per_ip: float = 0,
        burst: float | None = None,
        max_tracked: int = 65536,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if rate_per_ip < 0:
            raise ValueError("rate_per_ip must be zero or more")
        self._clock = clock
        self.max_concurrent = max_concurrent
        self.rate_per_ip = rate_per_ip
        self.burst = float(burst if burst is not None else max(1.0, rate_per_ip))
        self._max_tracked = max_tracked
        self._buckets: dict[str, TokenBucket] = {}
        self.in_progress = 0
        self.refusals = {BUSY: 0, RATE: 0}
        self.last_refusal: str | None = None

    def try_enter(self, peer_ip: str) -> bool:
        """
        Admit one handshake from C{peer_ip} now?  A C{True} answer must be
        matched by one L{leave} when the handshake ends, however it ends.
        """
        if self.in_progress >= self.max_concurrent:
            return self._refuse(BUSY)
        if self.rate_per_ip and not self._take_token(peer_ip):
            return self._refuse(RATE)
        self.in_progress += 1
        return True

    def leave(self) -> None:
        """
        One admitted handshake ended (accepted, refused or dropped).
        """
        if self.in_progress > 0:
            self.in_progress -= 1

    def _refuse(self, reason: str) -> bool:
        self.refusals[reason] += 1
        self.last_refusal = reason
        return False

    def _take_token(self, peer_ip: str) -> bool:
        now = self._clock.seconds()
        bucket = self._buckets.get(peer_ip)
        if bucket is None:
            bucket = self._buckets[peer_ip] = TokenBucket(self.rate_per_ip, self.burst, now)
        if not bucket.try_take(now):
            return False
        if len(self._buckets) > self._max_tracked:
            self._forget_idle(now)
        return True

    def _forget_idle(self, now: float) -> None:
        """
        Drop the buckets that have refilled: forgetting them changes
        nothing.  If that is not enough, drop the oldest half.
        """
        full = [ip for ip, bucket in self._buckets.items() if bucket.full_at(now)]
        for ip in full:
            del self._buckets[ip]
        if len(self._buckets) > self._max_tracked:
            by_age = sorted(self._buckets.items(), key=lambda item: item[1].then)
            for ip, _ in by_age[: len(by_age) // 2]:
                del self._buckets[ip]

    @property
    def tracked(self) -> int:
        """
        Addresses whose buckets are kept.
        """
        return len(self._buckets)
