"""
Every command on docs/operations.md, run.

The walkthrough ("From a fresh clone to two instances with TLS and security
profile 2") runs as written in bash, in a scratch directory that links this
checkout's C{.venv}, with three substitutions a shared test machine needs:
free ports instead of 9443/9444/9100/9101/8080, and exchange names of its own
(in the environment, which overrides C{.env.ocpp}) so that parallel runs on
the one RabbitMQ do not meet.  Its install step is the command CI runs
(C{.ci/run}).

There is no Kubernetes cluster and no Docker daemon here: C{kubectl} and
C{docker} are stand-ins on C{PATH} that do what can be done without one and
check the rest.  The C{kubectl} stand-in hands C{create} and C{kustomize} to
the real kubectl (both work offline), and for C{apply} renders and parses
what would be applied; C{docker compose up --build} checks the compose file
and the Dockerfile it builds.  A block this module does not run fails
L{test_every_command_block_is_run}.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "operations.md"
VENV_BIN = Path(sys.executable).parent
WALK = "## From a fresh clone to two instances with TLS and security profile 2"

KUBECTL_STUB = r'''#!/usr/bin/env python3
import os, subprocess, sys, yaml
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write("kubectl " + " ".join(args) + "\n")
real = os.environ.get("REAL_KUBECTL")
if args and args[0] in ("create", "kustomize"):
    if not real:
        sys.exit("no kubectl on this machine")
    sys.exit(subprocess.run([real, *args]).returncode)
def show(text):
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs, "nothing to apply"
    for d in docs:
        print(f"{d['kind'].lower()}/{d['metadata']['name']} configured (no cluster: checked only)")
        with open(os.environ["STUB_LOG"], "a") as log:
            log.write(f"applied {d['kind']} {d['metadata']['name']}\n")
if "apply" in args:
    if "-k" in args:
        out = subprocess.run([real, "kustomize", args[args.index("-k") + 1]], capture_output=True, text=True, check=True).stdout
        show(out)
    elif "-f" in args and args[args.index("-f") + 1] == "-":
        show(sys.stdin.read())
    else:
        sys.exit("unexpected apply " + " ".join(args))
    sys.exit(0)
print("(no cluster: " + " ".join(args) + ")")
'''

DOCKER_STUB = r'''#!/usr/bin/env python3
import os, sys, yaml
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write("docker " + " ".join(args) + "\n")
assert args[:2] == ["compose", "up"], args
compose = yaml.safe_load(open(os.path.join(os.environ["REPO_ROOT"], "docker-compose.yml")))
gateway = compose["services"]["gateway"]
assert os.path.exists(os.path.join(os.environ["REPO_ROOT"], gateway["build"] if isinstance(gateway["build"], str) else gateway["build"].get("context", "."), "Dockerfile"))
print("(no Docker daemon: docker-compose.yml and the Dockerfile checked)")
'''


def blocks() -> list[tuple[str, int, str]]:
    """
    Every C{```sh} block of the page: (section heading, line number, script).
    """
    out = []
    section = ""
    lines = PAGE.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line
        stripped = line.lstrip()
        if stripped == "```sh":
            indent = len(line) - len(stripped)
            start = i + 1
            body = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i][indent:] if lines[i].strip() else "")
                i += 1
            out.append((section, start, "\n".join(body) + "\n"))
        i += 1
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stubs(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    for name, text in (("kubectl", KUBECTL_STUB), ("docker", DOCKER_STUB)):
        path = bin_dir / name
        path.write_text(text.replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1))
        path.chmod(0o755)
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("OCPP_", "BACKEND_", "RABBITMQ_", "TLS_", "ADMIN_", "INSTANCE_")) or name in ("PORT", "HTTP_PORT", "DATA_DIR"):
            del env[name]
    env.update(
        PATH=f"{bin_dir}:{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        STUB_LOG=str(tmp_path / "stub.log"),
        REAL_KUBECTL=shutil.which("kubectl") or "",
        REPO_ROOT=str(ROOT),
    )
    return env


def _scratch(tmp_path: Path) -> Path:
    work = tmp_path / "clone"
    work.mkdir()
    (work / ".venv").symlink_to(VENV_BIN.parent)
    (work / "deploy").symlink_to(ROOT / "deploy")
    return work


def _bash(script: str, cwd: Path, env: dict, seconds: float, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=seconds, input=stdin
    )


def test_every_command_block_is_run():
    """Each sh block belongs to a section one of the tests below runs."""
    covered = {"## Running it", WALK, "## Security profiles (`OCPP_SECURITY_PROFILE`)", "## Kubernetes"}
    sections = {section for section, _, _ in blocks()}
    assert sections <= covered, sections - covered
    assert len([b for b in blocks() if b[0] == WALK]) == 8


