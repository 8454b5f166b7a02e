"""
Runs a command as a child subreaper and reports how every process it left
behind ended: twistd's daemon is a grandchild that outlives its parent, and
only a subreaper can learn its exit status.

    python reaper.py REPORT COMMAND...

Writes to the file REPORT a JSON line C{{"spawned": P}} naming COMMAND's
process, then one per process that ended, C{{"pid": P, "status": S}} (S the exit code, or minus the signal), then
exits once none is left.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    report, command = argv[0], argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.stderr.write(f"prctl failed: errno {ctypes.get_errno()}\n")
        return 2
    spawned = os.spawnv(os.P_NOWAIT, command[0], command)
    with open(report, "a", encoding="utf-8") as out:
        out.write(json.dumps({"spawned": spawned}) + "\n")
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                return 0
            out.write(json.dumps({"pid": pid, "status": os.waitstatus_to_exitcode(status)}) + "\n")
            out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
