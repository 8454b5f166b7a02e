# -*- test-case-name: tests.integration.test_presence -*-
"""
C{lastSeen}: every frame from a charger (a CALL, or the answer to a
command) counts as traffic.  It moves the C{lastSeen} of the charger list
(L{ocpptw.services.registry.ChargerRegistry.touch}) and, at most once a
minute per charger, the backend's C{PATCH .../last-seen} and the
C{charger.lastSeen} event (L{ocpptw.services.chargers.ChargerService.seen}).
"""

from __future__ import annotations

from typing import Any

from ocpptw.clock import utcnow
from ocpptw.interfaces import IChargerRegistry, IChargerService


class Presence:
    """
    The frame recorder's C{presence} hook.

    @param registry: the L{ChargerRegistry} of this instance.
    @param chargers: the L{IChargerService}.
    @param clock: an L{IReactorTime}.
    """

    def __init__(self, registry: IChargerRegistry, chargers: IChargerService, clock: Any) -> None:
        self._registry = registry
        self._chargers = chargers
        self._clock = clock

    def __call__(self, charge_point_id: str) -> None:
        self._registry.touch(charge_point_id)
        self._chargers.seen(charge_point_id, utcnow(self._clock))
