# -*- test-case-name: tests.ocpp.test_purity -*-
"""
The OCPP core stays pure: importing it pulls in no I/O library and no reactor.
"""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_core_loads_no_io_library_nor_the_reactor():
    """ocpptw.ocpp imports no autobahn, treq, pika, twisted.web, and installs no reactor."""
    code = (
        "import sys\n"
        "import ocpptw.ocpp.session, ocpptw.ocpp.validation, ocpptw.ocpp.frames, ocpptw.ocpp.actions\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('autobahn', 'treq', 'pika', 'ocpp')\n"
        "       or m.startswith('twisted.web') or m == 'twisted.internet.reactor']\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""
