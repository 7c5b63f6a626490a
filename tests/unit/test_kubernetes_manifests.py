"""deploy/kubernetes, offline: every overlay renders (`kubectl kustomize`),
every object validates strictly against the Kubernetes schemas
(kubernetes-validate) or, for the Gateway API and Envoy Gateway kinds, against
kubernetes_crds.py, and the policies of kubernetes_policy.py hold. Each
policy is also run on a broken copy and must report it (negative controls).
No cluster is involved: these prove the manifests, not a rollout."""

import copy
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from tests.unit.kubernetes_crds import CRD_SCHEMAS
from tests.unit.kubernetes_policy import (
    EDGES,
    KUBERNETES,
    POLICIES,
    Obj,
    find,
    one,
    render,
    render_with_component,
    violations,
)

# The oldest Kubernetes these manifests target (PodDisruptionBudget's
# unhealthyPodEvictionPolicy is GA from 1.31) and the newest the pinned
# kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.31", latest_version())
EXTERNAL_VALKEY = KUBERNETES / "components" / "external-valkey"


@cache
def rendered(edge: str) -> tuple[Obj, ...]:
    return tuple(render(KUBERNETES / "overlays" / edge))


def fresh(edge: str) -> list[Obj]:
    """A copy the test may break."""
    return copy.deepcopy(list(rendered(edge)))


@pytest.fixture(scope="module")
def with_managed_valkey(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    scratch = tmp_path_factory.mktemp("kustomize", numbered=True)
    variants = {}
    for edge in EDGES:
        (scratch / edge).mkdir()
        variants[edge] = render_with_component(KUBERNETES / "overlays" / edge, EXTERNAL_VALKEY, scratch / edge)
    return variants


def test_every_overlay_is_tested() -> None:
    assert sorted(p.name for p in (KUBERNETES / "overlays").iterdir()) == sorted(EDGES)


def test_the_base_renders() -> None:
    kinds = {o["kind"] for o in render(KUBERNETES / "base")}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "StatefulSet"} <= kinds


def _validate(obj: Obj, version: str) -> None:
    schema = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is not None:
        jsonschema.validate(obj, schema)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except SchemaNotFoundError:
        pytest.fail(f"no schema for {obj['apiVersion']} {obj['kind']}: add it to kubernetes_crds.py")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("edge", EDGES)
def test_every_object_validates(edge: str, version: str, with_managed_valkey: dict[str, list[Obj]]) -> None:
    for obj in [*rendered(edge), *with_managed_valkey[edge]]:
        _validate(obj, version)


def test_validation_rejects_an_unknown_field() -> None:
    deployment = one(fresh("nginx"), "Deployment", "chat-api")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        pytest.param("HTTPRoute", ("spec", "rules", 0, "timeouts"), {"requests": "0s"}, id="httproute-misspelt"),
        pytest.param("HTTPRoute", ("spec", "rules", 0, "timeouts"), {"request": "forever"}, id="httproute-duration"),
        pytest.param("BackendTrafficPolicy", ("spec", "timeout", "http"), {"idleTimeout": "60s"}, id="btp-field"),
        # Real, but from Envoy Gateway v1.8: above the overlay's stated floor (v1.5).
        pytest.param("BackendTrafficPolicy", ("spec", "timeout", "http"), {"streamIdleTimeout": "45s"},
                     id="btp-field-newer-than-the-floor"),
        pytest.param("ClientTrafficPolicy", ("spec", "timeout"), {"http": {"streamIdle": "45s"}}, id="ctp-field"),
        pytest.param("Gateway", ("spec",), {"listeners": []}, id="gateway-no-listener"),
    ],
)
def test_crd_schemas_reject_what_the_crd_would(kind: str, path: tuple[Any, ...], value: Any) -> None:
    obj = find(fresh("gateway-api"), kind)[0]
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        _validate(obj, KUBERNETES_VERSIONS[0])


@pytest.mark.parametrize("edge", EDGES)
def test_policies_hold(edge: str) -> None:
    assert violations(fresh(edge)) == []


@pytest.mark.parametrize("edge", EDGES)
def test_policies_hold_with_a_managed_valkey(edge: str, with_managed_valkey: dict[str, list[Obj]]) -> None:
    objects = with_managed_valkey[edge]
    assert not find(objects, "StatefulSet")
    assert violations(objects) == []


# ---- negative controls: each policy reports a broken copy -------------------


def _api_pod(objects: list[Obj]) -> Obj:
    spec: Obj = one(objects, "Deployment", "chat-api")["spec"]["template"]["spec"]
    return spec


