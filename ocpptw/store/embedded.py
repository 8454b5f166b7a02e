# -*- test-case-name: tests.store.test_embedded -*-
"""
The embedded backend: L{IBackend} on C{DATA_DIR/embedded.sqlite}, so the
gateway runs with no operator backend at all (C{BACKEND_API_URL} unset).

It keeps chargers (with their connectors' last status), id tags, charging
sessions with integer transactionIds counted from 1 (always below
C{0x40000000}, the range the gateway keeps for itself), a wallet ledger of
refunds, the OCPP message log and the events (C{record_event}).  Operators
manage chargers and tags with C{ocpptw-admin} (L{ocpptw.admin}).

Every call goes through L{ocpptw.store.sqlite.Database}, so nothing blocks
the reactor.  A full disk or a locked file is L{BackendUnavailable} (the
caller retries); a malformed body is L{BackendRejected} with 400, as an
HTTP backend would answer.
"""

from __future__ import annotations

import sqlite3
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from ocpptw.clock import now_z
from ocpptw.interfaces import (
    BackendRejected,
    BackendUnavailable,
    IBackend,
    IBatchedMessageLog,
    IMessageLog,
    NotFound,
    StorageFull,
)
from ocpptw.ocpp.jsontext import compact
from ocpptw.services.billing import money_str
from ocpptw.store.embedded_schema import (
    SCHEMA as SCHEMA,  # the file's tables, for Database(...)
)
from ocpptw.store.message_pages import read_page
from ocpptw.store.sqlite import UnstorableValue

#: The message log's columns, in the order of L{EmbeddedBackend.log_frames} rows.
MESSAGE_COLUMNS = "device_id, direction, message_type, message_id, action, payload, error_code, timestamp"

_EVENT_COLUMNS = "id, type, device_id, occurred_at, data, received_at"

#: The gateway assigns transactionIds from here up; ours stay below.
GATEWAY_IDS = 0x40000000

#: camelCase field of C{POST /api/charger/ensure} -> column.
_ENSURE_FIELDS = {
    "vendor": "vendor",
    "model": "model",
    "serialNumber": "serial_number",
    "firmwareVersion": "firmware_version",
    "iccid": "iccid",
    "imsi": "imsi",
    "meterType": "meter_type",
    "meterSerialNumber": "meter_serial_number",
}

_SESSION = (
    "SELECT session_id, transaction_id, connector_id, id_tag, user_id, meter_start, prepaid_amount,"
    " price_per_kwh, currency FROM sessions"
)


class DiskFull(BackendUnavailable, StorageFull):
    """
    The embedded store's disk refuses writes: unavailable to callers that
    retry (outbox deliveries), a full disk to those that answer chargers.
    """


#: The largest integer SQLite stores; a larger energy is an anomaly (energy 0), as in billing.
_MAX_INTEGER = 2**63 - 1


