"""
Smoke tests of the charger simulator against an in-process stand-in central
system (a tiny Autobahn server on 127.0.0.1, port 0).  They check that every
call is answered and counted, never speed.
"""

from __future__ import annotations

import json
import sys

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny

from ocpptw.sim import payloads as sim_payloads
from ocpptw.sim.charger import parse_mix
from ocpptw.sim.cli import SimOptions, parse_args, run_simulation
from ocpptw.sim.stats import Histogram, Stats
from tests.helpers import bounded, until


class StandIn(WebSocketServerProtocol):
    """
    Answers BootNotification, Heartbeat and the rest; records what it sees.
    """

    def onConnect(self, request):
        self.factory.paths.append(request.path)
        self.factory.peers.append(request.peer)
        if request.path in self.factory.deny_once:
            self.factory.deny_once.discard(request.path)
            raise ConnectionDeny(503, "too many connection attempts, retry later")
        return "ocpp1.6" if "ocpp1.6" in request.protocols else None

    def onMessage(self, payload, isBinary):
        msg = json.loads(payload)
        f = self.factory
        if msg[0] == 3:
            f.results.append(msg[2])
            return
        if msg[0] != 2:
            return
        _, mid, action, body = msg
        f.calls.append(action)
        if action in f.silent:
            return
        if action in f.refuse:
            self.sendMessage(json.dumps([4, mid, f.refuse[action], "refused", {}]).encode())
            return
        answer: dict = {}
        if action == "BootNotification":
            answer = {"status": "Accepted", "currentTime": "2026-11-24T10:00:00Z", "interval": 300}
            if f.send_reset:
                self.sendMessage(json.dumps([2, "srv-1", "Reset", {"type": "Soft"}]).encode())
        elif action == "Heartbeat":
            answer = {"currentTime": "2026-11-24T10:00:00Z"}
        elif action in ("Authorize", "StopTransaction"):
            answer = {"idTagInfo": {"status": "Accepted"}}
        elif action == "StartTransaction":
            answer = {"transactionId": len(f.calls), "idTagInfo": {"status": "Accepted"}}
        self.sendMessage(json.dumps([3, mid, answer]).encode())


@pytest.fixture
def stand_in():
    """
    The stand-in central system listening on 127.0.0.1, port 0.
    """
    from twisted.internet import reactor

    factory = WebSocketServerFactory()
    factory.protocol = StandIn
    factory.setProtocolOptions(autoPingInterval=0)
    factory.paths, factory.calls, factory.results, factory.peers = [], [], [], []
    factory.silent, factory.refuse, factory.send_reset = set(), {}, False
    factory.deny_once = set()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    factory.url = f"ws://127.0.0.1:{port.getHost().port}/ocpp/"
    yield factory
    port.stopListening()


def options(url: str, **kw) -> SimOptions:
    base = dict(
        url=url, chargers=5, prefix="T", duration=5.0, call_timeout=5.0, connect_timeout=5.0
    )
    base.update(kw)
    return SimOptions(**base)


@pytest_twisted.ensureDeferred
async def test_closed_loop_answers_every_call(stand_in):
    """Five chargers boot first, then 25 calls of the mix are all answered and counted."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    report = await bounded(
        ensureDeferred(run_simulation(reactor, options(stand_in.url, calls=25))), 20
    )
    assert report["ok"], report
    assert report["connections"]["ok"] == 5 and report["connections"]["booted"] == 5
    assert report["calls"]["load_answered"] == 25
    assert report["calls"]["errors"] == {} and report["calls"]["timeouts"] == 0
    assert report["latency_ms"]["count"] == 25
    assert sorted(stand_in.paths) == [f"/ocpp/T{n}" for n in range(1, 6)]
    assert stand_in.calls[:5] == ["BootNotification"] * 5
    assert stand_in.calls.count("BootNotification") == 5
    assert len(stand_in.calls) == 30


@pytest_twisted.ensureDeferred
async def test_open_loop_sends_the_offered_rate(stand_in):
    """Open loop at 40 calls/s for 0.5 s sends exactly 20 calls, all answered."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    opts = options(stand_in.url, rate=40.0, duration=0.5, mode="open")
    report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 20)
    assert report["ok"], report
    assert report["calls"]["load_answered"] == 20
    assert report["latency_ms"]["count"] == 20 and report["service_ms"]["count"] == 20