def _api_container(objects: list[Obj]) -> Obj:
    container: Obj = _api_pod(objects)["containers"][0]
    return container


def _configmap(objects: list[Obj]) -> Obj:
    return next(c for c in find(objects, "ConfigMap") if c["metadata"]["name"].startswith("chat-api"))


def _route_rule(objects: list[Obj], path: str) -> Obj:
    rules = find(objects, "HTTPRoute")[0]["spec"]["rules"]
    rule: Obj = next(r for r in rules if r["matches"][0]["path"]["value"] == path)
    return rule


def _stream_ingress(objects: list[Obj]) -> Obj:
    notes: Obj = one(objects, "Ingress", "chat-api-stream")["metadata"]["annotations"]
    return notes


Breakage = Callable[[list[Obj]], None]
BREAKAGES: list[Any] = [
    pytest.param("gateway-api", "namespace", lambda o: find(o, "HTTPRoute")[0]["metadata"].pop("namespace"),
                 id="route-in-default-namespace"),
    pytest.param("nginx", "shutdown-order", lambda o: _api_pod(o).update(terminationGracePeriodSeconds=20),
                 id="grace-below-gunicorn"),
    pytest.param("nginx", "shutdown-order", lambda o: _api_pod(o).update(terminationGracePeriodSeconds=30),
                 id="grace-ignores-prestop"),
    pytest.param("nginx", "shutdown-order", lambda o: _configmap(o)["data"].update(CHAT_DRAIN_SECONDS="15"),
                 id="drain-past-gunicorn"),
    pytest.param("nginx", "shutdown-order", lambda o: _configmap(o)["data"].update(GUNICORN_GRACEFUL_TIMEOUT="40"),
                 id="gunicorn-past-grace"),
    pytest.param("nginx", "shutdown-order", lambda o: _api_container(o).pop("lifecycle"), id="no-prestop"),
    pytest.param("nginx", "shutdown-order",
                 lambda o: one(o, "Deployment", "chat-nginx")["spec"]["template"]["spec"].update(
                     terminationGracePeriodSeconds=25), id="nginx-grace-below-worker-shutdown"),
    pytest.param("nginx", "probes", lambda o: _api_container(o)["readinessProbe"]["httpGet"].update(path="/healthz"),
                 id="readiness-ignores-sigterm"),
    pytest.param("nginx", "probes", lambda o: _api_container(o)["livenessProbe"].update(failureThreshold=1),
                 id="liveness-hair-trigger"),
    pytest.param("nginx", "probes", lambda o: _api_container(o)["livenessProbe"]["httpGet"].update(path="/readyz"),
                 id="liveness-restarts-a-full-pod"),
    # Generous by the other rules (timeout 5 s, 3 failures, 45 s between the
    # first and the last): only 15 s of unanswered probes, which this one catches.
    pytest.param("nginx", "probes", lambda o: _api_container(o)["livenessProbe"].update(
        timeoutSeconds=5, failureThreshold=3, periodSeconds=15), id="liveness-impatient"),
    pytest.param("nginx", "replicas", lambda o: one(o, "HorizontalPodAutoscaler", "chat-api")["spec"].update(
        minReplicas=1), id="one-replica"),
    pytest.param("nginx", "rollout", lambda o: one(o, "Deployment", "chat-api")["spec"]["strategy"][
        "rollingUpdate"].update(maxUnavailable=1), id="unavailable-during-rollout"),
    pytest.param("nginx", "resources", lambda o: _api_container(o)["resources"].pop("limits"), id="no-memory-limit"),
    pytest.param("nginx", "security", lambda o: _api_container(o)["securityContext"].update(
        readOnlyRootFilesystem=False), id="writable-root"),
    pytest.param("nginx", "security", lambda o: _api_pod(o).update(automountServiceAccountToken=True),
                 id="token-mounted"),
    pytest.param("nginx", "security", lambda o: _api_pod(o)["securityContext"].update(runAsUser=0), id="root"),
    pytest.param("nginx", "images", lambda o: _api_container(o).update(image="chat-stream/api:latest"), id="latest"),
    pytest.param("nginx", "images", lambda o: _api_container(o).update(image="chat-stream/api"), id="untagged"),
    pytest.param("nginx", "secrets", lambda o: _api_container(o)["env"].append(
        {"name": "CHAT_AUTH_SECRET", "value": "inline"}), id="inline-secret"),
    pytest.param("nginx", "secrets", lambda o: o.append(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-secrets"}, "stringData": {"a": "b"}}),
                 id="secret-object"),
    pytest.param("nginx", "disruption", lambda o: o.remove(one(o, "PodDisruptionBudget", "chat-api")), id="no-pdb"),
    pytest.param("nginx", "disruption", lambda o: one(o, "HorizontalPodAutoscaler", "chat-api")["spec"][
        "behavior"].pop("scaleDown"), id="fast-scale-down"),
    pytest.param("nginx", "network", lambda o: one(o, "NetworkPolicy", "chat-api-ingress")["spec"]["ingress"].append(
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}), id="api-open"),
    pytest.param("nginx", "network", lambda o: one(o, "NetworkPolicy", "chat-valkey-ingress")["spec"][
        "ingress"][0].pop("from"), id="valkey-open"),
    pytest.param("nginx", "network", lambda o: o.remove(one(o, "NetworkPolicy", "default-deny")), id="no-deny"),
    pytest.param("nginx", "valkey", lambda o: one(o, "StatefulSet", "chat-valkey")["spec"]["template"]["spec"][
        "containers"][0]["env"].pop(), id="valkey-no-maxmemory"),
    pytest.param("nginx", "edge", lambda o: next(c for c in find(o, "ConfigMap") if "api.conf" in c.get(
        "data", {}))["data"].update({"api.conf": "resolver 127.0.0.11;\nmap $host $api {\n  default api:8000;\n}\n"}),
                 id="nginx-docker-dns"),
    pytest.param("nginx", "edge", lambda o: next(c for c in find(o, "ConfigMap") if "api.conf" in c.get(
        "data", {}))["data"].update({"api.conf": "resolver kube-dns.kube-system.svc.cluster.local;\n"
                                                 "set $api chat-api-pods.chat-stream.svc.cluster.local:8000;\n"}),
                 id="nginx-api-not-mapped"),
    pytest.param("gateway-api", "edge", lambda o: _route_rule(o, "/api/chat/message/stream")["timeouts"].update(
        request="15s"), id="gateway-stream-timeout"),
    pytest.param("gateway-api", "edge", lambda o: find(o, "ClientTrafficPolicy")[0]["spec"]["timeout"]["http"].update(
        streamIdleTimeout="10s"), id="gateway-idle-below-heartbeat"),
    pytest.param("gateway-api", "edge", lambda o: find(o, "BackendTrafficPolicy")[0]["spec"].pop("circuitBreaker"),
                 id="gateway-default-circuit-breaker"),
    pytest.param("gateway-api", "network", lambda o: one(o, "NetworkPolicy", "chat-api-ingress")["spec"][
        "ingress"].clear(), id="gateway-no-edge"),
    pytest.param("ingress-nginx", "edge", lambda o: _stream_ingress(o).update(
        {"nginx.ingress.kubernetes.io/proxy-buffering": "on"}), id="ingress-buffering"),
    pytest.param("ingress-nginx", "edge", lambda o: _stream_ingress(o).update(
        {"nginx.ingress.kubernetes.io/proxy-read-timeout": "20"}), id="ingress-read-below-heartbeats"),
]


