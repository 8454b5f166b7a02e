# -*- test-case-name: tests.transport.test_gate_hardening -*-
"""
A bound on failed credential checks (docs/contract.md section 1): at most
L{MAX_FAILURES} in any L{WINDOW} seconds per source address and identity;
past it the handshake gets 429 without checking, until the window holds
fewer.  A success does not erase earlier failures.  Memory is bounded:
at most C{max_keys} (address, identity) pairs are remembered, the least
recently failed forgotten first.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ocpptw.transport.auth import AuthOutcome

MAX_FAILURES = 10
WINDOW = 60.0

#: The refusal while the limit holds.
TOO_MANY = AuthOutcome(False, 429, "too many failed credential checks, retry later")


class GuessLimit:
    """
    Wraps an authenticator (C{(identity, headers, peer, certificate,
    record, ...) -> AuthOutcome}) with the limit.
    """

    def __init__(
        self,
        authenticate: Any,
        clock: IReactorTime,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW,
        max_keys: int = 10_000,
        trusted: Any = None,
    ) -> None:
        self._trusted = trusted
        self._authenticate = authenticate
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._max_keys = max_keys
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def __getattr__(self, name: str) -> Any:  # profile, forwarded_certificate, ...
        if name == "_authenticate":
            raise AttributeError(name)
        return getattr(self._authenticate, name)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def blocked(self, peer: str | None, identity: str) -> bool:
        times = self._recent((peer or "", identity), self._clock.seconds())
        return times is not None and len(times) >= self._max

    def failed(self, peer: str | None, identity: str) -> None:
        key = (peer or "", identity)
        now = self._clock.seconds()
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = deque(maxlen=self._max)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        times.append(now)

    def __len__(self) -> int:
        return len(self._failures)

    def source(self, peer: str | None, headers: Any) -> str:
        """
        Whom the failures count against: the client a trusted proxy names
        (the last C{X-Forwarded-For} address; behind a TLS terminator every
        charger shares the proxy's address), else the TCP peer; an IPv6
        address by its /64, which one client usually holds whole.
        """
        address = peer or ""
        if self._trusted and self._trusted.is_trusted(address):
            forwarded = ""
            if headers is not None:
                value = headers.get("x-forwarded-for") or ""
                forwarded = (value if isinstance(value, str) else ",".join(value)).split(",")[-1].strip()
            address = forwarded.strip("[]") or f"proxy:{address}"
        if ":" in address and not address.startswith("proxy:"):
            try:
                return str(ipaddress.ip_network(f"{address}/64", strict=False))
            except ValueError:
                return address
        return address

    def __call__(self, identity: str, headers: Any, peer: str | None, certificate: Any, record: Any, *args: Any) -> AuthOutcome:
        source = self.source(peer, headers)
        if self.blocked(source, identity):
            return TOO_MANY
        outcome = self._authenticate(identity, headers, peer, certificate, record, *args)
        if not outcome.ok and outcome.status == 401:
            self.failed(source, identity)
        return outcome
