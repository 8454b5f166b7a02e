# -*- test-case-name: tests.app.test_supervisor,tests.e2e.test_workers -*-
"""
C{WORKERS=N}: the parent process of one C{twistd ocpp} that runs N worker
processes and looks after them.

Each worker is C{twistd -n ocpp --worker=I} (the same options, the same
environment and C{.env.ocpp}), a gateway of its own with its own reactor:
it binds C{PORT} (and C{HTTP_PORT}, C{TLS_PORT}) with C{SO_REUSEPORT}, so
the kernel spreads new connections over the workers.  The parent holds no
socket and no database; it only spawns, restarts and stops.

  - a worker that exits while the parent runs is started again, after
    L{Backoff} (1 s, doubling to 30 s; back to 1 s once a worker ran
    L{STABLE} seconds);
  - but a worker whose first start fails (it exits with a non-zero status
    before it greeted the parent on the workers' channel, or within
    L{STARTING} seconds: its port taken by a process without
    C{SO_REUSEPORT}, C{DATA_DIR} refused, a bad certificate) will fail the
    same way again: the pool calls C{on_fatal} with one line saying so,
    and the parent stops everything and exits non-zero, as a single
    gateway that cannot start does;
  - C{stopService} (SIGTERM to the parent) sends SIGTERM to every worker,
    which drains as a single gateway does, and fires once all have exited
    (SIGKILL after the drain's own bound, when one does not).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IReadDescriptor
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

#: Seconds a worker must run before its next crash counts as the first.
STABLE = 60.0

#: A worker that exits with a non-zero status this soon after its first
#: start could not start at all.
STARTING = 20.0


class Backoff:
    """
    Delays before a worker is started again: C{initial}, doubling with
    every crash in a row, at most C{maximum}.
    """

    def __init__(self, initial: float = 1.0, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum

    def delay(self, crashes: int) -> float:
        """
        The wait after the C{crashes}-th crash in a row (from 1).
        """
        return float(min(self.maximum, self.initial * 2 ** max(0, crashes - 1)))


class WorkerProtocol(ProcessProtocol):
    """
    One worker process: relays what it writes (when its output is a pipe)
    to the parent's log, and tells the pool when it ended.
    """

    log = Logger()

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.ended: Deferred[None] = Deferred()
        self._partial = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-65536:]  # a bound on one unterminated line
        for line in lines:
            self.log.info("worker {worker}: {line}", worker=self.index, line=line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        self.pool.ended(self, code, sig)
        self.ended.callback(None)


Spawn = Callable[[WorkerProtocol, int], Any]


class WorkerPool(Service):
    """
    Runs C{count} workers, restarts a worker that exits, stops them all.

    @param spawn: C{(protocol, index) -> process transport}: starts worker
        C{index} (1-based) with C{protocol}.
    @param stop_bound: seconds a worker may take to drain after SIGTERM
        before it is killed.
    @param on_fatal: called with one line when a worker could not start
        at all (see the module's docstring); the pool then starts no
        worker again.
    @param greeted: C{index -> bool}: whether worker C{index} ever said
        hello on the workers' channel (L{ocpptw.app.hub.Hub.greeted}).
    """

    log = Logger()

    def __init__(
        self,
        count: int,
        spawn: Spawn,
        clock: IReactorTime,
        stop_bound: float,
        backoff: Backoff | None = None,
        on_fatal: Callable[[str], object] | None = None,
        greeted: Callable[[int], bool] = lambda index: True,
    ) -> None:
        self.count = count
        self._on_fatal = on_fatal
        self._greeted = greeted
        self.failed = False
        self._spawn = spawn
        self._clock = clock
        self._stop_bound = stop_bound
        self.backoff = backoff or Backoff()
        self.processes: dict[int, Any] = {}
        self.protocols: dict[int, WorkerProtocol] = {}
        self.crashes: dict[int, int] = {}
        self.restarts = 0
        self._started_at: dict[int, float] = {}
        #: workers started before (a failure of theirs is not a start's)
        self._ran: set[int] = set()
        self._pending: dict[int, IDelayedCall] = {}

    def startService(self) -> None:
        super().startService()
        for index in range(1, self.count + 1):
            self._start(index)

    def _start(self, index: int) -> None:
        self._pending.pop(index, None)
        if not self.running or self.failed:
            return
        protocol = WorkerProtocol(self, index)
        self.protocols[index] = protocol
        self._started_at[index] = self._clock.seconds()
        try:
            self.processes[index] = self._spawn(protocol, index)
        except Exception as e:  # noqa: BLE001 - retried like a crash
            self.log.warn("worker {worker} could not be started: {error}", worker=index, error=str(e))
            self.protocols.pop(index, None)
            self._again(index)
            return
        self.log.info("worker {worker} started (pid {pid})", worker=index, pid=getattr(self.processes[index], "pid", None))

    def ended(self, protocol: WorkerProtocol, code: int | None, sig: int | None) -> None:
        """
        Worker C{protocol.index} exited: start it again later, unless the
        pool is stopping.
        """
        index = protocol.index
        if self.protocols.get(index) is not protocol:
            return
        del self.protocols[index]
        self.processes.pop(index, None)
        how = f"signal {sig}" if sig is not None else f"status {code}"
        if not self.running or self.failed:
            self.log.info("worker {worker} exited ({how})", worker=index, how=how)
            return
        first = index not in self._ran
        self._ran.add(index)
        early = not self._greeted(index) or self._clock.seconds() - self._started_at.get(index, 0.0) < STARTING
        if first and sig is None and code and early:
            self.failed = True
            line = f"worker {index} could not start (it exited with status {code}; its lines above say why)"
            self.log.critical("{line}: stopping every worker", line=line)
            if self._on_fatal is not None:
                self._on_fatal(line)
            return
        if self._clock.seconds() - self._started_at.get(index, 0.0) >= STABLE:
            self.crashes[index] = 0
        self.log.warn("worker {worker} exited ({how}); starting it again", worker=index, how=how)
        self._again(index)

    def _again(self, index: int) -> None:
        self.crashes[index] = self.crashes.get(index, 0) + 1
        self.restarts += 1
        delay = self.backoff.delay(self.crashes[index])
        self._pending[index] = self._clock.callLater(delay, self._start, index)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        waits = [p.ended for p in self.protocols.values()]
        for index, process in list(self.processes.items()):
            self._signal(process, "TERM", index)
        kill = self._clock.callLater(self._stop_bound, self._kill_all)
        done = DeferredList(waits, consumeErrors=True)

        def finished(result: Any) -> Any:
            if kill.active():
                kill.cancel()
            return result

        return done.addBoth(finished)

    def _kill_all(self) -> None:
        for index, process in list(self.processes.items()):
            self.log.warn("worker {worker} did not drain in time: killing it", worker=index)
            self._signal(process, "KILL", index)

    def _signal(self, process: Any, name: str, index: int) -> None:
        try:
            process.signalProcess(name)
        except Exception:  # noqa: BLE001 - it has exited already; processEnded follows
            self.log.debug("worker {worker} is gone already", worker=index)


def worker_argv(cli: Sequence[str], index: int) -> list[str]:
    """
    The command line of worker C{index}: this Python, twistd in the
    foreground without a pidfile, C{ocpp} with the parent's own options.
    """
    run = "from twisted.scripts.twistd import run; run()"
    return [sys.executable, "-c", run, "--nodaemon", "--pidfile=", "ocpp", *cli, f"--worker={index}"]


def process_spawner(reactor: Any, cli: Sequence[str], inherit_output: bool) -> Spawn:
    """
    A L{Spawn} that runs L{worker_argv} with the parent's environment and
    working directory.  With C{inherit_output} (the parent runs in the
    foreground and logs to standard output) the workers write to the same
    standard output and error; otherwise their lines come through the
    parent's log.
    """
    fds: dict[int, Any] = {0: "w", 1: 1, 2: 2} if inherit_output else {0: "w", 1: "r", 2: "r"}

    def spawn(protocol: WorkerProtocol, index: int) -> Any:
        argv = worker_argv(cli, index)
        return reactor.spawnProcess(protocol, argv[0], argv, env=dict(os.environ), path=os.getcwd(), childFDs=fds)

    return spawn


def exit_zero_on_sigterm(reactor: Any, log: Logger) -> None:
    """
    SIGTERM stops the reactor (the service tree drains) and twistd exits
    0 rather than re-raising the signal.  Installed once the reactor runs,
    after twistd's own handler.
    """

    def install() -> None:
        def on_term(signum: int, frame: Any) -> None:
            log.info("SIGTERM: draining")
            reactor.callFromThread(reactor.stop)

        signal.signal(signal.SIGTERM, on_term)

    reactor.callWhenRunning(install)


@implementer(IReadDescriptor)
class ParentWatch(Service):
    """
    In a worker: the read end of the pipe the parent holds on this
    process's standard input.  When it closes, the parent is gone (killed,
    or crashed past its own drain), and the worker drains and stops rather
    than keep serving the port on its own.
    """

    log = Logger()

    def __init__(self, reactor: Any, on_gone: Callable[[], object], fd: int = 0) -> None:
        self._reactor = reactor
        self._on_gone = on_gone
        self._fd = fd

    def startService(self) -> None:
        super().startService()
        os.set_blocking(self._fd, False)
        self._reactor.addReader(self)

    def stopService(self) -> None:
        self._reactor.removeReader(self)
        super().stopService()

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "ParentWatch"

    def doRead(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._reactor.removeReader(self)
            self._gone()

    def connectionLost(self, reason: Failure) -> None:
        # the reactor's word for a pipe whose writer closed (a hang-up
        # without data to read)
        self._gone()

    def _gone(self) -> None:
        if self.running:
            self.log.warn("the supervising process is gone: this worker drains and stops")
            self.running = False
            self._on_gone()
