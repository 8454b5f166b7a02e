"""
The rooms of C{docs/architecture.md} and who may import whom, enforced on
the source.  Every import of every module under C{ocpptw/} is checked: at
module level, inside functions and classes, under C{if TYPE_CHECKING:},
relative ones, and the dotted names handed to C{importlib.import_module} or
Twisted's C{namedAny}.  Nothing is imported to do it (the files are parsed
with L{ast}), so a module that would fail to import is still checked.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ocpptw"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: The innermost room: the package itself (its version), the clock, the
#: settings and the interfaces.  Its modules import one another only.
CORE = frozenset({"ocpptw", "clock", "config", "interfaces"})

ROOMS = CORE | {
    "ocpp", "services", "store", "adapters", "transport", "observability", "app", "tap", "admin", "sim", "testing",
}

#: Inner rooms, then the edges around them, then what assembles and starts
#: the gateway.  Every room may import itself.
_DOMAIN = CORE | {"ocpp", "services"}
MAY_IMPORT: dict[str, frozenset[str]] = {
    **{room: CORE for room in CORE},
    "ocpp": CORE | {"ocpp"},
    "services": _DOMAIN,
    "store": _DOMAIN | {"store"},
    # adapters: the one home of private names (the HTTP pool's factory) is shared with it.
    "adapters": _DOMAIN | {"adapters", "transport"},
    "transport": _DOMAIN | {"transport"},
    "observability": _DOMAIN | {"observability"},
    "app": ROOMS - {"tap", "admin", "sim", "testing"},
    "tap": ROOMS - {"admin", "sim", "testing"},
    "admin": ROOMS - {"app", "tap", "sim", "testing"},
    # sim: the Autobahn compatibility module of transport is shared with it.
    "sim": CORE | {"ocpp", "sim", "transport"},
    "testing": ROOMS - {"app", "tap", "admin", "sim"},
}

#: Where a room may use only some modules of another.
ONLY: dict[tuple[str, str], tuple[str, ...]] = {
    ("sim", "transport"): ("ocpptw.transport.compat",),
    ("adapters", "transport"): ("ocpptw.transport.compat",),
}

#: Libraries that do I/O (or install the global reactor): the protocol, the
#: services and the core never import them; they are handed what they need.
IO_LIBRARIES = (
    "autobahn", "txaio", "treq", "pika", "prometheus_client", "sqlite3", "socket", "twisted.web",
    "twisted.internet.reactor",
)
PURE_ROOMS = _DOMAIN

#: Libraries that belong to one room (or a few) and to nobody else.
OWNERS: dict[str, frozenset[str]] = {
    "prometheus_client": frozenset({"observability"}),
    "pika": frozenset({"adapters"}),
    # app: only to recognise a start that cannot open DATA_DIR (sqlite3.Error).
    "sqlite3": frozenset({"store", "admin", "app"}),
    "autobahn": frozenset({"transport", "sim"}),
    "txaio": frozenset({"transport", "sim"}),
}

_DYNAMIC = frozenset({"import_module", "__import__", "namedAny", "namedModule", "namedObject", "namedClass"})


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """
    The dotted name of the module in C{path}, a file under C{package}.
    """
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(dotted: str, package: Path = PACKAGE) -> str:
    """
    The room of module C{dotted} (C{ocpptw.services.sessions} -> C{services};
    C{ocpptw.clock} -> C{clock}); a name of the package itself, such as
    C{ocpptw.__version__}, is in the room C{ocpptw}.
    """
    parts = dotted.split(".")
    if len(parts) == 1:
        return parts[0]
    first = parts[1]
    if (package / first).is_dir() or (package / f"{first}.py").is_file():
        return first
    return parts[0]


def imported_names(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """
    C{(line, dotted name)} of everything C{source} imports, wherever the
    import is.  C{from a import b} yields both C{a} and C{a.b}, since C{b}
    may be a module.

    @param module: the dotted name of the module C{source} is.
    @param is_package: whether it is a package's C{__init__}.
    """
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            yield node.lineno, origin
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{origin}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if name in _DYNAMIC and isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value


def _is(name: str, library: str) -> bool:
    return name == library or name.startswith(library + ".")


def violations(package: Path = PACKAGE) -> list[str]:
    """
    Every import under C{package} that breaks L{MAY_IMPORT}, L{IO_LIBRARIES}
    or L{OWNERS}, as C{"path:line: module imports name (why)"}.
    """
    found = []
    for path in sorted(package.rglob("*.py")):
        module = module_name(path, package)
        room = room_of(module, package)
        where = path.relative_to(package.parent)
        if room not in MAY_IMPORT:
            found.append(f"{where}: {module} is in no room of the rules")
            continue
        seen = set()
        for line, name in imported_names(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"):
            if _is(name, package.name):
                target = room_of(name, package)
                if target not in MAY_IMPORT[room] and (line, target) not in seen:
                    seen.add((line, target))
                    found.append(f"{where}:{line}: {module} imports {name} ({room} may not import {target})")
                only = ONLY.get((room, target), ())
                # "from ocpptw.transport import compat" also names the package: its module is checked.
                if only and name != f"{package.name}.{target}" and not any(_is(name, m) for m in only):
                    found.append(f"{where}:{line}: {module} imports {name} ({room} may use only {', '.join(only)})")
                continue
            for library in IO_LIBRARIES:
                if room in PURE_ROOMS and _is(name, library):
                    found.append(f"{where}:{line}: {module} imports {name} ({room} does no I/O)")
            for library, owners in OWNERS.items():
                if _is(name, library) and room not in owners:
                    found.append(f"{where}:{line}: {module} imports {name} (only {', '.join(sorted(owners))})")
    return found


def test_every_module_is_in_a_room():
    """Each module under ocpptw/ belongs to one of the rooms (at the root: only the core, tap and admin)."""
    rooms = {room_of(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert rooms <= set(MAY_IMPORT), sorted(rooms - set(MAY_IMPORT))


def test_no_room_imports_an_outer_one():
    """No import, at any depth, goes from a room into one it may not know."""
    assert violations() == []


def documented_rules(text: str) -> dict[str, frozenset[str]]:
    """
    The table of section "Import rules" of C{docs/architecture.md}: per
    room, the rooms named in its last column (C{core} stands for the four
    rooms of L{CORE}), and the room itself.
    """
    section = text.split("\n## Import rules", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `(\w+)` \| (.*?) \| (.*) \|", line.strip())
        if match:
            named = set(re.findall(r"`(\w+)`", match.group(3)))
            if re.search(r"\bcore\b", match.group(3)):
                named |= CORE
            table[match.group(1)] = frozenset(named | {match.group(1)})
    return table


def test_the_architecture_doc_states_these_rules():
    """docs/architecture.md's table of rooms lists exactly what each room may import."""
    assert documented_rules(ARCHITECTURE.read_text(encoding="utf-8")) == MAY_IMPORT


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "ocpptw"
    for name, text in {"__init__.py": "", "interfaces.py": "", "clock.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != package and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(text)
    return package


def test_the_check_sees_imports_at_any_depth(tmp_path):
    """Imports in functions, under TYPE_CHECKING, relative and dynamic ones are all checked."""
    package = _package(
        tmp_path,
        {
            "store/sqlite.py": "",
            "app/wiring.py": "",
            "services/a.py": "def f():\n    from ocpptw.store import sqlite\n",
            "services/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..store.sqlite import x\n",
            "services/c.py": "import importlib\nimportlib.import_module('ocpptw.app.wiring')\n",
            "services/d.py": "class C:\n    import ocpptw.store.sqlite\n",
            "services/e.py": "from ocpptw import clock, __version__\nfrom . import a\nfrom ocpptw.interfaces import I\n",
            "clock.py": "from ocpptw.services import a\n",
        },
    )
    found = violations(package)
    assert [entry.split(":")[0] for entry in found] == [
        "ocpptw/clock.py", "ocpptw/services/a.py", "ocpptw/services/b.py", "ocpptw/services/c.py",
        "ocpptw/services/d.py",
    ], found
    assert "services may not import store" in found[1]
    assert "services may not import app" in found[3]


def test_the_check_sees_io_libraries_and_unknown_rooms(tmp_path):
    """The protocol and the services import no I/O library; a library has its owners; a new room is named."""
    package = _package(
        tmp_path,
        {
            "ocpp/a.py": "def f():\n    from twisted.internet import reactor\n",
            "services/b.py": "import treq\n",
            "transport/c.py": "import prometheus_client.core\n",
            "transport/d.py": "from twisted.web import server\nimport autobahn\n",
            "transport/compat.py": "",
            "transport/websocket.py": "",
            "sim/e.py": "from ocpptw.transport import compat\nfrom ocpptw.transport.compat import x\n",
            "sim/f.py": "from ocpptw.transport.websocket import y\n",
            "newroom.py": "",
        },
    )
    found = violations(package)
    assert any("ocpp/a.py:2" in entry and "does no I/O" in entry for entry in found), found
    assert any("services/b.py:1" in entry and "does no I/O" in entry for entry in found), found
    assert any("transport/c.py:1" in entry and "only observability" in entry for entry in found), found
    assert not any("transport/d.py" in entry for entry in found), found
    assert any("ocpptw.newroom is in no room" in entry for entry in found), found
    assert not any("sim/e.py" in entry for entry in found), found
    assert any("sim/f.py:1" in entry and "may use only ocpptw.transport.compat" in entry for entry in found), found
