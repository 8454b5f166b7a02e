"""
Twisted's C{test-case-name} convention: the first line of a module (the
second after a C{#!} line) names the tests that exercise it, and every name
is a test module or package that exists, so C{trial} and C{pytest} can be
pointed at it from the module.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("ocpptw", "tests", "bench", "twisted")

_HEADER = re.compile(r"#\s*-\*-\s*test-case-name:\s*(.*?)\s*-\*-")


def named_tests(path: Path) -> list[str]:
    """
    The test modules named by C{path}'s header, or C{[]} when it has none.
    A header anywhere but the first line (second after C{#!}) does not
    count for Twisted, so it is reported as the name C{"<misplaced>"}.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    head = lines[:2] if lines and lines[0].startswith("#!") else lines[:1]
    for line in head:
        match = _HEADER.search(line)
        if match:
            return [name.strip() for name in match.group(1).split(",") if name.strip()]
    if any(_HEADER.search(line) for line in lines[: len(head) + 5]):
        return ["<misplaced>"]
    return []


def missing(root: Path = ROOT, sources: tuple[str, ...] = SOURCES) -> list[str]:
    """
    C{"path: name"} for every header name that is not a module or package
    under C{tests/}.
    """
    found = []
    for source in sources:
        for path in sorted((root / source).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            for name in named_tests(path):
                target = root.joinpath(*name.split("."))
                exists = target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()
                if name.split(".")[0] != "tests" or not exists:
                    found.append(f"{path.relative_to(root)}: {name}")
    return found


def test_every_header_names_an_existing_test_module():
    """Each test-case-name header names test modules that exist."""
    assert missing() == []


def test_the_check_finds_wrong_names(tmp_path):
    """A header naming a module that is not there, or not a test, or in the wrong place, is reported."""
    (tmp_path / "tests" / "pkg").mkdir(parents=True)
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "tests" / "test_here.py").write_text("")
    (tmp_path / "ocpptw").mkdir()
    files = {
        "good.py": "# -*- test-case-name: tests.test_here,tests.pkg -*-\n",
        "script.py": "#!/usr/bin/env python3\n# -*- test-case-name: tests.test_here -*-\n",
        "gone.py": "# -*- test-case-name: tests.test_here,tests.test_gone -*-\n",
        "outside.py": "# -*- test-case-name: ocpptw.good -*-\n",
        "late.py": '"""doc"""\n# -*- test-case-name: tests.test_here -*-\n',
        "none.py": '"""no header"""\n',
    }
    for name, text in files.items():
        (tmp_path / "ocpptw" / name).write_text(text)
    assert missing(tmp_path, ("ocpptw",)) == [
        "ocpptw/gone.py: tests.test_gone",
        "ocpptw/late.py: <misplaced>",
        "ocpptw/outside.py: ocpptw.good",
    ]
