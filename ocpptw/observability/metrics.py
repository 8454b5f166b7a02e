# -*- test-case-name: tests.test_metrics -*-
"""
The gateway's Prometheus metrics, served at C{GET /metrics}.  The only
importer of C{prometheus_client}.

Each L{Metrics} holds its own registry (tests build as many as they like).
The rest of the gateway calls small methods (C{frame}, C{call_error},
C{request}, ...); on the hot path they cost a dict lookup and an
increment, because labelled children are cached.  Label values that come
from chargers (actions, CALLERROR codes) are mapped onto the known OCPP 1.6
names, anything else counted as C{other}, so a charger cannot blow up the
number of series.

docs/operations.md lists every metric and what it means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from zope.interface import implementer

from ocpptw.interfaces import (
    IBackendObserver,
    IBrokerObserver,
    IOutbox,
    IOutboxObserver,
)
from ocpptw.ocpp.actions import ALL_ACTIONS
from ocpptw.ocpp.errors import CODES

# The *_created series double the output and no dashboard uses them.
disable_created_metrics()

#: Buckets for handling a charger's CALL (local work, backend calls).
HANDLE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets for round trips over the network (chargers, backend, broker).
NETWORK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: The CALLERROR codes of OCPP-J 1.6.
ERROR_CODES = CODES

OTHER = "other"


def known_actions() -> frozenset[str]:
    """
    The OCPP 1.6 action names (both directions and the security extension).
    """
    return ALL_ACTIONS


def _safe(read: Callable[[], float]) -> Callable[[], float]:
    def value() -> float:
        try:
            return float(read())
        except Exception:  # noqa: BLE001 - a scrape must not fail for one gauge
            return float("nan")

    return value


class _Family:
    """
    A labelled metric with its children cached by label values.
    """

    __slots__ = ("metric", "children")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def child(self, *values: str) -> Any:
        found = self.children.get(values)
        if found is None:
            found = self.children[values] = self.metric.labels(*values)
        return found


@implementer(IOutboxObserver, IBackendObserver, IBrokerObserver)
class Metrics:
    """
    Every metric of one gateway, in its own registry.

    @param actions: the action names kept as label values (default: the
        OCPP 1.6 actions); others are counted as C{other}.
    @param process: also export the process metrics (CPU, memory, open
        files) and Python's GC and platform information.
    """

    def __init__(self, actions: frozenset[str] | None = None, process: bool = True) -> None:
        from ocpptw import __version__

        self.registry = registry = CollectorRegistry()
        self._actions = (actions if actions is not None else known_actions()) | {""}
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        Info("ocpp_gateway", "The gateway's version", registry=registry).info({"version": __version__})

        self._connected = Gauge(
            "ocpp_connected_chargers", "Chargers with an open WebSocket on this instance", registry=registry
        )
        self._handshakes = _Family(
            Counter("ocpp_handshakes", "WebSocket handshakes by outcome", ["outcome"], registry=registry)
        )
        self._frames = _Family(
            Counter(
                "ocpp_frames",
                "OCPP-J frames by direction (in: from chargers), message type and action",
                ["direction", "message_type", "action"],
                registry=registry,
            )
        )
        self._call_errors = _Family(
            Counter(
                "ocpp_call_errors", "CALLERROR frames by error code, sent and received", ["code"], registry=registry
            )
        )
        self._violations = _Family(
            Counter(
                "ocpp_schema_violations",
                "Schema violations let through in lenient validation, by action",
                ["action"],
                registry=registry,
            )
        )
        self._handled = _Family(
            Histogram(
                "ocpp_call_handle_seconds",
                "Time from a charger's CALL to our answer, by action",
                ["action"],
                buckets=HANDLE_BUCKETS,
                registry=registry,
            )
        )
        self._round_trip = _Family(
            Histogram(
                "ocpp_outbound_call_seconds",
                "Round trip of server-to-charger calls that got an answer, by action",
                ["action"],
                buckets=NETWORK_BUCKETS,
                registry=registry,
            )
        )
        self._outbound = _Family(
            Counter(
                "ocpp_outbound_calls",
                "Server-to-charger calls by action and outcome (result, error, timeout, offline)",
                ["action", "outcome"],
                registry=registry,
            )
        )
        self._backend_seconds = _Family(
            Histogram(
                "ocpp_backend_request_seconds",
                "Backend REST request attempts, by endpoint",
                ["endpoint"],
                buckets=NETWORK_BUCKETS,
                registry=registry,
            )
        )
        self._backend = _Family(
            Counter(
                "ocpp_backend_requests",
                "Backend REST request attempts by endpoint and outcome (ok, not_found, rejected, unavailable, "
                "circuit_open, cancelled)",
                ["endpoint", "outcome"],
                registry=registry,
            )
        )
        self._broker_seconds = Histogram(
            "ocpp_broker_publish_seconds",
            "Time from publishing an event to RabbitMQ's confirm",
            buckets=NETWORK_BUCKETS,
            registry=registry,
        )
        self._broker_failures = Counter(
            "ocpp_broker_publish_failures", "Event publishes that failed and went to the outbox", registry=registry
        )
        self._unlogged = _Family(
            Counter(
                "ocpp_frames_not_logged",
                "Frames left out of the message log: not_accepted (a charger not yet accepted, other than"
                " BootNotification); truncated counts payloads kept cut to MESSAGE_LOG_MAX_BYTES",
                ["reason"],
                registry=registry,
            )
        )
        self._broker_connected = Gauge(
            "ocpp_broker_connected", "1 while the RabbitMQ connection is ready (when enabled)", registry=registry
        )
        self._deliveries = _Family(
            Counter(
                "ocpp_outbox_deliveries",
                "Outbox delivery attempts by operation and outcome (delivered, failed)",
                ["operation", "outcome"],
                registry=registry,
            )
        )
        self._delivery_seconds = _Family(
            Histogram(
                "ocpp_outbox_delivery_seconds",
                "Duration of successful outbox deliveries, by operation",
                ["operation"],
                buckets=NETWORK_BUCKETS,
                registry=registry,
            )
        )
        self._dead_letters = _Family(
            Counter(
                "ocpp_dead_letters",
                "Outbox entries parked as dead letters after OUTBOX_MAX_AGE, by operation",
                ["operation"],
                registry=registry,
            )
        )
        self._outbox_depth = Gauge("ocpp_outbox_depth", "Entries waiting in the local outbox", registry=registry)
        self._outbox_age = Gauge(
            "ocpp_outbox_oldest_age_seconds", "Age of the oldest entry waiting in the outbox", registry=registry
        )
        self._outbox_parked = Gauge(
            "ocpp_outbox_dead_letters", "Dead letters currently parked in DATA_DIR", registry=registry
        )
        self._outbox_alarm = Gauge(
            "ocpp_outbox_alarm",
            "1 while the outbox holds more than OUTBOX_ALARM_DEPTH entries or its oldest is older than OUTBOX_ALARM_AGE",
            registry=registry,
        )
        self._readiness = Gauge(
            "ocpp_readiness",
            "1 for the state /ready answers now (ready, degraded: backend or broker down, unavailable: 503), 0 for the others",
            ["state"],
            registry=registry,
        )
        self._accept_rate = Gauge(
            "ocpp_accept_rate",
            "Connections a listener may accept per second now (ACCEPT_RATE; 0 is no limit)",
            registry=registry,
        )
        self._accept_queue = Gauge(
            "ocpp_accept_queue",
            "Connections waiting in the listen queue to be accepted",
            registry=registry,
        )
        self._busy = Gauge(
            "ocpp_cpu_busy_ratio",
            "Share of one CPU core the process used over the last quarter second (measured with ACCEPT_RATE=auto)",
            registry=registry,
        )

    # -- label hygiene ---------------------------------------------------------

    def _action(self, action: str | None) -> str:
        if action is None:
            return ""
        return action if action in self._actions else OTHER

    # -- chargers -------------------------------------------------------------

    def connected(self, count: int) -> None:
        """
        The number of chargers connected to this instance now.
        """
        self._connected.set(count)

    def handshake(self, outcome: str) -> None:
        """
        One WebSocket handshake ended with C{outcome} (C{accepted},
        C{unauthorized}, C{throttled}, ...).
        """
        self._handshakes.child(outcome).inc()

    def frame(self, direction: str, message_type: str, action: str | None) -> None:
        """
        One frame went C{direction} (C{in} from a charger, C{out} to one).
        """
        if action not in self._actions:
            action = self._action(action)
        key = (direction, message_type, action)
        child = self._frames.children.get(key)
        if child is None:
            child = self._frames.child(*key)
        child.inc()

    def call_error(self, code: str) -> None:
        """
        One CALLERROR with C{code}, sent or received.
        """
        self._call_errors.child(code if code in ERROR_CODES else OTHER).inc()

    def frame_not_logged(self, reason: str) -> None:
        """
        A frame was left out of the message log (C{not_accepted}) or kept
        cut short (C{truncated}).
        """
        self._unlogged.child(reason).inc()

    def violation(self, action: str | None) -> None:
        """
        A payload broke its schema and was handled anyway (lenient mode).
        """
        self._violations.child(self._action(action)).inc()

    def handled(self, action: str, seconds: float) -> None:
        """
        A charger's CALL of C{action} was answered C{seconds} after it came.
        """
        self._handled.child(self._action(action)).observe(seconds)

    def outbound_call(self, action: str, outcome: str, seconds: float | None = None) -> None:
        """
        A server-to-charger call ended: C{result}, C{error}, C{timeout} or
        C{offline}; C{seconds} is its round trip when the charger answered.
        """
        action = self._action(action)
        self._outbound.child(action, outcome).inc()
        if seconds is not None:
            self._round_trip.child(action).observe(seconds)

    # -- backend -------------------------------------------------------------

    def request(self, endpoint: str, outcome: str, seconds: float) -> None:
        """
        One backend request attempt (the backend adapter's observer hook).
        """
        self._backend.child(endpoint, outcome).inc()
        if outcome != "circuit_open":
            self._backend_seconds.child(endpoint).observe(seconds)

    # -- broker ----------------------------------------------------------------

    def broker_published(self, seconds: float) -> None:
        """
        RabbitMQ confirmed an event C{seconds} after it was published.
        """
        self._broker_seconds.observe(seconds)

    def broker_failed(self, reason: Any = None) -> None:
        """
        An event publish failed (it went to the outbox).  C{reason} is not a
        label: it is free text.
        """
        self._broker_failures.inc()

    def watch_broker(self, ready: Callable[[], Any]) -> None:
        """
        Read the broker gauge at scrape time from C{ready()}: a boolean or
        a C{(ok, reason)} pair (the adapters' C{ready}).
        """

        def value() -> float:
            state = ready()
            ok = state[0] if isinstance(state, tuple) else state
            return 1.0 if ok else 0.0

        self._broker_connected.set_function(_safe(value))

    # -- outbox ------------------------------------------------------------------

    def delivered(self, operation: str, seconds: float) -> None:
        """
        The outbox delivered an entry (its observer hook).
        """
        self._deliveries.child(operation, "delivered").inc()
        self._delivery_seconds.child(operation).observe(seconds)

    def failed(self, operation: str, error: Any = None) -> None:
        """
        An outbox delivery attempt failed and will be retried.
        """
        self._deliveries.child(operation, "failed").inc()

    def parked(self, operation: str) -> None:
        """
        An outbox entry became a dead letter.
        """
        self._dead_letters.child(operation).inc()

    def watch_outbox(self, outbox: IOutbox) -> None:
        """
        Read the outbox's C{depth()}, C{oldest_age()} and C{dead_letters()}
        at scrape time.
        """
        self._outbox_depth.set_function(_safe(outbox.depth))
        self._outbox_age.set_function(_safe(outbox.oldest_age))
        self._outbox_parked.set_function(_safe(outbox.dead_letters))

    def watch_outbox_alarm(self, alarm: Any) -> None:
        """
        Read the alarm's C{raised} at scrape time (L{ocpptw.store.outbox_alarm.OutboxAlarm}).
        """
        self._outbox_alarm.set_function(lambda: 1.0 if alarm.raised else 0.0)

    def watch_console(self, streams: Callable[[], float]) -> Callable[[], None]:
        """
        Publish the console's open event streams (read at scrape time) and
        return the function that counts a stream dropped because its client
        could not keep up (L{ocpptw.transport.stream.StreamHub}).
        """
        Gauge("ocpp_console_streams", "Console event streams open", registry=self.registry).set_function(streams)
        dropped = Counter(
            "ocpp_console_stream_dropped",
            "Console event streams dropped because the client could not keep up",
            registry=self.registry,
        )
        return dropped.inc

    def readiness(self, state: str) -> None:
        """
        What C{/ready} answers now (L{ocpptw.observability.readiness}).
        """
        from ocpptw.observability.readiness import STATES

        for one in STATES:
            self._readiness.labels(one).set(1.0 if one == state else 0.0)

    def watch_accept(
        self, rate: Callable[[], float], busy: Callable[[], float] | None = None, waiting: Callable[[], int] | None = None
    ) -> None:
        """
        Read the accept rate, the connections waiting in the listen queue
        and, with C{ACCEPT_RATE=auto}, the busy share the governor measured
        at scrape time (L{ocpptw.transport.governor.AcceptGovernor}).
        """
        self._accept_rate.set_function(rate)
        if busy is not None:
            self._busy.set_function(busy)
        if waiting is not None:
            self._accept_queue.set_function(waiting)

    # -- exposition --------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """
        The registry in the Prometheus text format, and its content type.
        """
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
