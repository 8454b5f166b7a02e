# -*- test-case-name: tests.adapters.test_backend_http -*-
"""
Tests for L{ocpptw.adapters.backend_http}: the backend REST adapter, in
memory (treq's C{RequestTraversalAgent} over L{FakeBackend}, on a C{Clock})
and over a real
loopback socket with a real connection pool.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import pytest_twisted
from treq.testing import (
    HasHeaders,
    RequestSequence,
    RequestTraversalAgent,
    StringStubbingResource,
)
from twisted.internet.defer import CancelledError, Deferred
from zope.interface.verify import verifyObject

from ocpptw import __version__
from ocpptw.adapters import backend_http
from ocpptw.adapters.backend_http import CircuitOpen, HttpBackend
from ocpptw.interfaces import BackendRejected, BackendUnavailable, IBackend, NotFound
from ocpptw.testing.backend import FakeBackend
from tests.helpers import (
    bounded,
    failure_result_of,
    no_result,
    success_result_of,
    until,
)

START = {"deviceId": "CP1", "connectorId": 1, "idTag": "TAG1", "meterStart": 100, "timestamp": "2026-11-24T10:00:00.000Z"}
STOP = {"transactionId": 1, "meterStop": 2100, "energyWh": 2000, "stoppedAt": "2026-11-24T11:00:00.000Z", "reason": "Local"}
SEEN = {"lastSeen": "2026-11-24T10:00:00.000Z"}


class _MaxRng:
    """
    A jitter source that always picks the upper bound (deterministic backoff).
    """

    def uniform(self, low: float, high: float) -> float:
        return high


class _Observer:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []

    def request(self, endpoint: str, outcome: str, seconds: float) -> None:
        self.events.append((endpoint, outcome, seconds))


@pytest.fixture
def fake(clock):
    """
    An in-memory backend whose delayed answers run on the test clock.
    """
    fake = FakeBackend(clock=clock, base_path="/base")
    fake.add_charger("CP1")
    return fake


def expect_circuit_opened(errors):
    """
    Take the one error line that opening the circuit logs.
    """
    opened = [e for e in errors if "circuit open" in e.get("log_format", "")]
    assert len(opened) == 1, errors
    errors.remove(opened[0])


def make(fake, clock, **kwargs):
    """
    An L{HttpBackend} over an in-memory agent serving C{fake}, and the agent
    (to flush).
    """
    agent = RequestTraversalAgent(fake)
    kwargs.setdefault("rng", _MaxRng())
    return HttpBackend("http://backend.invalid/base/", clock, agent=agent, **kwargs), agent


def test_provides_ibackend(fake, clock):
    """HttpBackend provides every IBackend method."""
    backend, _ = make(fake, clock)
    assert verifyObject(IBackend, backend)


def test_paths_are_percent_encoded(fake, clock):
    """Identities with reserved characters become one percent-encoded path segment."""
    backend, _ = make(fake, clock)
    fake.add_charger("CP 1/ä?#")
    success_result_of(backend.update_last_seen("CP 1/ä?#", SEEN))
    success_result_of(backend.stop_session("s/1", STOP).addErrback(lambda f: f.trap(NotFound)))
    assert [r.path for r in fake.requests] == [
        "/base/api/charger/CP%201%2F%C3%A4%3F%23/last-seen",
        "/base/api/charging-session/s%2F1/stop",
    ]
    assert fake.last_seen == {"CP 1/ä?#": SEEN["lastSeen"]}


def test_bearer_token_sent_when_configured(clock):
    """The token goes out as a bearer Authorization header; none without a token."""
    fake = FakeBackend(clock=clock, token="s3cret", base_path="/base/")
    fake.add_charger("CP1")
    with_token, _ = make(fake, clock, token="s3cret")
    without, _ = make(fake, clock)
    success_result_of(with_token.update_last_seen("CP1", SEEN))
    failure = failure_result_of(without.update_last_seen("CP1", SEEN), BackendRejected)
    assert failure.value.status == 401
    assert fake.headers[0]["authorization"] == "Bearer s3cret"
    assert "authorization" not in fake.headers[1]
    assert fake.headers[0]["content-type"] == "application/json"


def test_not_found_maps_to_none_or_not_found(fake, clock):
    """404 is None for charger_by_device and NotFound elsewhere, without retries."""
    backend, _ = make(fake, clock)
    assert success_result_of(backend.charger_by_device("CP9")) is None
    failure_result_of(backend.stop_session("nope", STOP), NotFound)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 409, 422, 302])
def test_other_client_errors_are_rejected_once(fake, clock, status):
    """Other 4xx (and a redirect, never followed) are BackendRejected and not retried."""
    backend, _ = make(fake, clock)
    fake.fail_with(status, body={"error": "no way"})
    failure = failure_result_of(backend.update_status("CP1", {}), BackendRejected)
    assert failure.value.status == status
    assert "no way" in str(failure.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_unavailable_statuses_are_retried_with_backoff(fake, clock, status):
    """5xx, 408 and 429 are retried `retries` times with exponential backoff, then BackendUnavailable."""
    backend, _ = make(fake, clock, retries=3, backoff_base=0.5)
    fake.fail_with(status)
    d = backend.update_last_seen("CP1", SEEN)
    assert len(fake.requests) == 1
    clock.advance(0.49)
    assert len(fake.requests) == 1
    clock.advance(0.01)  # first backoff: 0.5 s
    assert len(fake.requests) == 2
    clock.advance(0.99)
    no_result(d)
    clock.advance(0.01)  # second backoff: 1.0 s
    assert len(fake.requests) == 3
    failure_result_of(d, BackendUnavailable)
    assert fake.last_seen == {}


def test_backoff_uses_full_jitter(fake, clock):
    """The delay between attempts is drawn from [0, base * 2**attempt]."""
    draws = []

    class Rng:
        def uniform(self, low, high):
            draws.append((low, high))
            return low

    backend, _ = make(fake, clock, retries=4, backoff_base=0.25, rng=Rng())
    fake.fail_with(503)
    d = backend.refund({"sessionId": "s"})
    clock.advance(0)
    failure_result_of(d, BackendUnavailable)
    assert draws == [(0, 0.25), (0, 0.5), (0, 1.0)]
    assert len(fake.requests) == 4


def test_retry_succeeds_after_transient_failure(fake, clock):
    """A 503 followed by success fires with the answer."""
    backend, _ = make(fake, clock)
    fake.fail_with(503, times=1)
    d = backend.ensure_charger({"deviceId": "CP1", "vendor": "V", "model": "M"})
    clock.advance(0.5)
    assert success_result_of(d)["deviceId"] == "CP1"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("call", ["start", "authorize"])
def test_start_and_authorize_are_not_retried(fake, clock, call):
    """start_session and authorize try once: their callers have a deadline."""
    backend, _ = make(fake, clock, retries=5)
    fake.fail_with(503)
    d = backend.start_session(START) if call == "start" else backend.authorize("CP1", "TAG1")
    failure_result_of(d, BackendUnavailable)
    assert len(fake.requests) == 1


def test_request_timeout(fake, clock):
    """A backend that never answers fails the attempt after `timeout` seconds, on the clock."""
    backend, _ = make(fake, clock, timeout=5, retries=2, backoff_base=1)
    fake.hang()
    d = backend.active_sessions("CP1")
    clock.advance(4.9)
    no_result(d)
    clock.advance(0.1)
    assert len(fake.requests) == 1
    clock.advance(1)  # backoff
    assert len(fake.requests) == 2
    clock.advance(5)
    failure = failure_result_of(d, BackendUnavailable)
    assert "timed out" in str(failure.value)


def test_body_read_timeout(fake, clock):
    """Headers then a stalled body still fail within the same deadline."""
    backend, stub = make(fake, clock, timeout=5, retries=1)
    fake.stall_body()
    d = backend.charger_by_device("CP1")
    stub.flush()
    clock.advance(4.9)
    stub.flush()
    no_result(d)
    clock.advance(0.1)
    failure = failure_result_of(d, BackendUnavailable)
    assert "timed out" in str(failure.value)
    stub.flush()


def test_connection_lost_is_unavailable(fake, clock):
    """A connection closed without an answer is BackendUnavailable."""
    backend, _ = make(fake, clock, retries=1)
    fake.drop()
    failure_result_of(backend.store_message("CP1", {}), BackendUnavailable)


def test_delayed_answer_within_timeout(fake, clock):
    """A slow answer inside the deadline succeeds."""
    backend, stub = make(fake, clock, timeout=5)
    fake.delay(4)
    d = backend.authorize("CP1", "TAG1")
    clock.advance(4)
    stub.flush()
    assert success_result_of(d) == {"idTagInfo": {"status": "Accepted"}}


@pytest.mark.parametrize(
    "endpoint,answer",
    [
        ("authorize", b"<html>gateway error</html>"),
        ("authorize", {"idTagInfo": {}}),
        ("start_session", {"sessionId": "s1", "transactionId": "12", "idTagInfo": {"status": "Accepted"}}),
        ("start_session", {"transactionId": 12, "idTagInfo": {"status": "Accepted"}}),
        ("start_session", {"sessionId": "s1", "transactionId": 12}),
        ("active_sessions", {"sessions": []}),
        ("charger_by_device", [1, 2]),
    ],
)
def test_unusable_success_body_is_unavailable(fake, clock, endpoint, answer):
    """A 2xx without the JSON a call needs is BackendUnavailable (a broken backend is as good as down)."""
    backend, _ = make(fake, clock, retries=1)
    fake.override(endpoint, lambda request, parameter: (200, answer))
    calls = {
        "authorize": lambda: backend.authorize("CP1", "T"),
        "start_session": lambda: backend.start_session(START),
        "active_sessions": lambda: backend.active_sessions("CP1"),
        "charger_by_device": lambda: backend.charger_by_device("CP1"),
    }
    failure_result_of(calls[endpoint](), BackendUnavailable)


def test_refused_start_may_have_no_session(fake, clock):
    """A start answer for a refused idTag may carry no sessionId."""
    backend, _ = make(fake, clock)
    fake.add_id_tag("BLOCKED", status="Blocked")
    answer = success_result_of(backend.start_session({**START, "idTag": "BLOCKED"}))
    assert answer["sessionId"] is None and answer["idTagInfo"] == {"status": "Blocked"}
    assert type(answer["transactionId"]) is int
    assert fake.sessions == {}


def test_none_values_are_omitted(fake, clock):
    """Optional properties given as None are left out of the body, never sent as null."""
    backend, _ = make(fake, clock)
    success_result_of(backend.update_status("CP1", {"connectorId": 1, "status": "Available", "errorCode": "NoError", "info": None, "timestamp": "t"}))
    assert "info" not in fake.requests[-1].body


def test_body_ignored_where_none_is_needed(fake, clock):
    """Calls without an answer ignore whatever 2xx body comes back."""
    backend, _ = make(fake, clock)
    fake.override("update_status", lambda request, parameter: (200, b"ok, thanks"))
    assert success_result_of(backend.update_status("CP1", {})) is None


def test_oversized_answer_is_unavailable(fake, clock, monkeypatch):
    """An answer larger than the limit is cut off and treated as unavailable."""
    monkeypatch.setattr(backend_http, "MAX_BODY_BYTES", 64)
    backend, stub = make(fake, clock, retries=1)
    fake.override("charger_by_device", lambda request, parameter: (200, {"deviceId": "CP1", "x": "y" * 100}))
    failure = failure_result_of(backend.charger_by_device("CP1"), BackendUnavailable)
    assert "larger than 64" in str(failure.value)
    stub.flush()


def test_money_stays_decimal_strings(fake, clock):
    """Decimals go out as strings; money numbers in answers come back as exact decimal strings."""
    backend, _ = make(fake, clock)
    fake.override(
        "start_session",
        lambda request, parameter: (
            200,
            b'{"sessionId": "s1", "transactionId": 7, "idTagInfo": {"status": "Accepted"},'
            b' "prepaidAmount": 10.10, "pricePerKwh": 0.3, "currency": "EUR", "other": 1.5}',
        ),
    )
    answer = success_result_of(backend.start_session(START))
    assert (answer["prepaidAmount"], answer["pricePerKwh"], answer["other"]) == ("10.10", "0.3", 1.5)
    success_result_of(
        backend.refund({"sessionId": "s1", "userId": "u", "amount": Decimal("6.29"), "currency": "EUR", "idempotencyKey": "s1"})
    )
    assert fake.requests[-1].body["amount"] == "6.29"
    assert json.loads(json.dumps(fake.refunds["s1"]))["amount"] == "6.29"


def test_circuit_opens_fails_fast_and_probes(fake, clock, fail_on_logged_errors):
    """Five unavailable answers open the circuit; calls then fail fast until one probe per cool-down succeeds."""
    observer = _Observer()
    backend, _ = make(fake, clock, retries=1, failure_threshold=5, cooldown=10, observer=observer)
    fake.fail_with(503)
    for _ in range(5):
        assert backend.ready() == (True, "")
        failure_result_of(backend.update_last_seen("CP1", SEEN), BackendUnavailable)
    ok, reason = backend.ready()
    assert not ok and reason.startswith("backend circuit open: ") and "503" in reason
    failure_result_of(backend.update_last_seen("CP1", SEEN), CircuitOpen)
    assert len(fake.requests) == 5
    clock.advance(10)
    assert backend.ready() == (True, "")  # half-open: the next call probes
    failure_result_of(backend.update_last_seen("CP1", SEEN), BackendUnavailable)  # the probe fails
    assert len(fake.requests) == 6
    assert not backend.ready()[0]
    failure_result_of(backend.update_last_seen("CP1", SEEN), CircuitOpen)
    fake.clear_faults()
    clock.advance(10)
    assert success_result_of(backend.update_last_seen("CP1", SEEN)) is None  # the probe succeeds
    assert backend.ready() == (True, "")
    assert len(fake.requests) == 7
    outcomes = [outcome for _, outcome, _ in observer.events]
    assert outcomes == ["unavailable"] * 5 + ["circuit_open", "unavailable", "circuit_open", "ok"]
    expect_circuit_opened(fail_on_logged_errors)


def test_circuit_allows_one_probe_at_a_time(fake, clock, fail_on_logged_errors):
    """While the probe is in flight, other calls still fail fast."""
    backend, stub = make(fake, clock, retries=1, failure_threshold=1, cooldown=10, timeout=5)
    fake.fail_with(503, times=1)
    failure_result_of(backend.update_last_seen("CP1", SEEN), BackendUnavailable)
    clock.advance(10)
    fake.delay(1)
    probe = backend.update_last_seen("CP1", SEEN)
    assert not backend.ready()[0]
    failure_result_of(backend.charger_by_device("CP1"), CircuitOpen)
    clock.advance(1)
    stub.flush()
    success_result_of(probe)
    assert backend.ready() == (True, "")
    expect_circuit_opened(fail_on_logged_errors)


def test_client_errors_keep_the_circuit_closed(fake, clock):
    """A 4xx proves the backend is reachable and resets the failure count."""
    backend, _ = make(fake, clock, retries=1, failure_threshold=3)
    for _ in range(3):
        fake.fail_with(503, times=2)
        failure_result_of(backend.update_last_seen("CP1", SEEN), BackendUnavailable)
        failure_result_of(backend.update_last_seen("CP1", SEEN), BackendUnavailable)
        failure_result_of(backend.stop_session("nope", STOP), NotFound)
    assert backend.ready() == (True, "")


def test_retries_stop_when_the_circuit_opens(fake, clock, fail_on_logged_errors):
    """An idempotent call stops retrying once its own failures open the circuit."""
    backend, _ = make(fake, clock, retries=10, failure_threshold=2, backoff_base=0.1)
    fake.fail_with(503)
    d = backend.update_status("CP1", {})
    clock.advance(0.1)
    failure_result_of(d, BackendUnavailable)
    assert len(fake.requests) == 2
    expect_circuit_opened(fail_on_logged_errors)


def test_caller_cancel_is_not_a_backend_failure(fake, clock):
    """Cancelling a call (the caller's deadline) fails it with CancelledError and counts nothing against the backend."""
    observer = _Observer()
    backend, _ = make(fake, clock, retries=3, failure_threshold=1, observer=observer)
    fake.hang()
    d = backend.start_session(START)
    d.cancel()
    failure_result_of(d, CancelledError)
    assert backend.ready() == (True, "")
    assert observer.events[-1][:2] == ("start_session", "cancelled")
    d = backend.update_status("CP1", {})
    d.cancel()
    failure_result_of(d, CancelledError)
    assert len(fake.requests) == 2  # no retry after a cancel


def test_cancel_during_backoff(fake, clock):
    """Cancelling while waiting to retry stops the retries and leaves no timer."""
    backend, _ = make(fake, clock, retries=3)
    fake.fail_with(503)
    d = backend.update_status("CP1", {})
    assert clock.getDelayedCalls()
    d.cancel()
    failure_result_of(d, CancelledError)
    assert len(fake.requests) == 1


def test_observer_sees_each_attempt(fake, clock):
    """The observer receives endpoint, outcome and latency for every attempt."""
    observer = _Observer()
    backend, stub = make(fake, clock, retries=2, observer=observer)
    fake.delay(2, times=1)
    d = backend.authorize("CP1", "TAG1")
    clock.advance(2)
    stub.flush()
    success_result_of(d)
    failure_result_of(backend.stop_session("nope", STOP), NotFound)
    fake.fail_with(400, times=1)
    failure_result_of(backend.refund({}), BackendRejected)
    assert observer.events == [("authorize", "ok", 2.0), ("stop_session", "not_found", 0.0), ("refund", "rejected", 0.0)]


def test_broken_observer_is_logged_not_raised(fake, clock, fail_on_logged_errors):
    """An observer that raises is our bug: logged as a failure, the call still succeeds."""

    class Broken:
        def request(self, endpoint, outcome, seconds):
            raise RuntimeError("boom")

    backend, _ = make(fake, clock, observer=Broken())
    assert success_result_of(backend.charger_by_device("CP9")) is None
    assert len(fail_on_logged_errors) == 1
    fail_on_logged_errors.clear()


class _Without:
    """
    Request headers that lack C{name} (a C{RequestSequence} matcher, beside
    treq's L{HasHeaders}).
    """

    def __init__(self, name: bytes) -> None:
        self._name = name.lower()

    def __eq__(self, headers: object) -> bool:
        return isinstance(headers, dict) and all(key.lower() != self._name for key in headers)

    def __repr__(self) -> str:
        return f"_Without({self._name!r})"


class _All:
    def __init__(self, *matchers: object) -> None:
        self._matchers = matchers

    def __eq__(self, other: object) -> bool:
        return all(matcher == other for matcher in self._matchers)

    def __repr__(self) -> str:
        return f"_All{self._matchers!r}"


def test_requests_on_the_wire(clock):
    """Method, URL, headers and compact JSON body of each request are exactly the contract's; no cookie is kept or sent."""
    sent = {b"accept": [b"application/json"], b"user-agent": [f"ocpptw/{__version__}".encode()],
            b"authorization": [b"Bearer tok"]}
    json_headers = HasHeaders({**sent, b"content-type": [b"application/json"]})
    errors: list[str] = []
    sequence = RequestSequence(
        [
            (
                (b"patch", "http://backend.invalid/base/api/charger/CP%201/last-seen", {}, json_headers,
                 b'{"lastSeen":"2026-11-24T10:00:00.000Z","amount":"6.29"}'),
                (200, {"Set-Cookie": "session=abc; Path=/"}, b""),
            ),
            (
                (b"get", "http://backend.invalid/base/api/charger/CP1/active-sessions", {},
                 _All(HasHeaders(sent), _Without(b"cookie"), _Without(b"content-type")), b""),
                (200, {"Content-Type": "application/json"}, b"[]"),
            ),
        ],
        errors.append,
    )
    agent = RequestTraversalAgent(StringStubbingResource(sequence))
    backend = HttpBackend("http://backend.invalid/base/", clock, agent=agent, token="tok", retries=1)
    with sequence.consume(pytest.fail):
        body = {**SEEN, "amount": Decimal("6.29"), "info": None}
        assert success_result_of(backend.update_last_seen("CP 1", body)) is None
        assert success_result_of(backend.active_sessions("CP1")) == []
    assert errors == []


def test_internationalised_base_url_is_encoded_once(clock):
    """A base URL with a non-ASCII host and path reaches the agent IDNA- and percent-encoded."""
    errors: list[str] = []
    sequence = RequestSequence(
        [((b"patch", "http://xn--bckend-bua.invalid/b%C3%A4se/api/charger/CP%201%2F%C3%A4/last-seen", {},
           HasHeaders({}), b'{"lastSeen":"2026-11-24T10:00:00.000Z"}'), (200, {}, b""))],
        errors.append,
    )
    backend = HttpBackend("http://bäckend.invalid/bäse/", clock, agent=RequestTraversalAgent(StringStubbingResource(sequence)),
                          retries=1)
    with sequence.consume(pytest.fail):
        d = backend.update_last_seen("CP 1/ä", SEEN)
    assert errors == []
    success_result_of(d)


class _Recording:
    """
    An agent that records the URIs asked for and never answers.
    """

    def __init__(self, seen: list[bytes]) -> None:
        self._seen = seen

    def request(self, method, uri, headers=None, bodyProducer=None):
        self._seen.append(uri)
        return Deferred()


@pytest.mark.parametrize("device_id", ["CP1", "CP 1/ä?#", "%41", "ü" * 30, "a;b=c", "..", "x:y@z"])
def test_request_uri_is_what_treq_would_make(clock, device_id):
    """The URI the agent gets is the one treq makes of the same URL text itself (the adapter only skips the work)."""
    from treq.client import HTTPClient

    seen: list[bytes] = []
    backend = HttpBackend("https://bäckend.example:8443/x y/", clock, agent=_Recording(seen), retries=1)
    backend.charger_by_device(device_id).addErrback(lambda f: f.trap(CancelledError)).cancel()
    path = "/api/charger/by-device/" + backend_http._seg(device_id)
    HTTPClient(_Recording(seen)).get("https://bäckend.example:8443/x y" + path)
    assert seen[0] == seen[1]


def test_parsed_urls_are_reused_and_bounded(clock, monkeypatch):
    """A path used again gets the same URL object; the cache never holds more than URI_CACHE paths."""
    monkeypatch.setattr(backend_http, "URI_CACHE", 3)
    seen: list[bytes] = []
    backend = HttpBackend("http://backend.invalid", clock, agent=_Recording(seen), retries=1)
    calls = [backend.charger_by_device(f"CP{n % 5}") for n in range(12)]
    for d in calls:
        d.addErrback(lambda f: f.trap(CancelledError)).cancel()
    assert seen == [f"http://backend.invalid/api/charger/by-device/CP{n % 5}".encode() for n in range(12)]
    assert len(backend._uris) <= 3
    assert backend._uri("/x") is backend._uri("/x")


def test_close_without_own_pool(fake, clock):
    """close() fires at once when the HTTP client was injected."""
    backend, _ = make(fake, clock)
    assert success_result_of(backend.close()) is None


# ---------------------------------------------------------------------------
# Over a real loopback socket, with a real persistent connection pool


@pytest_twisted.async_yield_fixture
async def served():
    """
    A FakeBackend listening on 127.0.0.1 and an HttpBackend with its own pool.
    """
    from twisted.internet import reactor

    fake = FakeBackend(clock=reactor, token="tok")
    fake.add_charger("CP1")
    _, url = fake.listen(reactor)
    backend = HttpBackend(url, reactor, timeout=0.5, token="tok", retries=2, backoff_base=0.01)
    yield fake, backend
    await bounded(backend.close())
    await bounded(fake.stop())


@pytest_twisted.ensureDeferred
async def test_real_round_trip_reuses_one_connection(served):
    """A session's calls run over one kept-alive connection and the refund happens once."""
    fake, backend = served
    record = await bounded(backend.ensure_charger({"deviceId": "CP1", "vendor": "V", "model": "M"}))
    assert record["enabled"] is True
    assert (await bounded(backend.charger_by_device("CP1")))["deviceId"] == "CP1"
    started = await bounded(backend.start_session(START))
    await bounded(backend.stop_session(started["sessionId"], STOP))
    refund = {"sessionId": started["sessionId"], "userId": "u", "amount": "1.00", "currency": "EUR", "idempotencyKey": started["sessionId"]}
    await bounded(backend.refund(refund))
    await bounded(backend.refund(refund))
    assert fake.refunds_succeeded == 1
    assert len(fake._site.protocols) == 1


@pytest_twisted.ensureDeferred
async def test_real_hang_times_out(served):
    """A backend that accepts and never answers fails within the timeout, retries included."""
    from twisted.internet import reactor

    fake, backend = served
    fake.hang()
    started = reactor.seconds()
    with pytest.raises(BackendUnavailable, match="timed out"):
        await bounded(backend.update_last_seen("CP1", SEEN), 5)
    assert reactor.seconds() - started < 3
    assert len(fake.requests) == 2


@pytest_twisted.ensureDeferred
async def test_real_stalled_body_times_out(served):
    """Headers followed by a body that never ends fail within the timeout (treq's timeout alone would hang)."""
    fake, backend = served
    fake.stall_body(times=2)
    with pytest.raises(BackendUnavailable, match="timed out"):
        await bounded(backend.charger_by_device("CP1"), 5)
    assert (await bounded(backend.charger_by_device("CP1")))["deviceId"] == "CP1"


@pytest_twisted.ensureDeferred
async def test_real_stalled_body_drops_its_connection(served):
    """A body read cut off by the deadline closes its connection instead of leaving it open or pooled."""
    fake, backend = served
    fake.stall_body(times=2)  # both attempts
    with pytest.raises(BackendUnavailable, match="timed out"):
        await bounded(backend.charger_by_device("CP1"), 5)
    await until(lambda: fake.open_connections() == 0)


@pytest_twisted.ensureDeferred
async def test_real_refused_then_back(served):
    """A refused connection is BackendUnavailable; calls work again once the backend listens."""
    fake, backend = served
    await bounded(backend.update_last_seen("CP1", SEEN))
    await bounded(fake.refuse())
    with pytest.raises(BackendUnavailable):
        await bounded(backend.update_last_seen("CP1", SEEN))
    fake.resume()
    await bounded(backend.update_last_seen("CP1", SEEN))
    assert fake.last_seen == {"CP1": SEEN["lastSeen"]}


@pytest_twisted.ensureDeferred
async def test_real_server_error_then_success(served):
    """A transient 503 on a real socket is retried and succeeds."""
    fake, backend = served
    fake.fail_with(503, times=1)
    await bounded(backend.update_status("CP1", {"connectorId": 1, "status": "Available", "errorCode": "NoError", "timestamp": "t"}))
    assert len(fake.statuses) == 1
    assert len(fake.requests) == 2


# ---------------------------------------------------------------------------
# The batch form of the message log (BACKEND_MESSAGE_BATCH above 1)


def _message(message_id, direction="in"):
    return {"direction": direction, "messageType": "CALL" if direction == "in" else "CALLRESULT",
            "messageId": message_id, "timestamp": "2026-11-24T10:00:00.000Z", "action": None}


def test_store_messages_posts_one_array_per_charger_in_order(fake, clock):
    """Consecutive bodies of one charger go in one POST .../ocpp-messages; another charger gets its own; nulls are omitted."""
    backend, _ = make(fake, clock)
    items = [("CP 1", _message("1")), ("CP 1", _message("1", "out")), ("CP2", _message("2")), ("CP 1", _message("3"))]
    assert success_result_of(backend.store_messages(items)) is None
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/base/api/charger/CP%201/ocpp-messages"),
        ("POST", "/base/api/charger/CP2/ocpp-messages"),
        ("POST", "/base/api/charger/CP%201/ocpp-messages"),
    ]
    assert [len(r.body) for r in fake.requests] == [2, 1, 1]
    assert all("action" not in body for r in fake.requests for body in r.body)
    assert [(device, body["messageId"], body["direction"]) for device, body in fake.messages] == [
        ("CP 1", "1", "in"), ("CP 1", "1", "out"), ("CP2", "2", "in"), ("CP 1", "3", "in")
    ]
    assert fake.headers[0]["content-type"] == "application/json"


