"""
The workers' channel, without sockets: the parent's bookkeeping of who
holds which charger (the newer claim wins, a late older claim loses), the
host's /ready from every worker's, and the metrics of several workers as
one Prometheus text; two peers joined in memory answer each other.
"""

from __future__ import annotations

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.test.iosim import connect, makeFakeClient, makeFakeServer

from ocpptw.app.hub import ChargerOffline, Hub, Peer, merge_metrics, merge_ready


class FakePeer:
    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.calls: list[tuple[str, dict]] = []

    def call(self, method, within=None, **args):
        self.calls.append((method, args))
        return succeed({"from": self.worker, **args})


def hub_with(*workers: int) -> tuple[Hub, dict[int, FakePeer]]:
    hub = Hub(Clock(), expected=len(workers))
    peers = {w: FakePeer(w) for w in workers}
    for w, peer in peers.items():
        hub.on_hello(peer, w)
    return hub, peers


def test_the_newer_claim_evicts_the_older_connection_on_the_other_worker():
    hub, peers = hub_with(1, 2)
    hub.on_claim(peers[1], "CP", 10.0)
    hub.on_claim(peers[2], "CP", 11.0)
    assert peers[1].calls == [("evict", {"charger": "CP"})] and peers[2].calls == []
    assert hub.holders["CP"] == (2, 11.0)
    hub.on_claim(peers[1], "CP", 9.0)  # late, older: the claimant's connection goes
    assert peers[1].calls[-1] == ("evict", {"charger": "CP"})
    assert hub.holders["CP"] == (2, 11.0)
    hub.on_release(peers[1], "CP")  # not the holder: nothing changes
    assert hub.holders["CP"] == (2, 11.0)
    hub.on_release(peers[2], "CP")
    assert "CP" not in hub.holders


def test_a_command_goes_to_the_holder_or_is_offline():
    hub, peers = hub_with(1, 2)
    hub.on_claim(peers[2], "CP", 1.0)
    results = []
    hub.on_send(peers[1], "CP", "Reset", {"type": "Soft"}, 5.0).addCallback(results.append)
    assert peers[2].calls == [("send", {"charger": "CP", "action": "Reset", "payload": {"type": "Soft"}, "timeout": 5.0})]
    failures = []
    hub.on_send(peers[1], "NOPE", "Reset", {}, 5.0).addErrback(failures.append)
    assert failures[0].check(ChargerOffline)
    hub.lost(peers[2])
    hub.on_send(peers[1], "CP", "Reset", {}, 5.0).addErrback(failures.append)
    assert len(failures) == 2 and "CP" not in hub.holders


def test_the_hosts_ready_is_the_worst_of_its_workers():
    ready = [200, {"status": "ready"}]
    assert merge_ready({"expected": 2, "reports": {"1": ready, "2": ready}}) == (200, {"status": "ready"})
    status, body = merge_ready({"expected": 3, "reports": {"1": ready, "2": ready}})
    assert (status, body["status"], body["reasons"]) == (200, "degraded", ["worker 3 does not answer (being started again, or stuck)"])
    down = [503, {"status": "unavailable", "reasons": ["draining"]}]
    status, body = merge_ready({"expected": 2, "reports": {"1": ready, "2": down}})
    assert (status, body) == (503, {"status": "unavailable", "reasons": ["worker 2: draining"]})


def test_metrics_of_several_workers_are_one_text_with_a_worker_label():
    one = '# HELP a_total A\n# TYPE a_total counter\na_total 1.0\n# HELP h H\n# TYPE h histogram\nh_bucket{le="1"} 2.0\nh_count 2.0\n'
    two = '# HELP a_total A\n# TYPE a_total counter\na_total 3.0\n# HELP h H\n# TYPE h histogram\nh_bucket{le="1"} 5.0\nh_count 5.0\n'
    assert merge_metrics({"2": two, "1": one}).splitlines() == [
        "# HELP a_total A",
        "# TYPE a_total counter",
        'a_total{worker="1"} 1.0',
        'a_total{worker="2"} 3.0',
        "# HELP h H",
        "# TYPE h histogram",
        'h_bucket{worker="1",le="1"} 2.0',
        'h_count{worker="1"} 2.0',
        'h_bucket{worker="2",le="1"} 5.0',
        'h_count{worker="2"} 5.0',
    ]


class Echo:
    def on_echo(self, peer, text):
        return succeed(text * 2)

    def on_fail(self, peer):
        raise ChargerOffline("gone")


def test_two_peers_answer_each_other_and_errors_keep_their_kind():
    clock = Clock()
    server, client = Peer(Echo(), clock), Peer(Echo(), clock)
    pump = connect(server, makeFakeServer(server), client, makeFakeClient(client))
    answers, failures = [], []
    client.call("echo", text="ab").addCallback(answers.append)
    server.call("fail").addErrback(failures.append)
    pump.flush()
    assert answers == ["abab"]
    assert failures[0].check(ChargerOffline) and str(failures[0].value) == "gone"
    late = []
    client.call("echo", within=1.0, text="x").addErrback(late.append)
    clock.advance(1.0)  # never pumped: times out
    assert late and "within 1 s" in str(late[0].value)
