# -*- test-case-name: tests.adapters.test_backend_http -*-
"""
A circuit breaker for calls to an external system, on an injected clock
(no timers: the state is computed from timestamps).
"""

from __future__ import annotations

from typing import Any

from ocpptw.interfaces import BackendUnavailable


class CircuitOpen(BackendUnavailable):
    """
    The call was not attempted: the circuit is open after repeated failures.
    """


class Circuit:
    """
    A consecutive-failure circuit breaker on a clock.

    After C{threshold} failures in a row the circuit opens: L{admit} raises
    L{CircuitOpen} for C{cooldown} seconds.  Then one call is admitted as the
    probe; its success closes the circuit, its failure opens it again.  Any
    success resets the count.

    @param clock: provides C{seconds()}.
    @param name: what is behind the circuit, for the reasons given.
    """

    def __init__(self, clock: Any, threshold: int, cooldown: float, name: str = "backend") -> None:
        self._clock = clock
        self._name = name
        self._threshold = threshold
        self._cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self.reason = ""
        self.probing = False

    def admit(self) -> bool:
        """
        Whether a call may go out now (C{True}: as the probe); raises
        L{CircuitOpen} otherwise.
        """
        if self.opened_at is None:
            return False
        if self.probing or self._clock.seconds() < self.opened_at + self._cooldown:
            raise CircuitOpen(f"{self._name} circuit open: {self.reason}")
        self.probing = True
        return True

    def succeeded(self) -> bool:
        """
        Record a reachable backend; C{True} when this closed the circuit.
        """
        was_open = self.opened_at is not None
        self.failures, self.opened_at, self.probing, self.reason = 0, None, False, ""
        return was_open

    def failed(self, reason: str) -> bool:
        """
        Record an unreachable backend; C{True} when this opened the circuit.
        """
        self.failures += 1
        self.probing = False
        if self.opened_at is not None or self.failures >= self._threshold:
            was_closed = self.opened_at is None
            self.opened_at = self._clock.seconds()
            self.reason = reason
            return was_closed
        return False

    def abandoned(self) -> None:
        """
        The probe was cancelled by its caller: the next call may probe.
        """
        self.probing = False

    def is_open(self) -> bool:
        """
        Whether the circuit is open or half-open.
        """
        return self.opened_at is not None

    def state(self) -> tuple[bool, str]:
        """
        C{(True, "")} when closed, or half-open with no probe in flight (the
        next call probes, so an idle gateway does not stay unready);
        C{(False, reason)} otherwise.
        """
        if self.opened_at is None:
            return True, ""
        if not self.probing and self._clock.seconds() >= self.opened_at + self._cooldown:
            return True, ""  # half-open: the next call is the probe
        return False, f"{self._name} circuit open: {self.reason}"
