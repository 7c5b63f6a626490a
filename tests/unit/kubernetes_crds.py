"""Schemas for the custom resources in deploy/kubernetes, which
kubernetes-validate does not ship (it has the built-in kinds only, and raises
SchemaNotFoundError for any other).

Each is a strict subset of the real CRD at the oldest release the gateway-api
overlay supports (its kustomization.yaml says why): the Gateway API's
standard channel v1.2 (gateway.networking.k8s.io/v1) and Envoy Gateway v1.5
(gateway.envoyproxy.io/v1alpha1). The fields this project uses, typed and
with ``additionalProperties: false``, so a misspelt or misplaced field fails
as it would against the CRD, and so does a field those releases lack (the
BackendTrafficPolicy's streamIdleTimeout, Envoy Gateway v1.8). Field names
and types are taken from the two API references at those versions. A field
the CRD has and this project does not use yet fails too: add it here, from
the reference of the oldest release supported, when a manifest starts using
it, or raise the overlay's stated floor.
Ref: https://gateway-api.sigs.k8s.io/reference/spec/
Ref: https://gateway.envoyproxy.io/v1.5/api/extension_types/
"""

from typing import Any

Schema = dict[str, Any]


def _object(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": False}


def _list(item: Schema) -> Schema:
    return {"type": "array", "minItems": 1, "items": item}


STRING: Schema = {"type": "string", "minLength": 1}
PORT: Schema = {"type": "integer", "minimum": 1, "maximum": 65535}
# Gateway API Duration (GEP-2257), which Envoy Gateway's fields use too.
DURATION: Schema = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
# Envoy Gateway's circuit breaker thresholds: uint32.
COUNT: Schema = {"type": "integer", "minimum": 0, "maximum": 4294967295}

METADATA = _object(
    ["name", "namespace"],
    name=STRING,
    namespace=STRING,
    labels={"type": "object", "additionalProperties": {"type": "string"}},
    annotations={"type": "object", "additionalProperties": {"type": "string"}},
)

# A policy's target: LocalPolicyTargetReferenceWithSectionName.
TARGET_REFS = _list(_object(["group", "kind", "name"], group=STRING, kind=STRING, name=STRING, sectionName=STRING))


def _resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return _object(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": api_version},
        kind={"const": kind},
        metadata=METADATA,
        spec=spec,
    )


GATEWAY = _resource(
    "gateway.networking.k8s.io/v1",
    "Gateway",
    _object(
        ["gatewayClassName", "listeners"],
        gatewayClassName=STRING,
        listeners=_list(
            _object(
                ["name", "protocol", "port"],
                name=STRING,
                hostname=STRING,
                port=PORT,
                protocol={"enum": ["HTTP", "HTTPS", "TLS", "TCP", "UDP"]},
                tls=_object(
                    ["mode"],
                    mode={"enum": ["Terminate", "Passthrough"]},
                    certificateRefs=_list(_object(["name"], group={"type": "string"}, kind=STRING, name=STRING)),
                ),
                allowedRoutes=_object(
                    [], namespaces=_object(["from"], **{"from": {"enum": ["All", "Same", "Selector"]}})
                ),
            )
        ),
    ),
)

HTTP_ROUTE = _resource(
    "gateway.networking.k8s.io/v1",
    "HTTPRoute",
    _object(
        ["parentRefs", "rules"],
        parentRefs=_list(_object(["name"], name=STRING, namespace=STRING, sectionName=STRING)),
        hostnames=_list(STRING),
        rules=_list(
            _object(
                ["backendRefs"],
                matches=_list(
                    _object(
                        ["path"],
                        path=_object(
                            ["type", "value"], type={"enum": ["Exact", "PathPrefix", "RegularExpression"]}, value=STRING
                        ),
                    )
                ),
                timeouts=_object([], request=DURATION, backendRequest=DURATION),
                backendRefs=_list(_object(["name", "port"], name=STRING, port=PORT, weight={"type": "integer"})),
            )
        ),
    ),
)

BACKEND_TRAFFIC_POLICY = _resource(
    "gateway.envoyproxy.io/v1alpha1",
    "BackendTrafficPolicy",
    _object(
        ["targetRefs"],
        targetRefs=TARGET_REFS,
        timeout=_object(
            [],
            tcp=_object([], connectTimeout=DURATION),
            http=_object([], connectionIdleTimeout=DURATION, maxConnectionDuration=DURATION, requestTimeout=DURATION),
        ),
        circuitBreaker=_object(
            [],
            maxConnections=COUNT,
            maxPendingRequests=COUNT,
            maxParallelRequests=COUNT,
            maxParallelRetries=COUNT,
            maxRequestsPerConnection=COUNT,
        ),
    ),
)

CLIENT_TRAFFIC_POLICY = _resource(
    "gateway.envoyproxy.io/v1alpha1",
    "ClientTrafficPolicy",
    _object(
        ["targetRefs"],
        targetRefs=TARGET_REFS,
        timeout=_object(
            [],
            tcp=_object([], idleTimeout=DURATION),
            http=_object([], requestReceivedTimeout=DURATION, idleTimeout=DURATION, streamIdleTimeout=DURATION),
        ),
    ),
)

# (apiVersion, kind) -> schema
CRD_SCHEMAS: dict[tuple[str, str], Schema] = {
    (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"]): schema
    for schema in (GATEWAY, HTTP_ROUTE, BACKEND_TRAFFIC_POLICY, CLIENT_TRAFFIC_POLICY)
}
