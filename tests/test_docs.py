"""
The documentation points at things that exist: the contract it cites is
C{docs/contract.md} in this repository, with the sections cited, and the
modules, files and dotted names that the README and C{docs/} mention are
there (a layout change that leaves a page behind fails here).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "docs" / "contract.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs").glob("*.yaml"))]
CITING = [*PAGES, *sorted(p for d in ("ocpptw", "tests", "bench") for p in (ROOT / d).rglob("*.py"))]

SECTIONS = {
    1: "Chargers: OCPP 1.6J over WebSocket",
    2: "Configuration",
    3: "The backend's REST API (called by the gateway)",
    4: "Commands to chargers",
    5: "Events (RabbitMQ topic exchange `RABBITMQ_EXCHANGE`)",
    6: "Operations",
    7: "OCPP 2.0.1 on the same endpoint",
    8: "Operator console and message history",
}

#: A citation of the contract file that only the project's authors had.
_FOREIGN = re.compile(r"\bCONTRACT(\.md\b|\s+sections?\b)")
#: "docs/contract.md section 5", "[`contract.md`](contract.md) sections 1, 3 and 5".
_CITATION = re.compile(r"contract\.md`?\)?\s+sections?\s+(\d+(?:(?:,\s*|\s+and\s+)\d+)*)")
_PATH = re.compile(r"(?<![\w./-])((?:[\w*-]+/)*[\w*-]+\.py)\b")
_DOTTED = re.compile(r"(?<![\w./-])ocpptw(?:\.\w+)+")
_SEARCHED = ("", "ocpptw", "tests", "bench")
#: Last parts that make C{ocpptw.pid} or C{ocpptw.log} a file name, not a module.
_FILE_SUFFIXES = frozenset({"pid", "log", "sqlite", "db", "yaml", "yml", "json", "tac", "toml", "md", "txt", "service"})


def test_the_contract_has_its_eight_sections():
    """docs/contract.md has sections 1 to 8, in order, with the contract's titles."""
    headings = re.findall(r"^## (\d+)\. (.+)$", CONTRACT.read_text(encoding="utf-8"), re.MULTILINE)
    assert [(int(n), title) for n, title in headings] == list(SECTIONS.items())


def test_nothing_cites_a_contract_outside_the_repository():
    """Modules, tests and docs cite docs/contract.md, not a CONTRACT file users do not have."""
    found = []
    for path in CITING:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _FOREIGN.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []


def test_every_cited_section_exists():
    """Each "contract.md section N" names a section the contract has."""
    cited = []
    for path in CITING:
        text = " ".join(path.read_text(encoding="utf-8").split())
        for match in _CITATION.finditer(text):
            cited += [(path.relative_to(ROOT), int(n)) for n in re.findall(r"\d+", match.group(1))]
    assert cited, "no citation found: the pattern is wrong"
    assert [(path, n) for path, n in cited if n not in SECTIONS] == []


def _file_exists(reference: str) -> bool:
    if "/" not in reference:
        return any(ROOT.glob(f"**/{reference}"))
    return any(list(ROOT.glob(f"{base}/{reference}".lstrip("/"))) for base in _SEARCHED)


def _name_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            if importlib.util.find_spec(module) is None:
                continue
        except ModuleNotFoundError:  # a parent package is missing
            continue
        obj = importlib.import_module(module)
        for attribute in parts[i:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def test_pages_name_modules_and_files_that_exist():
    """Every .py path and every ocpptw.* dotted name in the README and docs/ exists."""
    found = []
    for page in PAGES:
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for match in _PATH.finditer(line):
                if not _file_exists(match.group(1)):
                    found.append(f"{page.relative_to(ROOT)}:{n}: {match.group(1)}")
            for match in _DOTTED.finditer(line):
                if match.group(0).rsplit(".", 1)[1] in _FILE_SUFFIXES:
                    continue
                if not _name_exists(match.group(0).rstrip(".")):
                    found.append(f"{page.relative_to(ROOT)}:{n}: {match.group(0)}")
    assert found == []


def test_the_checks_catch_stale_references():
    """The patterns see the references they are meant to see."""
    foreign = "CONTRACT"  # spelled apart, or this file would cite it
    assert _FOREIGN.search(f"see {foreign} section 5") and _FOREIGN.search(f"`{foreign}.md`")
    assert not _FOREIGN.search("LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT")
    assert _CITATION.search("docs/contract.md sections 1, 3 and 5").group(1) == "1, 3 and 5"
    assert _CITATION.search("[`contract.md`](contract.md) section 2").group(1) == "2"
    assert not _file_exists("ocpptw/sim.py") and not _file_exists("ocpptw/gateway.py")
    assert _file_exists("ocpptw/sim/cli.py") and _file_exists("transport/test_websocket.py")
    assert not _name_exists("ocpptw.gateway.GatewayService")
    assert _name_exists("ocpptw.app.gateway.GatewayService")
