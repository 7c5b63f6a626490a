"""The error handlers (app/errors.py): what no handler expects is a JSON 500."""

import logging

import pytest
from app.config import Settings
from app.main import create_app
from fastapi.testclient import TestClient
from unexpected_error import DETAIL, STREAM_PATH, add_failing_route
from unexpected_error import PATH as FAILING_PATH

INTERNAL_ERROR = {"error": {"code": "internal_error", "message": "The server failed to answer. Retry shortly."}}
ALLOWED = "https://app.example.com"


def test_an_unexpected_exception_is_a_json_500_that_says_nothing_of_it(failing_client: TestClient) -> None:
    response = failing_client.get(FAILING_PATH)

    assert (response.status_code, response.headers["content-type"]) == (500, "application/json")
    assert response.json() == INTERNAL_ERROR
    assert "RuntimeError" not in response.text and "secret" not in response.text


def test_the_500_carries_the_request_id_and_cors_headers(settings: Settings) -> None:
    # Answered inside CORS and the request id: a page of an allowed origin
    # can read it, and its id finds the traceback in the log.
    app = create_app(settings.model_copy(update={"cors_origins": [ALLOWED]}))
    add_failing_route(app)
    with TestClient(app) as client:
        response = client.get(FAILING_PATH, headers={"Origin": ALLOWED, "X-Request-ID": "rid-500"})

    assert (response.status_code, response.json()) == (500, INTERNAL_ERROR)
    assert response.headers["x-request-id"] == "rid-500"
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]


def test_the_traceback_is_logged_once_with_the_request_id(
    failing_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The client raises an exception that reaches the server (which would log
    # it a second time): none does.
    with caplog.at_level(logging.ERROR):
        assert failing_client.get(FAILING_PATH, headers={"X-Request-ID": "rid-500"}).status_code == 500

    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.name == "app.errors"
    assert record.getMessage() == f"unexpected error answering GET {FAILING_PATH} rid=rid-500"
    assert record.exc_info is not None and str(record.exc_info[1]) == DETAIL


def test_a_failure_after_the_response_started_goes_on_to_the_server(
    failing_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A second response start would be a protocol error (the test client
    # fails on one): the server logs the exception and closes the connection.
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="must not see"):
        failing_client.get(STREAM_PATH)
    assert [r for r in caplog.records if r.exc_info] == []
