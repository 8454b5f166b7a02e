"""
Tests for L{ocpptw.store.migrations}: numbered schema versions, and every
earlier layout of C{DATA_DIR}'s files upgraded to the current one with its
rows kept (L{tests.store.old_layouts}).
"""

from __future__ import annotations

import sqlite3

import pytest

from ocpptw.store import embedded, ledger, outbox
from ocpptw.store.migrations import (
    Component,
    Schema,
    SchemaTooNew,
    Upgraded,
    layout,
    statements,
    upgrade,
)
from ocpptw.store.sqlite import InlineDatabase, open_connection
from tests.store import old_layouts

GATEWAY = outbox.SCHEMA + ledger.SCHEMA

#: name -> (old layout, its rows, the schema that opens it, the versions it had)
OLD = {
    "embedded-1": (old_layouts.EMBEDDED_1, old_layouts.EMBEDDED_ROWS, embedded.SCHEMA, {"embedded": 1}),
    "embedded-2": (old_layouts.EMBEDDED_2, old_layouts.EMBEDDED_ROWS, embedded.SCHEMA, {"embedded": 2}),
    "embedded-3": (old_layouts.EMBEDDED_3, old_layouts.EMBEDDED_ROWS, embedded.SCHEMA, {"embedded": 3}),
    "gateway-1": (old_layouts.GATEWAY_1, old_layouts.GATEWAY_ROWS, GATEWAY, {"outbox": 1, "ledger": 1}),
    "gateway-2": (old_layouts.GATEWAY_2, old_layouts.GATEWAY_ROWS, GATEWAY, {"outbox": 1, "ledger": 2}),
}


def versions(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())


def newest(schema: Schema) -> dict[str, int]:
    return {component.name: component.version for component in schema.components}


def fresh_layout(tmp_path, schema: Schema) -> list:
    conn = open_connection(str(tmp_path / "fresh.sqlite"), schema)
    try:
        return layout(conn)
    finally:
        conn.close()


@pytest.fixture
def capture_logs():
    from twisted.logger import globalLogPublisher

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def column_names(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """
    Every table's columns (but the message log's C{redelivered} flag).
    """
    return {
        table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})") if row[1] != "redelivered"]
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    }


