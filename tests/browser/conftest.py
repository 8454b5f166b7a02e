"""
The browser tests need Debian's chromium and chromium-driver (C{.ci/run}
installs them).  Without them the tests are skipped on a developer's
machine and fail under C{CI=true}: a CI run never passes by skipping them.
"""

from __future__ import annotations

import os

import pytest

from tests.browser.support import browser_missing


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if not str(item.fspath).startswith(os.path.dirname(__file__)):
        return
    missing = browser_missing()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the console's browser tests cannot run under CI: {missing}", pytrace=False)
    pytest.skip(missing)
