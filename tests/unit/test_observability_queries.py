"""Every query the dashboard and the alert rules ship names only metrics that
exist: the API's (what services/api/app/metrics.py registers) or the
exporters'. No Docker: tests/integration/test_observability.py then asks a
running Prometheus for each one."""

import re

import pytest
import yaml
from app import metrics
from prometheus_client.metrics import MetricWrapperBase

from tests.durations import seconds
from tests.observability import (
    ALERTS,
    EXPORTER_METRICS,
    ROOT,
    SCRAPE_SECONDS,
    alert_expressions,
    alert_rules,
    dashboard,
    dashboard_expressions,
    metric_names,
)


def api_metric_names() -> set[str]:
    """Every sample name the API exposes (chat_..._bucket, _count, _sum, _total...)."""
    return {
        sample.name
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.collect()
        for sample in family.samples
    }


KNOWN = api_metric_names() | EXPORTER_METRICS


def test_the_names_are_read_from_expressions_as_promql_means_them() -> None:
    expression = (
        "histogram_quantile(0.99, sum by (le, transport)"
        ' (rate(chat_time_to_first_token_seconds_bucket{job="api"}[1m])))'
        " / on (instance) group_left up offset 5m > bool 2 and nginx_up"
    )
    assert metric_names(expression) == {"chat_time_to_first_token_seconds_bucket", "up", "nginx_up"}


def test_the_readme_lists_every_metric_the_api_registers() -> None:
    readme = (ROOT / "README.md").read_text()
    families = {name for name in api_metric_names() if name.startswith("chat_")}
    for name in families:
        base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum").removesuffix("_created")
        assert base.removesuffix("_total") in readme, f"{base} is not in the README"


@pytest.mark.parametrize(("panel", "expression"), dashboard_expressions())
def test_every_dashboard_query_names_known_metrics(panel: str, expression: str) -> None:
    names = metric_names(expression)
    assert names, f"{panel}: no metric in {expression}"
    assert names <= KNOWN, f"{panel}: unknown {sorted(names - KNOWN)}"


@pytest.mark.parametrize(("alert", "expression"), alert_expressions())
def test_every_alert_names_known_metrics(alert: str, expression: str) -> None:
    names = metric_names(expression)
    assert names, f"{alert}: no metric in {expression}"
    assert names <= KNOWN, f"{alert}: unknown {sorted(names - KNOWN)}"


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_the_dashboard_reads_the_provisioned_data_source_and_covers_what_operators_ask() -> None:
    board = dashboard()
    provisioned = yaml.safe_load((ROOT / "services/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == source["uid"]
            assert panel["targets"], panel["title"]
    read = set().union(*(metric_names(expression) for _, expression in dashboard_expressions()))
    for wanted in (
        "chat_time_to_first_token_seconds_bucket",
        "chat_inter_token_latency_seconds_bucket",
        "chat_active_streams",
        "chat_streams_ended_total",
        "chat_resumes_total",
        "chat_upstream_cancels_total",
        "nginx_connections_active",
    ):
        assert wanted in read


def test_the_panels_rate_windows_follow_the_scrape_interval() -> None:
    # $__rate_interval is built on the data source's timeInterval: it must be
    # Prometheus's scrape interval, and every panel must use it, or the
    # windows Grafana shows are not the ones test_observability.py checks
    # (tests/observability.py's RATE_INTERVAL).
    provisioned = yaml.safe_load((ROOT / "services/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert seconds(source["jsonData"]["timeInterval"]) == SCRAPE_SECONDS
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            windows = set(re.findall(r"\[([^\]]*)\]", target["expr"]))
            assert windows <= {"$__rate_interval"}, f"{panel['title']}: {target['expr']}"


def test_prometheus_loads_these_rules() -> None:
    config = yaml.safe_load((ROOT / "services/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == [ALERTS.name]
    (api,) = [job for job in config["scrape_configs"] if job["job_name"] == "api"]
    # Every replica, found by DNS: `--scale api=N` is followed.
    assert api["dns_sd_configs"] == [{"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "5s"}]
