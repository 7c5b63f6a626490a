"""The queries the stack ships: every expression of the Grafana dashboard and
of the alert rules, and the metric names each one reads.

One place for the unit test that checks the names against what the API and
the exporters define (tests/unit/test_observability_queries.py) and for the
integration test that asks the running Prometheus for each expression
(tests/integration/test_observability.py).
"""

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.durations import seconds

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "services" / "grafana" / "dashboards" / "chat-stream.json"
ALERTS = ROOT / "services" / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = ROOT / "services" / "prometheus" / "prometheus.yml"


SCRAPE_SECONDS = seconds(yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"])
# Grafana's range variable as the dashboard's panels get it. $__rate_interval
# is max($__interval + scrape interval, 4 x scrape interval), the scrape
# interval being the data source's timeInterval (Prometheus's: a unit test
# holds them equal). Over the default 15 minutes $__interval is its minimum,
# that same interval, so the panels' windows are 4 scrape intervals (20 s).
# Ref: https://grafana.com/docs/grafana/latest/datasources/prometheus/template-variables/#use-__rate_interval
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS:g}s"

# Metrics from the exporters the dashboard reads, as they document them
# (nginx-prometheus-exporter from stub_status; redis_exporter from INFO),
# and Prometheus's own per-target "up".
EXPORTER_METRICS = frozenset(
    {
        "nginx_up",
        "nginx_connections_active",
        "nginx_connections_reading",
        "nginx_connections_writing",
        "nginx_connections_waiting",
        "nginx_connections_accepted",
        "nginx_connections_handled",
        "nginx_http_requests_total",
        "redis_up",
        "redis_connected_clients",
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "up",
    }
)

_PROMQL_WORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel, with
    Grafana's variables replaced by what Prometheus accepts."""
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_expressions() -> list[tuple[str, str]]:
    """(alert name, expression) for every rule."""
    return [(rule.get("alert") or rule["record"], rule["expr"].strip()) for rule in alert_rules()]


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions,
    keywords, label names or values)."""
    text = _STRING.sub('""', expression)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    return {
        name
        for name, call in _IDENTIFIER.findall(text)
        if not call and name.lower() not in _PROMQL_WORDS and not re.fullmatch(r"\d\w*", name)
    }
