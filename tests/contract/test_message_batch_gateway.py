# -*- test-case-name: tests.contract.test_message_batch_gateway -*-
"""
The message log through a whole gateway with C{BACKEND_MESSAGE_BATCH}: a
charger's frames reach the backend in order, grouped into C{POST
/api/charger/{deviceId}/ocpp-messages}; a backend that refuses the batch
form still gets every frame, one by one, through the contract's
C{ocpp-message}.
"""

from __future__ import annotations

import pytest_twisted

from ocpptw.testing.backend import FakeBackend
from tests.chaos.charger import LedgerCharger
from tests.chaos.ledger import Book
from tests.chaos.support import start_gateway, stop_gateway, wait_until
from tests.helpers import bounded

CP = "BATCH-1"


@pytest_twisted.async_yield_fixture
async def fake():
    from twisted.internet import reactor

    backend = FakeBackend(clock=reactor)
    _, backend.url = backend.listen(reactor)
    yield backend
    await bounded(backend.stop())


async def _talk(gateway, calls: int) -> Book:
    book = Book()
    charger = await LedgerCharger(CP, book, gateway.test_port).connect()
    await charger.boot()
    for _ in range(calls):
        await charger.call("Heartbeat", {})
    await wait_until(lambda: gateway.outbox.depth() == 0, 10, what="message log delivered")
    return book


def _expected(book: Book) -> list[tuple[str, str, str]]:
    frames = []
    for sent in book.sent:
        frames.append(("in", "CALL", sent.message_id))
        frames.append(("out", "CALLRESULT", sent.message_id))
    return frames


def _logged(fake: FakeBackend) -> list[tuple[str, str, str]]:
    return [(b["direction"], b["messageType"], b["messageId"]) for device, b in fake.stored_messages() if device == CP]


async def _run(tmp_path, fake: FakeBackend, calls: int, **settings: str) -> tuple[object, Book]:
    """
    A gateway against C{fake} with C{settings}, one charger making C{calls}
    calls, then the drain: the gateway and what the charger sent.
    """
    gateway = await start_gateway(tmp_path / "data", {"BACKEND_API_URL": fake.url, **settings})
    try:
        book = await _talk(gateway, calls)
    finally:
        await stop_gateway(gateway)
    return gateway, book


@pytest_twisted.ensureDeferred
async def test_frames_go_in_batches_in_order(tmp_path, fake):
    """With BACKEND_MESSAGE_BATCH=50 a charger's frames arrive complete and in order, mostly in batches."""
    gateway, book = await _run(tmp_path, fake, 10, BACKEND_MESSAGE_BATCH="50")
    assert _logged(fake) == _expected(book)
    batches = [r for r in fake.requests if r.path == f"/api/charger/{CP}/ocpp-messages"]
    singles = [r for r in fake.requests if r.path == f"/api/charger/{CP}/ocpp-message"]
    assert batches and all(1 < len(r.body) <= 50 for r in batches)
    assert len(batches) + len(singles) < len(_expected(book))
    assert gateway.outbox.dead_letters() == 0


@pytest_twisted.ensureDeferred
async def test_a_backend_without_the_batch_form_still_gets_every_frame(tmp_path, fake):
    """A backend that answers the batch endpoint with 404 gets every frame through ocpp-message, nothing parked."""
    fake.fail_with(404, endpoint="store_messages")
    gateway, book = await _run(tmp_path, fake, 5, BACKEND_MESSAGE_BATCH="50")
    assert _logged(fake) == _expected(book)
    assert any(r.path.endswith("/ocpp-messages") for r in fake.requests)
    assert gateway.outbox.dead_letters() == 0


@pytest_twisted.ensureDeferred
async def test_default_is_the_contracts_single_message_endpoint(tmp_path, fake):
    """Without BACKEND_MESSAGE_BATCH every frame is its own POST .../ocpp-message, as the contract says."""
    gateway, book = await _run(tmp_path, fake, 3)
    assert _logged(fake) == _expected(book)
    assert not any(r.path.endswith("/ocpp-messages") for r in fake.requests)
    assert len([r for r in fake.requests if r.path == f"/api/charger/{CP}/ocpp-message"]) == len(_expected(book))
