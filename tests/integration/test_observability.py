"""The "observe" profile, up with the stack: Prometheus scrapes every API
replica (found by DNS), nginx and Valkey through their exporters. After a few
streams through the proxy (a plain one, a WebSocket one, a resumed one, a
stopped one, a failed one), every expression of the Grafana dashboard returns
data, the panels those streams move read above 0, and every alert rule
evaluates, on metrics that exist. The dashboard is read at the moment the
streams are scraped, over the window its panels use (RATE_INTERVAL), so a
panel that would stay flat in Grafana fails here. The queries are read from
the shipped files (tests/observability.py); the same names are checked
without Docker in tests/unit/test_observability_queries.py.
"""

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from streamcheck import clients
from streamcheck.timing import Arrival
from tests.integration.stack import Stack
from tests.observability import alert_expressions, dashboard_expressions, metric_names


def query(stack: Stack, expression: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query, now or ``at`` (Unix seconds); fails on anything but success."""
    params = {"query": expression} if at is None else {"query": expression, "time": str(at)}
    response = requests.get(stack.prometheus_url("/api/v1/query"), params=params, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{expression}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(stack: Stack, expression: str, timeout: float = 90) -> list[dict[str, Any]]:
    """Until the query returns something."""
    deadline = time.monotonic() + timeout
    while not (result := query(stack, expression)):
        assert time.monotonic() < deadline, f"no data for {expression} after {timeout} s"
        time.sleep(1)
    return result


def finite(result: list[dict[str, Any]]) -> bool:
    """At least one series with a number (histogram_quantile of no traffic is NaN: an empty chart)."""
    return any(not math.isnan(float(series["value"][1])) for series in result)


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Iterator[float]:
    """Every target scraped, then streams of every kind the dashboard shows;
    yields when Prometheus had scraped every API replica after them (Unix
    seconds), the moment the dashboard is read at."""
    replicas = len(stack.containers("api"))
    wait_for(stack, f'count(up{{job="api"}} == 1) == {replicas}')
    wait_for(stack, 'up{job="nginx"} == 1 and on () nginx_up == 1')  # the exporter reads stub_status
    wait_for(stack, 'up{job="valkey"} == 1 and on () redis_up == 1')  # with the password

    plain = clients.with_requests(stack.url(), {"message": "observe me"}, headers=stack.auth)
    assert plain.closing_event == "end"
    ws = clients.with_websocket(stack.ws_url(), {"message": "observe me"}, token=stack.token)
    assert ws.closing_event == "end"

    def drop_at_5(arrival: Arrival) -> bool:
        return arrival.event.event == "token" and json.loads(arrival.event.data)["index"] == 4

    first = clients.with_requests(stack.url(), {"message": "resume me"}, headers=stack.auth, on_arrival=drop_at_5)
    last_id = first.events("token")[-1].id
    assert last_id is not None
    resumed = clients.with_requests(
        stack.url(), {"message": "resume me"}, headers={**stack.auth, "Last-Event-ID": last_id}
    )
    assert resumed.closing_event == "end"

    started: list[str] = []

    def stop_at_first_token(arrival: Arrival) -> bool:
        if arrival.event.event == "start":
            started.append(json.loads(arrival.event.data)["message_id"])
        elif arrival.event.event == "token" and len(started) == 1:
            path = f"/api/chat/message/{started[0]}/stop"
            assert requests.post(stack.url(path=path), headers=stack.auth, timeout=10).status_code == 202
            started.append("stopped")
        return False

    stopped = clients.with_requests(
        stack.url(), {"message": "/pace 50 200"}, headers=stack.auth, on_arrival=stop_at_first_token
    )
    assert json.loads(stopped.events("end")[0].data)["finish_reason"] == "stopped"
    failed = clients.with_requests(stack.url(), {"message": "/fail"}, headers=stack.auth)
    assert failed.closing_event == "error"

    # Until every replica was scraped after the last stream: the first moment
    # every count above is in Prometheus. A stream is counted just after its
    # last event reaches the client, hence the second of margin. The last
    # stream of each kind ended a few seconds before, inside the window the
    # panels rate over (RATE_INTERVAL, 4 scrapes).
    done = time.time() + 1
    api = 'timestamp(up{job="api"})'
    (scraped,) = wait_for(stack, f"max({api}) and on () (min({api}) > {done})", timeout=30)
    yield float(scraped["value"][1])


@pytest.mark.parametrize(("panel", "expression"), dashboard_expressions())
def test_every_dashboard_query_returns_data(stack: Stack, traffic: float, panel: str, expression: str) -> None:
    result = query(stack, expression, at=traffic)
    assert result, f"{panel}: no data for {expression}"
    assert finite(result), f"{panel}: only NaN for {expression}: {result}"


# What the traffic moves, by panel: the series (by its labels; Prometheus
# drops an empty one, such as code="") that must read above 0. Every counter
# exists at 0 from a worker's start, so data alone proves nothing for these.
MOVED = [
    pytest.param("Stream outcomes", {"outcome": "end", "code": ""}, id="outcome-end"),
    pytest.param("Stream outcomes", {"outcome": "stopped", "code": ""}, id="outcome-stopped"),
    pytest.param("Stream outcomes", {"outcome": "error", "code": "source_failed"}, id="outcome-error"),
    pytest.param("Resumes", {"outcome": "resumed"}, id="resumes"),
    pytest.param("Upstream requests and cancels", {"source": "twin"}, id="upstream-requests"),
    pytest.param("Upstream requests and cancels", {"reason": "stopped"}, id="upstream-cancels-stopped"),
    pytest.param("Token events sent per second", {"transport": "sse"}, id="token-events-sse"),
    pytest.param("Token events sent per second", {"transport": "websocket"}, id="token-events-websocket"),
]


@pytest.mark.parametrize(("panel", "labels"), MOVED)
def test_the_panels_the_traffic_moves_read_above_zero(
    stack: Stack, traffic: float, panel: str, labels: dict[str, str]
) -> None:
    expressions = [expression for title, expression in dashboard_expressions() if title == panel]
    assert expressions, f"no panel {panel!r}"
    values = [
        float(series["value"][1])
        for expression in expressions
        for series in query(stack, expression, at=traffic)
        if all(series["metric"].get(name, "") == value for name, value in labels.items())
    ]
    assert values, f"{panel}: no series {labels} in {expressions}"
    assert sum(values) > 0, f"{panel}: {labels} reads {values}"


@pytest.mark.parametrize(("alert", "expression"), alert_expressions())
def test_every_alert_evaluates_on_metrics_that_exist(stack: Stack, traffic: float, alert: str, expression: str) -> None:
    query(stack, expression)  # evaluates; empty while the alert does not fire
    for name in metric_names(expression):
        assert query(stack, f"group({name})"), f"{alert}: no series named {name}"


def test_prometheus_evaluates_every_rule_without_error(stack: Stack, traffic: float) -> None:
    response = requests.get(stack.prometheus_url("/api/v1/rules"), timeout=10)
    groups = response.json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {name for name, _ in alert_expressions()}
    for name, rule in rules.items():
        assert (rule["health"], rule.get("lastError", "")) == ("ok", ""), name


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["promtool", "check", "config", "/etc/prometheus/prometheus.yml"], id="check-config"),
        pytest.param(["promtool", "check", "rules", "/etc/prometheus/alerts.yml"], id="check-rules"),
        pytest.param(["promtool", "test", "rules", "/etc/prometheus/alerts.test.yml"], id="test-rules"),
    ],
)
def test_promtool_passes_inside_the_prometheus_container(stack: Stack, command: list[str]) -> None:
    done = stack.compose_run("exec", "-T", "prometheus", *command, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_follows_a_scaled_api(stack: Stack, traffic: float) -> None:
    replicas = len(stack.containers("api"))
    try:
        stack.compose_run("up", "--detach", "--wait", "--no-recreate", "--scale", f"api={replicas + 1}", "api")
        wait_for(stack, f'count(up{{job="api"}} == 1) == {replicas + 1}', timeout=60)
    finally:
        stack.compose_run("up", "--detach", "--wait", "--no-recreate", "--scale", f"api={replicas}", "api")
    wait_for(stack, f'count(up{{job="api"}} == 1) == {replicas}', timeout=60)
