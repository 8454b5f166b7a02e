"""
Shared fixtures.  No reactor import at module level: pytest-twisted installs
the reactor after this module is imported.
"""

from __future__ import annotations

import gc

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

_ERROR_LEVELS = (LogLevel.error, LogLevel.critical)


@pytest.fixture(autouse=True)
def fail_on_logged_errors():
    """
    Fail any test that logs an error or a failure (trial's strictness,
    restored for pytest).  A test that expects one removes it from the list
    this fixture yields.
    """
    errors: list[dict] = []

    def observer(event: dict) -> None:
        level = event.get("log_level")
        if event.get("log_failure") is not None or event.get("isError") or level in _ERROR_LEVELS:
            errors.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield errors
        gc.collect()  # "Unhandled error in Deferred" is reported at collection
    finally:
        globalLogPublisher.removeObserver(observer)
    assert not errors, [formatEvent(e) for e in errors]


@pytest.fixture
def clock():
    """
    A fresh L{Clock}; the test fails if it leaves delayed calls behind.
    """
    from twisted.internet.task import Clock

    c = Clock()
    yield c
    assert [call for call in c.getDelayedCalls() if call.active()] == [], "delayed calls left behind"
