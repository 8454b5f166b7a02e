"""
A test rig for the services: the real ledger, outbox and embedded backend on
in-process SQLite (L{InlineDatabase}), a L{Clock}, and doubles for what must
fail on demand (a backend that is down or slow) or be looked at (events).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ocpptw.interfaces import (
    BackendRejected,
    BackendUnavailable,
    IBackend,
    IEventPublisher,
)
from ocpptw.services.chargers import ChargerService
from ocpptw.services.delivery import register_deliveries
from ocpptw.services.sessions import SessionService
from ocpptw.services.wallet import WalletService
from ocpptw.store import embedded
from ocpptw.store import ledger as ledger_module
from ocpptw.store import outbox as outbox_module
from ocpptw.store.ledger import Ledger
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import success_result_of

#: 2026-09-22T00:00:00Z, so times in tests look like times.
EPOCH = 1_790_035_200.0

_METHODS = (
    "charger_by_device", "ensure_charger", "update_status", "update_last_seen", "active_sessions",
    "start_session", "stop_session", "refund", "store_message", "authorize",
)


@implementer(IBackend)
class SwitchableBackend:
    """
    Delegates to a real backend, unless told to be C{"down"}
    (L{BackendUnavailable} at once), to C{"reject"} (L{BackendRejected}
    400) or to C{"hang"} (a Deferred that never
    fires by itself; the caller's deadline cancels it).  C{mode} applies to
    every call, C{modes[name]} to one method.  Calls are recorded.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mode = "up"
        self.modes: dict[str, str] = {}
        self.calls: list[tuple[str, tuple]] = []
        self.hanging: list[Deferred] = []
        for name in _METHODS:
            setattr(self, name, self._wrap(name))

    def _wrap(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Deferred:
            self.calls.append((name, args + ((kwargs,) if kwargs else ())))
            mode = self.modes.get(name, self.mode)
            if mode == "down":
                return fail(BackendUnavailable(f"{name}: backend down (test)"))
            if mode == "reject":
                return fail(BackendRejected(400, f"{name}: refused (test)"))
            if mode == "hang":
                d: Deferred = Deferred()
                self.hanging.append(d)
                return d
            return getattr(self.inner, name)(*args, **kwargs)

        call.__name__ = name
        return call

    def called(self, name: str) -> list[tuple]:
        return [args for method, args in self.calls if method == name]

    def ready(self) -> tuple[bool, str]:
        return (self.mode == "up", "" if self.mode == "up" else "down")

    def record_event(self, event: dict) -> Deferred:
        return self.inner.record_event(event)


@implementer(IEventPublisher)
class RecordingPublisher:
    """
    Keeps every event; durable at once, or when L{release}d with C{hold}.
    """

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.hold = False
        self.held: list[Deferred] = []

    def publish(self, event: dict) -> Deferred[None]:
        self.events.append(event)
        if self.hold:
            d: Deferred[None] = Deferred()
            self.held.append(d)
            return d
        return succeed(None)

    def release(self) -> None:
        held, self.held = self.held, []
        for d in held:
            d.callback(None)

    def of(self, type: str) -> list[dict]:
        return [e["data"] for e in self.events if e["type"] == type]

    def ready(self) -> tuple[bool, str]:
        return True, ""


class Rig:
    """
    The services wired as the gateway wires them, on a L{Clock}.
    """

    def __init__(self, clock: Any, price: str | None = "0.50", allow_unknown: bool = True, state_path: Any = None) -> None:
        clock.advance(EPOCH - clock.seconds())
        self.clock = clock
        self.allow_unknown = allow_unknown
        self.state_path = ":memory:" if state_path is None else state_path
        self.store_db = InlineDatabase(schema=embedded.SCHEMA)
        self.store = embedded.EmbeddedBackend(
            self.store_db, clock, price_per_kwh=None if price is None else Decimal(price)
        )
        self.backend = SwitchableBackend(self.store)
        verifyObject(IBackend, self.backend)
        self.publisher = RecordingPublisher()
        verifyObject(IEventPublisher, self.publisher)
        self.wallet = WalletService(self.backend)
        self._gateway()

    def _gateway(self) -> None:
        """
        The gateway's own parts over C{gateway.sqlite} (the backend and the
        broker are outside it).
        """
        clock = self.clock
        self.state = InlineDatabase(self.state_path, outbox_module.SCHEMA + ledger_module.SCHEMA)
        self.outbox = outbox_module.Outbox(self.state, clock, max_age=86400.0, initial_delay=1.0, max_delay=8.0)
        self.ledger = Ledger(self.state, clock)
        self.chargers = ChargerService(
            self.backend, self.outbox, self.publisher, self.ledger, clock,
            heartbeat_interval=300, allow_unknown=self.allow_unknown, instance="gw-test",
        )
        self.sessions = SessionService(
            self.backend, self.outbox, self.publisher, self.ledger, clock,
            start_deadline=5.0, auth_cache_ttl=3600.0, instance_slot=3, instance="gw-test",
        )
        register_deliveries(self.outbox, self.backend, self.ledger, self.wallet)
        self.ledger.start()
        self.outbox.start()

    def restart(self) -> None:
        """
        Stop the gateway's parts, close C{gateway.sqlite} and open it again
        with new parts (a restart: nothing in memory survives).  Needs a
        C{state_path}.
        """
        assert self.state_path != ":memory:", "a restart needs a file"
        self.outbox.stop()
        self.state.close()
        self._gateway()

    def close(self) -> None:
        self.outbox.stop()
        self.state.close()
        self.store_db.close()

    def sql(self, query: str, *params: Any) -> list[tuple]:
        """
        Rows of the embedded store (what the "backend" holds).
        """
        return success_result_of(self.store_db.read(lambda conn: conn.execute(query, params).fetchall()))

    def add_tag(self, id_tag: str, user_id: str = "u1", prepaid: str | None = "10.00", status: str = "Accepted") -> None:
        success_result_of(
            self.store_db.write(
                lambda conn: conn.execute(
                    "INSERT OR REPLACE INTO id_tags (id_tag, status, user_id, prepaid_amount) VALUES (?, ?, ?, ?)",
                    (id_tag, status, user_id, prepaid),
                )
            )
        )

    def retry(self, seconds: float = 10.0) -> None:
        """
        Let the outbox's backoff timers run.
        """
        for _ in range(int(seconds)):
            self.clock.advance(1.0)
