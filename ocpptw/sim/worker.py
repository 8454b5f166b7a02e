# -*- test-case-name: tests.test_sim -*-
"""
One simulator worker: a set of chargers on one reactor.  It connects them at
a bounded rate (each sends its BootNotification first), then runs one load
phase (closed loop, open loop, idle hold or a reconnect storm) and closes
them.  Several workers in separate processes aggregate their L{Stats}.
"""

from __future__ import annotations

import random
import re
import time
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint

from ocpptw.sim.charger import Charger, SimProtocol, make_factory
from ocpptw.sim.ramp import Ramp
from ocpptw.sim.stats import Stats, own_cpu_seconds

perf = time.perf_counter


#: connections a second assumed when the rate is unlimited, to bound a ramp
SLOWEST_RATE = 100.0


#: What a 4xx handshake refusal means for the person running the simulator.
REFUSALS = {
    400: "bad charger id or request",
    401: "wrong or missing password: --password",
    403: "this port needs wss://",
    404: "unknown charger, or wrong --url path",
    429: "too many failed logins from this address",
}

_STATUS = re.compile(r"upgrade failed \[(\d{3})\]")


def refusal_status(reason: str) -> int | None:
    """
    The HTTP status of a refused WebSocket handshake, from Autobahn's
    reason text, or C{None}.
    """
    match = _STATUS.search(reason or "")
    return int(match.group(1)) if match else None


def speaks_v201(options, n: int) -> bool:
    """
    Whether charger number C{n} speaks OCPP 2.0.1: all with C{--ocpp 2.0.1},
    every other one (the even numbers) with C{--ocpp mixed}.
    """
    version = getattr(options, "ocpp", "1.6")
    return version == "2.0.1" or (version == "mixed" and n % 2 == 0)


def ramp_deadline(count: int, rate: float, options) -> float:
    """
    Seconds a ramp of C{count} connections at C{rate} a second (0:
    unlimited) may take, with its handshakes, first calls and retries.
    """
    o = options
    return (
        count / (rate or SLOWEST_RATE)
        + o.connect_timeout
        + o.call_timeout
        + 5
        + 5 * o.connect_retries
    )


