# -*- test-case-name: tests.integration.test_drain -*-
"""
SIGTERM under load: C{twistd -n ocpp} is told to stop while twenty chargers
run sessions (Boot, StartTransaction, MeterValues, StopTransaction, over and
over) against a backend that fails or is slow.  The daemon exits 0 within
C{DRAIN_GRACE} and a small margin, every charger's socket is closed with
1001, and once the daemon is started again on the same C{DATA_DIR} with the
backend healthy, every transaction message a charger was answered for
reaches the backend (and, with RabbitMQ, the broker) exactly once.

The chargers and the books are the chaos scenarios' (L{tests.chaos.charger},
L{tests.chaos.ledger});
every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.exception import Disconnected

from tests.chaos.backend_scenarios import as_deferred, stamp, tag_of
from tests.chaos.charger import (
    LedgerCharger,
    meter_payload,
    start_payload,
    stop_payload,
)
from tests.chaos.ledger import Book, RecordingBackend, check_backend, check_events
from tests.chaos.support import Daemon, sleep, wait_until

CHARGERS = 20
BOOT = {"chargePointVendor": "Drain", "chargePointModel": "D1"}
GRACE = 3.0
#: What the drain may take beyond C{DRAIN_GRACE}: the close handshakes of
#: twenty sockets, closing the stores, the interpreter's exit.
MARGIN = 2.5
BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _ready(url: str) -> bool:
    """
    C{/ready} says ready, not merely degraded (the broker, where enabled, is connected).
    """
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200 and json.loads(r.read()).get("status") == "ready"
    except (OSError, ValueError):
        return False


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


async def _charging(c: LedgerCharger, running: dict, interval: float) -> int:
    """
    One charger's sessions until its socket closes or C{running} says
    stop; returns the sessions it began.  Every answer goes into the book.
    """
    sessions, wh, n = 0, 1000, 0
    try:
        while running["on"]:
            n += 10
            await c.call("BootNotification", BOOT)
            frame = await c.call("StartTransaction", start_payload(1, tag_of(c.cp), wh, stamp(n)))
            sessions += 1
            tx = frame[2]["transactionId"]
            for k in range(2):
                wh += 7
                await c.call("MeterValues", meter_payload(1, tx, wh, stamp(n + 1 + k)))
                await sleep(interval)
            wh += 7
            await c.call("StopTransaction", stop_payload(tx, wh, stamp(n + 5)))
            await sleep(interval)
    except (ConnectionError, Disconnected):
        pass  # the drain closed the socket while a CALL waited: unanswered, not in the book
    return sessions


async def _sigterm_under_load(
    tmp_path: Path,
    backend: RecordingBackend,
    env: dict[str, str],
    fault: Any,
    before_traffic: Any = None,
) -> dict[str, Any]:
    """
    Start the daemon, run the chargers, apply C{fault} to the backend, send
    SIGTERM mid-traffic; then restart with the backend healthy.  Returns
    what the caller asserts on.  The daemon is always stopped.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import gatherResults

    daemon = Daemon(tmp_path, {
        "DATA_DIR": str(tmp_path / "data"),
        "BACKEND_API_URL": backend.url,
        "BACKEND_START_DEADLINE": "1",
        "DRAIN_GRACE": str(GRACE),
        "OCPP_PING_INTERVAL": "0",
        **env,
    })
    book = Book()
    out: dict[str, Any] = {"book": book, "daemon": daemon}
    try:
        await daemon.start()
        ready = f"http://127.0.0.1:{daemon.port}/ready"
        await wait_until(lambda: _ready(ready), 20, what="/ready")
        if before_traffic is not None:
            await before_traffic()
        cs = [LedgerCharger(f"DRAIN-{i:02d}", book, daemon.port) for i in range(CHARGERS)]
        for c in cs:
            backend.add_id_tag(
                tag_of(c.cp), user_id=f"user-{c.cp}", prepaid_amount="10.00", price_per_kwh="0.50"
            )
            await c.connect()
            await c.boot()
        fault()
        running = {"on": True}
        flows = gatherResults([as_deferred(_charging(c, running, 0.15)) for c in cs])
        await sleep(1.0)
        answered_before = len(book.answered())
        t0 = reactor.seconds()
        daemon.proc.send_signal(signal.SIGTERM)
        proc = daemon.proc
        bound = GRACE + MARGIN + 10
        await wait_until(lambda: proc.poll() is not None, bound, step=0.02, what="exit")
        out["exit_seconds"] = reactor.seconds() - t0
        out["exit_code"] = proc.returncode
        running["on"] = False
        out["sessions"] = await flows.addTimeout(10, reactor)
        out["answered_during_drain"] = len(book.answered()) - answered_before
        out["close_codes"] = {c.cp: _close_code(c) for c in cs}
        out["first_log"] = daemon.log_text()
        backend.clear_faults()
        await daemon.start()
        return out
    except BaseException:
        await daemon.terminate()
        raise


