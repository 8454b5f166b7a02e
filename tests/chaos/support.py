# -*- test-case-name: tests.chaos -*-
"""
Running the gateway for the chaos scenarios: in process on the test's
reactor, or as a C{twistd -n ocpp} daemon that can be killed; the fake
backend on loopback; the broker stopped and started with C{rabbitmqctl}.
Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ocpptw.config import load_config
from tests.chaos.ledger import RecordingBackend

TWISTD = Path(sys.executable).with_name("twistd")
SIM = Path(sys.executable).with_name("ocpptw-sim")


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


async def wait_until(predicate: Any, seconds: float, step: float = 0.05, what: str = "") -> float:
    """
    Wait on the reactor until C{predicate()}; returns the seconds waited.
    """
    from twisted.internet import reactor

    started = reactor.seconds()
    while not predicate():
        if reactor.seconds() - started > seconds:
            raise AssertionError(f"not within {seconds} s: {what or predicate}")
        await sleep(step)
    return reactor.seconds() - started


#: Short retry waits for the CI forms of the scenarios, so a 5 s outage is
#: recovered from within seconds; the long forms in C{bench/chaos.py} keep
#: the production values (60 s and 10 s).
FAST_RETRIES = {"OUTBOX_RETRY_MAX": "1", "BACKEND_CIRCUIT_COOLDOWN": "1"}


async def start_gateway(data_dir: Path, env: dict[str, str] | None = None, fast: bool = True) -> Any:
    """
    The whole gateway in process on loopback, port chosen by the system;
    C{gateway.test_port} is the port.
    """
    from twisted.internet import reactor

    from ocpptw.app.gateway import make_gateway

    settings = {
        "DATA_DIR": str(data_dir),
        "PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "OCPP_PING_INTERVAL": "0",
        "DRAIN_GRACE": "3",
        "LOG_LEVEL": "warn",
    }
    if fast:
        settings.update(FAST_RETRIES)
    settings.update(env or {})
    gateway = make_gateway(load_config("", settings, {}, hostname="chaos"), reactor)
    gateway.startService()
    await gateway.started.addTimeout(15, reactor)
    gateway.test_port = gateway.port.getHost().port
    return gateway


async def stop_gateway(gateway: Any) -> None:
    from twisted.internet import reactor

    if gateway.running:
        await gateway.stopService().addTimeout(20, reactor)


def start_backend(**kwargs: Any) -> tuple[RecordingBackend, str]:
    from twisted.internet import reactor

    backend = RecordingBackend(**kwargs)
    _, url = backend.listen(reactor)
    return backend, url


# -- the daemon ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Daemon:
    """
    C{twistd -n --pidfile= ocpp} as a child process, with its log file.
    """

    def __init__(self, workdir: Path, env: dict[str, str], port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OCPP_", "BACKEND_", "RABBITMQ_", "ENABLE_"))}
        self.env.update({"PORT": str(self.port), "WEBSOCKET_HOST": "127.0.0.1", "LOG_LEVEL": "info"})
        self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"twistd-{self.runs}.log"

    async def start(self, seconds: float = 30.0) -> None:
        self.runs += 1
        self.proc = subprocess.Popen(
            [str(TWISTD), "-n", "--pidfile=", "--logfile", str(self.log), "ocpp"],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        proc = self.proc
        await wait_until(lambda: proc.poll() is not None or port_open(self.port), seconds, what="daemon listening")
        assert proc.poll() is None, f"daemon exited {proc.returncode}: {self.log_text()[-3000:]}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def terminate(self, seconds: float = 30.0) -> int | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else None
        proc.send_signal(signal.SIGTERM)
        try:
            await wait_until(lambda: proc.poll() is not None, seconds, what="daemon exit")
        except AssertionError:
            proc.kill()
            proc.wait(10)
        return proc.returncode

    def log_text(self) -> str:
        texts = []
        for n in range(1, self.runs + 1):
            path = self.workdir / f"twistd-{n}.log"
            if path.exists():
                texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)


# -- the broker ------------------------------------------------------------------


def rabbitmqctl(*args: str, seconds: float = 60.0) -> None:
    """
    Run C{rabbitmqctl ARGS} (blocking: call it in a thread).
    """
    subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=seconds, check=True)


def amqp_answers(host: str = "127.0.0.1", port: int = 5672) -> bool:
    """
    Whether the broker answers an AMQP 0-9-1 protocol header with its
    C{Connection.Start} method frame (type 1, channel 0, class 10, method
    10): listening is not enough, the broker application must be running.
    """
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.settimeout(2.0)
            s.sendall(b"AMQP\x00\x00\x09\x01")
            reply = s.recv(11)
            return reply[:3] == b"\x01\x00\x00" and reply[7:11] == b"\x00\x0a\x00\x0a"
    except OSError:
        return False


def wait_for_broker(seconds: float = 60.0) -> bool:
    """
    Blocking: wait until the broker answers AMQP again.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if amqp_answers():
            return True
        time.sleep(0.25)
    return False
