"""
The simulator's live progress line: its formatting from a L{Stats}, the
ticker on a test clock, when it is shown at all, and, end to end, that
C{ocpptw-sim} on a pseudo-terminal against C{twistd -n ocpp} rewrites the
line in place, and keeps quiet with C{--json}.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from twisted.internet.task import Clock

from ocpptw.sim.progress import Progress, format_progress, wanted
from ocpptw.sim.stats import Stats
from tests.e2e.test_daemon import daemon  # noqa: F401  (the gateway fixture)

LINE = re.compile(
    r"\r(?P<line>\s*\d+ s  connected \d+/\d+  [\d,]+ calls/s  answered [\d,]+  p99 [\d.]+ ms"
    r"[^\r\n]*)\x1b\[K"
)


def _stats(latencies_ms: list[float], **counters) -> Stats:
    s = Stats()
    for name, value in counters.items():
        setattr(s, name, value)
    for ms in latencies_ms:
        s.latency.record(ms / 1000)
    return s


def test_progress_line_formats_connected_rate_answers_and_p99():
    """Connected of all, calls/s, answers so far and the p99 of what was answered."""
    stats = _stats([1.0] * 99 + [250.0], chargers=100, answered=12345)
    line = format_progress(stats, connected=97, elapsed=12.4, calls_per_second=1234.6)
    assert line == "   12 s  connected 97/100  1,235 calls/s  answered 12,345  p99 1.0 ms"
    stats = _stats([1.0] * 98 + [256.0] * 2, chargers=100, answered=100)
    assert "p99 256.0 ms" in format_progress(stats, 100, 3.0, 0.0)


def test_progress_line_names_failures_only_when_there_are_some():
    stats = _stats([], chargers=10, timeouts=2, lost=1, connect_failed=3)
    stats.errors["InternalError"] = 4
    line = format_progress(stats, 7, 5.0, 0.0)
    assert line.endswith("p99 0.0 ms  failed 10")
    assert "failed" not in format_progress(_stats([], chargers=10), 10, 5.0, 0.0)


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        if self.closed:  # as a real file does
            raise ValueError("I/O operation on closed file")
        return self.tty


def test_shown_only_on_a_terminal_without_json():
    assert wanted(_Tty(True), as_json=False)
    assert not wanted(_Tty(True), as_json=True)
    assert not wanted(_Tty(False), as_json=False)
    closed = _Tty(True)
    closed.close()
    assert not wanted(closed, as_json=False)


def test_ticker_rewrites_one_line_every_second_and_ends_it():
    """Nothing in the first second; then one line a second, in place; stop ends the line."""
    clock, out, stats = Clock(), _Tty(True), _stats([2.0], chargers=3)
    progress = Progress(clock, out, stats, lambda: 3, clock.seconds)
    progress.start()
    clock.advance(0.9)
    assert out.getvalue() == ""
    stats.answered = 500
    clock.advance(0.1)
    stats.answered = 1500
    clock.advance(1.0)
    lines = [m["line"] for m in LINE.finditer(out.getvalue())]
    assert lines == [
        "    1 s  connected 3/3  500 calls/s  answered 500  p99 2.0 ms",
        "    2 s  connected 3/3  1,000 calls/s  answered 1,500  p99 2.0 ms",
    ]
    assert "\n" not in out.getvalue()
    progress.stop()
    assert out.getvalue().endswith("\x1b[K\n")
    assert not clock.getDelayedCalls()
    clock.advance(5)
    assert out.getvalue().count("\r") == 2


def test_stop_before_the_first_line_writes_nothing():
    clock, out = Clock(), _Tty(True)
    progress = Progress(clock, out, Stats(), lambda: 0, clock.seconds)
    progress.start()
    clock.advance(0.5)
    progress.stop()
    assert out.getvalue() == "" and not clock.getDelayedCalls()


def _run_on_pty(args: list[str], bound: float = 60.0) -> tuple[int, str, str]:
    """
    Run the simulator with its stderr on a pseudo-terminal; exit code,
    stdout and what the terminal received.
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocpptw.sim.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + bound
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        os.close(master)
    return proc.returncode, out.decode(), seen.decode(errors="replace")


@pytest.mark.slow
def test_progress_on_a_terminal_and_none_with_json(daemon):  # noqa: F811
    """Against the gateway, 3-second runs on a tty show progress lines; --json none."""
    port, _proc, _log = daemon
    url = f"ws://127.0.0.1:{port}/ocpp/"
    args = ["--url", url, "-n", "5", "--prefix", "PTY", "--duration", "3", "--connect-rate", "0"]
    code, out, tty = _run_on_pty(args)
    assert code == 0, out + tty
    lines = [m["line"] for m in LINE.finditer(tty)]
    assert lines, repr(tty)
    assert all("connected 5/5" in line for line in lines[1:]), lines
    assert "calls:" in out  # the report itself still goes to stdout

    code, out, tty = _run_on_pty(args + ["--json"])
    assert code == 0, out + tty
    assert tty == "", repr(tty)
    assert json.loads(out)["ok"] is True

    # two worker processes: the parent merges their figures into the same line
    forked = ["--url", url, "-n", "4", "--prefix", "PTF", "--duration", "3", "--processes", "2"]
    code, out, tty = _run_on_pty(forked + ["--connect-rate", "0"])
    assert code == 0, out + tty
    lines = [m["line"] for m in LINE.finditer(tty)]
    assert any("connected 4/4" in line for line in lines), repr(tty)
