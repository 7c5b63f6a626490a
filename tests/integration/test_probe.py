"""The probe, run as a plain command, gives the right verdict and exit status
for each proxy configuration, so it can gate a deployment pipeline."""

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.stack import REPLY_TOKENS, ROOT, STREAM_PATH, TOKEN_DELAY_SECONDS, Stack


def probe(*args: str) -> tuple[int, str]:
    command = [sys.executable, "-m", "streamcheck.probe", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout


def probe_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, stdout = probe(*args, "--json")
    result: dict[str, Any] = json.loads(stdout)
    return code, result


@pytest.mark.parametrize(
    ("service", "path", "message", "verdict", "exit_code"),
    [
        pytest.param("nginx", STREAM_PATH, "hi", "streaming", 0, id="our-proxy"),
        pytest.param("proxy-buffering", STREAM_PATH, "hi", "buffered", 1, id="default-proxying"),
        pytest.param("proxy-gzip", STREAM_PATH, "hi", "compressed", 1, id="gzip"),
        pytest.param("proxy-no-heartbeat", STREAM_PATH, "/pause 5", "idle_timeout", 1, id="idle-timeout"),
        pytest.param("proxy-short-timeout", STREAM_PATH, "/pause 5", "streaming", 0, id="heartbeats-survive"),
        pytest.param("nginx", STREAM_PATH, "/fail", "error", 1, id="source-fails"),
    ],
)
def test_verdict_and_exit_status(
    stack: Stack, service: str, path: str, message: str, verdict: str, exit_code: int
) -> None:
    code, report = probe_json(stack.url(service, path), "--token", stack.token, "--message", message)
    assert (report["verdict"], code) == (verdict, exit_code), report["reason"]


def test_the_report_has_the_figures(stack: Stack) -> None:
    _, report = probe_json(stack.url(), "--token", stack.token)
    assert report["status"] == 200
    assert report["headers"]["cache-control"] == "no-cache, no-transform"
    assert 0 < report["first_byte_seconds"] <= report["first_token_seconds"] < report["last_token_seconds"]
    assert report["tokens"] == report["bursts"] == REPLY_TOKENS
    # The twin's pacing, give or take the network and a busy machine.
    assert 0.6 * TOKEN_DELAY_SECONDS < report["gap_median_seconds"] < 2 * TOKEN_DELAY_SECONDS
    assert [a["event"] for a in report["arrivals"]] == ["start", *["token"] * REPLY_TOKENS, "end"]


def test_over_http2(stack: Stack) -> None:
    code, report = probe_json(stack.url("proxy-h2c"), "--token", stack.token, "--http2")
    assert (report["verdict"], code, report["headers"][":protocol"]) == ("streaming", 0, "HTTP/2")


def test_the_text_report_names_cause_and_fix(stack: Stack) -> None:
    code, stdout = probe(stack.url("proxy-gzip"), "--token", stack.token)
    assert code == 1
    assert "content-encoding: gzip" in stdout
    assert "verdict: COMPRESSED" in stdout
    assert "`gzip off`" in stdout
