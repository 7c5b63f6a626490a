"""Rendering deploy/kubernetes and checking the rendered objects against the
properties that keep streams alive (tests/unit/test_kubernetes_manifests.py).

:func:`violations` takes rendered objects and returns what is wrong, one line
per broken rule, each prefixed with the rule's name (:data:`POLICIES`), so a
test can also prove that a rule fires on a broken copy. The values the
manifests are compared with are read from where the compose stack takes
them: the settings class, gunicorn.conf.py, the valkey store, compose.yaml,
nginx.conf and the API's Dockerfile; none is written twice.
"""

import os
import re
import runpy
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from inspect import signature
from pathlib import Path
from typing import Any

import yaml
from app.config import Settings
from app.valkey_store import ValkeyReplyStore

from tests.durations import seconds

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
EDGES = ("nginx", "gateway-api", "ingress-nginx")

Obj = dict[str, Any]

POLICIES = (
    "namespace",  # every object in the stack's one namespace
    "replicas",  # HPA min >= 2, Deployment replicas absent (the HPA owns them) or >= 2
    "rollout",  # rolling updates with maxUnavailable 0
    "shutdown-order",  # send + drain + flush < graceful < grace - preStop, >= compose's stop_grace_period
    "probes",  # readiness on /readyz, liveness on /healthz: generous, 30 s patient, slower than gunicorn's heartbeat
    "resources",  # CPU and memory requests, a memory limit
    "security",  # non-root uid, no escalation, read-only root, no capabilities, seccomp, no token, /tmp
    "images",  # a tag or digest, never latest
    "secrets",  # no Secret objects, secrets only through secretKeyRef
    "disruption",  # a PDB for the API, a slow HPA scale-down
    "network",  # default deny, only the edge reaches the API, only the API reaches Valkey, DNS
    "valkey",  # the store's image, password from a Secret, maxmemory; or a managed one
    "edge",  # the edge's timeouts and buffering
)


# ---- rendering ---------------------------------------------------------------


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: `kubectl kustomize` renders the manifests (.ci/run installs it)")
    return found


def render(directory: Path) -> list[Obj]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_with_component(overlay: Path, component: Path, scratch: Path) -> list[Obj]:
    """An overlay plus a component, as a user adds it (kustomize wants relative paths)."""
    (scratch / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(overlay, scratch)}\n"
        f"components:\n  - {os.path.relpath(component, scratch)}\n"
    )
    return render(scratch)


# ---- the compose stack's values ---------------------------------------------


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gunicorn_settings(env: dict[str, str]) -> dict[str, Any]:
    """gunicorn.conf.py evaluated in the pod's environment: its effective values."""
    with _environment(env):
        return runpy.run_path(str(ROOT / "services" / "api" / "gunicorn.conf.py"))


def app_setting(name: str, env: dict[str, str]) -> float:
    """A CHAT_ setting as the pod gets it: its environment, else the settings' default."""
    value = env.get(f"CHAT_{name.upper()}")
    return float(value) if value else float(Settings.model_fields[name].default)


def flush_seconds() -> float:
    """The valkey store's last flush at shutdown (ValkeyReplyStore._flush)."""
    return float(signature(ValkeyReplyStore._flush).parameters["timeout"].default)


def compose_stop_grace_period(service: str) -> float:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return seconds(compose["services"][service]["stop_grace_period"])


def nginx_directive(name: str, file: str = "nginx.conf") -> str:
    text = (ROOT / "services" / "nginx" / file).read_text()
    found = re.search(rf"^\s*{name}\s+([^;]+);", text, re.MULTILINE)
    assert found, f"{name} not in services/nginx/{file}"
    return found.group(1).strip()


def dockerfile_env(name: str) -> str:
    text = (ROOT / "services" / "api" / "Dockerfile").read_text()
    found = re.search(rf"\b{name}=(\S+)", text)
    assert found, f"{name} not set in services/api/Dockerfile"
    return found.group(1)


