"""The error handlers (app/errors.py): what no handler expects is a JSON 500."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from unexpected_error import PATH as FAILING_PATH

INTERNAL_ERROR = {"error": {"code": "internal_error", "message": "The server failed to answer. Retry shortly."}}


def test_an_unexpected_exception_is_a_json_500_that_says_nothing_of_it(failing_client: TestClient) -> None:
    response = failing_client.get(FAILING_PATH)

    assert (response.status_code, response.headers["content-type"]) == (500, "application/json")
    assert response.json() == INTERNAL_ERROR
    assert "RuntimeError" not in response.text and "secret" not in response.text


def test_the_exception_still_reaches_the_server_which_logs_its_traceback(failing_app: FastAPI) -> None:
    # Starlette sends the handler's answer, then raises the exception again:
    # uvicorn logs it ("Exception in ASGI application" and the traceback).
    # The test client raises it in the test instead.
    with TestClient(failing_app) as client, pytest.raises(RuntimeError, match="must not see"):
        client.get(FAILING_PATH)
