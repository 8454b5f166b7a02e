"""
The Server-Sent Events stream on twisted.web: a paused client's events wait
in a bounded queue and flow again on resume; one that cannot keep up is
dropped and counted; heartbeats on the clock; the stream limit.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from ocpptw.observability.metrics import Metrics
from ocpptw.services.live import LiveFeed
from ocpptw.transport.stream import FLUSH, StreamHub
from tests.transport.web_support import open_request, response


class Session:
    charge_point_id = "CP1"


class StreamOnly(Resource):
    isLeaf = True

    def __init__(self, hub):
        super().__init__()
        self.hub = hub

    def render_GET(self, request):
        raw = request.args.get(b"chargePointId")
        return self.hub.open(request, raw[0].decode() if raw else None)


def rig(**kwargs):
    clock = Clock()
    feed = LiveFeed(clock, None)
    hub = StreamHub(feed, clock, **kwargs)
    metrics = Metrics(process=False)
    hub.watch(metrics)
    hub.startService()
    return clock, feed, hub, StreamOnly(hub), metrics.registry


def send(feed, n=1, size=10, clock=None):
    for i in range(n):
        feed.frame(Session(), "in", "CALL", str(i), "DataTransfer", {"data": "x" * size}, None, None)
    if clock is not None:
        clock.advance(FLUSH)


def test_events_are_gathered_and_written_in_one_piece():
    clock, feed, _, resource, _ = rig()
    _, transport = open_request(resource, b"/")
    before = len(transport.value())
    send(feed, 2)
    assert len(transport.value()) == before  # gathered for FLUSH seconds
    clock.advance(FLUSH)
    assert transport.value()[before:].count(b"\r\n") == 2  # one chunk: its size line and its end
    send(feed, 1, clock=clock)
    status, headers, raw = response(transport)
    assert status == 200 and headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert raw.startswith(b"retry: 3000\n") and raw.count(b"event: message\ndata: ") == 3
    assert clock.getDelayedCalls()[0].getTime() > clock.seconds()  # only the heartbeat is due


def test_a_paused_client_queues_then_catches_up_in_order():
    clock, feed, hub, resource, _ = rig(max_queued=10_000)
    channel, transport = open_request(resource, b"/")
    (client,) = hub.clients
    channel.pauseProducing()  # what the transport does when its buffer is full
    assert client.paused
    before = len(transport.value())
    send(feed, 5, clock=clock)
    assert len(transport.value()) == before
    channel.resumeProducing()
    raw = response(transport)[2]
    ids = [line.split(b'"messageId":"')[1][:1] for line in raw.split(b"\n") if line.startswith(b"data:")]
    assert ids == [b"0", b"1", b"2", b"3", b"4"]


def test_a_client_that_cannot_keep_up_is_dropped_and_counted():
    clock, feed, hub, resource, registry = rig(max_queued=2_000)
    channel, transport = open_request(resource, b"/")
    channel.pauseProducing()
    send(feed, 5, size=100, clock=clock)
    assert hub.clients  # queued within the bound
    send(feed, 50, size=100)
    assert hub.clients == set() and transport.disconnecting
    assert registry.get_sample_value("ocpp_console_stream_dropped_total") == 1
    assert registry.get_sample_value("ocpp_console_streams") == 0
    send(feed, 5, clock=clock)  # nothing more is buffered for it


def test_heartbeats_keep_the_stream_alive():
    clock, _, _, resource, _ = rig(heartbeat=15)
    _, transport = open_request(resource, b"/")
    clock.advance(15)
    clock.advance(15)
    assert response(transport)[2].count(b": ping\n\n") == 2


def test_the_number_of_streams_is_bounded():
    _, _, hub, resource, _ = rig(max_clients=1)
    open_request(resource, b"/")
    _, transport = open_request(resource, b"/")
    assert response(transport)[0] == 503 and len(hub.clients) == 1


def test_a_closed_connection_forgets_its_client_and_stop_ends_the_timer():
    clock, feed, hub, resource, _ = rig()
    channel, transport = open_request(resource, b"/")
    channel.connectionLost(Failure(ConnectionDone()))
    assert hub.clients == set()
    send(feed)
    hub.stopService()
    assert clock.getDelayedCalls() == []
    _, transport = open_request(resource, b"/")
    assert response(transport)[0] == 503  # not serving streams once stopped