# ---- looking things up in rendered objects ----------------------------------


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def pod_env(objects: list[Obj], workload: Obj) -> dict[str, str]:
    """The literal environment of a workload's first container: its ConfigMaps, then its env values."""
    container = workload["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def prestop_seconds(container: Obj) -> float:
    """How long a container's preStop hook waits before it stops the process."""
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = " ".join(hook["exec"]["command"])
    found = re.search(r"\bsleep\W+(\d+)", command)
    return float(found.group(1)) if found else 0.0


# ---- the policies -------------------------------------------------------------

API = "chat-api"
VALKEY = "chat-valkey"
NGINX = "chat-nginx"
SECRET_WORDS = {"SECRET", "PASSWORD", "TOKEN", "KEY"}


def _secret_name(name: str) -> bool:
    """CHAT_AUTH_SECRET, VALKEY_PASSWORD, api-key... (not VALKEY_MAXMEMORY)."""
    return bool(SECRET_WORDS & set(re.split(r"[_.-]", name.upper())))


def violations(objects: list[Obj]) -> list[str]:
    """Every broken rule in a rendered overlay, as "<policy>: <what>"; empty when all hold."""
    found: list[str] = []
    for check in (
        _namespace,
        _replicas,
        _rollout,
        _shutdown_order,
        _probes,
        _resources,
        _security,
        _images,
        _secrets,
        _disruption,
        _network,
        _valkey,
        _edge,
    ):
        found.extend(f"{check.__name__.lstrip('_').replace('_', '-')}: {problem}" for problem in check(objects))
    return found


def _namespace(objects: list[Obj]) -> Iterator[str]:
    namespaces = [o["metadata"]["name"] for o in find(objects, "Namespace")]
    if len(namespaces) != 1:
        yield f"expected one Namespace, found {namespaces}"
        return
    for obj in objects:
        if obj["kind"] != "Namespace" and obj["metadata"].get("namespace") != namespaces[0]:
            yield f"{obj['kind']}/{obj['metadata']['name']} is not in {namespaces[0]}"


def _replicas(objects: list[Obj]) -> Iterator[str]:
    api = one(objects, "Deployment", API)
    if api["spec"].get("replicas", 2) < 2:
        yield "the API Deployment states fewer than 2 replicas"
    hpas = [h for h in find(objects, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == API]
    if len(hpas) != 1:
        yield "no HorizontalPodAutoscaler for the API"
    elif hpas[0]["spec"].get("minReplicas", 1) < 2:
        yield "the API's HPA allows fewer than 2 replicas"
    if (nginx := find(objects, "Deployment", NGINX)) and nginx[0]["spec"].get("replicas", 1) < 2:
        yield "fewer than 2 nginx replicas"


def _rollout(objects: list[Obj]) -> Iterator[str]:
    for deployment in find(objects, "Deployment"):
        strategy = deployment["spec"].get("strategy", {})
        if strategy.get("type") != "RollingUpdate" or strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            yield f"{deployment['metadata']['name']}: not a rolling update with maxUnavailable 0"


def _shutdown_order(objects: list[Obj]) -> Iterator[str]:
    api = one(objects, "Deployment", API)
    pod = api["spec"]["template"]["spec"]
    env = pod_env(objects, api)
    graceful = float(gunicorn_settings(env)["graceful_timeout"])
    send, drain = app_setting("shutdown_send_seconds", env), app_setting("drain_seconds", env)
    if not send + drain + flush_seconds() < graceful:
        yield f"stream close {send} + drain {drain} + flush {flush_seconds()} s >= gunicorn graceful {graceful} s"
    grace = float(pod.get("terminationGracePeriodSeconds", 30))
    prestop = prestop_seconds(pod["containers"][0])
    if not prestop + graceful < grace:
        yield f"API: preStop {prestop} + gunicorn graceful {graceful} s >= terminationGracePeriodSeconds {grace}"
    if grace - prestop < compose_stop_grace_period("api"):
        yield f"API: {grace - prestop} s after SIGTERM, less than compose's stop_grace_period"
    if prestop <= 0:
        yield "API: no preStop delay before SIGTERM"
    for nginx in find(objects, "Deployment", NGINX):
        spec = nginx["spec"]["template"]["spec"]
        wait, quit_wait = prestop_seconds(spec["containers"][0]), seconds(nginx_directive("worker_shutdown_timeout"))
        if not wait + quit_wait < float(spec.get("terminationGracePeriodSeconds", 30)):
            yield f"nginx: preStop {wait} + worker_shutdown_timeout {quit_wait} s >= its grace period"
        if "-s quit" not in " ".join(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]):
            yield "nginx: preStop does not ask for the graceful stop (nginx -s quit)"


# Unanswered liveness probes (timeoutSeconds x failureThreshold) a pod
# survives at the least: a loop busy with thousands of streams may answer
# late, and a restart would end all of them. The image's HEALTHCHECK, which
# compose and Swarm use, is as patient (services/api/Dockerfile).
LIVENESS_PATIENCE_SECONDS = 30


def _probes(objects: list[Obj]) -> Iterator[str]:
    api = one(objects, "Deployment", API)
    container = api["spec"]["template"]["spec"]["containers"][0]
    readiness, liveness = container.get("readinessProbe", {}), container.get("livenessProbe", {})
    if readiness.get("httpGet", {}).get("path") != "/readyz":
        yield "the API's readiness probe is not GET /readyz (fails from SIGTERM on and at capacity)"
    if liveness.get("httpGet", {}).get("path") != "/healthz":
        yield "the API's liveness probe is not GET /healthz (answered first, no dependencies)"
    window = liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3)
    heartbeat = float(gunicorn_settings(pod_env(objects, api))["timeout"])
    if not window > heartbeat:
        yield f"liveness gives up after {window} s, before gunicorn's own heartbeat ({heartbeat} s)"
    if liveness.get("timeoutSeconds", 1) < 5 or liveness.get("failureThreshold", 3) < 3:
        yield "liveness is not generous (timeoutSeconds >= 5, failureThreshold >= 3)"
    patience = liveness.get("timeoutSeconds", 1) * liveness.get("failureThreshold", 3)
    if patience < LIVENESS_PATIENCE_SECONDS:
        yield f"liveness restarts after {patience} s of unanswered probes, less than {LIVENESS_PATIENCE_SECONDS} s"
    for workload in workloads(objects):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            if "readinessProbe" not in c or "livenessProbe" not in c:
                yield f"{workload['metadata']['name']}/{c['name']}: no readiness or liveness probe"


