"""
The browser tests' rig: a real gateway (C{twistd -n ocpp}), real chargers
(C{ocpptw-sim}) and Debian's headless Chromium driven through selenium.

Also used by C{tests/browser/screenshots.py}, which makes the pictures in
C{docs/}.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
#: Every wait is bounded by this many seconds.
BOUND = 30.0
#: A laptop screen.
WINDOW = (1366, 860)


def browser_missing() -> str | None:
    """
    Why the browser tests cannot run here, or C{None}.
    """
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() and os.access(path, os.X_OK)):
            return f"{path} is missing: apt-get install -y chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, seconds: float = BOUND, what: str = "condition", shown: Any = None) -> Any:
    """
    Poll C{predicate} until it is true, at most C{seconds}; on failure the
    message carries C{shown()} (what the page showed instead).
    """
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s" + (f"; shown: {shown()!r}" if shown else ""))
        time.sleep(0.05)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(BOUND)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def gateway(workdir: Path, **settings: str) -> Iterator[int]:
    """
    A gateway on a free loopback port with the embedded store in
    C{workdir}; yields its port.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OCPP_", "BACKEND_", "RABBITMQ_", "ENABLE_", "ADMIN_", "MESSAGE_"))}
    env.update({"DATA_DIR": str(workdir / "data"), "PORT": str(port), "WEBSOCKET_HOST": "127.0.0.1",
                "OCPP_PING_INTERVAL": "0", "DRAIN_GRACE": "2"})
    env.update(settings)
    log = workdir / "twistd.log"
    proc = subprocess.Popen([str(BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(log), "ocpp"],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is not None or http_status(f"http://127.0.0.1:{port}/health") == 200,
                 what="gateway up")
        assert proc.poll() is None, log.read_text() if log.exists() else "twistd exited"
        yield port
    finally:
        _stop(proc)


@contextlib.contextmanager
def simulator(port: int, chargers: int = 3, duration: float = 60, prefix: str = "SIM", rate: float = 0) -> Iterator[subprocess.Popen]:
    """
    C{ocpptw-sim} against the gateway; stopped on leaving.
    """
    args = [str(BIN / "ocpptw-sim"), "--url", f"ws://127.0.0.1:{port}/ocpp/", "--chargers", str(chargers),
            "--duration", str(duration), "--prefix", prefix]
    if rate:
        args += ["--rate", str(rate)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def lib_charger(port: int, identity: str, seconds: float = 120) -> Iterator[subprocess.Popen]:
    """
    The C{ocpp} package's charger (L{tests.browser.lib_charger}); killed on
    leaving, so the gateway sees it disconnect.
    """
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "tests.browser.lib_charger", f"ws://127.0.0.1:{port}/ocpp/{identity}",
                             str(seconds)], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def browser(download_dir: Path | None = None) -> Iterator[Any]:
    """
    Headless Chromium (the system's) through chromedriver, laptop-sized.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", "--disable-background-networking",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(BOUND)
    driver.set_script_timeout(BOUND)
    try:
        yield driver
    finally:
        driver.quit()


def page_errors(driver: Any) -> list[str]:
    """
    Severe messages of the page's console (script errors).
    """
    try:
        return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    except Exception:
        return []