def _health(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _wait(predicate, seconds: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.1)


def test_running_it(tmp_path):
    """
    The first block, line by line: the version; each twistd mode starts a
    gateway that serves /health and drains on SIGTERM with exit 0 (on a free
    port, with the pid and log files in the scratch directory instead of
    /run and /var/log); compose and the Kubernetes apply through the stand-ins.
    """
    [(_, _, script)] = [b for b in blocks() if b[0] == "## Running it"]
    env = _stubs(tmp_path)
    work = _scratch(tmp_path)
    (work / "ocpp.tac").symlink_to(ROOT / "ocpp.tac")
    commands = [line.split("  #")[0].strip() for line in script.splitlines() if line.strip()]
    assert len(commands) == 7, commands
    for command in commands:
        command = command.replace("/run/ocpptw.pid", "run-ocpptw.pid").replace("/var/log/ocpptw.log", "ocpptw.log")
        if not command.startswith("twistd") or "--version" in command:
            done = _bash(command, work, env, 120)
            assert done.returncode == 0, (command, done.stderr)
            if "--version" in command:
                assert re.match(r"ocpptw \d+\.\d+\.\d+ \(Twisted ", done.stdout), done.stdout
            continue
        port = _free_port()
        data = tmp_path / f"data-{port}"
        run_env = env | {"PORT": str(port), "DATA_DIR": str(data), "OCPP_PING_INTERVAL": "0", "DRAIN_GRACE": "1"}
        argv = command.split()
        if " -n" in command:
            process = subprocess.Popen(argv, cwd=work, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                _wait(lambda port=port: _health(port))
                process.send_signal(signal.SIGTERM)
                assert process.wait(60) == 0, command
            finally:
                if process.poll() is None:
                    process.kill()
                process.stdout.close()
            continue
        done = subprocess.run(argv, cwd=work, env=run_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        pid_file = work / re.search(r"--pidfile=(\S+)", command).group(1)
        _wait(lambda pid_file=pid_file, port=port: pid_file.exists() and _health(port))
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        _wait(lambda pid_file=pid_file, port=port: not pid_file.exists() and not _health(port))
    log = (tmp_path / "stub.log").read_text()
    assert "docker compose up --build" in log and "applied StatefulSet ocpptw" in log


def test_security_profile_keys(tmp_path):
    """ocpptw-admin charger set-key, generated and chosen."""
    [(_, _, script)] = [b for b in blocks() if b[0].startswith("## Security profiles")]
    env = _stubs(tmp_path) | {"DATA_DIR": str(tmp_path / "data")}
    # the key the operator chose, on standard input (the command's way when no terminal asks)
    done = _bash(script, _scratch(tmp_path), env, 60, stdin="the-key-you-chose-0001\n")
    assert done.returncode == 0, done.stderr
    assert "key: " in done.stdout and "authorization key set" in done.stdout


def test_kubernetes(tmp_path):
    """secrets.sh renders both Secrets, apply -k applies the manifests, the rest asks the (absent) cluster."""
    [(_, _, script)] = [b for b in blocks() if b[0] == "## Kubernetes"]
    work = _scratch(tmp_path)
    (work / "pki").mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", "/CN=ocpp.example", "-keyout", str(work / "pki" / "server.key"), "-out", str(work / "pki" / "server.pem")],
        capture_output=True, check=True, timeout=60,
    )
    env = _stubs(tmp_path)
    if not env["REAL_KUBECTL"]:
        pytest.fail("kubectl is needed to render the manifests and Secrets (CI machines have it)")
    done = _bash(script, work, env, 120)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "stub.log").read_text()
    for kind, name in (("Secret", "ocpptw"), ("Secret", "ocpptw-tls"), ("StatefulSet", "ocpptw"), ("Service", "ocpptw-chargers")):
        assert f"applied {kind} {name}" in log, log
    assert "generated ADMIN_API_TOKEN=" in done.stderr


@pytest_twisted.ensureDeferred
async def test_walkthrough_two_instances_tls_profile_2(tmp_path):
    """The walkthrough, as written: two daemonized instances on wss with Basic auth, a charger on one, a command through the other."""
    from twisted.internet.threads import deferToThread

    from tests.integration.amqp_support import Names, delete_topology, open_client
    from tests.integration.instances_support import close_client

    steps = [script for section, _, script in blocks() if section == WALK]
    install, rest = steps[0], steps[1:]
    ci = (ROOT / ".ci" / "run").read_text()
    assert install.strip() in ci  # CI runs the install step
    script = "".join(rest)
    for port in ("9443", "9444", "9100", "9101", "8080"):
        assert port in script
        script = script.replace(port, str(_free_port()))
    names = Names()
    env = _stubs(tmp_path) | {"RABBITMQ_EXCHANGE": names.events, "RABBITMQ_COMMAND_EXCHANGE": names.commands}
    work = _scratch(tmp_path)
    try:
        done = await deferToThread(_bash, script, work, env, 240)
    finally:
        for pid_file in work.glob("*.pid"):
            try:
                # a gateway the script stopped removes its pid file as it exits, maybe just now
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):  # FileNotFoundError, ProcessLookupError
                pass
        client = await open_client(__import__("twisted.internet.reactor", fromlist=["reactor"]))
        try:
            await delete_topology(client, names, ("gw-a", "gw-b"))
        finally:
            await close_client(client)
    logs = "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in work.glob("*.log"))
    assert done.returncode == 0, done.stderr + logs
    out = done.stdout
    assert out.count('{"status":"ready"}') >= 2, out + logs
    assert '"chargePointId":"CP001"' in out and '"instance":"gw-a"' in out, out
    assert '"instances":["gw-a","gw-b"]' in out, out
    assert '{"result":{"status":"Accepted"}}' in out, out
    assert "refused 401" in out, out
    assert "INCOMPLETE: 1 connections failed (1x refused 401" in out
    gw_a = (work / "gw-a.log").read_text()
    assert "CP001 connected from 127.0.0.1 speaking ocpp1.6 to instance gw-a" in gw_a
    assert "Starting factory" not in gw_a, gw_a  # not even in twistd's own --logfile


def test_the_metrics_table_lists_every_metric():
    """Every metric the gateway exports has its row on the page (ocpp_outbox_alarm and ocpp_readiness included)."""
    from ocpptw.observability.metrics import Metrics

    body = Metrics().render()[0].decode()
    exported = {name for name in re.findall(r"^# TYPE (ocpp_\S+) ", body, re.M)}
    text = PAGE.read_text()
    documented = set(re.findall(r"^\| `(ocpp_[a-z_]+)` \|", text, re.M))
    assert exported - documented == set(), exported - documented
    assert {"ocpp_outbox_alarm", "ocpp_readiness"} <= documented