@pytest.mark.parametrize(("edge", "policy", "breakage"), BREAKAGES)
def test_a_broken_copy_is_reported(edge: str, policy: str, breakage: Breakage) -> None:
    assert policy in POLICIES
    objects = fresh(edge)
    assert violations(objects) == []
    breakage(objects)
    reported = violations(objects)
    assert any(line.startswith(f"{policy}: ") for line in reported), reported


def test_every_policy_has_a_negative_control() -> None:
    controlled = {param.values[1] for param in BREAKAGES}
    assert controlled == set(POLICIES)


def test_the_managed_valkey_component_drops_the_store(with_managed_valkey: dict[str, list[Obj]]) -> None:
    objects = with_managed_valkey["gateway-api"]
    url = _configmap(objects)["data"]["CHAT_VALKEY_URL"]
    assert "chat-valkey" not in url
    assert not find(objects, "Service", "chat-valkey")
    # Pointed back at the removed store, the policy says so.
    _configmap(objects)["data"]["CHAT_VALKEY_URL"] = "redis://chat-valkey:6379/0"
    assert any(line.startswith("valkey: ") for line in violations(objects))


def test_kubectl_is_the_one_on_path() -> None:
    # The renders above ran it; this names it in the report.
    from tests.unit.kubernetes_policy import kubectl

    assert Path(kubectl()).name == "kubectl"
