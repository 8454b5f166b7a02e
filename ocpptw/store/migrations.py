# -*- test-case-name: tests.store.test_migrations -*-
"""
Numbered schema versions of the SQLite files in C{DATA_DIR}.

A file holds one or more I{components} (C{embedded.sqlite}: the embedded
store; C{gateway.sqlite}: the outbox and the ledger), each with its own
version in the file's C{schema_versions} table.  A L{Component} knows its
newest layout (made at once in a new file) and the numbered steps that
bring each earlier version to the next; L{upgrade} runs, in one
transaction, the steps a file needs, and records the versions reached.  A
failing step leaves the file as it was.  A file whose version is newer
than this gateway knows is refused (an older gateway started on a newer
file): nothing is changed.

Files made before versions were recorded have no C{schema_versions} row
for a component; the component's C{legacy} function tells, once, which
earlier layout such a file has (0 when it holds none of the component's
tables).  That function is frozen: a later change of layout is a new step,
never a change of C{legacy}.

Changing a layout: append a step to the component's C{upgrades} (SQL, or a
function of the connection for what SQL cannot say) and change its
C{current} to what the steps now produce.  C{tests/store/test_migrations.py}
checks that every earlier layout, upgraded, is the current one, with its
rows kept.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.logger import Logger

log = Logger()

#: A step: an SQL script, or a function that changes the connection.
Step = str | Callable[[sqlite3.Connection], None]

_VERSIONS = "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"


class SchemaTooNew(sqlite3.DatabaseError):
    """
    The file was written by a newer gateway: its version of a component is
    above the newest this one knows.  A L{sqlite3.Error}, so that a start
    or C{ocpptw-admin} reports it in one line as any file it cannot use.
    """


@dataclass(frozen=True)
class Component:
    """
    The tables of one part of the gateway, versioned on their own.

    @ivar name: the component's row in C{schema_versions}.
    @ivar current: SQL of the newest layout, run on a file that has none of
        the component's tables.
    @ivar upgrades: C{upgrades[0]} brings version 1 to 2, C{upgrades[1]}
        2 to 3, and so on: the newest version is C{len(upgrades) + 1}.
    @ivar legacy: for a file without the component's C{schema_versions} row,
        the version of its layout (0: none of its tables, a new file); it
        may complete the tables of that layout.
    """

    name: str
    current: str
    upgrades: tuple[Step, ...] = ()
    legacy: Callable[[sqlite3.Connection], int] | None = None

    @property
    def version(self) -> int:
        return len(self.upgrades) + 1


@dataclass(frozen=True)
class Schema:
    """
    The components of one file, upgraded in order; C{a + b} holds both
    (the outbox and the ledger share C{gateway.sqlite}).
    """

    components: tuple[Component, ...]

    @classmethod
    def of(cls, *components: Component) -> Schema:
        return cls(tuple(components))

    def __add__(self, other: Schema) -> Schema:
        return Schema(self.components + other.components)


@dataclass(frozen=True)
class Upgraded:
    """
    One component brought from version C{before} (0: a new file) to C{after}.
    """

    component: str
    before: int
    after: int


def upgrade(conn: sqlite3.Connection, schema: Schema, label: str = "database") -> list[Upgraded]:
    """
    Bring every component of C{schema} in the file of C{conn} (in
    autocommit mode) to its newest version, in one transaction.

    @param label: the file's name in log lines and errors.
    @return: what changed (nothing when the file was up to date).
    @raise SchemaTooNew: when a component's version is newer than known;
        nothing is changed.
    """
    done: list[Upgraded] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_VERSIONS)
        recorded = dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())
        for component in schema.components:
            before = recorded.get(component.name)
            if before is None:
                before = component.legacy(conn) if component.legacy is not None else 0
            if before > component.version:
                raise SchemaTooNew(
                    f"{label}: the {component.name} tables are at version {before}, newer than this gateway's"
                    f" {component.version}: run the gateway that wrote them, or a newer one"
                )
            if before == 0:
                run_script(conn, component.current)
            else:
                for step in component.upgrades[before - 1 :]:
                    if callable(step):
                        step(conn)
                    else:
                        run_script(conn, step)
            if before != component.version or component.name not in recorded:
                conn.execute(
                    "INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?, ?)",
                    (component.name, component.version),
                )
            if before != component.version:
                done.append(Upgraded(component.name, before, component.version))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    for change in done:
        if change.before:
            log.info(
                "{file}: {component} tables upgraded from version {before} to {after}",
                file=label,
                component=change.component,
                before=change.before,
                after=change.after,
            )
    return done


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """
    Run each statement of C{script} inside the current transaction
    (C{executescript} would commit it first).
    """
    for statement in statements(script):
        conn.execute(statement)


def statements(script: str) -> list[str]:
    """
    The complete SQL statements of C{script}, in order.
    """
    found: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                found.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:60]!r}")
    return found


def tables(conn: sqlite3.Connection) -> set[str]:
    """
    The names of the file's tables (for a component's C{legacy}).
    """
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """
    The columns of C{table} (for a component's C{legacy}); none when it
    does not exist.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ValueError(f"not a table name: {table!r}")
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def layout(conn: sqlite3.Connection, skip: Sequence[str] = ("sqlite_%",)) -> list[tuple[str, str, str]]:
    """
    C{(type, name, SQL)} of every table and index, the SQL's white space
    collapsed, sorted: two files with the same layout give the same list.
    """
    where = " AND ".join("name NOT LIKE ?" for _ in skip) or "1"
    rows = conn.execute(f"SELECT type, name, sql FROM sqlite_master WHERE {where}", tuple(skip)).fetchall()
    return sorted((kind, name, " ".join((sql or "").split())) for kind, name, sql in rows)
