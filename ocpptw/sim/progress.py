# -*- test-case-name: tests.test_sim_progress -*-
"""
Live progress of a simulation on a terminal: once a second, one line
rewritten in place on stderr with the chargers connected now, the calls
answered in the last second and the p99 latency so far.

Shown only when stderr is a terminal and the report is not asked for as JSON
(L{wanted}); the first line comes after the first second, so short runs stay
quiet.  The line is pure formatting of a L{Stats} (L{format_progress}); the
ticker (L{Progress}) takes its reactor, so that it runs on a test clock.
With C{--processes K} the workers send their figures to the parent every
second, which merges them and shows the same line (L{ProgressLine}).
"""

from __future__ import annotations

from typing import IO, Callable

from ocpptw.sim.stats import Stats

#: seconds between two progress lines
PROGRESS_INTERVAL = 1.0

#: ANSI "erase to the end of the line", after the carriage return
_ERASE = "\x1b[K"


def wanted(stream: IO[str], as_json: bool) -> bool:
    """
    Whether to show progress on C{stream}: a terminal, and no JSON asked for.
    """
    if as_json:
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def format_progress(stats: Stats, connected: int, elapsed: float, calls_per_second: float) -> str:
    """
    One progress line: seconds since the start, chargers connected now (of
    all of them), calls answered in the last second, answers so far, p99 so
    far, and the failures when there are any.
    """
    parts = [
        f"{elapsed:5.0f} s",
        f"connected {connected}/{stats.chargers}",
        f"{calls_per_second:,.0f} calls/s",
        f"answered {stats.answered:,}",
        f"p99 {stats.latency.percentile(0.99):.1f} ms",
    ]
    failed = stats.timeouts + stats.lost + sum(stats.errors.values()) + stats.connect_failed
    if failed:
        parts.append(f"failed {failed:,}")
    return "  ".join(parts)


class ProgressLine:
    """
    The line on C{stream}: each L{show} rewrites it with the calls/s since
    the one before; L{end} leaves it on the screen.
    """

    def __init__(self, stream: IO[str], t0: float, answered: int = 0) -> None:
        self.stream = stream
        self.t0 = self._last_t = t0
        self._last_answered = answered
        self.shown = False

    def show(self, stats: Stats, connected: int, now: float) -> None:
        rate = (stats.answered - self._last_answered) / max(now - self._last_t, 1e-9)
        self._last_t, self._last_answered = now, stats.answered
        line = format_progress(stats, connected, now - self.t0, rate)
        self.stream.write("\r" + line + _ERASE)
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


class Progress:
    """
    Rewrites the progress line on C{stream} every C{interval} seconds while
    started.  C{connected} reads the number of open connections now.
    """

    def __init__(
        self,
        reactor,
        stream: IO[str],
        stats: Stats,
        connected: Callable[[], int],
        clock: Callable[[], float],
        interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self.reactor = reactor
        self.stream = stream
        self.stats = stats
        self.connected = connected
        self.clock = clock
        self.interval = interval
        self._call = None
        self._line: ProgressLine | None = None

    def start(self) -> None:
        """
        Start ticking; the first line comes after one interval.
        """
        self._line = ProgressLine(self.stream, self.clock(), self.stats.answered)
        self._call = self.reactor.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        assert self._line is not None
        self._line.show(self.stats, self.connected(), self.clock())
        self._call = self.reactor.callLater(self.interval, self._tick)

    def stop(self) -> None:
        """
        Stop ticking and leave the last line on the screen (the report follows
        on the next line).
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._line is not None:
            self._line.end()
