"""
Tests for L{ocpptw.admin}: the C{ocpptw-admin} command line on the embedded
store.
"""

from __future__ import annotations

import pytest

from ocpptw.admin import main
from ocpptw.services.keys import verify_key
from ocpptw.store.embedded import SCHEMA, EmbeddedBackend
from ocpptw.store.sqlite import InlineDatabase
from tests.helpers import success_result_of


@pytest.fixture
def admin(tmp_path, capsys):
    """Run one admin command against a temporary DATA_DIR; return (status, stdout, stderr)."""

    def run(*argv):
        status = main(["--data-dir", str(tmp_path), *argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def backend(tmp_path, clock):
    """What the gateway sees: the embedded backend on the same DATA_DIR."""
    databases = []

    def open_backend(**kwargs):
        database = InlineDatabase(tmp_path / "embedded.sqlite", SCHEMA)
        databases.append(database)
        return EmbeddedBackend(database, clock, **kwargs)

    yield open_backend
    for database in databases:
        database.close()


def test_set_key_generates_a_key_shown_once_and_stores_its_hash(admin, backend):
    """set-key without --key prints a new 24-character key once and stores only its salted hash."""
    status, out, err = admin("charger", "set-key", "CP1")
    assert (status, err) == (0, "")
    key = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("key: "))
    assert len(key) == 24 and key.isalnum()
    record = success_result_of(backend().charger_by_device("CP1"))
    assert record["enabled"] is True
    assert record["authorizationKeyHash"].startswith("sha256:")
    assert key not in record["authorizationKeyHash"]
    assert verify_key(record["authorizationKeyHash"], key)
    status, again, _ = admin("charger", "set-key", "CP1")
    assert again.count("key: ") == 1 and key not in again


def test_set_key_with_a_given_key_does_not_echo_it(admin, backend):
    """set-key --key stores the operator's key and does not print it."""
    status, out, _ = admin("charger", "set-key", "CP1", "--key", "correct-horse-battery")
    assert status == 0 and "correct-horse-battery" not in out
    assert verify_key(success_result_of(backend().charger_by_device("CP1"))["authorizationKeyHash"], "correct-horse-battery")


@pytest.mark.parametrize("key", ["short", "x" * 41, "has a space in it ok"])
def test_a_bad_key_is_one_line_and_exit_1(admin, key):
    """A key outside 16-40 printable characters is refused with one line, status 1, no traceback."""
    status, out, err = admin("charger", "set-key", "CP1", "--key", key)
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("ocpptw-admin: error: ") and "Traceback" not in err


def test_disable_and_enable(admin, backend):
    """disable and enable set the charger record's enabled flag, registering the charger when new with --create."""
    status, out, _ = admin("charger", "disable", "CP1", "--create")
    assert status == 0 and out == "charger CP1: registered, disabled\n"
    assert success_result_of(backend().charger_by_device("CP1"))["enabled"] is False
    assert admin("charger", "enable", "CP1")[1] == "charger CP1: enabled\n"
    assert success_result_of(backend().charger_by_device("CP1"))["enabled"] is True


def test_a_bad_charger_id_is_refused(admin):
    """A charger id with a slash or over 48 characters is refused."""
    assert admin("charger", "enable", "a/b")[0] == 1
    assert admin("charger", "enable", "x" * 49)[0] == 1


def test_charger_list(admin, backend):
    """charger list shows every charger with its flags; an empty store says so."""
    admin("charger", "enable", "CP2", "--create")
    assert admin("charger", "list") == (0, "CHARGER  ENABLED  KEY  VENDOR  MODEL  LAST SEEN\nCP2      yes      -    -       -      -\n", "")
    success_result_of(backend().ensure_charger({"deviceId": "CP1", "vendor": "Acme", "model": "M"}))
    admin("charger", "set-key", "CP1")
    admin("charger", "disable", "CP1")
    lines = admin("charger", "list")[1].splitlines()
    assert lines[1].split() == ["CP1", "no", "set", "Acme", "M", "-"]
    assert lines[2].split()[0] == "CP2"


def test_list_without_a_store_is_an_error(tmp_path, capsys):
    """Listing a data dir with no store is one line and exit 1 (a mistyped --data-dir)."""
    assert main(["--data-dir", str(tmp_path / "nothing"), "tag", "list"]) == 1
    assert "no embedded store" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_tags_allow_block_list(admin, backend):
    """tag allow/block set what Authorize answers; prepaid amounts have two places."""
    assert admin("tag", "allow", "TAG1", "--user", "u1", "--prepaid", "20")[0] == 0
    assert admin("tag", "block", "TAG2")[0] == 0
    assert admin("tag", "list")[1].splitlines() == [
        "TAG   STATUS    USER  PREPAID",
        "TAG1  Accepted  u1    20.00",
        "TAG2  Blocked   -     -",
    ]
    allowlist = backend(auth_mode="allowlist")
    assert success_result_of(allowlist.authorize("CP1", "TAG1"))["idTagInfo"]["status"] == "Accepted"
    assert success_result_of(allowlist.authorize("CP1", "TAG2"))["idTagInfo"]["status"] == "Blocked"
    answer = success_result_of(allowlist.start_session(
        {"deviceId": "CP1", "connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": "2026-11-24T10:00:00Z"}
    ))
    assert (answer["userId"], answer["prepaidAmount"]) == ("u1", "20.00")
    admin("tag", "block", "TAG1")
    assert admin("tag", "list")[1].splitlines()[1].split() == ["TAG1", "Blocked", "u1", "20.00"]
    admin("tag", "allow", "TAG1")
    assert admin("tag", "list")[1].splitlines()[1].split() == ["TAG1", "Accepted", "u1", "20.00"]


@pytest.mark.parametrize("given,kept", [("0.125", "0.13"), ("2.675", "2.68"), ("7", "7.00"), ("1.004", "1.00")])
def test_prepaid_amounts_are_rounded_half_up_like_all_money(admin, given, kept):
    """A prepaid amount is kept with two places, rounded half-up as the billing rounds (not half-even)."""
    assert admin("tag", "allow", "TAG1", "--prepaid", given)[0] == 0
    assert admin("tag", "list")[1].splitlines()[1].split() == ["TAG1", "Accepted", "-", kept]


@pytest.mark.parametrize("amount", ["lots", "-1", "Infinity"])
def test_a_bad_prepaid_amount_is_refused(admin, amount):
    """A prepaid amount that is not a non-negative number is one line and exit 1."""
    status, _, err = admin("tag", "allow", "TAG1", "--prepaid", amount)
    assert status == 1 and err.count("\n") == 1


def test_data_dir_from_the_environment(tmp_path, monkeypatch, capsys):
    """Without --data-dir the store is in $DATA_DIR."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "env"))
    assert main(["tag", "block", "T"]) == 0
    assert (tmp_path / "env" / "embedded.sqlite").exists()


def test_data_dir_from_the_dotenv_file(tmp_path, monkeypatch, capsys):
    """Without --data-dir and $DATA_DIR, DATA_DIR comes from .env.ocpp in the working directory."""
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env.ocpp").write_text("DATA_DIR=from-dotenv\n")
    assert main(["tag", "block", "T"]) == 0
    assert (tmp_path / "from-dotenv" / "embedded.sqlite").exists()


def test_an_unwritable_data_dir_is_one_line(tmp_path, capsys):
    """A data dir that cannot be created is one line and exit 1."""
    (tmp_path / "file").write_text("")
    assert main(["--data-dir", str(tmp_path / "file" / "sub"), "tag", "block", "T"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open" in err


def test_outbox_status_dead_letters_and_requeue(tmp_path, admin, clock, fail_on_logged_errors):
    """Dead letters can be listed and requeued; a restarted outbox delivers them."""
    from twisted.internet.defer import fail

    from ocpptw.interfaces import BackendRejected
    from ocpptw.store import outbox as outbox_module

    path = tmp_path / "gateway.sqlite"
    database = InlineDatabase(path, outbox_module.SCHEMA)
    box = outbox_module.Outbox(database, clock, max_age=3600.0)
    box.register("stop", lambda body: fail(BackendRejected(422, "unknown session")))
    success_result_of(box.start())
    for n in range(3):
        box.append(f"CP{n}", "stop", {"n": n})
    success_result_of(box.stop())
    database.close()
    fail_on_logged_errors.clear()

    status, out, _ = admin("outbox", "status")
    assert status == 0 and out == "waiting: 0\ndead letters: 3\n  stop: 3\n"
    lines = admin("outbox", "dead-letters")[1].splitlines()
    assert lines[0].split() == ["ID", "KEY", "OPERATION", "ATTEMPTS", "PARKED", "REASON"]
    assert lines[1].split()[:4] == ["1", "CP0", "stop", "0"]
    assert "rejected: backend answered 422: unknown session" in lines[1]
    assert admin("outbox", "requeue", "2")[0] == 0
    assert admin("outbox", "requeue", "9")[0] == 1
    assert admin("outbox", "requeue")[0] == 1
    assert admin("outbox", "status")[1].startswith("waiting: 1\noldest waiting since: ")

    database = InlineDatabase(path, outbox_module.SCHEMA)
    box = outbox_module.Outbox(database, clock, max_age=3600.0)
    delivered = []
    box.register("stop", delivered.append)
    success_result_of(box.start())
    assert delivered == [{"n": 1}]
    assert box.dead_letters() == 2
    success_result_of(box.stop())
    database.close()
    assert admin("outbox", "requeue", "--all")[1] == "requeued 2 dead letters; they are delivered after the gateway's next start\n"
    assert admin("outbox", "dead-letters")[1] == "no dead letters\n"


def test_finding_9_set_key_reads_the_key_from_standard_input(admin, backend, monkeypatch):
    """--key alone reads the operator's key from stdin (never argv, which ps shows) and does not echo it."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("correct-horse-battery\n"))
    status, out, err = admin("charger", "set-key", "CP1", "--key")
    assert (status, err) == (0, "") and "correct-horse-battery" not in out
    assert verify_key(success_result_of(backend().charger_by_device("CP1"))["authorizationKeyHash"], "correct-horse-battery")


def test_finding_9_set_key_asks_twice_at_a_terminal(admin, backend, monkeypatch):
    """At a terminal the key is asked for twice without echo; two different answers change nothing."""
    import getpass
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty())
    answers = iter(["correct-horse-battery", "correct-horse-battery", "correct-horse-battery", "typo-horse-battery"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert admin("charger", "set-key", "CP1", "--key")[0] == 0
    assert verify_key(success_result_of(backend().charger_by_device("CP1"))["authorizationKeyHash"], "correct-horse-battery")
    status, _, err = admin("charger", "set-key", "CP2", "--key")
    assert status == 1 and "differ" in err


@pytest.mark.parametrize("given", ["short-key\n", "\n", "fifteen-chars-x\n"])
def test_finding_9_set_key_refuses_keys_shorter_than_16_characters(admin, monkeypatch, given):
    """A key of fewer than 16 characters from stdin is refused with one line and exit 1."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(given))
    status, out, err = admin("charger", "set-key", "CP1", "--key")
    assert status == 1 and out == "" and err.count("\n") == 1


def test_finding_9_a_key_on_the_command_line_is_warned_about(admin):
    """--key VALUE still works but says that ps shows it."""
    status, _, err = admin("charger", "set-key", "CP1", "--key", "correct-horse-battery")
    assert status == 0 and "visible" in err and "correct-horse-battery" not in err


def test_a_store_written_by_a_newer_release_is_one_line_and_left_alone(admin, tmp_path):
    """ocpptw-admin on a file whose tables are newer than it knows says so in one line, exits 1 and changes nothing."""
    import sqlite3

    conn = sqlite3.connect(tmp_path / "embedded.sqlite")
    conn.executescript("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);"
                       "INSERT INTO schema_versions VALUES ('embedded', 99);")
    conn.close()
    status, _, err = admin("tag", "list")
    assert status == 1 and err.count("\n") == 1
    assert "version 99, newer than this gateway's" in err
    conn = sqlite3.connect(tmp_path / "embedded.sqlite")
    assert [row[0] for row in conn.execute("SELECT name FROM sqlite_master")] == ["schema_versions", "sqlite_autoindex_schema_versions_1"]
    conn.close()


def test_disable_refuses_an_unknown_charger_without_create(admin):
    """A typo in the charger id is an error naming the way out, and registers nothing."""
    admin("charger", "set-key", "CP1")
    status, out, err = admin("charger", "disable", "NOPE")
    assert (status, out) == (1, "")
    assert err == "ocpptw-admin: error: no charger NOPE (a typo? 'charger list' shows them; --create registers it)\n"
    assert "NOPE" not in admin("charger", "list")[1]
    assert admin("charger", "disable", "CP1")[1] == "charger CP1: disabled\n"


def test_with_a_rest_backend_the_embedded_store_is_not_in_use(tmp_path, capsys, monkeypatch):
    """BACKEND_API_URL set (environment or .env.ocpp): the charger and tag commands say the store is not in use."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BACKEND_API_URL", "https://backend.example")
    assert main(["--data-dir", str(tmp_path / "data"), "charger", "list"]) == 1
    err = capsys.readouterr().err
    assert "BACKEND_API_URL is set (https://backend.example)" in err and "does not use the embedded store" in err
    assert "wrong --data-dir" not in err
    monkeypatch.delenv("BACKEND_API_URL")
    (tmp_path / ".env.ocpp").write_text("BACKEND_API_URL=http://b:8080\n")
    assert main(["--data-dir", str(tmp_path / "data"), "tag", "allow", "T1"]) == 1
    assert "BACKEND_API_URL is set (http://b:8080)" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