def money(value: Any) -> str | None:
    """
    A money amount as the contract's decimal string with two places
    (rounded half up); C{None} stays C{None}.

    @raise BackendRejected: when C{value} is not a finite number.
    """
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise BackendRejected(400, f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise BackendRejected(400, f"not an amount: {value!r}")
    return money_str(amount)


def _require(body: dict, name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if value is None or not isinstance(value, kind) or isinstance(value, bool):
        raise BackendRejected(400, f"{name} is required")
    return value


def _compact(record: dict) -> dict:
    return {k: v for k, v in record.items() if v is not None}


@implementer(IBackend, IMessageLog, IBatchedMessageLog)
class EmbeddedBackend:
    """
    L{IBackend} on a local SQLite file.

    @param db: a L{ocpptw.store.sqlite.Database} opened with L{SCHEMA}
        (C{DATA_DIR/embedded.sqlite}).
    @param clock: for the times recorded.
    @param price_per_kwh: the tariff sent with every session (none: no
        billing).
    @param currency: the tariff's currency.
    @param auth_mode: C{"open"}: every idTag is accepted except those marked
        Blocked or Expired; C{"allowlist"}: only tags listed as Accepted.
    """

    def __init__(
        self,
        db: Any,
        clock: IReactorTime,
        price_per_kwh: Decimal | None = None,
        currency: str = "EUR",
        auth_mode: str = "open",
    ) -> None:
        if auth_mode not in ("open", "allowlist"):
            raise ValueError(f"auth_mode is open or allowlist, not {auth_mode!r}")
        self._db = db
        self._clock = clock
        self._price = None if price_per_kwh is None else str(price_per_kwh)
        self._currency = currency
        self._auth_mode = auth_mode

    def _call(self, fn: Any, write: bool = True) -> Deferred[Any]:
        d = self._db.write(fn) if write else self._db.read(fn)
        return d.addErrback(self._unavailable)

    @staticmethod
    def _unavailable(failure: Failure) -> Failure:
        if failure.check(StorageFull):
            raise DiskFull(f"embedded store: {failure.getErrorMessage()}")
        if failure.check(UnstorableValue):  # a REST backend would answer 400 to such a body
            raise BackendRejected(400, f"embedded store: {failure.getErrorMessage()}")
        if failure.check(sqlite3.OperationalError):
            raise BackendUnavailable(f"embedded store: {failure.getErrorMessage()}")
        return failure

    def ready(self) -> tuple[bool, str]:
        return True, ""

    # -- chargers --------------------------------------------------------------

    def charger_by_device(self, device_id: str) -> Deferred[dict | None]:
        return self._call(lambda conn: self._charger(conn, device_id), write=False)

    def _charger(self, conn: sqlite3.Connection, device_id: str) -> dict | None:
        row = conn.execute(
            "SELECT device_id, enabled, authorization_key_hash, vendor, model, serial_number, firmware_version,"
            " iccid, imsi, meter_type, meter_serial_number, last_seen FROM chargers WHERE device_id = ?",
            (device_id,),
        ).fetchone()
        if row is None:
            return None
        record = _compact(
            {"deviceId": row[0], "enabled": bool(row[1]), "authorizationKeyHash": row[2]}
            | dict(zip(_ENSURE_FIELDS, row[3:11]))
            | {"lastSeen": row[11]}
        )
        record["connectors"] = [
            _compact(
                {"connectorId": c[0], "status": c[1], "errorCode": c[2], "info": c[3], "vendorErrorCode": c[4], "timestamp": c[5]}
            )
            for c in conn.execute(
                "SELECT connector_id, status, error_code, info, vendor_error_code, timestamp FROM connector_status"
                " WHERE device_id = ? ORDER BY connector_id",
                (device_id,),
            )
        ]
        return record

    def ensure_charger(self, body: dict) -> Deferred[dict]:
        try:
            device_id = _require(body, "deviceId", str)
        except BackendRejected as e:
            return fail(e)
        now = now_z(self._clock)
        given = {column: body[field] for field, column in _ENSURE_FIELDS.items() if field in body}

        def ensure(conn: sqlite3.Connection) -> dict | None:
            conn.execute(
                "INSERT INTO chargers (device_id, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT (device_id) DO NOTHING",
                (device_id, now, now),
            )
            columns = "".join(f", {column} = ?" for column in given)
            conn.execute(
                f"UPDATE chargers SET updated_at = ?{columns} WHERE device_id = ?", (now, *given.values(), device_id)
            )
            return self._charger(conn, device_id)

        return self._call(ensure)

    def update_status(self, device_id: str, body: dict) -> Deferred[None]:
        try:
            connector_id = _require(body, "connectorId", int)
            status = _require(body, "status", str)
        except BackendRejected as e:
            return fail(e)
        values = (device_id, connector_id, status, body.get("errorCode"), body.get("info"),
                  body.get("vendorErrorCode"), body.get("timestamp") or now_z(self._clock))

        def update(conn: sqlite3.Connection) -> None:
            self._known(conn, device_id)
            conn.execute("INSERT OR REPLACE INTO connector_status VALUES (?, ?, ?, ?, ?, ?, ?)", values)

        return self._call(update)

    def update_last_seen(self, device_id: str, body: dict) -> Deferred[None]:
        last_seen = body.get("lastSeen") or now_z(self._clock)

        def update(conn: sqlite3.Connection) -> None:
            self._known(conn, device_id)
            conn.execute("UPDATE chargers SET last_seen = ? WHERE device_id = ?", (last_seen, device_id))

        return self._call(update)

    @staticmethod
    def _known(conn: sqlite3.Connection, device_id: str) -> None:
        if conn.execute("SELECT 1 FROM chargers WHERE device_id = ?", (device_id,)).fetchone() is None:
            raise NotFound(f"no charger {device_id}")

    # -- authorization and sessions ----------------------------------------------

    def _tag(self, conn: sqlite3.Connection, id_tag: str) -> tuple[str, str | None, str | None]:
        """
        C{(status, userId, prepaidAmount)} of C{id_tag} under the auth mode.
        """
        row = conn.execute("SELECT status, user_id, prepaid_amount FROM id_tags WHERE id_tag = ?", (id_tag,)).fetchone()
        if row is None:
            return ("Accepted" if self._auth_mode == "open" else "Invalid"), None, None
        return row[0], row[1], row[2]

    def authorize(self, device_id: str, id_tag: str, extra: dict | None = None) -> Deferred[dict]:
        return self._call(lambda conn: {"idTagInfo": {"status": self._tag(conn, id_tag)[0]}}, write=False)

    def start_session(self, body: dict) -> Deferred[dict]:
        try:
            device_id = _require(body, "deviceId", str)
            connector_id = _require(body, "connectorId", int)
            id_tag = _require(body, "idTag", str)
            meter_start = _require(body, "meterStart", int)
            timestamp = _require(body, "timestamp", str)
            given = body.get("transactionId")
            station = given if isinstance(given, str) and body.get("ocppVersion") == "2.0.1" else None
            if station is not None:
                # OCPP 2.0.1: the charger chose the id (a string); the session gets one of ours, mapped to it.
                if not 0 < len(station) <= 36:
                    raise BackendRejected(400, "transactionId must be 1 to 36 characters")
                given = None
            elif given is not None and (not isinstance(given, int) or isinstance(given, bool) or given <= 0):
                raise BackendRejected(400, "transactionId must be a positive integer")
        except BackendRejected as e:
            return fail(e)
        reservation = body.get("reservationId")

        def start(conn: sqlite3.Connection) -> dict:
            if station is not None:
                return self._station_start(conn, device_id, station, start_known)
            return start_known(conn)

        def start_known(conn: sqlite3.Connection, own: int | None = None) -> dict:
            row = None
            if given is not None:
                row = conn.execute(_SESSION + " WHERE transaction_id = ?", (given,)).fetchone()
            if row is None:
                row = conn.execute(
                    _SESSION + " WHERE device_id = ? AND connector_id = ? AND id_tag = ? AND started_at = ?"
                    " AND meter_start = ?",
                    (device_id, connector_id, id_tag, timestamp, meter_start),
                ).fetchone()
                if row is not None and given is not None:
                    # The gateway gave up waiting for this start and told the charger its own id: re-key.
                    conn.execute("UPDATE sessions SET transaction_id = ? WHERE session_id = ?", (given, row[0]))
                    row = conn.execute(_SESSION + " WHERE transaction_id = ?", (given,)).fetchone()
            if row is not None:
                return self._session_answer(row, "Accepted")
            status, user_id, prepaid = self._tag(conn, id_tag)
            transaction_id = given if given is not None else own if own is not None else self._next_transaction_id(conn)
            if status != "Accepted" and given is None:
                return {"sessionId": None, "transactionId": transaction_id, "idTagInfo": {"status": status}}
            # Accepted, or already started during an outage (the gateway answered Accepted): record it.
            session_id = str(uuid.uuid4())
            price = self._price
            currency = self._currency if price is not None or prepaid is not None else None
            conn.execute(
                "INSERT INTO sessions (transaction_id, session_id, device_id, connector_id, id_tag, user_id,"
                " meter_start, started_at, reservation_id, prepaid_amount, price_per_kwh, currency)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (transaction_id, session_id, device_id, connector_id, id_tag, user_id, meter_start, timestamp,
                 reservation, money(prepaid), price, currency),
            )
            row = conn.execute(_SESSION + " WHERE transaction_id = ?", (transaction_id,)).fetchone()
            return self._session_answer(row, status)

        return self._call(start)

    def _station_start(self, conn: sqlite3.Connection, device_id: str, station: str, start_known: Any) -> dict:
        """
        A start whose transactionId the charger chose (OCPP 2.0.1): the
        session is kept under one of our ids, mapped to the charger's, and
        every answer names the charger's.  A repeat finds the same session.
        """
        mapped = conn.execute(
            "SELECT transaction_id FROM station_transactions WHERE device_id = ? AND station_transaction_id = ?",
            (device_id, station),
        ).fetchone()
        if mapped is not None:
            row = conn.execute(_SESSION + " WHERE transaction_id = ?", (mapped[0],)).fetchone()
            if row is not None:
                answer = self._session_answer(row, "Accepted")
                answer["transactionId"] = station
                return answer
        own = self._next_transaction_id(conn)
        answer = start_known(conn, own)
        if answer.get("sessionId") is not None:
            conn.execute(
                "INSERT OR REPLACE INTO station_transactions VALUES (?, ?, ?)", (device_id, station, answer["transactionId"])
            )
        answer["transactionId"] = station
        return answer

    @staticmethod
    def _session_answer(row: tuple[Any, ...], status: str) -> dict:
        return _compact(
            {"sessionId": row[0], "transactionId": row[1], "idTagInfo": {"status": status}, "userId": row[4],
             "prepaidAmount": row[6], "pricePerKwh": row[7], "currency": row[8]}
        )

    @staticmethod
    def _next_transaction_id(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT OR IGNORE INTO counters VALUES ('transaction_id', 0)")
        while True:
            value = conn.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'transaction_id' RETURNING value"
            ).fetchone()[0]
            if value >= GATEWAY_IDS:
                raise BackendUnavailable("embedded store: transactionIds exhausted")
            if conn.execute("SELECT 1 FROM sessions WHERE transaction_id = ?", (value,)).fetchone() is None:
                return value

    def active_sessions(self, device_id: str) -> Deferred[list[dict]]:
        def active(conn: sqlite3.Connection) -> list[dict]:
            rows = conn.execute(
                "SELECT s.session_id, coalesce(t.station_transaction_id, s.transaction_id), s.connector_id, s.id_tag,"
                " s.user_id, s.meter_start, s.prepaid_amount, s.price_per_kwh, s.currency FROM sessions s"
                " LEFT JOIN station_transactions t ON t.transaction_id = s.transaction_id"
                " WHERE s.device_id = ? AND s.stopped = 0 ORDER BY s.transaction_id",
                (device_id,),
            ).fetchall()
            return [
                _compact(
                    {"sessionId": r[0], "transactionId": r[1], "connectorId": r[2], "idTag": r[3], "userId": r[4],
                     "meterStart": r[5], "prepaidAmount": r[6], "pricePerKwh": r[7], "currency": r[8]}
                )
                for r in rows
            ]

        return self._call(active, write=False)

    def stop_session(self, session_id: str, body: dict) -> Deferred[None]:
        try:
            meter_stop = _require(body, "meterStop", int)
            cost, refund = money(body.get("cost")), money(body.get("refund"))
        except BackendRejected as e:
            return fail(e)
        energy = body.get("energyWh")
        stopped_at = body.get("stoppedAt") or now_z(self._clock)

        def stop(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT stopped, meter_start FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            if row is None:
                raise NotFound(f"no session {session_id}")
            if row[0]:
                return  # the first stop wins
            energy_wh = energy if energy is not None else max(0, meter_stop - row[1])
            if energy_wh > _MAX_INTEGER:  # both readings fit in SQLite, their difference does not
                energy_wh = 0
            conn.execute(
                "UPDATE sessions SET stopped = 1, meter_stop = ?, energy_wh = ?, stopped_at = ?, reason = ?, cost = ?,"
                " refund = ? WHERE session_id = ?",
                (meter_stop, energy_wh, stopped_at, body.get("reason"), cost, refund, session_id),
            )

        return self._call(stop)

    def refund(self, body: dict) -> Deferred[None]:
        try:
            key = _require(body, "idempotencyKey", str)
            amount = money(body.get("amount"))
            if amount is None:
                raise BackendRejected(400, "amount is required")
        except BackendRejected as e:
            return fail(e)
        values = (key, body.get("sessionId"), body.get("userId"), amount, body.get("currency"), now_z(self._clock))
        return self._call(_execute("INSERT OR IGNORE INTO wallet_ledger VALUES (?, ?, ?, ?, ?, ?)", values))

    # -- message log and events ------------------------------------------------

    def message_page(self, device_id: str, before: int | None, limit: int) -> Deferred[tuple[list[tuple[Any, ...]], bool]]:
        """
        A page of the message log for the history API
        (L{ocpptw.store.message_pages.read_page}).
        """
        return self._call(lambda conn: read_page(conn, device_id, before, limit), write=False)

    def store_message(self, device_id: str, body: dict) -> Deferred[None]:
        """
        Keep one C{POST /api/charger/{deviceId}/ocpp-message} body, once: an
        outbox delivers at least once, so the same body may come again.
        """
        return self.store_messages([(device_id, body)])

    def store_messages(self, items: list[tuple[str, dict]]) -> Deferred[None]:
        """
        L{store_message} for many bodies in one write.
        """
        now = now_z(self._clock)
        rows = []
        for device_id, body in items:
            payload = body.get("payload")
            rows.append((device_id, body.get("direction"), body.get("messageType"), body.get("messageId"), body.get("action"),
                         None if payload is None else _encode(payload),
                         body.get("errorCode"), body.get("timestamp") or now))
        return self._call(
            _execute_many(
                f"INSERT OR IGNORE INTO messages ({MESSAGE_COLUMNS}, redelivered) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)", rows
            )
        )

    def log_frames(self, rows: list[tuple[Any, ...]]) -> Deferred[None]:
        """
        Append frames to the message log in one write, as they are: the
        local publisher's direct path, which hands over each frame once.

        @param rows: C{(device_id, direction, message_type, message_id,
            action, payload, error_code, timestamp)}, C{payload} being the
            payload's JSON text (or C{None}).
        """
        return self._call(_execute_many(_LOG_FRAMES, rows))

    def record_event(self, event: dict) -> Deferred[None]:
        """
        Keep one event envelope of docs/contract.md section 5 (C{charging.meterValues}
        and the others), once per event C{id}: the embedded mode's stand-in
        for a consumer of the events exchange.
        """
        return self.record_events([event])

    def record_events(self, events: list[dict]) -> Deferred[None]:
        """
        L{record_event} for many events in one write.
        """
        now = now_z(self._clock)
        rows = []
        try:
            for event in events:
                rows.append((_require(event, "id", str), _require(event, "type", str), event.get("deviceId"),
                             event.get("occurredAt"), _encode(event.get("data") or {}), now))
        except BackendRejected as e:
            return fail(e)
        return self._call(_execute_many(_RECORD_EVENTS, rows))

    def log_events(self, events: list[dict]) -> Deferred[None]:
        """
        Append the gateway's own events in one write: the local publisher's
        direct path, which hands over each event (each fresh C{id}) once.
        Each C{data} is encoded once, here.
        """
        now = now_z(self._clock)
        return self._call(_execute_many(
            _LOG_EVENTS,
            [(e["id"], e["type"], e["deviceId"], e["occurredAt"], _encode(e["data"]), now) for e in events],
        ))


_LOG_FRAMES = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_LOG_EVENTS = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_RECORD_EVENTS = f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS}, redelivered) VALUES (?, ?, ?, ?, ?, ?, 1)"
# what is encoded here was decoded from JSON or built by the gateway: it holds no cycles to look for
_encode = compact


def _execute_many(sql: str, rows: list[tuple[Any, ...]]) -> Any:
    def execute(conn: sqlite3.Connection) -> None:
        conn.executemany(sql, rows)

    return execute


def _execute(sql: str, values: tuple[Any, ...]) -> Any:
    def execute(conn: sqlite3.Connection) -> None:
        conn.execute(sql, values)

    return execute
