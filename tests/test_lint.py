# -*- test-case-name: tests.test_lint -*-
"""
The README's test command lints and type-checks the tree: ruff (pyflakes,
pycodestyle, import order, bugbear) over every Python file of the
repository, and mypy with the zope.interface plugin over C{ocpptw/}.  Both
read their settings from C{pyproject.toml}.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: every directory of Python the repository ships or runs
LINTED = ("ocpptw", "tests", "bench", "twisted", "ocpp.tac")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    """ruff check passes on the whole repository."""
    done = _run("ruff", "check", "--no-cache", *LINTED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing():
    """mypy passes on ocpptw/ (files, plugin and strictness in pyproject.toml)."""
    done = _run("mypy", "--no-incremental", "--cache-dir", "/dev/null")
    assert done.returncode == 0, done.stdout + done.stderr
