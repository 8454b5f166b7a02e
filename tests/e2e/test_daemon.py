"""
End to end: C{twistd -n ocpp} started as a newcomer would (embedded store,
nothing configured but a data directory and a port), and a charger that
nobody on the team wrote (the C{ocpp} package over C{websockets}) boots,
authorizes, charges, stops and transfers data with every answer valid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TWISTD = Path(sys.executable).with_name("twistd")
BOUND = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, seconds=BOUND):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


@pytest.fixture
def daemon(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCPP_", "BACKEND_", "RABBITMQ_", "ENABLE_"))}
    env.update({"DATA_DIR": str(tmp_path / "data"), "PORT": str(port), "WEBSOCKET_HOST": "127.0.0.1"})
    log = tmp_path / "twistd.log"
    proc = subprocess.Popen(
        [str(TWISTD), "-n", "--pidfile=", "--logfile", str(log), "ocpp"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: proc.poll() is not None or http_status(f"http://127.0.0.1:{port}/health") == 200)
        assert proc.poll() is None, proc.stdout.read().decode() + log.read_text()
        yield port, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(BOUND)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_third_party_charger_completes_a_session(daemon):
    """The ocpp package's ChargePoint completes a whole session; SIGTERM exits 0."""
    port, proc, log = daemon
    result = subprocess.run(
        [sys.executable, str(HERE / "ocpp_lib_charger.py"), f"ws://127.0.0.1:{port}/ocpp/E2E-1"],
        capture_output=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:] + log.read_text()[-3000:]
    got = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert got["boot"] == "Accepted" and got["interval"] == 300
    assert got["authorize"] == "Accepted" and got["start"] == "Accepted"
    assert isinstance(got["transactionId"], int) and got["repeatedStartSameId"] is True
    assert got["dataTransfer"] in ("Accepted", "UnknownVendorId")
    assert http_status(f"http://127.0.0.1:{port}/ready") == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(BOUND) == 0
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


def test_bad_configuration_is_one_line(tmp_path):
    """A bad value stops the daemon at start: one line naming the variable, exit 1."""
    env = dict(os.environ, PORT="abc", DATA_DIR=str(tmp_path))
    result = subprocess.run([str(TWISTD), "-n", "--pidfile=", "ocpp"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert result.returncode == 1
    out = (result.stdout + result.stderr).decode().strip()
    assert out == "ocpp: PORT must be an integer, got 'abc'"


def test_help_documents_every_option(tmp_path):
    """twistd ocpp --help lists every configuration variable."""
    from ocpptw.config import SETTINGS

    result = subprocess.run([str(TWISTD), "ocpp", "--help"], cwd=tmp_path, capture_output=True, timeout=60)
    text = result.stdout.decode()
    for s in SETTINGS:
        assert f"--{s.option}" in text and s.env in text, s.env


def test_tac_file_runs_the_same_gateway(tmp_path):
    """twistd -ny ocpp.tac serves chargers and /health, and SIGTERM exits 0."""
    tac = Path(__file__).resolve().parents[2] / "ocpp.tac"
    port = free_port()
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), PORT=str(port), WEBSOCKET_HOST="127.0.0.1")
    proc = subprocess.Popen(
        [str(TWISTD), "-ny", str(tac), "--pidfile="], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: proc.poll() is not None or http_status(f"http://127.0.0.1:{port}/health") == 200)
        assert proc.poll() is None, proc.stdout.read().decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(BOUND) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
