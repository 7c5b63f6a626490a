"""Bad requests get their exact status and JSON body through the proxy, before
any stream byte; a failure inside the reply ends the stream with an error event."""

import json
from typing import Any

import pytest
import requests

from streamcheck import clients
from streamcheck.timing import Kind, classify
from tests.integration.stack import Stack

JSON = {"Content-Type": "application/json"}


def validation(loc: list[str], type_: str, msg: str) -> dict[str, Any]:
    return {
        "error": {
            "code": "validation_error",
            "message": f"{'.'.join(loc[1:])}: {msg}",
            "details": [{"loc": loc, "type": type_, "msg": msg}],
        }
    }


BAD_REQUESTS = [
    pytest.param(
        b'{"message": "unterminated',
        JSON,
        400,
        {"error": {"code": "invalid_json", "message": "The request body is not valid JSON."}},
        id="malformed-json",
    ),
    pytest.param(
        b"message=hello",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        {"error": {"code": "unsupported_media_type", "message": "Send the request body as application/json."}},
        id="form-content-type",
    ),
    pytest.param(
        b'{"message": "hello"}',
        {},
        415,
        {"error": {"code": "unsupported_media_type", "message": "Send the request body as application/json."}},
        id="no-content-type",
    ),
    pytest.param(
        b"{}",
        JSON,
        422,
        validation(["body", "message"], "missing", "Field required"),
        id="missing-message",
    ),
    pytest.param(
        b'{"message": ""}',
        JSON,
        422,
        validation(["body", "message"], "string_too_short", "String should have at least 1 character"),
        id="empty-message",
    ),
    pytest.param(
        b'{"message": " \\n\\t "}',
        JSON,
        422,
        validation(["body", "message"], "value_error", "Value error, message must not be blank"),
        id="blank-message",
    ),
    pytest.param(
        json.dumps({"message": "x" * 4001}).encode(),
        JSON,
        422,
        validation(["body", "message"], "string_too_long", "String should have at most 4000 characters"),
        id="message-too-long",
    ),
    pytest.param(
        json.dumps({"message": "ok", "conversation_id": "../etc"}).encode(),
        JSON,
        422,
        validation(
            ["body", "conversation_id"],
            "string_pattern_mismatch",
            "String should match pattern '^[A-Za-z0-9_-]{1,64}$'",
        ),
        id="bad-conversation-id",
    ),
    pytest.param(
        json.dumps({"message": "x" * 70_000}).encode(),
        JSON,
        413,
        {"error": {"code": "request_too_large", "message": "The request body is too large."}},
        id="body-over-proxy-limit",
    ),
]


@pytest.mark.parametrize(("body", "headers", "status", "expected"), BAD_REQUESTS)
def test_bad_request_gets_exact_json_error(
    stack: Stack, body: bytes, headers: dict[str, str], status: int, expected: dict[str, Any]
) -> None:
    response = requests.post(stack.url(), data=body, headers={**stack.auth, **headers}, timeout=10)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected


def test_a_4000_character_message_is_accepted(stack: Stack) -> None:
    m = clients.with_requests(stack.url(), {"message": "ع" * 4000}, headers=stack.auth)
    assert m.status == 200 and m.closing_event == "end"


@pytest.mark.parametrize(
    ("method", "path", "status", "expected"),
    [
        pytest.param(
            "GET",
            "/api/chat/message/stream",
            405,
            {"error": {"code": "method_not_allowed", "message": "Method Not Allowed"}},
            id="get-on-stream",
        ),
        pytest.param(
            "GET",
            "/api/nothing-here",
            404,
            {"error": {"code": "not_found", "message": "Not Found"}},
            id="unknown-api-path",
        ),
        pytest.param(
            "GET",
            "/nothing-here",
            404,
            {"error": {"code": "not_found", "message": "Not Found"}},
            id="unknown-path-at-proxy",
        ),
    ],
)
def test_wrong_route_gets_json(stack: Stack, method: str, path: str, status: int, expected: dict[str, Any]) -> None:
    response = requests.request(method, stack.url(path=path), headers=stack.auth, timeout=10)
    assert response.status_code == status
    assert response.json() == expected


def test_a_failing_token_source_ends_the_stream_with_an_error_event(stack: Stack) -> None:
    # compose.test.yaml turns on the twin's fault hook: "/fail" raises after 3 tokens.
    m = clients.with_requests(stack.url(), {"message": "/fail please"}, headers=stack.auth)

    assert m.status == 200
    assert [e.event for e in m.events()] == ["start", "token", "token", "token", "error"]
    assert json.loads(m.events("error")[0].data) == {
        "code": "source_failed",
        "message": "The reply could not be completed. Send the message again.",
    }
    assert classify(m).kind is Kind.ERROR
