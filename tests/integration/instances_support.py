"""
Support for the tests of whole gateways with C{ENABLE_RABBITMQ=true} on the
real broker: configurations with the test's unique exchange names, gateways
in process and as C{twistd ocpp} subprocesses, HTTP requests, an AMQP
command client, and clean-up of what the gateways declared.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import treq

from ocpptw.config import Config, load_config
from tests.helpers import WAIT, bounded, until
from tests.integration.amqp_support import (
    BROKER_URL,
    Names,
    delete_topology,
    open_client,
)

TWISTD = Path(sys.executable).with_name("twistd")

#: The connection name the gateway gives its broker connection (see
#: L{ocpptw.adapters.amqp._ConnectionFactory}).
CONNECTION_NAME = "ocpptw {instance}"


def gateway_env(data_dir: Path, names: Names, instance: str, slot: int, **extra: str) -> dict[str, str]:
    """
    The configuration of one gateway instance on the test broker, as
    environment variables: its own data directory, instance name and slot,
    the test's exchanges, loopback on a free port.
    """
    env = {
        "DATA_DIR": str(data_dir),
        "PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "OCPP_PING_INTERVAL": "0",
        "DRAIN_GRACE": "5",
        "ENABLE_RABBITMQ": "true",
        "RABBITMQ_URL": BROKER_URL,
        "RABBITMQ_EXCHANGE": names.events,
        "RABBITMQ_COMMAND_EXCHANGE": names.commands,
        "INSTANCE_ID": names.instance(instance),
        "INSTANCE_SLOT": str(slot),
    }
    env.update(extra)
    return env


def gateway_config(data_dir: Path, names: Names, instance: str, slot: int, **extra: str) -> Config:
    """
    L{gateway_env} as a L{Config}.
    """
    return load_config("", gateway_env(data_dir, names, instance, slot, **extra), {}, hostname="unused")


async def start_gateway(config: Config) -> Any:
    """
    Build and start an in-process gateway; returns it once it listens
    and its broker connection is ready, with C{test_port} set.
    """
    from twisted.internet import reactor

    from ocpptw.app.gateway import make_gateway

    gateway = make_gateway(config, reactor)
    gateway.startService()
    await bounded(gateway.started)
    gateway.test_port = gateway.port.getHost().port
    await until(lambda: gateway.amqp.ready()[0] and gateway.publisher.ready()[0])
    return gateway


async def stop_gateway(gateway: Any) -> None:
    """
    Stop an in-process gateway (the drain), if it still runs.
    """
    if gateway.running:
        await bounded(gateway.stopService(), 20)


async def http(port: int, method: str, path: str, body: Any = None, seconds: float = WAIT) -> tuple[int, Any]:
    """
    One request to a gateway on loopback: C{(status, parsed JSON body or
    text)}.  C{body} is sent as JSON unless it is C{bytes}.
    """
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    response = await bounded(treq.request(method, f"http://127.0.0.1:{port}{path}", data=data, persistent=False), seconds)
    content = await bounded(response.content(), seconds)
    kind = (response.headers.getRawHeaders("content-type") or [""])[0]
    if kind.startswith("application/json"):
        return response.code, json.loads(content)
    return response.code, content.decode("utf-8")


def broker_gauge(metrics_text: str) -> float:
    """
    The value of C{ocpp_broker_connected} in a C{/metrics} page.
    """
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "ocpp_broker_connected":
                return sample.value
    raise AssertionError("ocpp_broker_connected is missing from /metrics")


async def boot(charger: Any, vendor: str = "ACME", model: str = "M1") -> dict:
    """
    BootNotification, which must be C{Accepted}; returns the answer.
    """
    frame = await charger.call("BootNotification", {"chargePointVendor": vendor, "chargePointModel": model})
    assert frame[0] == 3 and frame[2]["status"] == "Accepted", frame
    return frame[2]


async def answer_next_call(charger: Any, result: dict) -> list:
    """
    Wait for the next CALL the gateway sends C{charger}, answer it with
    C{result}; returns the CALL frame.
    """
    frame = await charger.next()
    assert frame[0] == 2, frame
    charger.send_text(json.dumps([3, frame[1], result]))
    return frame


class CommandClient:
    """
    A third-party RPC client on the command exchange (plain pika, not the
    gateway's code): publishes C{{action, payload}} with C{reply_to} and
    C{correlation_id}, collects replies and mandatory returns.
    """

    def __init__(self, channel: Any, replies: Any, exchange: str) -> None:
        self.channel = channel
        self._replies = replies
        self._exchange = exchange
        self._number = 0
        self.returned: list = []
        channel.add_on_return_callback(self.returned.append)

    @classmethod
    async def open(cls, client: Any, exchange: str) -> CommandClient:
        channel = await bounded(client.channel())
        replies, _ = await bounded(channel.basic_consume(queue="amq.rabbitmq.reply-to", auto_ack=True))
        return cls(channel, replies, exchange)

    async def publish(self, charge_point_id: str, action: str, payload: dict, mandatory: bool = False, **extra: Any) -> str:
        """
        Publish one command; returns its correlation id.
        """
        import pika

        self._number += 1
        correlation_id = f"cmd-{self._number}"
        properties = pika.BasicProperties(
            reply_to="amq.rabbitmq.reply-to", correlation_id=correlation_id, content_type="application/json"
        )
        body = json.dumps({"action": action, "payload": payload, **extra}).encode("utf-8")
        await bounded(self.channel.basic_publish(self._exchange, charge_point_id, body, properties, mandatory=mandatory))
        return correlation_id

    async def reply(self, correlation_id: str, seconds: float = WAIT) -> dict:
        """
        The next reply, which must carry C{correlation_id}; parsed.
        """
        message = await bounded(self._replies.get(), seconds)
        assert message.properties.correlation_id == correlation_id, message.properties
        return json.loads(message.body)

    async def replies_within(self, seconds: float) -> list[tuple[str, dict]]:
        """
        Every C{(correlation_id, reply)} that arrives within C{seconds}.
        """
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await deferLater(reactor, seconds, lambda: None)
        got = []
        while self._replies.pending:
            message = await bounded(self._replies.get())
            got.append((message.properties.correlation_id, json.loads(message.body)))
        return got


async def clean_broker(names: Names, instances: tuple[str, ...]) -> None:
    """
    Delete the exchanges and queues the gateways declared for C{names}.
    """
    from twisted.internet import reactor

    client = await open_client(reactor)
    try:
        await delete_topology(client, names, tuple(names.instance(i) for i in instances))
    finally:
        await close_client(client)


async def close_client(client: Any) -> None:
    """
    Close a plain pika client connection, unless the broker already did.
    """
    closing = client.close() if client.is_open else None
    if closing is not None:
        await bounded(closing)


def free_port() -> int:
    """
    A TCP port on loopback that was free a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """
    One gateway as C{twistd -n --pidfile= ocpp} in its own process and
    working directory, configured through its environment only.
    """

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = workdir / "twistd.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OCPP_", "BACKEND_", "RABBITMQ_", "ENABLE_", "INSTANCE_"))}
        base.update(env, PORT=str(self.port))
        self._output = (workdir / "stdout.txt").open("wb")
        self.process = subprocess.Popen(
            [str(TWISTD), "-n", "--pidfile=", "--logfile", str(self.log), "ocpp"],
            cwd=workdir,
            env=base,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        """
        The process's log so far (for assertion messages).
        """
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def ready(self, seconds: float = 20.0) -> None:
        """
        Wait until C{/ready} answers 200 (listening, broker connected).
        """
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        waited = 0.0
        while True:
            assert self.process.poll() is None, f"gateway exited with {self.process.returncode}: {self.text()[-3000:]}"
            try:
                status, body = await http(self.port, "GET", "/ready", seconds=2)
            except Exception:
                status = body = None
            if status == 200 and body == {"status": "ready"}:  # not degraded: the broker is connected
                return
            assert waited < seconds, f"not ready within {seconds} s: {self.text()[-3000:]}"
            await deferLater(reactor, 0.1, lambda: None)
            waited += 0.1

    async def stop(self, seconds: float = 20.0) -> int:
        """
        SIGTERM, then wait (bounded) for the exit; kill when it does not
        come.  Returns the exit code.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await until(lambda: self.process.poll() is not None, seconds, step=0.05)
            finally:
                if self.process.poll() is None:
                    self.process.kill()
                    self.process.wait(5)
        self._output.close()
        return self.process.returncode

