# -*- test-case-name: tests.store.test_outbox -*-
"""
Child process for the outbox's C{kill -9} test: appends entries to the
outbox in C{DATA_DIR} (argv 1), COUNT of them (argv 2) over five keys, with
a deliverer that never answers, prints C{committed} once every append has
fired, then waits to be killed.

Usage: C{python tests/store/outbox_crash_child.py DATA_DIR COUNT}
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(reactor, data_dir: Path, count: int) -> None:
    from twisted.internet.defer import Deferred, gatherResults

    from ocpptw.store.outbox import SCHEMA, Outbox
    from ocpptw.store.sqlite import Database

    db = Database(data_dir / "gateway.sqlite", reactor, SCHEMA)
    db.open()
    outbox = Outbox(db, reactor, max_age=3600.0, delivery_timeout=3600.0)
    outbox.register("op", lambda body: Deferred())  # entries are in flight when the kill comes

    def committed(ids):
        assert ids == sorted(ids), ids
        sys.stdout.write(f"committed {len(ids)}\n")
        sys.stdout.flush()

    def failed(failure):
        sys.stdout.write(f"failed {failure.getErrorMessage()}\n")
        sys.stdout.flush()
        reactor.stop()

    outbox.start()
    appends = [outbox.append(f"CP{n % 5}", "op", {"key": f"CP{n % 5}", "n": n}) for n in range(count)]
    gatherResults(appends).addCallbacks(committed, failed)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from twisted.internet import reactor

    reactor.callWhenRunning(main, reactor, Path(sys.argv[1]), int(sys.argv[2]))
    reactor.run()