class SimWorker:
    """
    Chargers C{prefix}{n} for every n of this worker's share, on C{reactor}.
    """

    def __init__(self, reactor, options, index: int = 0, count: int = 1):
        self.reactor = reactor
        self.o = options
        self.stats = Stats()
        url = urlsplit(options.url)
        self.secure = url.scheme == "wss"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.secure else 80)
        base = url.path if url.path.endswith("/") else url.path + "/"
        self.factory = make_factory(options.url, options.connect_timeout)
        mix = options.mix
        self.chargers = [
            Charger(
                f"{options.prefix}{n}",
                base,
                self,
                random.Random(options.seed * 1_000_003 + n),
                mix,
                options.session_meters,
                v201=speaks_v201(options, n),
            )
            for n in range(options.start + index, options.start + options.chargers, count)
        ]
        self.stats.chargers = len(self.chargers)
        #: charger id -> the loopback source address it connects from
        #: (C{--source-addresses K}: 127.0.0.1 .. 127.0.0.K, charger n from
        #: 127.0.0.(1 + n % K)), so that one host can open more connections
        #: to one port than one source address has ephemeral ports
        self.sources: dict[str, str] = {}
        if options.source_addresses > 1:
            for c, n in zip(self.chargers, range(options.start + index, options.start + options.chargers, count)):
                self.sources[c.charger_id] = f"127.0.0.{1 + n % options.source_addresses}"
        self.share = count
        self.cpu0 = own_cpu_seconds()
        self.phase = "connect"
        self.ramp: Ramp | None = None
        self.awaiting: set[Charger] = set()
        self.retrying: set[Charger] = set()
        self.open_count = 0
        self.expect_close = False
        self.running = False
        self.inflight = 0
        self.backlogged = 0
        self.quota: int | None = None
        self.load_t0 = 0.0
        self.last_answer = 0.0
        self.load_cpu0 = 0.0
        self.load_done: Deferred[None] | None = None
        self.closed_d: Deferred[None] | None = None
        self._sweeper = None
        self._stop_call = None
        self._drain_call = None

    # -- connecting ----------------------------------------------------------

    def connect_all(self) -> Deferred[None]:
        """
        Connect and boot every charger; fires when all are booted or failed.
        """
        self._sweep()
        rate = self.o.connect_rate / self.share if self.o.connect_rate else 0
        return self._run_ramp(self.chargers, rate, "BootNotification")

    def _run_ramp(self, chargers, rate, first_action) -> Deferred[None]:
        for c in chargers:
            c.first_action = first_action
        concurrency = max(1, self.o.connect_concurrency // self.share)
        self.ramp = Ramp(self, chargers, rate, concurrency)
        d = self.ramp.start(ramp_deadline(len(chargers), rate, self.o))

        def spans(_):
            ramp = self.ramp
            if self.phase == "connect":
                self.stats.connect_seconds = round(ramp.last_open - ramp.t0, 4)
                self.stats.boot_storm_seconds = round(ramp.last_done - ramp.t0, 4)

        return d.addCallback(spans)

    def connect(self, charger: Charger) -> None:
        proto = SimProtocol()
        proto.factory = self.factory
        proto.charger = charger
        self.awaiting.add(charger)
        source = self.sources.get(charger.charger_id)
        endpoint: IStreamClientEndpoint = TCP4ClientEndpoint(
            self.reactor,
            self.host,
            self.port,
            timeout=self.o.connect_timeout,
            bindAddress=(source, 0) if source else None,
        )
        if self.secure:
            endpoint = wrapClientTLS(self._tls_options(), endpoint)
        d = connectProtocol(endpoint, proto)
        d.addErrback(lambda f: self._resolve(charger, False, f.type.__name__))

    def _tls_options(self):
        """
        TLS client options: the system's trust roots, or C{--cafile}'s;
        with C{--client-cert}, that certificate (security profile 3).
        """
        if getattr(self, "_tls", None) is None:
            from twisted.internet.ssl import (
                Certificate,
                PrivateCertificate,
                optionsForClientTLS,
            )

            kwargs = {}
            if self.o.cafile:
                with open(self.o.cafile, "rb") as f:
                    kwargs["trustRoot"] = Certificate.loadPEM(f.read())
            if self.o.client_cert:
                with open(self.o.client_cert, "rb") as f:
                    kwargs["clientCertificate"] = PrivateCertificate.loadPEM(f.read())
            self._tls = optionsForClientTLS(self.host, **kwargs)
        return self._tls

    def _retry(self, charger: Charger, ramp: Ramp) -> None:
        if charger in self.retrying and ramp is self.ramp and not ramp.done.called:
            self.retrying.discard(charger)
            self.connect(charger)

    def ramp_expired(self, never_started: list[Charger]) -> None:
        for c in list(self.awaiting):
            if c.proto is not None:
                c.proto.transport.abortConnection()
            self._resolve(c, False, "deadline")
        for _ in never_started:
            self._count_failure("deadline")
        for _ in self.retrying:
            self._count_failure("deadline (retrying)")
        self.retrying.clear()

    def _count_failure(self, reason: str) -> None:
        self.stats.connect_failures[reason] += 1
        if self.phase == "storm":
            self.stats.reconnect_failed += 1
        else:
            self.stats.connect_failed += 1

    def _resolve(self, charger: Charger, ok: bool, reason: str = "") -> None:
        if charger not in self.awaiting:
            return
        self.awaiting.discard(charger)
        refused = refusal_status(reason) if not ok else None
        if refused is not None and 400 <= refused < 500:
            # the gateway said no (401 wrong key, 404 unknown charger, ...):
            # trying again would only be refused again
            reason = f"refused {refused}" + (f" ({REFUSALS[refused]})" if refused in REFUSALS else "")
        elif (
            not ok
            and charger.proto is None
            and charger.attempts < self.o.connect_retries
            and self.ramp
        ):
            # as a real charger does: try again after a randomised, growing pause
            charger.attempts += 1
            self.stats.connect_retries += 1
            pause = min(5.0, 0.25 * 2**charger.attempts) * (0.5 + charger.rng.random())
            self.retrying.add(charger)
            self.reactor.callLater(pause, self._retry, charger, self.ramp)
            return
        charger.attempts = 0
        if ok:
            if self.phase == "storm":
                self.stats.reconnected += 1
                self.stats.storm_timeline[int(perf() - self.load_t0)] += 1
            elif charger.booted:
                self.stats.booted += 1
            else:
                self.stats.boot_rejected += 1
        else:
            self._count_failure(reason)
        if self.ramp is not None:
            self.ramp.resolved()

    def expects_open(self, charger: Charger) -> bool:
        """
        Whether a connection of C{charger} that just opened is still wanted.
        """
        return charger in self.awaiting and charger.proto is None

    def charger_opened(self, charger: Charger) -> None:
        self.open_count += 1
        if self.phase == "connect":
            self.stats.connected += 1
        if self.ramp is not None:
            self.ramp.last_open = perf()
        if not charger.send_first():
            self._resolve(charger, False, "closed before first call")

    def charger_closed(self, charger: Charger, proto, was_open: bool, code, reason) -> None:
        if was_open:
            self.open_count -= 1
        if charger in self.awaiting:
            why = (
                getattr(proto, "wasNotCleanReason", None) or f"closed {code} {reason or ''}".strip()
            )
            self._resolve(charger, False, str(why)[:80])
        elif was_open and not self.expect_close:
            self.stats.disconnects += 1
            if charger.backlog:
                self.stats.lost += len(charger.backlog)
                self.backlogged -= len(charger.backlog)
                charger.backlog.clear()
                self._maybe_finish()
        if self.expect_close and self.open_count <= 0 and self.closed_d is not None:
            d, self.closed_d = self.closed_d, None
            d.callback(None)

    # -- calls ---------------------------------------------------------------

    def call_finished(self, charger: Charger, now: float | None = None, lost: bool = False) -> None:
        if charger in self.awaiting:
            if lost:
                self._resolve(charger, False, "no answer to first call")
            else:
                self._resolve(charger, True)
            return
        if not self.inflight:
            return
        self.inflight -= 1
        if now is not None:
            self.last_answer = now
        if self.o.mode == "closed":
            if self.running:
                self._issue(charger, perf())
        elif charger.backlog and charger.proto is not None:
            self.backlogged -= 1
            self._issue(charger, charger.backlog.popleft())
        self._maybe_finish()

    def _issue(self, charger: Charger, intended: float) -> None:
        if self.quota is not None:
            if self.quota <= 0:
                return
            self.quota -= 1
        if charger.send_next(intended):
            self.inflight += 1
        else:
            self.stats.lost += 1

    def _sweep(self) -> None:
        """
        Time out calls that waited longer than the call timeout.
        """
        limit = perf() - self.o.call_timeout
        for c in self.chargers:
            if c.pending_id is not None and c.sent_at < limit:
                c.timed_out()
        self._sweeper = self.reactor.callLater(0.25, self._sweep)

    # -- load ----------------------------------------------------------------

    def run_load(self) -> Deferred[None]:
        """
        The load phase of the configured mode; fires when it is over.
        """
        o = self.o
        self.phase = "load"
        self.load_done = done = Deferred[None]()
        self.load_t0 = self.last_answer = perf()
        self.load_cpu0 = own_cpu_seconds()
        if o.mode == "idle":
            self._stop_call = self.reactor.callLater(o.duration, self._finish)
        elif o.mode == "storm":
            self._storm()
        else:
            active = [c for c in self.chargers if c.booted and c.proto is not None]
            self.running = bool(active)
            if o.calls:
                self.quota = max(1, o.calls // self.share)
            self._stop_call = self.reactor.callLater(o.duration, self._stop_issuing)
            if o.mode == "closed":
                for c in active:
                    self._issue(c, perf())
            else:
                self._open_loop(active)
            self._maybe_finish()
        return done

    def _open_loop(self, active: list[Charger]) -> None:
        rate = self.o.rate / self.share
        total = int(rate * self.o.duration)
        if self.quota is not None:
            total = min(total, self.quota)
            self.quota = None
        issued = 0
        t0 = self.load_t0
        n = len(active)

        def tick() -> None:
            nonlocal issued
            if not self.running:
                return
            due = min(total, int((perf() - t0) * rate) + 1)
            while issued < due:
                c = active[issued % n]
                intended = t0 + issued / rate
                issued += 1
                if c.proto is None:
                    self.stats.lost += 1
                elif c.pending_id is None and not c.backlog:
                    self._issue(c, intended)
                else:
                    c.backlog.append(intended)
                    self.backlogged += 1
            if issued < total:
                self.reactor.callLater(0.001, tick)
            else:
                self._stop_issuing()

        if n and total:
            tick()
        else:
            self.running = False

    def _stop_issuing(self) -> None:
        if self.running and self.load_done is not None:
            # everything still queued or unanswered one call timeout from now is given up
            self._drain_call = self.reactor.callLater(
                self.o.call_timeout + 1, self._give_up_draining
            )
        self.running = False
        self._maybe_finish()

    def _give_up_draining(self) -> None:
        self._drain_call = None
        if self.load_done is None:
            return
        for c in self.chargers:
            if c.backlog:
                self.stats.unsent += len(c.backlog)
                self.backlogged -= len(c.backlog)
                c.backlog.clear()
        for c in self.chargers:
            if c.pending_id is not None:
                c.timed_out()
        self.inflight = self.backlogged = 0
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.load_done is None or self.phase != "load" or self.o.mode in ("idle", "storm"):
            return
        exhausted = self.quota is not None and self.quota <= 0
        if (not self.running or exhausted) and self.inflight <= 0 and self.backlogged <= 0:
            self._finish()

    def _storm(self) -> None:
        victims = [c for c in self.chargers if c.proto is not None]
        self.expect_close = True
        for c in victims:
            c.proto.transport.abortConnection()

        def reconnect() -> None:
            self.expect_close = False
            self.phase = "storm"
            rate = self.o.storm_rate / self.share if self.o.storm_rate else 0
            d = self._run_ramp(victims, rate, self.o.storm_call)

            def done(_):
                self.stats.storm_seconds = round(self.ramp.last_done - self.load_t0, 4)
                self.phase = "load"
                self._finish()

            d.addCallback(done)

        self.reactor.callLater(0.01, reconnect)

    def _finish(self) -> None:
        for call in (self._stop_call, self._drain_call):
            if call is not None and call.active():
                call.cancel()
        self.running = False
        d, self.load_done = self.load_done, None
        if d is None:
            return
        end = perf() if self.o.mode in ("idle", "storm") else self.last_answer
        self.stats.load_seconds = round(max(end - self.load_t0, 1e-9), 4)
        self.stats.phase_seconds = round(perf() - self.load_t0, 4)
        self.stats.cpu_seconds_load = own_cpu_seconds() - self.load_cpu0
        self.phase = "done"
        d.callback(None)

    # -- closing -------------------------------------------------------------

    def close_all(self, grace: float = 3.0) -> Deferred[None]:
        """
        Close every connection (1000), aborting those that linger.
        """
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self.expect_close = True
        self.closed_d = d = Deferred[None]()
        if self.open_count <= 0:
            self.closed_d = None
            d.callback(None)
        for c in self.chargers:
            if c.proto is not None:
                c.proto.sendClose(1000)

        def abort() -> None:
            for c in self.chargers:
                if c.proto is not None:
                    c.proto.transport.abortConnection()

        timers = [
            self.reactor.callLater(grace, abort),
            self.reactor.callLater(grace + 1, self._give_up),
        ]

        def cancel_timers(result):
            for t in timers:
                if t.active():
                    t.cancel()
            return result

        return d.addBoth(cancel_timers)

    def _give_up(self) -> None:
        d, self.closed_d = self.closed_d, None
        if d is not None:
            d.callback(None)

    def finalise(self) -> Stats:
        """
        This worker's figures, with its CPU time.
        """
        self.stats.cpu_seconds_total = own_cpu_seconds() - self.cpu0
        return self.stats