def test_store_messages_is_retried_and_observed(fake, clock):
    """A 503 for a batch is retried with backoff like any idempotent call; attempts are observed as store_messages."""
    observer = _Observer()
    backend, _ = make(fake, clock, observer=observer, retries=2, backoff_base=1)
    fake.fail_with(503, endpoint="store_messages", times=1)
    d = backend.store_messages([("CP1", _message("1")), ("CP1", _message("2"))])
    no_result(d)
    clock.advance(1)
    assert success_result_of(d) is None
    assert [(e, o) for e, o, _ in observer.events] == [("store_messages", "unavailable"), ("store_messages", "ok")]
    assert len(fake.messages) == 2


def test_store_messages_refused_is_rejected(fake, clock):
    """A 4xx for a batch is BackendRejected, not retried (the outbox then sends its messages one by one)."""
    backend, _ = make(fake, clock)
    fake.fail_with(422, endpoint="store_messages")
    failure_result_of(backend.store_messages([("CP1", _message("1"))]), BackendRejected)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("body", [[], {"direction": "in"}, [{"direction": "in"}], ["text"]])
def test_fake_backend_refuses_malformed_batches(fake, clock, body):
    """The test backend's batch endpoint wants a non-empty array of complete message bodies."""
    backend, _ = make(fake, clock)
    d = backend._call("store_messages", "POST", "/api/charger/CP1/ocpp-messages", body)
    assert failure_result_of(d, BackendRejected).value.status == 400
    assert fake.messages == []


def test_finding_6_dot_segment_identities_are_escaped_in_backend_urls(fake, clock):
    """'.' and '..' never reach the backend as dot segments (a normalising proxy would change the endpoint)."""
    backend, _ = make(fake, clock)
    fake.add_charger("..")
    success_result_of(backend.update_last_seen("..", SEEN))
    assert success_result_of(backend.charger_by_device(".")) is None
    assert [r.path for r in fake.requests] == [
        "/base/api/charger/%2E%2E/last-seen",
        "/base/api/charger/by-device/%2E",
    ]
    assert fake.last_seen == {"..": SEEN["lastSeen"]}
