"""GET /healthz: answered by app/liveness.py before any other middleware or routing."""

import logging

import pytest
from app.liveness import LivenessMiddleware
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send


def test_liveness_answers_ok_as_json(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.headers["content-type"], response.content) == (
        200,
        "application/json",
        b'{"status":"ok"}',
    )
    assert response.json() == {"status": "ok"}


def test_a_head_request_gets_the_headers_only(client: TestClient) -> None:
    response = client.head("/healthz")
    assert (response.status_code, response.content, response.headers["content-length"]) == (200, b"", "15")


def test_no_middleware_of_the_app_runs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        response = client.get("/healthz", headers={"X-Request-ID": "probe-1", "Origin": "https://elsewhere.example"})
    # No request id, no CORS decision, no access line: none of them ran.
    assert not {"x-request-id", "x-served-by", "access-control-allow-origin"} & set(response.headers)
    assert [r for r in caplog.records if r.name == "app.access"] == []


def test_other_methods_fall_through_to_routing(client: TestClient) -> None:
    response = client.post("/healthz")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


def test_it_answers_whatever_the_app_behind_it_does() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the app is wedged")

    alone = TestClient(LivenessMiddleware(broken))  # no lifespan: the app would fail that too
    assert alone.get("/healthz").json() == {"status": "ok"}
    with pytest.raises(RuntimeError):
        alone.get("/readyz")
