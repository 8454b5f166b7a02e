# -*- test-case-name: tests.transport.test_websocket -*-
"""
What happens to a charger's connection outside the OCPP conversation: the
decisions at the WebSocket handshake (identity, admission, unknown-charger
policy, credentials) and the bookkeeping when the socket opens and closes.

The Autobahn protocol (L{ocpptw.transport.websocket}) stays thin and calls
the L{Gate}; the gate knows nothing about Autobahn but L{ConnectionDeny}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocpptw.clock import utcnow
from ocpptw.interfaces import BackendUnavailable, IChargerService, IFrameSink
from ocpptw.ocpp.versions import BY_SUBPROTOCOL, V16, ProtocolVersion, choose

#: The subprotocol of OCPP 1.6, the one a L{Gate} enables unless told.
SUBPROTOCOL = "ocpp1.6"

#: Close code and reason when the client offered no subprotocol we speak.
NO_SUBPROTOCOL = (1000, "no supported OCPP subprotocol offered")

#: How long the handshake waits for the charger record.
ADMIT_TIMEOUT = 10.0

#: The one reason phrase of every 401 (whether the charger exists or has a
#: key is not revealed); the detail goes to the log.
UNAUTHORIZED = "unauthorized"

#: Seconds of a reactor turn that the bookkeeping of closed connections
#: (unregistering, listeners, the C{Disconnected} event) may take in a
#: burst before the rest waits for the next turns (L{Gate} C{close_budget}).
CLOSE_BUDGET = 0.002

#: Handshake metric outcome by refusal status.
_OUTCOMES = {401: "unauthorized", 429: "throttled"}


@implementer(IFrameSink)
class ChargerConnection:
    """
    One charger's socket as the rest of the gateway sees it: the registry's
    handle (C{session}, C{close}) and the session's sink (C{send_text},
    C{close}).  C{version} is the OCPP version the handshake chose (the
    session factory builds the session for it).
    """

    __slots__ = ("charge_point_id", "session", "version", "_protocol", "_open")

    def __init__(self, charge_point_id: str, protocol: Any, version: ProtocolVersion = V16) -> None:
        self.charge_point_id = charge_point_id
        self._protocol = protocol
        self._open = True
        self.version = version
        self.session: Any = None

    @property
    def peer(self) -> str:
        """
        The charger's address, for log lines.
        """
        try:
            return str(self._protocol.transport.getPeer().host)
        except Exception:  # noqa: BLE001 - a transport without an address
            return "unknown"

    @property
    def ocpp_version(self) -> str | None:
        """
        The subprotocol the charger speaks (C{ocpp1.6}, ...).
        """
        return getattr(self._protocol, "websocket_protocol_in_use", None)

    def send_text(self, text: str) -> None:
        if self._open:
            self._protocol.sendMessage(text.encode("utf-8"), False)

    def close(self, code: int, reason: str) -> None:
        if self._open:
            self._open = False
            if code == 1000 or 3000 <= code <= 4999:
                self._protocol.sendClose(code, reason)
            else:
                # Autobahn's public sendClose refuses protocol codes such as
                # 1001 (going away, used by the drain); the frame method does not.
                self._protocol.sendCloseFrame(code, reason.encode("utf-8")[:120], isReply=False)

    def lost(self) -> None:
        self._open = False


class Gate:
    """
    The handshake policy and the open/close bookkeeping for chargers.

    @param session_factory: C{(charge_point_id, connection, strict) ->
        OcppSession}, for the version in C{connection.version}.
    @param versions: the enabled subprotocols (C{OCPP_VERSIONS}); OCPP 1.6
        alone unless told.
    @param authenticate: C{(identity, headers, peer, certificate, record) ->
        outcome} with C{outcome.ok}, C{.status}, C{.reason}; C{None} for
        security profile 0.
    @param admission: an object with C{try_enter(peer) -> bool} and
        C{leave()} (connection storms), or C{None}.
    @param close_budget: seconds of CPU the bookkeeping of closed
        connections may take in one go (L{CLOSE_BUDGET}); beyond it, in a
        burst of closes (thousands of chargers dropping at once), the rest
        is done over the next reactor turns, so that connected chargers are
        served in between.  A connection's calls fail and it stops sending
        at once either way; a charger that connects again first has its
        old connection's bookkeeping done before its new one is registered.
        C{None}: every close is done at once.
    @param timer: the CPU-time clock of C{close_budget}.
    """

    log = Logger()

    def __init__(
        self,
        *,
        prefix: str,
        chargers: IChargerService,
        registry: Any,
        session_factory: Callable[[str, ChargerConnection, bool], Any],
        clock: IReactorTime,
        strict: bool = True,
        allow_unknown: bool = True,
        allow_missing_subprotocol: bool = False,
        versions: tuple[str, ...] = (SUBPROTOCOL,),
        authenticate: Callable[..., Any] | None = None,
        admission: Any = None,
        metrics: Any = None,
        close_budget: float | None = None,
        timer: Callable[[], float] = perf_counter,
    ) -> None:
        self.prefix = prefix
        self.allow_missing_subprotocol = allow_missing_subprotocol
        self.versions = tuple(v for v in versions if v in BY_SUBPROTOCOL)
        self._chargers = chargers
        self._registry = registry
        self._session_factory = session_factory
        self._clock = clock
        self._strict = strict
        self._allow_unknown = allow_unknown
        self._authenticate = authenticate
        self._admission = admission
        self._metrics = metrics
        self.accepting = True
        self._notifying: set[Deferred] = set()
        #: Sessions whose socket closed while a CALL was still being handled.
        self._finishing: set[Any] = set()
        self._close_budget = close_budget
        self._timer = timer
        #: closed connections whose bookkeeping waits for a later turn
        self._closes: deque[ChargerConnection] = deque()
        self._closes_by_id: dict[str, list[ChargerConnection]] = {}
        self._close_deadline: float | None = None

    # -- handshake -----------------------------------------------------------

    def outcome(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.handshake(name)

    def choose(self, offered: list[str]) -> ProtocolVersion | None:
        """
        The version of the first subprotocol the charger offered (in its
        order of preference) that is enabled, or C{None}.
        """
        return choose(offered, self.versions)

    def enter(self, peer: str) -> bool:
        """
        Admit one more handshake from C{peer} now, or say no (503).
        """
        if not self.accepting:
            return False
        if self._admission is None:
            return True
        return bool(self._admission.try_enter(peer))

    def leave(self) -> None:
        if self._admission is not None:
            self._admission.leave()

    @inlineCallbacks
    def check(self, identity: str, headers: dict, peer: str, certificate: Any) -> Any:
        """
        Decide whether C{identity} may connect.  Fires with the charger
        record (or C{None} for a charger to be registered on boot); fails
        with L{ConnectionDeny}.
        """
        try:
            d = self._chargers.admit(identity)
            record = yield d.addTimeout(ADMIT_TIMEOUT, self._clock)
        except BackendUnavailable:
            if self._authenticate is not None or not self._allow_unknown:
                self.outcome("unavailable")
                raise ConnectionDeny(503, "charger records unavailable, retry later") from None
            record = None
        except Exception:
            self.log.failure("looking up charger {chargePointId} failed", chargePointId=identity)
            self.outcome("error")
            raise ConnectionDeny(503, "charger records unavailable, retry later") from None
        if record is None and not self._allow_unknown:
            self.outcome("unknown")
            raise ConnectionDeny(404, "unknown charger")
        if self._authenticate is not None:
            verdict = self._authenticate(identity, headers, peer, certificate, record)
            if not verdict.ok:
                self.log.warn(
                    "refused {chargePointId} from {peer}: {reason}",
                    chargePointId=identity,
                    peer=peer,
                    reason=verdict.reason,
                )
                self.outcome(_OUTCOMES.get(verdict.status, "unavailable"))
                # The detail went to the log: the charger learns only that it was refused.
                raise ConnectionDeny(verdict.status, UNAUTHORIZED if verdict.status == 401 else verdict.reason)
        return record

    # -- open and close ------------------------------------------------------

    def opened(
        self, identity: str, protocol: Any, record: dict | None, version: ProtocolVersion | None = None
    ) -> ChargerConnection:
        """
        The socket is open: build the session, register it (newest wins).
        A charger admitted without a subprotocol speaks 1.6 when it is
        enabled, else the first enabled version.
        """
        if version is None:
            version = V16 if V16.subprotocol in self.versions or not self.versions else BY_SUBPROTOCOL[self.versions[0]]
        connection = ChargerConnection(identity, protocol, version)
        strict = self._strict
        policy = (record or {}).get("ocppValidation") or (record or {}).get("validation")
        if policy in ("strict", "lenient"):
            strict = policy == "strict"
        connection.session = self._session_factory(identity, connection, strict)
        if identity in self._closes_by_id:
            # its previous connection's close waits in a burst: first that
            for previous in self._closes_by_id.pop(identity):
                self._finish_close(previous)
        self._registry.attach(identity, connection)
        self.outcome("accepted")
        if self._metrics is not None:
            self._metrics.connected(len(self._registry))
        self._notify(self._chargers.connected(identity, utcnow(self._clock)), identity, "connected")
        return connection

    def closed(self, connection: ChargerConnection) -> None:
        """
        The socket closed: fail its pending calls, unregister, say so (the
        last two in a later turn when a burst of closes is over
        C{close_budget}).
        """
        connection.lost()
        if connection.session is not None:
            connection.session.connection_lost()
            if not connection.session.idle():
                self._finishing.add(connection.session)
                # forgotten once its last CALL is handled, not only at a drain
                connection.session.on_settled = self._finishing.discard
        if self._close_budget is not None and self._over_close_budget():
            if not self._closes:
                self._clock.callLater(0, self._close_some)
            self._closes.append(connection)
            self._closes_by_id.setdefault(connection.charge_point_id, []).append(connection)
            return
        self._finish_close(connection)

    def _over_close_budget(self) -> bool:
        """
        Whether this close is to wait: some wait already, or the closes
        done at once since the budget's window opened took it all.
        """
        if self._closes:
            return True
        now = self._timer()
        deadline = self._close_deadline
        if deadline is None or now >= deadline + (self._close_budget or 0.0):
            # a new burst (the last one's window is well over): a new window
            self._close_deadline = now + (self._close_budget or 0.0)
            return False
        return now >= deadline

    def _close_some(self) -> None:
        """
        Finish waiting closes, in order, for at most C{close_budget}; the
        rest in the next turn, after the network.
        """
        assert self._close_budget is not None
        deadline = self._timer() + self._close_budget
        closes, by_id = self._closes, self._closes_by_id
        while closes:
            connection = closes.popleft()
            waiting = by_id.get(connection.charge_point_id)
            if waiting is None or connection not in waiting:
                continue  # done when its charger connected again
            waiting.remove(connection)
            if not waiting:
                del by_id[connection.charge_point_id]
            self._finish_close(connection)
            if closes and self._timer() >= deadline:
                self._clock.callLater(0, self._close_some)
                return
        self._close_deadline = deadline

    def _finish_all_closes(self) -> None:
        while self._closes:
            connection = self._closes.popleft()
            waiting = self._closes_by_id.get(connection.charge_point_id)
            if waiting is not None and connection in waiting:
                waiting.remove(connection)
                if not waiting:
                    del self._closes_by_id[connection.charge_point_id]
                self._finish_close(connection)

    def waiting_closes(self) -> int:
        """
        Closed connections whose bookkeeping waits for a later turn.
        """
        return sum(len(c) for c in self._closes_by_id.values())

    def _finish_close(self, connection: ChargerConnection) -> None:
        current = self._registry.get(connection.charge_point_id) is connection
        self._registry.detach(connection.charge_point_id, connection)
        if self._metrics is not None:
            self._metrics.connected(len(self._registry))
        if current:
            when = utcnow(self._clock)
            self._notify(self._chargers.disconnected(connection.charge_point_id, when), connection.charge_point_id, "disconnected")

    def _notify(self, d: Deferred | None, identity: str, what: str) -> None:
        if isinstance(d, Deferred):
            d.addErrback(
                lambda f: self.log.failure("recording that {chargePointId} {what} failed", f, chargePointId=identity, what=what)
            )
            if not d.called:
                self._notifying.add(d)
                d.addBoth(self._notified, d)

    def _notified(self, result: Any, d: Deferred) -> Any:
        self._notifying.discard(d)
        return result

    def settled(self) -> Deferred:
        """
        Fires once every connect/disconnect notification under way is
        recorded (the drain waits for it before closing the stores).
        """
        from twisted.internet.defer import DeferredList

        self._finish_all_closes()
        return DeferredList(list(self._notifying), consumeErrors=True)

    def finishing(self) -> int:
        """
        How many closed connections still have a CALL being handled (its
        durable writes under way; the drain waits for them too).
        """
        self._finishing = {session for session in self._finishing if not session.idle()}
        return len(self._finishing)
