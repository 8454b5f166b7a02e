# -*- test-case-name: tests.store.test_admin -*-
"""
C{ocpptw-admin}: manage the embedded store's chargers and id tags from the
command line.

It works on C{DATA_DIR/embedded.sqlite} directly (WAL lets it run while the
gateway runs).  The data directory is C{--data-dir}, else C{DATA_DIR} from
the environment, else from C{.env.ocpp} in the working directory, else
C{./data}.  Changes reach the gateway the next time it reads the charger or
tag (a charger's next connection, a tag's next Authorize).

    ocpptw-admin charger set-key CP_ID [--key]
    ocpptw-admin charger disable|enable CP_ID [--create]
    ocpptw-admin charger list
    ocpptw-admin tag allow TAG [--user U] [--prepaid 20.00]
    ocpptw-admin tag block TAG
    ocpptw-admin tag list
    ocpptw-admin outbox status
    ocpptw-admin outbox dead-letters
    ocpptw-admin outbox requeue (ID... | --all)

The outbox commands work on C{DATA_DIR/gateway.sqlite}.  Requeued dead
letters go behind what is waiting and are delivered after the gateway's
next start (a running gateway reads its outbox table at start only).

Errors are one line on stderr and exit status 1: also C{disable}/C{enable}
of a charger the store does not know (a typo would otherwise register it;
C{--create} registers it on purpose), and the charger and tag commands while
C{BACKEND_API_URL} is set (the embedded store is not in use then).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ocpptw.clock import iso_z
from ocpptw.config import parse_dotenv
from ocpptw.services.billing import money_str
from ocpptw.services.keys import check_key, generate_key, hash_key
from ocpptw.store import outbox
from ocpptw.store.embedded import SCHEMA
from ocpptw.store.sqlite import open_connection

#: The embedded store's file name inside the data directory.
STORE_FILE = "embedded.sqlite"

#: The gateway's own state (outbox, ledger) inside the data directory.
GATEWAY_FILE = "gateway.sqlite"


class AdminError(Exception):
    """
    A one-line error for the operator.
    """


def _data_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    if os.environ.get("DATA_DIR"):
        return Path(os.environ["DATA_DIR"])
    dotenv = Path(".env.ocpp")
    if dotenv.is_file():
        value = parse_dotenv(dotenv.read_text(encoding="utf-8")).get("DATA_DIR")
        if value:
            return Path(value)
    return Path("./data")


def _backend_url() -> str | None:
    """
    C{BACKEND_API_URL} from the environment or C{.env.ocpp}, as the gateway
    reads it.
    """
    if os.environ.get("BACKEND_API_URL", "").strip():
        return os.environ["BACKEND_API_URL"].strip()
    dotenv = Path(".env.ocpp")
    if dotenv.is_file():
        value = parse_dotenv(dotenv.read_text(encoding="utf-8")).get("BACKEND_API_URL", "").strip()
        return value or None
    return None


def _open(data_dir: Path, create: bool, file: str = STORE_FILE) -> sqlite3.Connection:
    path = data_dir / file
    if file == STORE_FILE:
        backend = _backend_url()
        if backend:
            raise AdminError(
                f"BACKEND_API_URL is set ({backend}): the gateway keeps chargers and tags in that backend and does not "
                "use the embedded store; manage them in the backend"
            )
    if not create and not path.exists():
        what = "embedded store" if file == STORE_FILE else "gateway state"
        raise AdminError(f"no {what} at {path} (wrong --data-dir?)")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        return open_connection(str(path), SCHEMA if file == STORE_FILE else outbox.SCHEMA)
    except (OSError, sqlite3.Error) as e:
        raise AdminError(f"cannot open {path}: {e}") from None


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _now() -> str:
    return iso_z(datetime.now(timezone.utc))


def _charger_id(text: str) -> str:
    if not text or len(text) > 48 or "/" in text:
        raise AdminError(f"a charger id has 1 to 48 characters and no '/': {text!r}")
    return text


def _tag_id(text: str) -> str:
    if not text or len(text) > 20:
        raise AdminError(f"an idTag has 1 to 20 characters: {text!r}")
    return text


def _upsert_charger(conn: sqlite3.Connection, device_id: str, column: str, value: object) -> bool:
    """
    Set one column of a charger, registering it first when unknown.
    Returns whether it was new.
    """
    now = _now()
    created = conn.execute(
        "INSERT INTO chargers (device_id, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT (device_id) DO NOTHING",
        (device_id, now, now),
    ).rowcount
    conn.execute(f"UPDATE chargers SET {column} = ?, updated_at = ? WHERE device_id = ?", (value, now, device_id))
    return bool(created)


#: C{--key} without a value: the key is asked for (or read from standard input).
_ASK = object()


def _read_key() -> str:
    """
    The operator's key from a prompt (asked twice) or, when standard input
    is no terminal, its first line: never from the command line, which any
    user can read in the process list.
    """
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        import getpass

        key = getpass.getpass("key: ")
        if getpass.getpass("key again: ") != key:
            raise AdminError("the two keys differ")
        return key
    line = stdin.readline() if stdin is not None else ""
    key = line.rstrip("\r\n")
    if not key:
        raise AdminError("no key on standard input")
    return key


def _charger_set_key(conn: sqlite3.Connection, args: argparse.Namespace) -> None:
    device_id = _charger_id(args.charger)
    on_command_line = args.key is not None and args.key is not _ASK
    if args.key is _ASK:
        args.key = _read_key()
    key = args.key if args.key is not None else generate_key()
    problem = check_key(key)
    if problem:
        raise AdminError(problem)
    if on_command_line:
        print("ocpptw-admin: warning: a key on the command line is visible to every user of this host"
              " (ps); give --key alone to be asked for it", file=sys.stderr)
    with _transaction(conn):
        created = _upsert_charger(conn, device_id, "authorization_key_hash", hash_key(key))
    print(f"charger {device_id}: {'registered, ' if created else ''}authorization key set")
    if args.key is None:
        print(f"key: {key}")
        print("This key is shown once: set it as the charger's AuthorizationKey now.")


def _charger_enable(conn: sqlite3.Connection, args: argparse.Namespace, enabled: bool) -> None:
    device_id = _charger_id(args.charger)
    with _transaction(conn):
        known = conn.execute("SELECT 1 FROM chargers WHERE device_id = ?", (device_id,)).fetchone()
        if known is None and not args.create_charger:
            raise AdminError(f"no charger {device_id} (a typo? 'charger list' shows them; --create registers it)")
        created = _upsert_charger(conn, device_id, "enabled", int(enabled))
    print(f"charger {device_id}: {'registered, ' if created else ''}{'enabled' if enabled else 'disabled'}")


def _charger_list(conn: sqlite3.Connection, args: argparse.Namespace) -> None:
    rows = conn.execute(
        "SELECT device_id, enabled, authorization_key_hash IS NOT NULL, vendor, model, last_seen FROM chargers"
        " ORDER BY device_id"
    ).fetchall()
    if not rows:
        print("no chargers")
        return
    _table(
        ("CHARGER", "ENABLED", "KEY", "VENDOR", "MODEL", "LAST SEEN"),
        [(r[0], "yes" if r[1] else "no", "set" if r[2] else "-", r[3] or "-", r[4] or "-", r[5] or "-") for r in rows],
    )


def _upsert_tag(conn: sqlite3.Connection, id_tag: str, status: str, **columns: object) -> None:
    now = _now()
    conn.execute(
        "INSERT INTO id_tags (id_tag, status, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
        (id_tag, status, now),
    )
    for column, value in columns.items():
        if value is not None:
            conn.execute(f"UPDATE id_tags SET {column} = ? WHERE id_tag = ?", (value, id_tag))


def _tag_allow(conn: sqlite3.Connection, args: argparse.Namespace) -> None:
    id_tag = _tag_id(args.tag)
    prepaid = None
    if args.prepaid is not None:
        try:
            amount = Decimal(args.prepaid)
        except InvalidOperation:
            raise AdminError(f"--prepaid must be an amount such as 20.00, got {args.prepaid!r}") from None
        if not amount.is_finite() or amount < 0:
            raise AdminError(f"--prepaid must be zero or more, got {args.prepaid!r}")
        prepaid = money_str(amount)
    with _transaction(conn):
        _upsert_tag(conn, id_tag, "Accepted", user_id=args.user, prepaid_amount=prepaid)
    print(f"tag {id_tag}: accepted")


def _tag_block(conn: sqlite3.Connection, args: argparse.Namespace) -> None:
    id_tag = _tag_id(args.tag)
    with _transaction(conn):
        _upsert_tag(conn, id_tag, "Blocked")
    print(f"tag {id_tag}: blocked")


def _tag_list(conn: sqlite3.Connection, args: argparse.Namespace) -> None:
    rows = conn.execute("SELECT id_tag, status, user_id, prepaid_amount FROM id_tags ORDER BY id_tag").fetchall()
    if not rows:
        print("no tags")
        return
    _table(("TAG", "STATUS", "USER", "PREPAID"), [(r[0], r[1], r[2] or "-", r[3] or "-") for r in rows])


def _outbox_status(conn: sqlite3.Connection, args: argparse.Namespace) -> None:
    waiting = conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
    print(f"waiting: {waiting[0]}")
    if waiting[1] is not None:
        print(f"oldest waiting since: {iso_z(datetime.fromtimestamp(waiting[1], timezone.utc))}")
    dead = conn.execute("SELECT operation, count(*) FROM outbox_dead GROUP BY operation ORDER BY operation").fetchall()
    print(f"dead letters: {sum(count for _, count in dead)}")
    for operation, count in dead:
        print(f"  {operation}: {count}")


def _outbox_dead_letters(conn: sqlite3.Connection, args: argparse.Namespace) -> None:
    rows = conn.execute(
        "SELECT id, key, operation, attempts, parked_at, reason FROM outbox_dead ORDER BY id"
    ).fetchall()
    if not rows:
        print("no dead letters")
        return
    _table(
        ("ID", "KEY", "OPERATION", "ATTEMPTS", "PARKED", "REASON"),
        [(r[0], r[1], r[2], r[3], iso_z(datetime.fromtimestamp(r[4], timezone.utc)), r[5]) for r in rows],
    )


def _outbox_requeue(conn: sqlite3.Connection, args: argparse.Namespace) -> None:
    if args.all == bool(args.ids):
        raise AdminError("give dead-letter ids or --all")
    with _transaction(conn):
        if args.all:
            ids = [row[0] for row in conn.execute("SELECT id FROM outbox_dead ORDER BY id")]
        else:
            ids = sorted(args.ids)
            known = {row[0] for row in conn.execute("SELECT id FROM outbox_dead")}
            missing = [i for i in ids if i not in known]
            if missing:
                raise AdminError(f"no dead letter {', '.join(map(str, missing))}")
        now = datetime.now(timezone.utc).timestamp()
        for dead_id in ids:
            conn.execute(
                "INSERT INTO outbox (key, operation, body, created_at, attempts, next_attempt_at)"
                " SELECT key, operation, body, ?, 0, 0 FROM outbox_dead WHERE id = ?",
                (now, dead_id),
            )
            conn.execute("DELETE FROM outbox_dead WHERE id = ?", (dead_id,))
    print(f"requeued {len(ids)} dead letters; they are delivered after the gateway's next start")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocpptw-admin", description="Manage the embedded store's chargers and id tags.")
    parser.add_argument("--data-dir", help="the gateway's DATA_DIR (default: $DATA_DIR, .env.ocpp, ./data)")
    rooms = parser.add_subparsers(dest="room", required=True, metavar="{charger,tag,outbox}")

    charger = rooms.add_parser("charger", help="chargers").add_subparsers(dest="command", required=True)
    set_key = charger.add_parser("set-key", help="set a charger's authorization key (security profiles 1 and 2)")
    set_key.add_argument("charger", metavar="CP_ID")
    set_key.add_argument(
        "--key",
        nargs="?",
        const=_ASK,
        help="set the key you chose (16 to 40 characters): asked for, or read from standard input's first line when"
        " it is no terminal; without --key a random one is made and shown once",
    )
    set_key.set_defaults(run=_charger_set_key, create=True)
    for name, enabled in (("enable", True), ("disable", False)):
        sub = charger.add_parser(name, help=f"{name} a charger (a disabled charger's boot is Rejected)")
        sub.add_argument("charger", metavar="CP_ID")
        sub.add_argument(
            "--create", dest="create_charger", action="store_true", help="register the charger when it is not known yet"
        )
        sub.set_defaults(run=lambda conn, args, enabled=enabled: _charger_enable(conn, args, enabled), create=True)
    charger.add_parser("list", help="list chargers").set_defaults(run=_charger_list, create=False)

    tag = rooms.add_parser("tag", help="id tags").add_subparsers(dest="command", required=True)
    allow = tag.add_parser("allow", help="accept an idTag")
    allow.add_argument("tag", metavar="TAG")
    allow.add_argument("--user", help="the user the tag belongs to")
    allow.add_argument("--prepaid", help="amount prepaid for each session, such as 20.00")
    allow.set_defaults(run=_tag_allow, create=True)
    block = tag.add_parser("block", help="block an idTag")
    block.add_argument("tag", metavar="TAG")
    block.set_defaults(run=_tag_block, create=True)
    tag.add_parser("list", help="list id tags").set_defaults(run=_tag_list, create=False)

    box_parser = rooms.add_parser("outbox", help="the gateway's outbox (DATA_DIR/gateway.sqlite)")
    box_parser.set_defaults(create=False, file=GATEWAY_FILE)
    box = box_parser.add_subparsers(dest="command", required=True)
    box.add_parser("status", help="entries waiting and dead letters").set_defaults(run=_outbox_status)
    box.add_parser("dead-letters", help="list parked entries").set_defaults(run=_outbox_dead_letters)
    requeue = box.add_parser("requeue", help="put dead letters back in the outbox")
    requeue.add_argument("ids", metavar="ID", nargs="*", type=int)
    requeue.add_argument("--all", action="store_true", help="every dead letter")
    requeue.set_defaults(run=_outbox_requeue)
    return parser


def main(argv: list[str] | None = None) -> int:
    """
    Run one admin command; returns the exit status (0, or 1 after a
    one-line error on stderr).  Usage errors exit 2 through argparse.
    """
    args = _parser().parse_args(argv)
    try:
        conn = _open(_data_dir(args.data_dir), args.create, getattr(args, "file", STORE_FILE))
        try:
            args.run(conn, args)
        finally:
            conn.close()
    except AdminError as e:
        print(f"ocpptw-admin: error: {e}", file=sys.stderr)
        return 1
    except sqlite3.Error as e:
        print(f"ocpptw-admin: error: the embedded store refused: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
