"""
Every way twistd runs the gateway: C{twistd -n ocpp}, C{twistd ocpp}
(daemonized, with a pidfile and a log file), C{twistd -ny ocpp.tac} and
C{twistd -y ocpp.tac}.  Each serves C{/health}, boots a real charger, and
drains on SIGTERM sent through its pidfile, exiting 0.  A daemonized start
that cannot bind its port or open C{DATA_DIR} says why in one line of its
log file and exits non-zero; started as root with C{--uid nobody}, the
daemon writes its data as that user.

The daemon is a grandchild of the test; L{reaper} (a child subreaper)
reports its exit status.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TWISTD = str(Path(sys.executable).with_name("twistd"))
BOUND = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, seconds: float = BOUND):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


def health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status
    except OSError:
        return None


FORGED = "Foo\n2026-12-04T00:00:00+0000 [ocpptw.transport.handshake.Gate#warn] FORGED"


def boot(port: int, identity: str) -> dict:
    """A real charger boots over ws and gets Accepted, then sends an action that tries to forge a log line."""
    with connect(f"ws://127.0.0.1:{port}/ocpp/{identity}", subprotocols=["ocpp1.6"], open_timeout=10) as ws:
        ws.send(json.dumps([2, "1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
        answer = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps([2, "2", FORGED, {}]))
        refused = json.loads(ws.recv(timeout=10))
    assert answer[0] == 3 and answer[1] == "1", answer
    assert refused[0] == 4 and refused[1] == "2", refused
    return answer[2]


def one_record_per_line(text: str) -> None:
    """The log is ocpptw's: the forged action is escaped inside its record, never a line of its own."""
    lines = text.splitlines()
    assert not [line for line in lines if "FORGED" in line and not line.startswith(("20", "{"))], text[-3000:]
    assert not [line for line in lines if line.startswith("2026-12-04T00:00:00")], text[-3000:]


