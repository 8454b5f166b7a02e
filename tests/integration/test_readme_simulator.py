"""
The README's "connect your first charger" steps, run as written: the gentle
simulator example boots SIM1-SIM3, keeps them connected and sends an
occasional call, and the README's command reaches SIM1 while it runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest_twisted
from twisted.internet.defer import ensureDeferred

from ocpptw.sim.cli import parse_args, run_simulation
from tests.fuzz.support import start_gateway, stop_gateway
from tests.helpers import bounded, until
from tests.integration.instances_support import http

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _readme_line(program: str, mark: str = "") -> list[str]:
    [line] = [row.strip() for row in README.splitlines() if row.strip().startswith(f".venv/bin/{program} ") and mark in row]
    return shlex.split(line)[1:]


@pytest_twisted.ensureDeferred
async def test_the_gentle_example_stays_connected_for_a_command(tmp_path):
    from twisted.internet import reactor

    argv = _readme_line("ocpptw-sim", "--rate")  # the gentle example (the 2.0.1 ones beside it are short runs)
    assert "--rate" in argv and float(argv[argv.index("--duration") + 1]) >= 60  # gentle, and long enough
    argv[argv.index("--duration") + 1] = "6"  # the test's own time budget
    service = await start_gateway(str(tmp_path / "data"))
    try:
        options, _ = parse_args([*argv, "--url", f"ws://127.0.0.1:{service.test_port}/ocpp/"])
        assert options.rate <= 1.0
        run = ensureDeferred(run_simulation(reactor, options))
        await until(lambda: service.registry.get("SIM1") is not None and service.registry.get("SIM3") is not None)
        [curl] = [row for row in README.splitlines() if "commands/Reset" in row]
        path = re.search(r"localhost:9000(\S+)", curl).group(1)
        body = re.search(r"-d '([^']*)'", curl).group(1).encode()
        status, answer = await http(service.test_port, "POST", path, body)
        assert status == 200 and "status" in answer["result"], answer
        report = await bounded(run, 30)
        assert report["ok"], report
        assert report["calls"]["load_answered"] <= 6  # about one call every two seconds in all
    finally:
        await stop_gateway(service)
