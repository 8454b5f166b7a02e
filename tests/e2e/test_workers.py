"""
C{WORKERS=2}: one C{twistd -n ocpp} runs two worker processes on one port
(SO_REUSEPORT), each an instance of its own on the shared RabbitMQ
(127.0.0.1:5672), sharing the embedded store.  Real processes, real
sockets on loopback, bounded waits on conditions:

  - the newest connection wins across workers (the older socket, held by
    the other worker, closes with 4001);
  - a REST command sent to the worker that does not hold the charger
    reaches it (one keep-alive HTTP connection stays on one worker, whose
    own charger list shows that it does not hold the charger);
  - a worker killed with SIGKILL is started again, and its chargers
    reconnect and boot;
  - SIGTERM to the parent drains every worker and exits 0.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.test_twistd_modes import BOUND, TWISTD, free_port, health, wait_for


def workers_of(parent: int) -> dict[int, int]:
    """C{{worker number: pid}} of the parent's live worker processes."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid != parent or state == "Z":
            continue
        for arg in cmdline:
            if arg.startswith(b"--worker="):
                found[int(arg.split(b"=", 1)[1])] = int(entry.name)
    return found


def api(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn.request(method, path, body=None if body is None else json.dumps(body), headers={"content-type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def held_by(port: int, identity: str) -> str | None:
    """The instance that holds C{identity}, asked of whichever worker answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        status, body = api(conn, "GET", f"/api/v1/chargers/{identity}")
    finally:
        conn.close()
    return body.get("instance") if status == 200 else None


def ready_status(port: int) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return api(conn, "GET", "/ready")[1].get("status")
    except OSError:
        return None
    finally:
        conn.close()


def charger(port: int, identity: str):
    ws = connect(f"ws://127.0.0.1:{port}/ocpp/{identity}", subprotocols=["ocpp1.6"], open_timeout=10)
    ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
    answer = json.loads(ws.recv(timeout=10))
    assert answer[:2] == [3, "b"] and answer[2]["status"] == "Accepted", answer
    return ws


def answer_calls(ws, seen: list) -> threading.Thread:
    """Answer every CALL the gateway sends (with an empty configuration list) until the socket closes."""

    def run():
        try:
            while True:
                frame = json.loads(ws.recv(timeout=BOUND))
                if frame[0] == 2:
                    seen.append(frame)
                    ws.send(json.dumps([3, frame[1], {"configurationKey": []}]))
        except (ConnectionClosed, TimeoutError):
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def worker_env(port: int, tmp_path: Path, instance: str) -> dict:
    """
    The environment of a C{WORKERS=2} gateway on C{port} with its data in C{tmp_path}.
    """
    return dict(
        os.environ,
        WORKERS="2",
        PORT=str(port),
        WEBSOCKET_HOST="127.0.0.1",
        DATA_DIR=str(tmp_path / "data"),
        INSTANCE_ID=instance,
        OCPP_PING_INTERVAL="0",
        DRAIN_GRACE="3",
    )


@pytest.fixture(params=["local channel", "broker"])
def host(request, tmp_path):
    port = free_port()
    tag = uuid.uuid4().hex[:8]
    env = worker_env(port, tmp_path, f"wk-{tag}")
    if request.param == "broker":
        env.update(
            ENABLE_RABBITMQ="true",
            RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672",
            RABBITMQ_EXCHANGE=f"wk-{tag}.events",
            RABBITMQ_COMMAND_EXCHANGE=f"wk-{tag}.commands",
        )
    log = open(tmp_path / "out.log", "wb")
    proc = subprocess.Popen([TWISTD, "-n", "--pidfile=", "ocpp"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "out.log").read_text()[-3000:]
        return len(workers_of(proc.pid)) == 2 and health(port) == 200

    try:
        wait_for(ready, "two workers up", 2 * BOUND)  # two twistd starts and the parent's, on a loaded host
        wait_for(lambda: (tmp_path / "out.log").read_text().count("listening for chargers at") == 2, "both listen")
        # and both are ready (their broker connections up): so is every one of several fresh connections' worker
        wait_for(lambda: all(ready_status(port) == "ready" for _ in range(8)), "both workers ready")
        yield proc, port, env, tmp_path
    finally:
        workers = workers_of(proc.pid)  # before the parent goes: its orphans would have another parent
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(BOUND)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in workers.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def test_newest_connection_wins_across_workers(host):
    proc, port, env, _ = host
    identity = f"WK-NEW-{uuid.uuid4().hex[:6]}"
    older = charger(port, identity)
    wait_for(lambda: held_by(port, identity), "the first connection is in the directory")
    codes = []
    for _ in range(24):  # the kernel picks the worker; within 24 tries the other one, but for 2**-24
        newer = charger(port, identity)
        try:
            older.recv(timeout=BOUND)
        except ConnectionClosed as closed:
            codes.append(closed.rcvd.code if closed.rcvd else None)
        older = newer
        if 4001 in codes:
            break
    assert 4001 in codes, codes  # "connected to another instance": the other worker held it
    assert set(codes) <= {4000, 4001}, codes
    wait_for(lambda: held_by(port, identity) is not None, "the newest connection is held")
    older.close()


def test_rest_command_through_the_worker_that_does_not_hold_the_charger(host):
    proc, port, env, _ = host
    identity = f"WK-CMD-{uuid.uuid4().hex[:6]}"
    ws = charger(port, identity)
    seen: list = []
    answer_calls(ws, seen)
    holder = wait_for(lambda: held_by(port, identity), "the charger is in the directory")
    for _ in range(40):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=BOUND)
        status, body = api(conn, "GET", "/api/v1/chargers")
        assert status == 200
        if identity in [c["chargePointId"] for c in body["chargers"]]:
            conn.close()
            continue
        # this keep-alive connection stays on the worker that does not hold it
        status, body = api(conn, "POST", f"/api/v1/chargers/{identity}/commands/GetConfiguration", {})
        conn.close()
        assert (status, body) == (200, {"result": {"configurationKey": []}})
        break
    else:
        pytest.fail("no API connection landed on the other worker in 40 tries")
    assert [f[2] for f in seen] == ["GetConfiguration"]
    assert held_by(port, identity) == holder
    ws.close()


def test_a_killed_worker_is_restarted_and_its_chargers_reconnect_and_boot(host):
    proc, port, env, _ = host
    chargers = {}
    for n in range(6):
        identity = f"WK-K{n}-{uuid.uuid4().hex[:6]}"
        chargers[identity] = charger(port, identity)
    holders = {i: wait_for(lambda i=i: held_by(port, i), "held") for i in chargers}
    victim = sorted(set(holders.values()))[0]
    number = int(victim.rsplit("-w", 1)[1])
    before = workers_of(proc.pid)
    os.kill(before[number], signal.SIGKILL)
    wait_for(lambda: workers_of(proc.pid).get(number) not in (None, before[number]), "the worker is started again")
    lost = [i for i, h in holders.items() if h == victim]
    assert lost
    for identity in lost:
        with pytest.raises(ConnectionClosed):
            chargers[identity].recv(timeout=BOUND)
    wait_for(lambda: all(ready_status(port) == "ready" for _ in range(8)), "both workers ready again")
    for identity in lost:
        chargers[identity] = charger(port, identity)  # reconnects and boots: Accepted
        wait_for(lambda identity=identity: held_by(port, identity), "held again")
    assert proc.poll() is None
    for ws in chargers.values():
        ws.close()


def test_metrics_and_ready_cover_every_worker(host):
    proc, port, env, _ = host
    chargers = [charger(port, f"WK-M{n}-{uuid.uuid4().hex[:6]}") for n in range(4)]
    for _ in range(6):  # whichever worker answers
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=BOUND)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        connected = {
            line.split('worker="')[1][0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("ocpp_connected_chargers{")
        }
        assert set(connected) == {"1", "2"}, text[:2000]
        assert sum(connected.values()) == 4
        assert text.count("# TYPE ocpp_connected_chargers ") == 1
    worker = workers_of(proc.pid)[2]
    os.kill(worker, signal.SIGSTOP)  # worker 2 cannot answer: the host's /ready says so, from worker 1
    try:
        def degraded():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=12)  # the parent waits 5 s for a report
            try:
                status, body = api(conn, "GET", "/ready")
            except OSError:  # the kernel handed this connection to the stopped worker
                return None
            finally:
                conn.close()
            return body if status == 200 and body["status"] == "degraded" else None

        body = wait_for(degraded, "the host's /ready names the worker that does not answer", seconds=150)
        assert body["reasons"] == ["worker 2 does not answer (being started again, or stuck)"]
    finally:
        os.kill(worker, signal.SIGCONT)
    for ws in chargers:
        ws.close()


def test_sigterm_drains_every_worker_and_exits_zero(host):
    proc, port, env, tmp_path = host
    ws = charger(port, f"WK-TERM-{uuid.uuid4().hex[:6]}")
    workers = workers_of(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=BOUND)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert proc.wait(BOUND) == 0
    for pid in workers.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    log = (tmp_path / "out.log").read_text()
    assert log.count("drain: closed") == 2, log[-3000:]
    assert "worker 1 exited (status 0)" in log and "worker 2 exited (status 0)" in log



def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_workers_stop_when_their_parent_is_killed(host):
    """
    A parent killed with SIGKILL cannot drain them: each worker sees its
    standard input (the parent's pipe) close, drains and exits, and the
    port is free again, so no orphan keeps serving on its own.
    """
    proc, port, env, tmp_path = host
    ws = charger(port, f"WK-ORPHAN-{uuid.uuid4().hex[:6]}")
    workers = workers_of(proc.pid)
    assert len(workers) == 2
    proc.kill()
    proc.wait(BOUND)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=BOUND)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    wait_for(lambda: all(_gone(pid) for pid in workers.values()), "both workers exit")
    wait_for(lambda: health(port) is None, "the port is free")
    log = (tmp_path / "out.log").read_text()
    assert log.count("the supervising process is gone") == 2, log[-3000:]


def test_a_second_parent_on_the_same_data_dir_refuses_to_start(host):
    """
    SO_REUSEPORT would let a second C{twistd ocpp} share the ports, the
    channel and the outboxes: the first parent's lock on C{DATA_DIR} stops
    it with one line and a non-zero exit, and the first goes on serving.
    """
    proc, port, env, tmp_path = host
    other = tmp_path / "second"
    other.mkdir()
    done = subprocess.run([TWISTD, "-n", "--pidfile=", "ocpp"], cwd=other, env=env, capture_output=True, text=True, timeout=BOUND)
    assert done.returncode != 0
    assert "another ocpptw runs workers on DATA_DIR" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert proc.poll() is None and health(port) == 200


def test_workers_that_cannot_bind_stop_the_parent_with_one_line(tmp_path):
    """
    The port is held by a process without SO_REUSEPORT: every worker fails
    its first start, and the parent says so and exits non-zero instead of
    restarting them forever.
    """
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    env = worker_env(port, tmp_path, "wk-bind")
    try:
        done = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "ocpp"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=2 * BOUND
        )
    finally:
        holder.close()
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "could not start (it exited with status 1; its lines above say why): stopping every worker" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