def _resources(objects: list[Obj]) -> Iterator[str]:
    for workload in workloads(objects):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            res = c.get("resources", {})
            if {"cpu", "memory"} - set(res.get("requests", {})) or "memory" not in res.get("limits", {}):
                yield f"{workload['metadata']['name']}/{c['name']}: no CPU and memory requests or memory limit"


def _security(objects: list[Obj]) -> Iterator[str]:
    metrics_dir = dockerfile_env("PROMETHEUS_MULTIPROC_DIR")
    for workload in workloads(objects):
        name, pod = workload["metadata"]["name"], workload["spec"]["template"]["spec"]
        context = pod.get("securityContext", {})
        if context.get("runAsNonRoot") is not True or not isinstance(context.get("runAsUser"), int):
            yield f"{name}: not runAsNonRoot with a numeric runAsUser"
        elif context["runAsUser"] == 0:
            yield f"{name}: runs as uid 0"
        if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            yield f"{name}: no RuntimeDefault seccomp profile"
        if pod.get("automountServiceAccountToken") is not False:
            yield f"{name}: mounts a service account token"
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
                yield f"{name}/{c['name']}: privilege escalation allowed or root filesystem writable"
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                yield f"{name}/{c['name']}: capabilities not all dropped"
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                yield f"{name}/{c['name']}: no writable /tmp"
            if name == API and metrics_dir not in mounts:
                yield f"{name}: PROMETHEUS_MULTIPROC_DIR ({metrics_dir}) is not a volume"


def _images(objects: list[Obj]) -> Iterator[str]:
    for workload in workloads(objects):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            image = c["image"]
            if "@sha256:" in image:
                continue
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                yield f"{workload['metadata']['name']}/{c['name']}: image {image} has no fixed tag"


def _secrets(objects: list[Obj]) -> Iterator[str]:
    for secret in find(objects, "Secret"):
        yield f"Secret {secret['metadata']['name']} rendered with the manifests (create it apart)"
    for config in find(objects, "ConfigMap"):
        for key in config.get("data", {}):
            if _secret_name(key):
                yield f"ConfigMap {config['metadata']['name']} holds {key}"
    for workload in workloads(objects):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            for item in c.get("env", []):
                if _secret_name(item["name"]) and "secretKeyRef" not in item.get("valueFrom", {}):
                    yield f"{workload['metadata']['name']}: {item['name']} not from a Secret"


