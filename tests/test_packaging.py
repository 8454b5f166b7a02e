"""
Packaging: the twistd plugin is discoverable, and the wheel holds the
plugin and the schemas but no C{twisted/__init__.py}.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

ROOT = Path(__file__).resolve().parent.parent


def test_plugin_is_discoverable():
    """twistd finds the ocpp plugin and its options parse."""
    makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
    assert "ocpp" in makers
    options = makers["ocpp"].options()
    options.parseOptions(["--port", "0", "--data-dir", "/tmp/x"])
    assert options.config.port == 0


def test_no_init_beside_the_plugin():
    """twisted/ and twisted/plugins/ must not be packages (the plugin would vanish)."""
    assert not (ROOT / "twisted" / "__init__.py").exists()
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()


def test_wheel_contents(tmp_path):
    """The wheel has the plugin, every schema, and no twisted/__init__.py or dropin.cache."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("ocpptw-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/ocpptw_plugin.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not any(n.endswith("dropin.cache") for n in names)
    schemas = {n for n in names if n.startswith("ocpptw/ocpp/schemas/") and n.endswith(".json")}
    assert len(schemas) == 78
    assert "ocpptw/ocpp/schemas/SOURCE.md" in names
    console = {n.removeprefix("ocpptw/console/") for n in names if n.startswith("ocpptw/console/")}
    shipped = {p.name for p in (ROOT / "ocpptw" / "console").iterdir() if p.suffix in (".html", ".css", ".js")}
    assert shipped and console == shipped
    assert not any(n.startswith("tests/") for n in names)
