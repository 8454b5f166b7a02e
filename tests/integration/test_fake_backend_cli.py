"""
The fake backend as docs/backend-api.yaml tells an operator to run it
(C{python -m ocpptw.testing.backend}), with a gateway pointed at it: a
charger boots, is registered there, and its idTag is authorized.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest_twisted
import yaml

from tests.adapters.test_backend_api_doc import DOC
from tests.fuzz.support import start_gateway, stop_gateway
from tests.helpers import bounded
from tests.integration.instances_support import boot
from tests.wsclient import connect_charger


@pytest_twisted.ensureDeferred
async def test_the_documented_fake_backend_serves_a_gateway(tmp_path):
    from twisted.internet.threads import deferToThread

    text = yaml.safe_load(DOC.read_text())["info"]["description"]
    [line] = [row.strip() for row in text.splitlines() if "-m ocpptw.testing.backend" in row]
    argv = line.rstrip("&").split()[1:]  # after the interpreter
    argv[argv.index("--port") + 1] = "0"
    process = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True)
    service = None
    try:
        first = await bounded(deferToThread(process.stdout.readline), 30)
        url = re.search(r"BACKEND_API_URL=(\S+)\)", first).group(1)
        service = await start_gateway(str(tmp_path / "data"), BACKEND_API_URL=url)
        charger = await connect_charger(service.test_port, "/ocpp/FAKE-1")
        await boot(charger)
        answer = await charger.call("Authorize", {"idTag": "ANY-TAG"})
        assert answer[2]["idTagInfo"]["status"] == "Accepted", answer
        assert (await service.backend.charger_by_device("FAKE-1"))["deviceId"] == "FAKE-1"
        charger.dropConnection(abort=True)
    finally:
        if service is not None:
            await stop_gateway(service)
        process.terminate()
        process.wait(10)
        process.stdout.close()


def test_known_chargers_with_keys_on_the_command_line(tmp_path):
    """--charger ID=KEY registers a charger whose key hash verifies; a short key is one usage line."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "ocpptw.testing.backend", "--port", "0", "--charger", "CP1=short"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and "--charger CP1:" in done.stderr and "Traceback" not in done.stderr