def _close_code(c: LedgerCharger) -> int | None:
    closed = c.socket.closed
    return closed.result if closed.called else None


async def _settle(book: Book, backend: RecordingBackend, check: Any, seconds: float = 30.0) -> Any:
    """
    Wait until C{check()} finds nothing lost, then a second more for late
    duplicates; the final tally.
    """
    try:
        await wait_until(lambda: not check().problems, seconds, step=0.2, what="all delivered")
    except AssertionError:
        pass
    await sleep(1.0)
    return check()


def _assert_drained(out: dict[str, Any]) -> None:
    log = out["first_log"]
    assert out["exit_code"] == 0, log[-3000:]
    assert out["exit_seconds"] <= GRACE + MARGIN, (out["exit_seconds"], log[-3000:])
    assert out["close_codes"] == {cp: 1001 for cp in out["close_codes"]}, out["close_codes"]
    assert sum(out["sessions"]) >= CHARGERS, out["sessions"]
    assert "Traceback" not in log, log[-3000:]


def _once(backend: RecordingBackend, book: Book) -> None:
    """
    Every answered stop is one stop PATCH (keyed by transactionId) and one
    refund; none is delivered twice.  A stop the drain cut off before its
    answer may or may not have been recorded: it counts, if at all, once.
    """
    delivered = backend.delivered()
    stops = [r.body["transactionId"] for r in delivered if r.path.endswith("/stop")]
    assert len(stops) == len(set(stops)), sorted(stops)
    refunds = [r.body["idempotencyKey"] for r in delivered if r.path.endswith("/wallet/refund")]
    assert len(refunds) == len(set(refunds)) == backend.refunds_succeeded
    answered = {s.payload["transactionId"] for s in book.answered(action="StopTransaction")}
    sent = {s.payload["transactionId"] for s in book.sent if s.action == "StopTransaction"}
    assert answered <= set(stops) <= sent, (answered - set(stops), set(stops) - sent)
    assert len(answered) <= len(refunds) <= len(sent)


@pytest_twisted.async_yield_fixture
async def backend():
    """A recording fake operator backend on a loopback port (C{.url})."""
    from twisted.internet import reactor

    fake = RecordingBackend(price_per_kwh="0.50")
    _, fake.url = fake.listen(reactor)
    yield fake
    await fake.stop()


@pytest.mark.parametrize("fault", ["failing", "slow"])
@pytest_twisted.ensureDeferred
async def test_sigterm_under_load_keeps_every_answered_message(tmp_path, backend, fault):
    """SIGTERM mid-traffic: exit 0 in the grace, 1001 to all, answers delivered once later."""
    if fault == "failing":
        apply = lambda: backend.fail_with(503)  # noqa: E731
    else:
        apply = lambda: backend.delay(0.3)  # noqa: E731
    out = await _sigterm_under_load(tmp_path, backend, {}, apply)
    daemon = out["daemon"]
    try:
        _assert_drained(out)
        book = out["book"]
        tally = await _settle(book, backend, lambda: check_backend(book, backend))
        assert tally.problems == [], tally.problems[:20]
        assert tally.call_errors == 0
        if fault == "failing":
            assert tally.duplicates == 0, tally.summary()
            assert "outbox entries stay in" in out["first_log"]
        _once(backend, book)
        assert daemon.alive(), daemon.log_text()[-3000:]
    finally:
        assert await daemon.terminate() == 0


