"""
Unit tests of the handshake gate's hardening: closed sessions are forgotten
once their last CALL is handled (finding 2), every 401 has one reason
phrase (finding 8), and failed credential checks are limited (finding 9).
"""

from __future__ import annotations

import base64
import json

import pytest
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher

from ocpptw.ocpp.session import OcppSession
from ocpptw.ocpp.validation import Validator
from ocpptw.services.keys import hash_key
from ocpptw.services.registry import ChargerRegistry
from ocpptw.transport.auth import Authenticator
from ocpptw.transport.guess_limit import GuessLimit
from ocpptw.transport.handshake import UNAUTHORIZED, Gate
from tests.helpers import failure_result_of, success_result_of
from tests.transport.test_websocket import Chargers

KEY = "a-long-charger-key-0123"


class Protocol:
    def sendMessage(self, data, binary):
        pass

    def sendClose(self, code, reason):
        pass


def gate(clock, authenticate=None, handler=None):
    validator = Validator()
    chargers = Chargers()

    def session_factory(identity, connection, strict):
        return OcppSession(identity, connection, handler, clock, validator)

    g = Gate(
        prefix="/ocpp",
        chargers=chargers,
        registry=ChargerRegistry("gw", clock),
        session_factory=session_factory,
        clock=clock,
        authenticate=authenticate,
    )
    g.test_chargers = chargers
    return g


def test_finding_2_gate_finishing_forgets_sessions_once_their_call_is_handled(clock):
    """1,000 connect/CALL/close cycles whose CALL ends after the close leave nothing in Gate._finishing."""
    pending: list[Deferred] = []

    def handler(session, action, payload):
        d: Deferred = Deferred()
        pending.append(d)
        return d

    g = gate(clock, handler=handler)
    for i in range(1000):
        connection = g.opened(f"CP{i}", Protocol(), None)
        connection.session.frame_received(json.dumps([2, "m1", "Heartbeat", {}]))
        g.closed(connection)
        assert connection.session in g._finishing  # the drain still sees it while the CALL runs
        pending.pop().callback({"currentTime": "2026-11-24T00:00:00.000Z"})
    assert len(g._finishing) == 0
    assert g.finishing() == 0


def basic(user, password):
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _refusal(g, identity, headers, peer="192.0.2.7"):
    return failure_result_of(g.check(identity, headers, peer, None), ConnectionDeny).value


def test_finding_8_every_401_has_one_reason_phrase_and_the_detail_goes_to_the_log(clock):
    """No key set, wrong key, wrong user, missing header: the same phrase; the log says which."""
    g = gate(clock, authenticate=Authenticator(1))
    g.test_chargers.records["KEYED"] = {"authorizationKeyHash": hash_key(KEY)}
    g.test_chargers.records["KEYLESS"] = {}
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        cases = [
            ("KEYLESS", basic("KEYLESS", KEY)),
            ("KEYED", basic("KEYED", "wrong-key-0123456789")),
            ("KEYED", basic("OTHER", KEY)),
            ("KEYED", {}),
            ("UNKNOWN", basic("UNKNOWN", KEY)),
        ]
        refusals = [_refusal(g, identity, headers) for identity, headers in cases]
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert {(r.code, r.reason) for r in refusals} == {(401, UNAUTHORIZED)}
    reasons = {e.get("reason") for e in logged if e.get("log_format", "").startswith("refused")}
    assert "no authorization key is set for this charger" in reasons
    assert "wrong username or authorization key" in reasons


def test_finding_9_basic_auth_guesses_are_limited_per_address_and_identity(clock):
    """After 10 failures in 60 s: 429 without checking, even for the right key; other addresses unaffected."""
    checked = []
    inner = Authenticator(1)

    def counting(*args):
        checked.append(args[0])
        return inner(*args)

    g = gate(clock, authenticate=GuessLimit(counting, clock))
    g.test_chargers.records["CP1"] = {"authorizationKeyHash": hash_key(KEY)}
    for _ in range(10):
        assert _refusal(g, "CP1", basic("CP1", "guess-0123456789ab")).code == 401
        clock.advance(1)
    assert len(checked) == 10
    assert _refusal(g, "CP1", basic("CP1", KEY)).code == 429
    assert len(checked) == 10  # not checked at all
    success_result_of(g.check("CP1", basic("CP1", KEY), "192.0.2.8", None))  # another address
    clock.advance(60 - 10 + 0.5)  # the first failure leaves the window
    success_result_of(g.check("CP1", basic("CP1", KEY), "192.0.2.7", None))
    # A success did not erase the nine failures still in the window.
    assert _refusal(g, "CP1", basic("CP1", "guess-0123456789ab")).code == 401
    assert _refusal(g, "CP1", basic("CP1", KEY)).code == 429


def test_finding_9_guess_limit_memory_is_bounded(clock):
    """Failures from ever new addresses keep at most max_keys entries."""
    limit = GuessLimit(Authenticator(1), clock, max_keys=100)
    for i in range(1000):
        limit("CP1", {}, f"10.0.{i // 256}.{i % 256}", None, {"authorizationKeyHash": hash_key(KEY)})
    assert len(limit) == 100
    clock.advance(61)
    assert not limit.blocked("10.0.3.231", "CP1")


@pytest.mark.parametrize("status", [401, 503])
def test_guess_limit_counts_only_refused_credentials(clock, status):
    """A 503 (cannot check now) is no failed guess."""
    from ocpptw.transport.auth import AuthOutcome

    limit = GuessLimit(lambda *a: AuthOutcome(False, status, "x"), clock)
    for _ in range(20):
        limit("CP1", {}, "p", None, None)
    assert limit.blocked("p", "CP1") == (status == 401)


def test_guess_limit_behind_a_trusted_proxy_counts_the_forwarded_client(clock):
    """Behind a TLS terminator every charger shares its address: failures count against the client it forwards."""
    from ocpptw.transport.auth import ProxyTrust

    limit = GuessLimit(Authenticator(1), clock, trusted=ProxyTrust(["10.9.0.1"]))
    record = {"authorizationKeyHash": hash_key(KEY)}
    attacker = {**basic("CP1", "guess-0123456789ab"), "x-forwarded-for": "198.51.100.7"}
    for _ in range(10):
        assert limit("CP1", attacker, "10.9.0.1", None, record).status == 401
    assert limit("CP1", attacker, "10.9.0.1", None, record).status == 429
    real = {**basic("CP1", KEY), "x-forwarded-for": "203.0.113.5"}
    assert limit("CP1", real, "10.9.0.1", None, record).ok  # the real charger, through the same proxy
    # an untrusted peer's forwarded header is ignored: it counts against the peer itself
    spoofed = {**basic("CP1", "guess-0123456789ab"), "x-forwarded-for": "203.0.113.5"}
    for _ in range(10):
        limit("CP1", spoofed, "192.0.2.9", None, record)
    assert limit("CP1", real, "10.9.0.1", None, record).ok


def test_guess_limit_counts_an_ipv6_client_by_its_64(clock):
    limit = GuessLimit(Authenticator(1), clock)
    record = {"authorizationKeyHash": hash_key(KEY)}
    for n in range(10):
        limit("CP1", basic("CP1", "guess-0123456789ab"), f"2001:db8:1:2::{n + 1:x}", None, record)
    assert limit("CP1", basic("CP1", KEY), "2001:db8:1:2::ffff", None, record).status == 429
    assert limit("CP1", basic("CP1", KEY), "2001:db8:1:3::1", None, record).ok
