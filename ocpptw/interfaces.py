# -*- test-case-name: tests.contract -*-
"""
The interfaces that cross the gateway's rooms, with the domain errors they
raise.  Services are written against these only; adapters implement them.

The rooms and who may import whom are in C{docs/architecture.md}: this
module is in the innermost room and imports no other part of the gateway.

Every method that may do I/O returns a L{Deferred}.  Bodies are the
contract's camelCase JSON objects (C{dict}); money inside them is a decimal
string on the wire and L{Decimal} in the services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime
    from decimal import Decimal

    from twisted.internet.defer import Deferred

    #: L{ocpptw.services.model.Transaction}, named here without importing
    #: its outer room (C{docs/architecture.md})
    Transaction = Any

# ---------------------------------------------------------------------------
# Domain errors


class BackendError(Exception):
    """
    The operator's backend did not do what was asked.
    """


class BackendUnavailable(BackendError):
    """
    The backend is unreachable: a 5xx answer, a timeout or a refused
    connection.  Idempotent calls are retried; others fall back to what the
    contract allows.
    """


class BackendRejected(BackendError):
    """
    The backend answered with a 4xx other than 404: retrying will not help.

    @ivar status: the HTTP status code.
    """

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(f"backend answered {status}: {message}" if message else f"backend answered {status}")
        self.status = status


class NotFound(BackendError):
    """
    The backend answered 404: no such thing.
    """


class ChargerOffline(Exception):
    """
    No instance holds a connection to this charger.
    """


class CommandTimeout(Exception):
    """
    The charger did not answer a server-to-charger call in time.
    """


class InvalidPayload(Exception):
    """
    A command's payload is not valid against the OCPP 1.6 schema, or the
    command is not a server-to-charger action.
    """


class CallErrorReceived(Exception):
    """
    The charger answered a server-to-charger call with a CALLERROR.
    """

    def __init__(self, code: str, description: str, details: dict) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


class BrokerUnavailable(Exception):
    """
    The broker cannot be asked now: other instances are out of reach (a
    charger lookup across instances).
    """


class StorageFull(Exception):
    """
    The local durable store cannot write (disk full, read-only).
    """


# ---------------------------------------------------------------------------
# Outbound: the operator's backend (docs/contract.md section 3)


class IBackend(Interface):
    """
    The operator's backend, one method per call of docs/contract.md section 3.  The
    embedded store (L{ocpptw.store.embedded}) and the REST adapter
    (L{ocpptw.adapters.backend_http}) both provide it and pass the same
    contract suite (C{tests/contract}).

    Failures are L{BackendUnavailable}, L{BackendRejected} or L{NotFound};
    never a C{twisted.web} exception.
    """

    def charger_by_device(device_id: str) -> "Deferred[dict | None]":
        """
        C{GET /api/charger/by-device/{deviceId}}: the charger record, or
        C{None} for a 404.
        """

    def ensure_charger(body: dict) -> "Deferred[dict]":
        """
        C{POST /api/charger/ensure}: register or update; fires with the record.
        """

    def update_status(device_id: str, body: dict) -> "Deferred[None]":
        """
        C{PATCH /api/charger/{deviceId}/status}.
        """

    def update_last_seen(device_id: str, body: dict) -> "Deferred[None]":
        """
        C{PATCH /api/charger/{deviceId}/last-seen}.
        """

    def active_sessions(device_id: str) -> "Deferred[list[dict]]":
        """
        C{GET /api/charger/{deviceId}/active-sessions}.
        """

    def start_session(body: dict) -> "Deferred[dict]":
        """
        C{POST /api/charging-session/start}; fires with
        C{{sessionId, transactionId, idTagInfo, userId?, prepaidAmount?,
        pricePerKwh?, currency?}}.
        """

    def stop_session(session_id: str, body: dict) -> "Deferred[None]":
        """
        C{PATCH /api/charging-session/{sessionId}/stop}.
        """

    def refund(body: dict) -> "Deferred[None]":
        """
        C{POST /api/wallet/refund}; idempotent on C{idempotencyKey}.
        """

    def store_message(device_id: str, body: dict) -> "Deferred[None]":
        """
        C{POST /api/charger/{deviceId}/ocpp-message}.
        """

    def authorize(device_id: str, id_tag: str, extra: "dict | None" = None) -> "Deferred[dict]":
        """
        C{POST /api/charger/{deviceId}/authorize}; fires with
        C{{idTagInfo: {status, expiryDate?, parentIdTag?}}}.

        @param extra: fields a protocol version adds to the body
            (C{ocppVersion}, 2.0.1's C{idTokenType}).
        """

    def ready() -> "tuple[bool, str]":
        """
        C{(True, "")} when recent calls succeed (no open circuit), else
        C{(False, reason)}.  Feeds C{/ready}.
        """


# ---------------------------------------------------------------------------
# Outbound: durable local state


class IOutbox(Interface):
    """
    The durable local outbox in C{DATA_DIR}: side effects that must happen
    are written here before the charger gets its answer, then delivered in
    order per key, retried with backoff, and parked as dead letters after
    C{OUTBOX_MAX_AGE}.
    """

    def append(key: str, operation: str, body: dict) -> "Deferred[int]":
        """
        Durably record one operation for ordering key C{key} (the
        chargePointId).  Fires with the entry id once committed; writes are
        grouped, so many appends share one commit.  Fails with
        L{StorageFull} when the disk refuses.
        """

    def register(operation: str, deliver: "Callable[[dict], Deferred]") -> None:
        """
        Say how to deliver C{operation}: C{deliver(body)} fires on success and
        fails to be retried.  A failure with L{BackendRejected} or
        L{NotFound} is not retried: the entry is parked at once.
        """

    def depth() -> int:
        """
        Entries waiting for delivery.
        """

    def pending(key: str) -> int:
        """
        Entries waiting for delivery under C{key}: a publisher that finds
        any must append behind them rather than send directly, to keep the
        order per charger.
        """

    def oldest_age() -> float:
        """
        Seconds the oldest waiting entry has waited (0 when empty).
        """

    def dead_letters() -> int:
        """
        Entries parked in the dead-letter table.
        """

    def flush(timeout: float) -> "Deferred[bool]":
        """
        Try to deliver everything now; fires C{True} when empty, C{False}
        when C{timeout} passed first.  Used by the SIGTERM drain.
        """

    def register_batch(
        operation: str,
        deliver: "Callable[[list[dict]], Any]",
        limit: int,
        max_bytes: int = 1 << 20,
        linger: float = 0.0,
    ) -> None:
        """
        Deliver C{operation}'s entries of one key in batches of up to
        C{limit} bodies and C{max_bytes}: C{deliver(bodies)}, waiting up to
        C{linger} seconds for a batch to fill.
        """


class IOutboxObserver(Interface):
    """
    Told what the outbox does (the metrics).
    """

    def delivered(operation: str, seconds: float) -> None:
        """
        An entry of C{operation} was delivered after C{seconds} in flight.
        """

    def failed(operation: str, error: object) -> None:
        """
        A delivery attempt of C{operation} failed; it will be retried.
        """

    def parked(operation: str) -> None:
        """
        An entry of C{operation} became a dead letter.
        """


class IBatchedMessageLog(Interface):
    """
    A backend that takes a charger's OCPP messages several at a time
    (C{POST /api/charger/{deviceId}/ocpp-messages}, C{BACKEND_MESSAGE_BATCH}).
    """

    def store_messages(items: "list[tuple[str, dict]]") -> "Deferred[None]":
        """
        Store C{(deviceId, body)} pairs, the bodies of the contract's
        C{ocpp-message} call, in order.
        """


class IMessageLog(Interface):
    """
    A store that keeps the message log and the events itself (the embedded
    store): the local publisher writes to it directly, a reactor turn's
    frames and events in one write each.
    """

    def log_frames(rows: "list[tuple]") -> "Deferred[None]":
        """
        Append frames: C{(deviceId, direction, messageType, messageId,
        action, payload JSON text or None, errorCode, timestamp)} each.
        """

    def log_events(events: "list[dict]") -> "Deferred[None]":
        """
        Append the gateway's own events, each once.
        """

    def record_event(event: dict) -> "Deferred[None]":
        """
        Keep one event that may come again (an outbox redelivery): kept once.
        """


class IBackendObserver(Interface):
    """
    Told how each backend request went (the metrics).
    """

    def request(endpoint: str, outcome: str, seconds: float) -> None:
        """
        One attempt at C{endpoint}: C{ok}, C{not_found}, C{rejected},
        C{unavailable}, C{circuit_open} or C{cancelled}, after C{seconds}.
        """


class IBrokerObserver(Interface):
    """
    Told how event publishing to RabbitMQ goes (the metrics).
    """

    def broker_published(seconds: float) -> None:
        """
        An event was confirmed by the broker after C{seconds}.
        """

    def broker_failed(reason: object) -> None:
        """
        An event was not confirmed (it went to the outbox).
        """


class IEventPublisher(Interface):
    """
    Publishes the events of docs/contract.md section 5.
    """

    def publish(event: dict) -> "Deferred[None]":
        """
        Publish one event envelope (L{ocpptw.services.events.make_event}).  Fires once
        the event is durable: confirmed by the broker, or written to the
        outbox.  Never fails because the broker is down.
        """

    def ready() -> "tuple[bool, str]":
        """
        C{(True, "")} when connected (or not configured), else
        C{(False, reason)}.
        """


class IFrameLog(Interface):
    """
    A publisher that keeps the message log itself: it takes a frame without
    an event envelope, with the payload's text when the session has it, so
    nothing is encoded twice.
    """

    def log_frame(
        device_id: str,
        direction: str,
        message_type: str,
        message_id: str,
        action: "str | None",
        payload: object,
        payload_text: "str | None",
        error_code: "str | None",
        error_description: "str | None",
    ) -> "Deferred[None]":
        """
        Log one frame; fires once it is durable.
        """


class ISessionObserver(Interface):
    """
    Told of every frame an OCPP session sends or receives, and of every
    schema violation it lets through in lenient mode.
    """

    def frame(
        session: object,
        direction: str,
        message_type: str,
        message_id: str,
        action: "str | None",
        payload: "dict | None",
        error_code: "str | None",
        error_description: "str | None",
        payload_text: "str | None" = None,
    ) -> None:
        """
        One frame C{"in"} or C{"out"}.
        """

    def violation(session: object, action: "str | None", error: object) -> None:
        """
        A payload that broke the schema was handled anyway (lenient mode).
        """


class ILedger(Interface):
    """
    The gateway's own durable state (C{DATA_DIR/gateway.sqlite}): which
    transactionId belongs to which StartTransaction, which were stopped,
    the Authorize cache and the last known charger records.  Transactions
    are L{ocpptw.services.model.Transaction} objects, one per transaction
    however often it is looked up.  Writes fire once committed.
    """

    def cached_start(key: tuple) -> "Transaction | None":
        """
        The transaction an earlier, identical StartTransaction created, when
        it is in memory (C{key}: C{Transaction.dedupe_key}).
        """

    def lookup_start(key: tuple) -> "Deferred[Transaction | None]":
        """
        The same, from memory or else from disk, or C{None}.
        """

    def lookup(cp: str, transaction_id: int) -> "Deferred[Transaction | None]":
        """
        Transaction C{transaction_id} of charger C{cp}, from memory or disk,
        or C{None}.
        """

    def assign_transaction_id(slot: int) -> int:
        """
        The next transactionId the gateway assigns itself for C{slot}
        (persisted by the L{record_start} of the transaction that uses it).
        """

    def record_start(tx: "Transaction", slot: "int | None" = None) -> "Deferred[None]":
        """
        Remember a started transaction (and the counter of C{slot} for an id
        the gateway assigned).
        """

    def record_session(tx: "Transaction", answer: dict) -> "Deferred[None]":
        """
        The backend's session for C{tx} is known now (the start answer or an
        C{active-sessions} entry).
        """

    def record_stop(
        cp: str, transaction_id: int, meter_stop: int, stopped_at: str, reason: str, tx: "Transaction | None" = None
    ) -> "tuple[Transaction, Deferred[None]]":
        """
        Mark a transaction stopped (an unknown one becomes a stopped stub).
        Returns the transaction and a Deferred that fires once committed.
        """

    def forget(tx: "Transaction") -> "Deferred[None]":
        """
        Drop C{tx}: its start was not made durable, so a repeat must not
        find it.
        """

    def reopen(tx: "Transaction") -> "Deferred[None]":
        """
        The stop of C{tx} was not made durable: it is open again.
        """

    def auth_get(id_tag: str) -> "tuple[dict, float] | None":
        """
        C{(idTagInfo, stored_at)} of the backend's last answer for C{id_tag}.
        """

    def auth_put(id_tag: str, info: dict) -> "Deferred[None]":
        """
        Remember the backend's answer for C{id_tag}.
        """

    def charger(cp: str) -> "dict | None":
        """
        The last known charger record, or C{None}.
        """

    def charger_accepted(cp: str) -> bool:
        """
        Whether this charger's last BootNotification was accepted.
        """

    def remember_charger(cp: str, record: "dict | None" = None, accepted: "bool | None" = None) -> "Deferred[None]":
        """
        Keep C{record} and the accepted flag (each when given).
        """

    def forget_charger(cp: str) -> "Deferred[None]":
        """
        The backend no longer knows C{cp}: drop its record and acceptance.
        """

    def progress(cp: str, transaction_id: str) -> "Deferred[dict | None]":
        """
        What the gateway remembers of an OCPP 2.0.1 transaction's
        TransactionEvents (a JSON object), from disk, or C{None}.
        """

    def record_progress(cp: str, transaction_id: str, progress: dict, ended: bool, new: bool) -> "Deferred[None]":
        """
        Keep C{progress} of that transaction (bounded per charger: a C{new}
        transaction may push the charger's oldest out).
        """


# ---------------------------------------------------------------------------
# The business services, called by the OCPP handlers


class IChargerService(Interface):
    """
    Chargers: admission at the handshake, boot, status and presence.
    """

    def admit(charge_point_id: str) -> "Deferred[dict | None]":
        """
        Called at the handshake.  Fires with the charger record (which may
        carry C{authorizationKeyHash} and C{enabled}), or C{None} for an
        unknown charger.  Fails with L{BackendUnavailable} only when nothing
        is known locally either.
        """

    def boot(charge_point_id: str, payload: dict, now: "datetime", extra: "dict | None" = None) -> "Deferred[dict]":
        """
        BootNotification: register the charger (C{POST /api/charger/ensure}),
        publish C{charger.metadataUpdate}; fires with the
        BootNotification.conf payload (1.6 shape; the version's handler
        translates).

        @param extra: fields a protocol version adds to the C{ensure} body
            and the event data (C{ocppVersion}, 2.0.1's boot C{reason}).
        """

    def is_accepted(charge_point_id: str) -> bool:
        """
        Whether this charger's BootNotification was accepted (kept in the
        charger record, so a reconnect without a boot is accepted at once).
        """

    def status(
        charge_point_id: str, payload: dict, now: "datetime", extra: "dict | None" = None, version: "str | None" = None
    ) -> "Deferred[None]":
        """
        StatusNotification (1.6 shape): outbox the status PATCH, publish
        C{charger.statusUpdate}.

        @param extra: fields a protocol version adds before C{connectorId}
            (2.0.1's C{evseId}).
        @param version: the charger's C{ocppVersion}, added to the body.
        """

    def connected(charge_point_id: str, now: "datetime") -> "Deferred[None]":
        """
        A socket for this charger opened.
        """

    def disconnected(charge_point_id: str, now: "datetime") -> "Deferred[None]":
        """
        The socket for this charger closed.
        """

    def seen(charge_point_id: str, now: "datetime") -> None:
        """
        Traffic from this charger: last-seen, throttled to once a minute.
        """


class ISessionService(Interface):
    """
    Charging sessions: authorize, start, meter values, stop (docs/contract.md
    section 5's guarantees).
    """

    def authorize(charge_point_id: str, id_tag: str, now: "datetime", extra: "dict | None" = None) -> "Deferred[dict]":
        """
        Fires with an C{idTagInfo}; answers from the cache while the backend
        is unreachable, else C{Invalid}.  C{extra} is passed to the
        backend's authorize body.
        """

    def start(charge_point_id: str, payload: dict, now: "datetime") -> "Deferred[dict]":
        """
        StartTransaction: fires with the StartTransaction.conf payload once
        everything it causes is durable.  Never fails because the backend
        is down.
        """

    def meter_values(charge_point_id: str, payload: dict, now: "datetime") -> "Deferred[None]":
        """
        MeterValues: normalise and publish C{charging.meterValues}.
        """

    def meter_samples(
        charge_point_id: str,
        connector_id: "int | None",
        transaction_id: "int | str | None",
        meter_values: list,
        extra: "dict | None" = None,
    ) -> "Deferred[None]":
        """
        Publish C{charging.meterValues} for C{meter_values} in the 1.6 shape
        of C{meterValue}, whatever version sent them; C{connector_id} may be
        C{None} (left out) and C{extra} (2.0.1's C{evseId}) joins the data.
        """

    def stop(charge_point_id: str, payload: dict, now: "datetime") -> "Deferred[dict]":
        """
        StopTransaction: always answered; a repeat stops and refunds nothing
        twice.  Fires with the StopTransaction.conf payload.
        """

    # -- transactions whose id the charger chose (OCPP 2.0.1) ------------------

    def energy_registers(meter_values: list) -> "list[tuple[int, str | None]]":
        """
        The energy register readings (Wh, context) of C{meter_values}.
        """

    def begin(charge_point_id: str, fields: dict, now: "datetime") -> "Deferred[Transaction]":
        """
        Start the backend session of a transaction with a string id; once
        per transaction, never failing because the backend is down.
        """

    def transaction(charge_point_id: str, transaction_id: "int | str") -> "Deferred[Transaction | None]":
        """
        The transaction as the ledger knows it, or C{None}.
        """

    def stop_cost(tx: "Transaction", meter_stop: int) -> "Decimal | None":
        """
        What stopping C{tx} at C{meter_stop} costs, or C{None} without a tariff.
        """

    def progress(charge_point_id: str, transaction_id: str) -> "Deferred[dict | None]":
        """
        What the ledger keeps of a transaction's TransactionEvents, or C{None}.
        """

    def record_progress(
        charge_point_id: str, transaction_id: str, progress: dict, ended: bool, new: bool
    ) -> "Deferred[None]":
        """
        Make C{progress} durable (bounded in the ledger).
        """


class IWalletService(Interface):
    """
    Money movements.  Amounts are L{Decimal}.
    """

    def refund(session_id: str, user_id: str, amount: "Decimal", currency: str) -> "Deferred[None]":
        """
        Refund once per C{sessionId} (the C{idempotencyKey}); a zero amount
        is not posted.
        """


# ---------------------------------------------------------------------------
# Connections and commands


class IFrameSink(Interface):
    """
    What an OCPP session may do to its socket, and nothing more.
    """

    def send_text(text: str) -> None:
        """
        Send one text frame.  Silently dropped when the socket is closing.
        """

    def close(code: int, reason: str) -> None:
        """
        Close the socket with a WebSocket close code.
        """


class IChargerRegistry(Interface):
    """
    The chargers connected to this instance: identity -> live connection.
    "Newest connection wins".
    """

    instance = Attribute("This instance's name, as in events and the charger list.")

    def attach(charge_point_id: str, connection: object) -> None:
        """
        Make C{connection} the charger's connection; an older one is closed
        with 4000 ("replaced by a newer connection").
        """

    def detach(charge_point_id: str, connection: object) -> None:
        """
        Forget C{connection} if it is still the current one.
        """

    def get(charge_point_id: str) -> "Any | None":
        """
        The current connection (with C{.session} and C{.close}), or C{None}.
        """

    def touch(charge_point_id: str) -> None:
        """
        Traffic from the charger: its C{lastSeen} is now.
        """

    def add_listener(attached: "Callable[[str], Any]", detached: "Callable[[str], Any]") -> None:
        """
        Call C{attached(charge_point_id)} when a charger's connection is
        attached and C{detached(charge_point_id)} when it is gone.
        """

    def __len__() -> int:
        """
        How many chargers are connected.
        """

    def __iter__() -> "Iterator[str]":
        """
        The identities of the connected chargers (a copy: attaching or
        detaching while iterating is safe).
        """

    def describe(charge_point_id: str) -> "dict | None":
        """
        C{{chargePointId, connectedAt, lastSeen, instance}} or C{None}.
        """

    def describe_all() -> "list[dict]":
        """
        L{describe} for every connected charger.
        """


class ICommandBus(Interface):
    """
    Sends a server-to-charger call to a charger, wherever it is connected.
    """

    def send(charge_point_id: str, action: str, payload: dict, timeout: float) -> "Deferred[dict]":
        """
        Fires with the CALLRESULT payload.  Fails with L{InvalidPayload},
        L{ChargerOffline}, L{CommandTimeout} or L{CallErrorReceived}.
        """

    def check(action: str, payload: object) -> None:
        """
        Validate a command before it is sent anywhere.

        @raise InvalidPayload: C{action} is no server-to-charger action, or
            C{payload} does not match its schema.
        """
