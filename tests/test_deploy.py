"""
Tests for the deployment files: the Dockerfile, docker-compose.yml, the
Kubernetes manifests and the Grafana dashboard agree with the gateway
(settings that exist, probe paths, non-root, drain time, the data volume,
metric names).  Docker and Kubernetes do not run here; the files are read.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ocpptw.app.gateway import DRAIN_EXTRA
from ocpptw.config import SETTINGS, load_config
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


KUBECTL = shutil.which("kubectl")


@functools.lru_cache(maxsize=None)
def _rendered() -> str:
    """
    What C{kubectl apply -k deploy/kubernetes} would apply: C{kubectl
    kustomize} when kubectl is installed, else the files the kustomization
    lists, concatenated.
    """
    if KUBECTL:
        return subprocess.run([KUBECTL, "kustomize", str(K8S)], check=True, capture_output=True, text=True, timeout=60).stdout
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return "\n---\n".join((K8S / name).read_text() for name in kustomization["resources"])


def k8s_documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(_rendered()) if d]


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


def test_dockerfile_healthcheck_uses_the_plain_http_port():
    """HEALTHCHECK asks /health on HTTP_PORT, which stays plain HTTP when PORT serves wss."""
    [health] = [rest for i, rest in dockerfile() if i == "HEALTHCHECK"]
    env = docker_env()
    assert "os.environ['HTTP_PORT']" in health and "'PORT'" not in health
    assert env["HTTP_PORT"] != env["PORT"]
    config = load_config(environ={k: v for k, v in env.items() if k in SETTING_NAMES} | {"TLS_CERT": "c", "TLS_KEY": "k"})
    assert config.http_port == int(env["HTTP_PORT"]) and config.tls
    exposed = [rest for i, rest in dockerfile() if i == "EXPOSE"][0].split()
    assert env["HTTP_PORT"] in exposed


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
    """The kustomization renders; Services, the PDB and the StatefulSet select the pods' labels; no HPA, no Secret values."""
    kinds = {d["kind"] for d in k8s_documents()}
    assert kinds == {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"}, kinds
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
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_chargers_reach_an_l4_load_balancer_on_wss():
    """A LoadBalancer Service passes TCP to the pods' charger port, where the gateway terminates TLS."""
    [charger_facing] = [s for s in k8s("Service") if s["spec"].get("type") == "LoadBalancer"]
    [port] = charger_facing["spec"]["ports"]
    assert port["protocol"] == "TCP" and port["port"] == 443
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports[port["targetPort"]] == int(configmap()["PORT"])
    assert charger_facing["spec"]["externalTrafficPolicy"] == "Local"
    assert "Ingress" in (K8S / "service.yaml").read_text() and "Gateway API" in (K8S / "service.yaml").read_text()
    internal = [s for s in k8s("Service") if s["spec"].get("type", "ClusterIP") == "ClusterIP"]
    assert all(p["targetPort"] != port["targetPort"] for s in internal if s["spec"].get("clusterIP") != "None" for p in s["spec"]["ports"])


def test_k8s_security_profile_2_with_the_certificate_from_a_secret():
    """Profile 2; TLS_CERT and TLS_KEY are files of the mounted kubernetes.io/tls Secret; the settings load."""
    cm = configmap()
    assert cm["OCPP_SECURITY_PROFILE"] == "2"
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in statefulset()["spec"]["template"]["spec"]["volumes"]}
    [tls] = [name for name, v in volumes.items() if "secret" in v]
    assert volumes[tls]["secret"]["secretName"] == "ocpptw-tls" and mounts[tls]["readOnly"] is True
    assert cm["TLS_CERT"] == mounts[tls]["mountPath"] + "/tls.crt" and cm["TLS_KEY"] == mounts[tls]["mountPath"] + "/tls.key"
    config = load_config(environ=dict(cm) | {"INSTANCE_ID": "ocpptw-0", "INSTANCE_SLOT": "0", "ADMIN_API_TOKEN": "x" * 32})
    assert config.security_profile == 2 and config.tls and config.warnings() == []


