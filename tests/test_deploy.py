"""
Tests for the deployment files: the Dockerfile, docker-compose.yml, the
Kubernetes manifests and the Grafana dashboard agree with the gateway
(settings that exist, probe paths, non-root, drain time, the data volume,
metric names).  Docker and Kubernetes do not run here; the files are read.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from ocpptw.config import SETTINGS, load_config
from ocpptw.app.gateway import DRAIN_EXTRA
from ocpptw.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
SETTING_NAMES = {s.env for s in SETTINGS}
DEFAULT_DRAIN = load_config().drain_grace


def dockerfile() -> list[tuple[str, str]]:
    """
    The Dockerfile as (instruction, arguments), continuation lines joined.
    """
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, rest in dockerfile():
        if instruction == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s(kind: str) -> list[dict]:
    return [d for d in k8s_documents() if d["kind"] == kind]


def statefulset() -> dict:
    [one] = k8s("StatefulSet")
    return one


def container() -> dict:
    [one] = statefulset()["spec"]["template"]["spec"]["containers"]
    return one


def configmap() -> dict[str, str]:
    [one] = k8s("ConfigMap")
    return one["data"]


def test_dockerfile_base_install_and_plugin_cache():
    """python:3.11-slim, pip install ., and the plugin cache written at build time."""
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(rest for instruction, rest in steps if instruction == "RUN")
    assert "pip install ." in runs
    assert "getPlugins(IPlugin)" in runs


def test_dockerfile_runs_twistd_in_the_foreground_as_non_root():
    """The entrypoint is twistd -n --pidfile= ocpp, under a non-root user."""
    steps = dict((i, r) for i, r in dockerfile() if i in ("ENTRYPOINT", "USER", "STOPSIGNAL"))
    assert json.loads(steps["ENTRYPOINT"]) == ["twistd", "-n", "--pidfile=", "ocpp"]
    user = steps["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert steps.get("STOPSIGNAL", "SIGTERM") == "SIGTERM"


def test_dockerfile_healthcheck_and_data_volume():
    """HEALTHCHECK asks /health on PORT; DATA_DIR is a volume and the working directory is writable."""
    steps = dockerfile()
    env = docker_env()
    [health] = [rest for i, rest in steps if i == "HEALTHCHECK"]
    assert "/health" in health and "PORT" in health
    [volume] = [json.loads(rest) for i, rest in steps if i == "VOLUME"]
    assert env["DATA_DIR"] in volume
    assert set(env) - {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"} <= SETTING_NAMES
    load_config(environ={k: v for k, v in env.items() if k in SETTING_NAMES})


def test_dockerignore_keeps_what_the_build_copies():
    """The build context keeps the package, the plugin and the metadata, and drops local state."""
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    copied = {rest.split()[0] for i, rest in dockerfile() if i == "COPY"}
    for source in copied:
        assert source not in ignored
    assert {".venv", ".git", "data", ".env.ocpp"} <= ignored


def test_compose_gateway_settings_volume_and_grace():
    """Compose sets only known settings (valid together), mounts DATA_DIR and waits longer than the drain."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gateway = compose["services"]["gateway"]
    env = {k: str(v) for k, v in gateway["environment"].items()}
    assert set(env) <= SETTING_NAMES
    config = load_config(environ=env)
    assert config.enable_rabbitmq
    mounts = [v.split(":")[1] for v in gateway["volumes"]]
    assert config.data_dir in mounts
    grace = int(gateway["stop_grace_period"].rstrip("s"))
    assert grace > config.drain_grace + DRAIN_EXTRA
    assert "rabbitmq" in gateway["depends_on"]
    assert "rabbitmq:5672" in env["RABBITMQ_URL"] and "guest:guest" not in env["RABBITMQ_URL"]