def _disruption(objects: list[Obj]) -> Iterator[str]:
    pdbs = [p for p in find(objects, "PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"].get(
        "app.kubernetes.io/name") == API]
    if len(pdbs) != 1:
        yield "no PodDisruptionBudget for the API"
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        down = hpa["spec"].get("behavior", {}).get("scaleDown", {})
        if down.get("stabilizationWindowSeconds", 300) < 300 or not any(
            p["type"] == "Pods" and p["value"] == 1 for p in down.get("policies", [])
        ):
            yield f"{hpa['metadata']['name']}: scale-down not slow (>= 300 s window, one pod at a time)"


def _peers(policy: Obj, direction: str) -> list[Obj]:
    key = "from" if direction == "ingress" else "to"
    return [peer for rule in policy["spec"].get(direction, []) for peer in rule.get(key, [{}])]


def _selects(policy: Obj, name: str) -> bool:
    return bool(policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == name)


def _network(objects: list[Obj]) -> Iterator[str]:
    policies = find(objects, "NetworkPolicy")
    if not any(
        p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
        for p in policies
    ):
        yield "no default-deny policy for the namespace"
    api_peers = [peer for p in policies if _selects(p, API) for peer in _peers(p, "ingress")]
    if not api_peers:
        yield "nothing may reach the API: no edge allowed"
    for peer in api_peers:
        if "ipBlock" in peer or not peer.get("podSelector", {}).get("matchLabels"):
            yield f"the API is reachable from more than the edge's pods: {peer}"
    edge_names = {"chat-nginx", "ingress-nginx", "envoy"}
    for peer in api_peers:
        if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") not in edge_names:
            yield f"a peer other than the edge reaches the API: {peer}"
    for p in policies:
        if _selects(p, VALKEY):
            for peer in _peers(p, "ingress"):
                if peer != {"podSelector": {"matchLabels": {"app.kubernetes.io/name": API}}}:
                    yield f"Valkey is reachable from {peer}"
    dns = [rule for p in policies if _selects(p, API) for rule in p["spec"].get("egress", [])
           if {"protocol": "UDP", "port": 53} in rule.get("ports", [])]
    if not dns:
        yield "the API may not reach DNS"