def environment(data: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCPP_", "BACKEND_", "RABBITMQ_", "ENABLE_", "TLS_"))}
    env.update({"DATA_DIR": str(data), "PORT": str(port), "WEBSOCKET_HOST": "127.0.0.1", "DRAIN_GRACE": "2"})
    return env


class Run:
    """One twistd run under the reaper."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], pidfile: Path | None, log: Path | None):
        self.pidfile, self.log = pidfile, log
        self.report = cwd / "reaper.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "reaper.py"), str(self.report), TWISTD, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def failed_start(self, statuses: dict[int, int]) -> bool:
        """twistd and its daemon both exited non-zero (the fork between them exits 0 by design)."""
        return statuses.get(self.spawned, 0) != 0 and sum(1 for code in statuses.values() if code != 0) >= 2

    def pid(self) -> int:
        assert self.pidfile is not None
        return wait_for(lambda: self.pidfile.exists() and self.pidfile.read_text().strip(), "pidfile written") and int(
            self.pidfile.read_text()
        )

    def ended(self) -> tuple[dict[int, int], str]:
        """Every process's exit status once all have ended, and what twistd printed."""
        try:
            out, err = self.proc.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        statuses = {}
        for line in self.report.read_text().splitlines() if self.report.exists() else []:
            record = json.loads(line)
            if "spawned" in record:
                self.spawned = record["spawned"]
            else:
                statuses[record["pid"]] = record["status"]
        return statuses, out + err

    def log_text(self) -> str:
        return self.log.read_text() if self.log is not None and self.log.exists() else ""

    def kill(self):
        if self.pidfile is not None and self.pidfile.exists():
            try:
                os.kill(int(self.pidfile.read_text()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        self.proc.kill()
        self.proc.communicate()


MODES = {
    "twistd -n ocpp": (["-n", "--pidfile={pidfile}", "--logfile={log}", "ocpp"], False),
    "twistd ocpp": (["--pidfile={pidfile}", "--logfile={log}", "ocpp"], True),
    "twistd -ny ocpp.tac": (["-n", "--pidfile={pidfile}", "--logfile={log}", "-y", "{tac}"], False),
    "twistd -y ocpp.tac": (["--pidfile={pidfile}", "--logfile={log}", "-y", "{tac}"], True),
}


def start(tmp: Path, mode: str, data: Path | None = None, port: int | None = None, extra: tuple[str, ...] = ()) -> tuple[Run, int]:
    args, _ = MODES[mode]
    port = port or free_port()
    pidfile, log = tmp / "gw.pid", tmp / "gw.log"
    values = {"pidfile": pidfile, "log": log, "tac": ROOT / "ocpp.tac"}
    argv = [*extra, *(a.format(**values) for a in args)]
    return Run(argv, tmp, environment(data or tmp / "data", port), pidfile, log), port


@pytest.mark.parametrize("mode", list(MODES))
def test_every_twistd_mode_serves_chargers_and_drains(tmp_path, mode):
    """Each mode answers /health, boots a charger, and exits 0 on SIGTERM through its pidfile with the drain logged."""
    run, port = start(tmp_path, mode)
    try:
        pid = run.pid()
        wait_for(lambda: health(port) == 200, f"{mode}: /health")
        assert boot(port, "MODE-1")["status"] == "Accepted"
        os.kill(pid, signal.SIGTERM)
        statuses, err = run.ended()
    except BaseException:
        run.kill()
        raise
    text = run.log_text()
    assert statuses.get(pid) == 0, (statuses, err, text[-3000:])
    assert all(code == 0 for code in statuses.values()), (statuses, err)
    assert "drain: closed" in text and "Traceback" not in text, text[-3000:]
    assert "listening for chargers" in text
    one_record_per_line(text)
    assert not run.pidfile.exists()


def test_daemon_without_logfile_logs_to_twistd_log(tmp_path):
    """twistd ocpp with no --logfile writes twistd.log in the working directory, in ocpptw's format."""
    port = free_port()
    pidfile = tmp_path / "gw.pid"
    run = Run([f"--pidfile={pidfile}", "ocpp"], tmp_path, environment(tmp_path / "data", port), pidfile, tmp_path / "twistd.log")
    try:
        pid = run.pid()
        wait_for(lambda: health(port) == 200, "/health")
        boot(port, "NOLOGFILE")
        wait_for(lambda: "listening for chargers" in run.log_text(), "twistd.log written")
        os.kill(pid, signal.SIGTERM)
        statuses, err = run.ended()
    except BaseException:
        run.kill()
        raise
    assert statuses.get(pid) == 0, (statuses, err)
    one_record_per_line(run.log_text())


def test_daemon_that_cannot_bind_says_so_in_one_line(tmp_path):
    """A daemonized start on a port in use: one line in the log naming the port, and a non-zero exit."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run, _ = start(tmp_path, "twistd ocpp", port=port)
        statuses, err = run.ended()
    text = run.log_text()
    lines = [line for line in text.splitlines() if "could not start" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], text[-3000:]
    assert "Traceback" not in text
    assert run.failed_start(statuses), (statuses, err)


def test_daemon_that_cannot_open_data_dir_says_so_in_one_line(tmp_path):
    """A DATA_DIR that cannot be made: one line in the log naming it, and a non-zero exit."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run, _ = start(tmp_path, "twistd ocpp", data=blocker / "data")
    statuses, err = run.ended()
    text = run.log_text()
    lines = [line for line in text.splitlines() if "could not start" in line]
    assert len(lines) == 1 and str(blocker / "data") in lines[0], text[-3000:]
    assert "Traceback" not in text
    assert run.failed_start(statuses), (statuses, err)


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true", reason="starting as root needs root")
def test_daemon_started_as_root_serves_as_nobody():
    """twistd --uid nobody: the gateway binds as root, then serves chargers and writes DATA_DIR as nobody."""
    assert os.geteuid() == 0, "CI runs as root: this test must run there"
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="ocpptw-uid-"))
    try:
        base.chmod(0o777)  # nobody creates DATA_DIR inside it
        run, port = start(
            base, "twistd ocpp", data=base / "data", extra=("--uid", str(nobody.pw_uid), "--gid", str(nobody.pw_gid))
        )
        try:
            pid = run.pid()
            wait_for(lambda: health(port) == 200, "/health as nobody")
            assert boot(port, "UID-1")["status"] == "Accepted"
            assert os.stat(f"/proc/{pid}").st_uid == nobody.pw_uid
            owners = {p.name: p.stat().st_uid for p in (base / "data").iterdir()}
            assert owners and set(owners.values()) == {nobody.pw_uid}, owners
            assert (base / "data").stat().st_uid == nobody.pw_uid
            os.kill(pid, signal.SIGTERM)
            statuses, err = run.ended()
        except BaseException:
            run.kill()
            raise
        assert statuses.get(pid) == 0, (statuses, err, run.log_text()[-3000:])
    finally:
        shutil.rmtree(base, ignore_errors=True)