def test_k8s_manifests_parse_and_share_labels():
    """Every manifest parses; Services, the PDB and the StatefulSet select the pods' labels."""
    kinds = {d["kind"] for d in k8s_documents()}
    assert {"StatefulSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    sts = statefulset()
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in k8s("Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        port_names = {p["name"] for p in container()["ports"]}
        assert all(p["targetPort"] in port_names for p in service["spec"]["ports"])
    assert sts["spec"]["serviceName"] in {s["metadata"]["name"] for s in k8s("Service") if s["spec"].get("clusterIP") == "None"}
    [pdb] = k8s("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [hpa] = k8s("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", sts["metadata"]["name"])
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_probes():
    """
    Liveness asks /health and readiness /ready on the gateway's HTTP_PORT,
    which no storm of chargers queues up; Prometheus scrapes it too.
    """
    c = container()
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    probe_port = int(configmap()["HTTP_PORT"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_names[c[probe]["httpGet"]["port"]] == probe_port
    assert int(configmap()["PORT"]) in port_names.values()
    assert probe_port != int(configmap()["PORT"])
    service = next(d for d in yaml.safe_load_all((K8S / "service.yaml").read_text()) if d["metadata"]["name"] == "ocpptw")
    assert int(service["metadata"]["annotations"]["prometheus.io/port"]) == probe_port


def test_k8s_runs_as_non_root():
    """The pod runs as a non-root user without privilege escalation."""
    pod = statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_k8s_grace_above_drain():
    """terminationGracePeriodSeconds exceeds DRAIN_GRACE, the drain's close and finish waits and the preStop pause."""
    pod = statefulset()["spec"]["template"]["spec"]
    drain = float(configmap().get("DRAIN_GRACE", DEFAULT_DRAIN))
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    pause = float(command[-1]) if command[0] == "sleep" else 0.0
    assert pod["terminationGracePeriodSeconds"] > drain + DRAIN_EXTRA + pause


def test_k8s_data_volume_mounted_at_data_dir():
    """The outbox volume (a claim template) is mounted at DATA_DIR."""
    sts = statefulset()
    data_dir = configmap()["DATA_DIR"]
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    assert mounts[data_dir] in claims


def test_k8s_env_names_are_settings_and_valid_together():
    """Every variable the manifests set is a gateway setting, and the ConfigMap and Secret load."""
    [secret] = k8s("Secret")
    names = set(configmap()) | set(secret["stringData"]) | {e["name"] for e in container()["env"]}
    unknown = names - SETTING_NAMES
    assert not unknown, unknown
    refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in container()["envFrom"]}
    assert refs == {k8s("ConfigMap")[0]["metadata"]["name"], secret["metadata"]["name"]}
    env = dict(configmap()) | dict(secret["stringData"]) | {"INSTANCE_ID": "ocpptw-0", "INSTANCE_SLOT": "0"}
    config = load_config(environ=env)
    assert config.drain_grace == float(configmap()["DRAIN_GRACE"])


def test_grafana_dashboard_uses_existing_metrics():
    """Every metric the dashboard queries is one the gateway exports."""
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    body = Metrics().render()[0].decode()
    exported = set(re.findall(r"^# TYPE (\S+) (\S+)", body, re.M))
    names = set()
    for name, kind in exported:
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter":
            names.add(f"{name}_total" if not name.endswith("_total") else name)
        if kind == "info":
            names.add(f"{name}_info")
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"])
    used = {m for e in exprs for m in re.findall(r"\b((?:ocpp|process)_[a-z_]+)\b", e)}
    assert used and used <= names, used - names
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def _walk(node, key=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)
    else:
        yield key, node


@pytest.mark.parametrize("path", ["docker-compose.yml", *(f"deploy/kubernetes/{p.name}" for p in sorted(K8S.glob("*.yaml")))])
def test_no_real_secrets_committed(path):
    """Example files carry placeholders, never a real-looking secret."""
    placeholders = {"change-me", "ocpp"}
    for document in yaml.safe_load_all((ROOT / path).read_text()):
        for key, value in _walk(document):
            if re.search(r"TOKEN|PASS|SECRET", key) and isinstance(value, str):
                assert value in placeholders, (key, value)
            if isinstance(value, str) and re.match(r"^[a-z]+://[^/@]*:[^/@]*@", value):
                password = value.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
                assert password in placeholders, (key, value)


def test_finding_12_k8s_broker_has_a_dedicated_vhost_and_user():
    """The broker is a trust boundary: the manifests give the gateway a vhost and a user of its own."""
    from urllib.parse import unquote, urlsplit

    [secret] = k8s("Secret")
    url = urlsplit(secret["stringData"]["RABBITMQ_URL"])
    assert url.username not in (None, "", "guest")
    vhost = unquote(url.path[1:]) if url.path.startswith("/") else ""
    assert vhost not in ("", "/"), url.path
    text = (K8S / "secret.yaml").read_text()
    assert f"add_vhost {vhost}" in text and f"set_permissions -p {vhost} {url.username}" in text
