"""
The browser tests need Debian's chromium and chromium-driver (C{.ci/run}
installs them).  Without them the tests are skipped on a developer's
machine and fail under C{CI=true}: a CI run never passes by skipping them.
"""

from __future__ import annotations

import os

import pytest

from tests.browser.support import browser_missing


def pytest_collection_modifyitems(config, items):
    missing = browser_missing()
    if missing is None:
        return
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            if os.environ.get("CI") == "true":
                item.add_marker(pytest.mark.usefixtures("_browser_required"))
            else:
                item.add_marker(pytest.mark.skip(reason=missing))


@pytest.fixture
def _browser_required():
    pytest.fail(f"the console's browser tests cannot run under CI: {browser_missing()}")