@pytest_twisted.ensureDeferred
async def test_open_loop_against_a_stalled_server_ends_in_time(stand_in):
    """Calls queued behind unanswered ones are given up one call timeout after the load."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    stand_in.silent.add("Heartbeat")
    opts = options(stand_in.url, chargers=1, rate=20.0, duration=0.5, mode="open", call_timeout=0.3)
    opts.mix = parse_mix("heartbeat=1")
    report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 10)
    calls = report["calls"]
    assert not report["ok"]
    assert calls["load_answered"] == 0
    assert calls["timeouts"] == stand_in.calls.count("Heartbeat") >= 1
    assert calls["timeouts"] + calls["unsent"] == 10


@pytest_twisted.ensureDeferred
async def test_callerrors_and_timeouts_are_counted(stand_in):
    """A CALLERROR is counted by its code and an unanswered call as a timeout."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    stand_in.refuse["Heartbeat"] = "NotSupported"
    stand_in.silent.add("StatusNotification")
    opts = options(
        stand_in.url, chargers=2, calls=6, call_timeout=0.3, mix=parse_mix("heartbeat=1,status=1")
    )
    report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 20)
    calls = report["calls"]
    assert not report["ok"]
    assert calls["errors"].get("NotSupported", 0) + calls["timeouts"] == 6
    assert calls["errors"]["NotSupported"] == stand_in.calls.count("Heartbeat")
    assert calls["timeouts"] == stand_in.calls.count("StatusNotification")


@pytest_twisted.ensureDeferred
async def test_answers_calls_from_the_central_system(stand_in):
    """A Reset sent by the central system gets a CALLRESULT with status Accepted."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    stand_in.send_reset = True
    opts = options(stand_in.url, mode="idle", duration=0.2, settle=0)
    report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 20)
    await until(lambda: len(stand_in.results) == 5)
    assert stand_in.results == [{"status": "Accepted"}] * 5
    assert report["server_calls"] == {"count": 5, "by_action": {"Reset": 5}}


@pytest_twisted.ensureDeferred
async def test_reconnect_storm_reconnects_everyone(stand_in):
    """In a storm every charger drops, reconnects and its first call is answered."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    opts = options(stand_in.url, mode="storm", storm_call="Heartbeat")
    report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 20)
    assert report["ok"], report
    assert report["storm"]["reconnected"] == 5 and report["storm"]["failed"] == 0
    timeline = report["storm"]["reconnected_by_second"]
    assert timeline and sum(timeline.values()) == 5 and all(int(k) >= 0 for k in timeline)
    assert len(stand_in.paths) == 10
    assert stand_in.calls.count("Heartbeat") == 5


@pytest_twisted.ensureDeferred
async def test_refused_handshakes_are_retried(stand_in):
    """A charger refused with 503 tries again, as a real one does, and boots."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    stand_in.deny_once.update({"/ocpp/T1", "/ocpp/T3"})
    opts = options(stand_in.url, mode="idle", duration=0.1, settle=0)
    report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 20)
    assert report["ok"], report
    assert report["connections"]["booted"] == 5 and report["connections"]["retries"] == 2
    assert len(stand_in.paths) == 7


@pytest_twisted.ensureDeferred
async def test_refused_connections_are_reported():
    """Nothing listening: every charger is a failed connection, and the run still ends."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    probe = reactor.listenTCP(0, WebSocketServerFactory(), interface="127.0.0.1")
    port = probe.getHost().port
    await probe.stopListening()
    opts = options(f"ws://127.0.0.1:{port}/ocpp/", chargers=3, duration=0.1, connect_retries=0)
    report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 20)
    assert report["connections"]["failed"] == 3 and report["connections"]["ok"] == 0
    assert not report["ok"]