async def _pika_client() -> Any:
    import pika
    from pika.adapters.twisted_connection import TwistedProtocolConnection
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    protocol = TwistedProtocolConnection(pika.ConnectionParameters(), custom_reactor=reactor)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", 5672, timeout=5)
    await connectProtocol(endpoint, protocol).addTimeout(10, reactor)
    return await protocol.ready.addTimeout(10, reactor)


async def _drain_queue(queue: str, quiet: float = 1.0) -> list[dict]:
    from twisted.internet import reactor
    from twisted.internet.defer import TimeoutError

    client = await _pika_client()
    try:
        channel = await client.channel().addTimeout(10, reactor)
        consuming = channel.basic_consume(queue=queue, auto_ack=True)
        messages, _ = await consuming.addTimeout(10, reactor)
        events = []
        while len(events) < 100000:
            try:
                _, _, properties, body = await messages.get().addTimeout(quiet, reactor)
            except TimeoutError:
                break
            events.append(json.loads(body))
        return events
    finally:
        client.close()


@pytest_twisted.ensureDeferred
async def test_sigterm_under_load_with_the_broker(tmp_path, backend):
    """With RabbitMQ: answered messages' events in the broker once; backend calls once."""
    from twisted.internet import reactor

    tag = uuid.uuid4().hex[:10]
    events_exchange, commands = f"drain.{tag}.events", f"drain.{tag}.commands"
    queue = f"drain.{tag}.consumer"
    env = {
        "ENABLE_RABBITMQ": "true",
        "RABBITMQ_URL": BROKER,
        "RABBITMQ_EXCHANGE": events_exchange,
        "RABBITMQ_COMMAND_EXCHANGE": commands,
        "INSTANCE_ID": f"drain-{tag}",
    }

    async def bind_consumer() -> None:
        client = await _pika_client()
        channel = await client.channel().addTimeout(10, reactor)
        await channel.queue_declare(queue=queue, durable=True).addTimeout(10, reactor)
        binding = channel.queue_bind(queue=queue, exchange=events_exchange, routing_key="#")
        await binding.addTimeout(10, reactor)
        client.close()

    out: dict[str, Any] = {}
    try:
        failing = lambda: backend.fail_with(503)  # noqa: E731
        out = await _sigterm_under_load(tmp_path, backend, env, failing, bind_consumer)
        daemon = out["daemon"]
        _assert_drained(out)
        book = out["book"]

        def backend_problems() -> Any:
            tally = check_backend(book, backend)
            # Frames go to the broker here, not to POST .../ocpp-message.
            tally.problems = [p for p in tally.problems if "ocpp-message" not in p]
            return tally

        tally = await _settle(book, backend, backend_problems)
        assert tally.problems == [], tally.problems[:20]
        _once(backend, book)
        events = await _drain_queue(queue)
        event_tally = check_events(book, events)
        assert event_tally.problems == [], event_tally.problems[:20]
        assert event_tally.call_errors == 0
        assert daemon.alive(), daemon.log_text()[-3000:]
    finally:
        if "daemon" in out:
            assert await out["daemon"].terminate() == 0
        client = await _pika_client()
        channel = await client.channel().addTimeout(10, reactor)
        for name in (queue, f"{events_exchange}.unroutable"):
            await channel.queue_delete(queue=name).addTimeout(10, reactor)
        unroutable = f"{events_exchange}.unroutable"
        for name in (events_exchange, unroutable, commands, f"{commands}.claims"):
            await channel.exchange_delete(exchange=name).addTimeout(10, reactor)
        client.close()
