"""
Fixtures of the chaos scenarios: expected error logs, the fake backend on
loopback, and the order of the run (tests that stop the shared broker run
last, so no other test sees the outage).
"""

from __future__ import annotations

import re

import pytest
import pytest_twisted
from twisted.logger import formatEvent

OUTAGE_MARK = "broker_outage"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{OUTAGE_MARK}: stops the shared RabbitMQ broker; runs after every other test")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Move the tests that stop the broker to the end of the whole run."""
    late = [item for item in items if item.get_closest_marker(OUTAGE_MARK)]
    if late:
        items[:] = [item for item in items if not item.get_closest_marker(OUTAGE_MARK)] + late


@pytest.fixture
def expected_errors(fail_on_logged_errors):
    """
    A list of regular expressions; error log lines that match one are what
    the scenario provokes (an outage the gateway reports) and do not fail
    the test.  Any other error still does.
    """
    patterns: list[str] = []
    yield patterns
    errors = fail_on_logged_errors
    errors[:] = [e for e in errors if not any(re.search(p, formatEvent(e) or "") for p in patterns)]


@pytest_twisted.async_yield_fixture
async def backend():
    """A recording fake operator backend on a loopback port (C{.url})."""
    from tests.chaos.support import start_backend

    fake, url = start_backend(price_per_kwh="0.50")
    fake.url = url
    yield fake
    await fake.stop()