def test_k8s_pods_spread_over_nodes_and_need_no_service_links():
    """Topology spread over hostnames (hard) and zones (soft); no injected service-link variables."""
    pod = statefulset()["spec"]["template"]["spec"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["topology.kubernetes.io/zone"]["maxSkew"] == 1
    for constraint in spread.values():
        assert constraint["labelSelector"]["matchLabels"].items() <= pod.get("labels", statefulset()["spec"]["template"]["metadata"]["labels"]).items()
    assert pod["enableServiceLinks"] is False


def test_k8s_instance_slot_from_the_pod_index_and_the_version_documented():
    """INSTANCE_SLOT comes from the pod-index label (Kubernetes 1.28+), documented where an operator looks."""
    [slot] = [e for e in container()["env"] if e["name"] == "INSTANCE_SLOT"]
    assert slot["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert "1.28" in (K8S / "kustomization.yaml").read_text()
    assert "1.28" in (ROOT / "docs" / "operations.md").read_text()


def test_k8s_secrets_are_generated_or_referenced(tmp_path):
    """secrets.sh renders both Secrets with a generated admin token and the operator's broker URL; nothing else holds values."""
    import base64

    script = K8S / "secrets.sh"
    refs = {r["secretRef"]["name"] for r in container()["envFrom"] if "secretRef" in r}
    assert refs == {"ocpptw"}
    literals = set(re.findall(r"--from-literal=([A-Z_]+)=", script.read_text()))
    assert literals == {"ADMIN_API_TOKEN", "RABBITMQ_URL", "BACKEND_API_TOKEN"} and literals <= SETTING_NAMES
    if not KUBECTL:
        return  # rendering the Secrets needs kubectl (CI installs it)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=ocpp.example", "-days", "1"],
        capture_output=True, check=True, timeout=60,
    )
    env = os.environ | {"DRY_RUN": "1", "RABBITMQ_URL": "amqps://ocpp:Vq7-real@rabbitmq:5671", "TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}
    env.pop("ADMIN_API_TOKEN", None)
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60, check=True)
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(done.stdout) if d}
    values = {k: base64.b64decode(v).decode() for k, v in secrets["ocpptw"]["data"].items()}
    assert re.fullmatch(r"[0-9a-f]{64}", values["ADMIN_API_TOKEN"]) and values["ADMIN_API_TOKEN"] in done.stderr
    assert values["RABBITMQ_URL"] == "amqps://ocpp:Vq7-real@rabbitmq:5671"
    assert secrets["ocpptw-tls"]["type"] == "kubernetes.io/tls" and set(secrets["ocpptw-tls"]["data"]) == {"tls.crt", "tls.key"}
    config = load_config(environ=configmap() | values | {"INSTANCE_ID": "ocpptw-0", "INSTANCE_SLOT": "0"})
    assert config.admin_token == values["ADMIN_API_TOKEN"]


def test_no_hpa_with_its_reason_written_down():
    """No autoscaler: the reason stands in the kustomization (long-lived sockets, outbox on the volume)."""
    assert not list(K8S.glob("hpa*.yaml"))
    text = (K8S / "kustomization.yaml").read_text()
    assert "No HorizontalPodAutoscaler" in text and "outbox" in text


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
    """Every variable the manifests and secrets.sh set is a gateway setting, and together they load."""
    secret_names = set(re.findall(r"--from-literal=([A-Z_]+)=", (K8S / "secrets.sh").read_text()))
    names = set(configmap()) | secret_names | {e["name"] for e in container()["env"]}
    unknown = names - SETTING_NAMES
    assert not unknown, unknown
    refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in container()["envFrom"]}
    assert refs == {k8s("ConfigMap")[0]["metadata"]["name"], "ocpptw"}
    env = dict(configmap()) | {"ADMIN_API_TOKEN": "a" * 64, "INSTANCE_ID": "ocpptw-0", "INSTANCE_SLOT": "0"}
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
    """The broker is a trust boundary: the documented RABBITMQ_URL for the manifests' Secret (docs/operations.md,
    "Kubernetes", run by tests/e2e/test_operations_page.py) gives the gateway a vhost and a user of its own, and
    secrets.sh says how to create them (the Secret itself is never committed)."""
    from urllib.parse import unquote, urlsplit

    page = (ROOT / "docs" / "operations.md").read_text()
    [given] = re.findall(r"RABBITMQ_URL='([^']+)' BACKEND_API_TOKEN=.*deploy/kubernetes/secrets.sh", page)
    url = urlsplit(given)
    assert url.username not in (None, "", "guest")
    vhost = unquote(url.path[1:]) if url.path.startswith("/") else ""
    assert vhost not in ("", "/"), url.path
    text = (K8S / "secrets.sh").read_text()
    assert f"add_vhost {vhost}" in text and f"set_permissions -p {vhost} {url.username}" in text