def _valkey(objects: list[Obj]) -> Iterator[str]:
    env = pod_env(objects, one(objects, "Deployment", API))
    stores = find(objects, "StatefulSet", VALKEY)
    if not stores:
        if VALKEY in env.get("CHAT_VALKEY_URL", ""):
            yield "CHAT_VALKEY_URL names the in-cluster Valkey, which is not deployed"
        return
    pod = stores[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    if not container["image"].startswith("chat-stream/valkey") and "/chat-stream/valkey" not in container["image"]:
        yield "Valkey is not the project's image (services/valkey: noeviction, no persistence)"
    store_env = {item["name"]: item for item in container.get("env", [])}
    if "secretKeyRef" not in store_env.get("VALKEY_PASSWORD", {}).get("valueFrom", {}):
        yield "Valkey's password is not from a Secret"
    if not store_env.get("VALKEY_MAXMEMORY", {}).get("value"):
        yield "Valkey has no maxmemory"
    if stores[0]["spec"].get("replicas", 1) != 1:
        yield "more than one Valkey (the API would split replies between them)"


def _edge(objects: list[Obj]) -> Iterator[str]:
    env = pod_env(objects, one(objects, "Deployment", API))
    heartbeat = app_setting("heartbeat_seconds", env)
    edges = 0
    for route in find(objects, "HTTPRoute"):
        edges += 1
        yield from _gateway(objects, route, heartbeat, env)
    for ingress in find(objects, "Ingress"):
        edges += 1
        yield from _ingress(ingress, heartbeat)
    if find(objects, "Deployment", NGINX):
        edges += 1
        yield from _nginx(objects)
    if edges == 0:
        yield "no edge (nginx, HTTPRoute or Ingress)"


def _gateway(objects: list[Obj], route: Obj, heartbeat: float, env: dict[str, str]) -> Iterator[str]:
    for path in ("/api/chat/message/stream", "/api/chat/message/ws"):
        rules = [r for r in route["spec"]["rules"] if any(m["path"]["value"] == path for m in r.get("matches", []))]
        if not rules or rules[0].get("timeouts", {}).get("request") not in ("0s", "0"):
            yield f"{path}: the route's request timeout is not disabled (timeouts.request: 0s)"
    for policy in find(objects, "BackendTrafficPolicy"):
        http = policy["spec"].get("timeout", {}).get("http", {})
        if "requestTimeout" in http or "maxConnectionDuration" in http:
            yield "BackendTrafficPolicy bounds a stream's duration (requestTimeout or maxConnectionDuration)"
        keepalive = float(gunicorn_settings(env)["keepalive"])
        if not seconds(http.get("connectionIdleTimeout", "1h")) < keepalive:
            yield f"Envoy keeps idle upstream connections longer than the API ({keepalive} s)"
        if policy["spec"].get("circuitBreaker", {}).get("maxParallelRequests", 1024) <= 1024:
            yield "Envoy's default circuit breaker caps open streams at 1,024"
    policies = find(objects, "ClientTrafficPolicy")
    if not policies:
        yield "no ClientTrafficPolicy (stream idle timeout)"
    for policy in policies:
        idle = seconds(policy["spec"].get("timeout", {}).get("http", {}).get("streamIdleTimeout", "5m"))
        if not idle > 2 * heartbeat:
            yield f"the stream idle timeout ({idle} s) does not cover two heartbeats ({heartbeat} s)"


def _ingress(ingress: Obj, heartbeat: float) -> Iterator[str]:
    name = ingress["metadata"]["name"]
    notes = ingress["metadata"].get("annotations", {})
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    prefix = "nginx.ingress.kubernetes.io/"
    streaming = "/api/chat/message/stream" in paths
    if streaming:
        wanted = {"proxy-buffering": "off", "proxy-request-buffering": "off", "proxy-http-version": "1.1"}
        for key, want in wanted.items():
            if notes.get(prefix + key) != want:
                yield f"{name}: {key} is not {want}"
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            if not seconds(notes.get(prefix + key, "60")) > 2 * heartbeat:
                yield f"{name}: {key} does not cover two heartbeats ({heartbeat} s)"
    elif notes.get(prefix + "proxy-buffering") == "off":
        yield f"{name}: buffering off beyond the streaming paths"


def _nginx(objects: list[Obj]) -> Iterator[str]:
    nginx = one(objects, "Deployment", NGINX)
    container = nginx["spec"]["template"]["spec"]["containers"][0]
    target = "/etc/nginx/snippets/http/api.conf"
    image_conf = ROOT / "services" / "nginx" / "snippets" / "http" / "api.conf"
    if not image_conf.exists():
        yield "the image has no snippets/http/api.conf to replace"
        return
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == target]
    if not mounts:
        yield f"nothing replaces {target} (Docker's DNS would stay)"
        return
    volume = next(v for v in nginx["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[0]["name"])
    conf = one(objects, "ConfigMap", volume["configMap"]["name"])["data"][mounts[0]["subPath"]]
    if "127.0.0.11" in conf or not re.search(r"^resolver\s+kube-dns\.kube-system\.svc\.cluster\.local\b", conf, re.M):
        yield "nginx's resolver is not the cluster's DNS"
    # The replacement defines what the image's file defines (a missing map
    # variable stops nginx at start), and $api names a Service in full.
    missing = _map_variables(image_conf.read_text()) - _map_variables(conf)
    if missing:
        yield f"nginx's replacement api.conf does not define {', '.join(sorted(missing))}"
    named = re.search(
        r"^map \S+ \$api \{\s*default\s+([^.\s]+)\.([^.\s]+)\.svc\.cluster\.local:(\d+);", conf, re.M
    )
    if named is None:
        yield "nginx's $api is not a Service's full name"
        return
    service, namespace, port = named.groups()
    found = find(objects, "Service", service)
    if not found or found[0]["metadata"]["namespace"] != namespace:
        yield f"nginx's $api names {service}.{namespace}, which the manifests do not create"
    elif int(port) not in [p["port"] for p in found[0]["spec"]["ports"]]:
        yield f"nginx's $api port {port} is not the Service's"
    elif found[0]["spec"]["selector"] != {"app.kubernetes.io/name": API}:
        yield f"nginx's $api ({service}) does not select the API's pods"


def _map_variables(conf: str) -> set[str]:
    """The variables an nginx file defines with `map SOURCE $variable {`."""
    return set(re.findall(r"^map\s+\S+\s+(\$\w+)\s*\{", conf, re.M))