def rows(conn: sqlite3.Connection, names: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """
    Every table's rows in rowid order, by the columns the old layout had
    (C{names}, by default the file's own).
    """
    names = column_names(conn) if names is None else names
    return {
        table: conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY rowid").fetchall()
        for table, cols in names.items()
    }


@pytest.mark.parametrize("schema", [embedded.SCHEMA, GATEWAY], ids=["embedded", "gateway"])
def test_a_new_file_gets_the_newest_layout_at_once(tmp_path, schema):
    """A new file is made in the current layout and records each component's newest version."""
    conn = sqlite3.connect(tmp_path / "new.sqlite", isolation_level=None)
    done = upgrade(conn, schema, "new.sqlite")
    assert done == [Upgraded(name, 0, version) for name, version in newest(schema).items()]
    assert versions(conn) == newest(schema)
    assert upgrade(conn, schema) == []  # a second open has nothing to do
    conn.close()


@pytest.mark.parametrize("name", list(OLD))
def test_every_earlier_layout_becomes_the_current_one_with_its_rows(tmp_path, name, capture_logs):
    """A file of each earlier release, upgraded, has the current layout, every row it held, and the newest versions."""
    script, data, schema, had = OLD[name]
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(script + data)
    before, had_columns = rows(old), column_names(old)
    old.close()

    conn = open_connection(str(path), schema)
    assert layout(conn) == fresh_layout(tmp_path, schema)
    assert versions(conn) == newest(schema)
    after = rows(conn, had_columns)
    assert {table: after[table] for table in before} == before
    conn.close()
    upgraded = [e for e in capture_logs if "upgraded from version" in e.get("log_format", "")]
    expected = {(n, v) for n, v in had.items() if v != newest(schema)[n]}
    assert {(e["component"], e["before"]) for e in upgraded} == expected
    assert all(e["file"] == "old.sqlite" for e in upgraded)

    again = sqlite3.connect(path, isolation_level=None)
    assert upgrade(again, schema) == []
    again.close()


def test_upgraded_message_log_keeps_counting_ids_and_deduplicates_redeliveries(tmp_path, clock):
    """After the upgrade from layout 1, new frames follow the old ids and a redelivered body is kept once."""
    path = tmp_path / "embedded.sqlite"
    old = sqlite3.connect(path)
    old.executescript(old_layouts.EMBEDDED_1 + old_layouts.EMBEDDED_ROWS)
    old.close()
    db = InlineDatabase(path, embedded.SCHEMA)
    store = embedded.EmbeddedBackend(db, clock)
    body = {"direction": "in", "messageType": "CALL", "messageId": "m5", "action": "Heartbeat",
            "payload": {}, "timestamp": "2026-11-24T10:00:05.000Z"}
    store.store_message("CP1", body)
    store.store_message("CP1", body)
    got = db.read(lambda c: c.execute("SELECT id, message_id FROM messages ORDER BY id").fetchall())
    assert got.result == [(7, "m1"), (9, "m1"), (10, "m5")]
    db.close()


def test_each_component_of_a_file_has_its_own_version(tmp_path):
    """Opening gateway.sqlite with the outbox alone (ocpptw-admin) leaves the ledger's tables and version alone."""
    path = tmp_path / "gateway.sqlite"
    old = sqlite3.connect(path)
    old.executescript(old_layouts.GATEWAY_1)
    old.close()
    conn = open_connection(str(path), outbox.SCHEMA)
    assert versions(conn) == {"outbox": 1}
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'ledger_transactions_start'").fetchone() == (0,)
    conn.close()
    conn = open_connection(str(path), GATEWAY)
    assert versions(conn) == newest(GATEWAY)
    conn.close()


@pytest.mark.parametrize("name", ["gateway-1", "gateway-2"])
def test_upgraded_ledger_rows_know_their_ocpp_version(tmp_path, name):
    """Layout 3 records each transaction's version: an integer id was a 1.6 one, a string id a 2.0.1 one."""
    script, data, _, _ = OLD[name]
    path = tmp_path / "gateway.sqlite"
    old = sqlite3.connect(path)
    old.executescript(script + data + """
        INSERT INTO ledger_transactions (cp, transaction_id, connector_id, id_tag, meter_start, started_at, created, stopped)
            VALUES ('CS2', 's:tx-9', 1, 'TAG2', 0, '2026-11-24T10:00:00.000Z', 100.0, 0);
    """)
    old.close()
    conn = open_connection(str(path), GATEWAY)
    got = conn.execute("SELECT cp, transaction_id, ocpp_version, evse_id FROM ledger_transactions ORDER BY cp").fetchall()
    assert got == [("CP1", 1073741825, "1.6", None), ("CS2", "s:tx-9", "2.0.1", None)]
    assert conn.execute("SELECT count(*) FROM ledger_tx_progress").fetchone() == (0,)
    conn.close()


# -- the runner, on components made for the test ----------------------------------


def _toy(*upgrades, current="CREATE TABLE t (a INTEGER, b INTEGER, c INTEGER);", legacy=None):
    return Schema.of(Component("toy", current, tuple(upgrades), legacy))


def _at(conn, version, script="CREATE TABLE t (a INTEGER);"):
    conn.executescript(script)
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_versions VALUES ('toy', ?)", (version,))


def test_steps_run_in_order_from_the_recorded_version():
    """Only the steps after the recorded version run, in order, and the newest version is recorded."""
    ran = []
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _at(conn, 2, "CREATE TABLE t (a INTEGER, b INTEGER);")
    schema = _toy(
        lambda c: ran.append(2),
        lambda c: ran.append(3),
        "ALTER TABLE t ADD COLUMN c INTEGER; INSERT INTO t (a) VALUES ('x;y');",
    )
    assert upgrade(conn, schema) == [Upgraded("toy", 2, 4)]
    assert ran == [3]
    assert conn.execute("SELECT a, c FROM t").fetchall() == [("x;y", None)]
    assert versions(conn) == {"toy": 4}


def test_a_failing_step_leaves_the_file_as_it_was():
    """When a step fails, every change of the upgrade is rolled back, the version included."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _at(conn, 1)
    conn.execute("INSERT INTO t VALUES (1)")
    schema = _toy("ALTER TABLE t ADD COLUMN b INTEGER; DROP TABLE t;", "INSERT INTO nowhere VALUES (1);")
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        upgrade(conn, schema)
    assert layout(conn, skip=("sqlite_%", "schema_versions")) == [("table", "t", "CREATE TABLE t (a INTEGER)")]
    assert conn.execute("SELECT a FROM t").fetchall() == [(1,)]
    assert versions(conn) == {"toy": 1}
    assert not conn.in_transaction


def test_a_file_from_a_newer_gateway_is_refused_unchanged():
    """A version above the newest known is refused in one line, and nothing is changed."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _at(conn, 5)
    with pytest.raises(SchemaTooNew) as raised:
        upgrade(conn, _toy("ALTER TABLE t ADD COLUMN b INTEGER;"), "embedded.sqlite")
    message = str(raised.value)
    assert isinstance(raised.value, sqlite3.Error)  # reported in one line, as any file the gateway cannot use
    assert "\n" not in message
    assert message.startswith("embedded.sqlite: the toy tables are at version 5, newer than this gateway's 2")
    assert versions(conn) == {"toy": 5}
    assert [row[1] for row in conn.execute("PRAGMA table_info(t)")] == ["a"]


def test_a_file_from_before_versions_is_told_by_its_legacy_function():
    """Without a version row, the component's legacy function names the layout the steps start from."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER, b INTEGER)")
    schema = _toy("ALTER TABLE t ADD COLUMN b INTEGER;", "ALTER TABLE t ADD COLUMN c INTEGER;",
                  legacy=lambda c: 2 if "t" in {r[0] for r in c.execute("SELECT name FROM sqlite_master")} else 0)
    assert upgrade(conn, schema) == [Upgraded("toy", 2, 3)]
    assert [row[1] for row in conn.execute("PRAGMA table_info(t)")] == ["a", "b", "c"]


def test_an_up_to_date_file_from_before_versions_gets_its_version_row():
    """A legacy file already in the newest layout is only given its version row."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER, b INTEGER, c INTEGER)")
    assert upgrade(conn, _toy(legacy=lambda c: 1)) == []
    assert versions(conn) == {"toy": 1}


def test_statements_split_on_semicolons_outside_literals():
    """A script is cut into complete statements; a semicolon inside a literal does not cut it."""
    assert statements("CREATE TABLE a (x TEXT DEFAULT ';');\n\nINSERT INTO a VALUES ('1;2');  ") == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "INSERT INTO a VALUES ('1;2');",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        statements("CREATE TABLE a (x TEXT DEFAULT ';")
