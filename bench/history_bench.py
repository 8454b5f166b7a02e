"""
History API page time at millions of stored frames: fills an embedded store
(C{embedded_schema.CURRENT}, so with the C{messages_by_device} index) with
C{--rows} frames spread over C{--chargers} chargers, then times pages of the
message log as the history API reads them (L{read_page}): the newest page of
a charger, a page deep in its history (through a cursor), and a page of a
charger that has few frames; and, for comparison, the same query without
the index.

Usage::

    .venv/bin/python bench/history_bench.py [--rows 3000000] [--chargers 2000] [--limit 50]

Prints one line per case with the median and worst of C{--repeat} reads.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAYLOAD = ('{"connectorId":1,"transactionId":4711,"meterValue":[{"timestamp":"2026-12-04T10:00:00Z","sampledValue":'
           '[{"value":"4174817","measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}')


def fill(path: Path, rows: int, chargers: int) -> float:
    from ocpptw.store.embedded_schema import CURRENT

    conn = sqlite3.connect(path)
    conn.executescript(CURRENT)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    rng = random.Random(1)
    names = [f"CP{n:05d}" for n in range(chargers)]
    started = time.perf_counter()
    batch = []
    for i in range(rows):
        device = names[rng.randrange(chargers)] if i % 1000 else "RARE"  # RARE: one frame in a thousand
        batch.append((device, "in", "CALL", str(i), "MeterValues", PAYLOAD, None, "2026-12-04T10:00:00.000Z"))
        if len(batch) == 50_000:
            conn.executemany("INSERT INTO messages (device_id, direction, message_type, message_id, action, payload,"
                             " error_code, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
            conn.commit()
            batch.clear()
    if batch:
        conn.executemany("INSERT INTO messages (device_id, direction, message_type, message_id, action, payload,"
                         " error_code, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
    conn.execute("INSERT INTO chargers (device_id, created_at, updated_at) VALUES ('CP00007', 'x', 'x')")
    conn.commit()
    conn.close()
    return time.perf_counter() - started


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--chargers", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--dir", help="keep the store here (default: a temporary directory)")
    args = ap.parse_args()

    from ocpptw.store.message_pages import read_page

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "embedded.sqlite"
        took = fill(path, args.rows, args.chargers)
        size = path.stat().st_size / 2**20
        print(f"filled {args.rows:,} frames of {args.chargers:,} chargers in {took:.1f} s ({size:,.0f} MiB)")
        conn = sqlite3.connect(path)
        rows, _ = read_page(conn, "CP00007", None, args.limit)
        deep = rows[0][0] // 2  # a cursor half way back in that charger's history
        cases = {
            "newest page of a busy charger": lambda: read_page(conn, "CP00007", None, args.limit),
            "page deep in its history (cursor)": lambda: read_page(conn, "CP00007", deep, args.limit),
            "newest page of a rare charger": lambda: read_page(conn, "RARE", None, args.limit),
            "limit 500, busy charger": lambda: read_page(conn, "CP00007", None, 500),
            "unknown charger (404)": lambda: read_page(conn, "NOPE", None, args.limit),
        }
        for name, fn in cases.items():
            median, worst = timed(fn, args.repeat)
            print(f"{name:40s} median {median:8.3f} ms   worst {worst:8.3f} ms")
        conn.execute("DROP INDEX messages_by_device")
        median, worst = timed(lambda: read_page(conn, "CP00007", None, args.limit), 3)
        print(f"{'same newest page without the index':40s} median {median:8.3f} ms   worst {worst:8.3f} ms")
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