@pytest_twisted.ensureDeferred
async def test_command_line_with_two_processes(stand_in):
    """C{python -m ocpptw.sim.cli --processes 2 --json} adds up both workers' figures."""
    from twisted.internet import reactor
    from twisted.internet.utils import getProcessOutputAndValue

    args = [
        "-m",
        "ocpptw.sim.cli",
        "--url",
        stand_in.url,
        "-n",
        "6",
        "--calls",
        "30",
        "--processes",
        "2",
        "--server-pid",
        "1",
        "--json",
    ]
    out, err, code = await bounded(
        getProcessOutputAndValue(sys.executable, args, env=None, reactor=reactor), 30
    )
    report = json.loads(out)
    assert code == 0, err
    assert report["processes"] == 2 and report["connections"]["booted"] == 6
    assert report["calls"]["load_answered"] == 30
    assert "rss_kb_start" in report["server"]
    assert stand_in.calls.count("BootNotification") == 6 and len(stand_in.calls) == 36


def test_every_simulated_payload_is_schema_valid():
    """Every payload the simulator sends passes the official OCPP 1.6 schemas."""
    from ocpptw.ocpp.validation import Validator

    v = Validator()
    p = sim_payloads
    payloads = {
        "BootNotification": p.boot_notification("SIM-000123"),
        "Heartbeat": p.HEARTBEAT,
        "StatusNotification": p.status_notification(1, "Charging"),
        "Authorize": p.authorize("TAG123"),
        "StartTransaction": p.start_transaction(1, "TAG123", 1000),
        "StopTransaction": p.stop_transaction(7, "TAG123", 2000),
    }
    for action, text in payloads.items():
        v.check_request(action, json.loads(text))
    for tx in (None, 7):
        meter = json.loads(p.meter_values(1, tx, 123456, 9))
        assert len(meter["meterValue"][0]["sampledValue"]) == 10
        v.check_request("MeterValues", meter)
    for action in (
        "Reset",
        "ChangeConfiguration",
        "GetConfiguration",
        "TriggerMessage",
        "UnlockConnector",
    ):
        frame = json.loads(p.answer_server_call("m1", action))
        assert frame[:2] == [3, "m1"]
        v.check_response(action, frame[2])
    assert json.loads(p.answer_server_call("m2", "Nonsense"))[2] == "NotImplemented"


def test_histogram_percentiles_and_merge():
    """Percentiles stay within 0.2 % and merging adds counts."""
    a, b = Histogram(), Histogram()
    for ms in range(1, 101):
        a.record(ms / 1000)
    b.record(0.5)
    a.merge(b)
    assert a.total == 101 and a.max_us == 500_000
    assert a.percentile(0.5) == pytest.approx(51, rel=0.002)
    assert a.percentile(0.99) == pytest.approx(100, rel=0.002)
    stats = Stats()
    stats.latency.record(0.002)
    stats.storm_timeline[0] += 3
    stats.storm_timeline[2] += 1
    again = Stats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again.latency.summary() == stats.latency.summary()
    assert again.storm_timeline == {0: 3, 2: 1}
    again.merge(stats)
    assert again.storm_timeline == {0: 6, 2: 2}


def test_command_line_options():
    """Modes come from the flags; a bad mix or URL is refused."""
    assert parse_args(["--rate", "100"])[0].mode == "open"
    assert parse_args(["--idle"])[0].mode == "idle"
    assert parse_args(["--storm", "--json"])[0].mode == "storm"
    assert parse_args([])[0].url == "ws://127.0.0.1:9000/ocpp/"
    for bad in (["--mix", "dance=1"], ["--url", "http://x/"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


@pytest_twisted.ensureDeferred
async def test_chargers_connect_from_several_loopback_addresses(stand_in):
    """--source-addresses 3: charger n connects from 127.0.0.(1 + n % 3)."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    opts = options(stand_in.url, chargers=6, mode="idle", duration=0.1, settle=0, source_addresses=3)
    report = await bounded(ensureDeferred(run_simulation(reactor, opts)), 20)
    assert report["ok"], report
    by_path = {path: peer.split(":")[1] for path, peer in zip(stand_in.paths, stand_in.peers)}
    assert by_path == {f"/ocpp/T{n}": f"127.0.0.{1 + n % 3}" for n in range(1, 7)}


def test_source_addresses_only_on_loopback():
    assert parse_args(["--source-addresses", "3"])[0].source_addresses == 3
    for bad in (["--source-addresses", "0"], ["--source-addresses", "2", "--url", "ws://10.0.0.5/ocpp/"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
