"""Bad requests get their exact status and JSON body through the proxy, before
any stream byte; a failure inside the reply ends the stream with an error event."""

import json
import socket
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from streamcheck import clients
from streamcheck.timing import Kind, classify
from tests.integration.stack import QUERY_NOT_ALLOWED, Stack

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
    if status == 405:  # the API's own, passed through with what the path takes
        assert response.headers["allow"] == "POST"


def test_trace_is_refused_by_the_proxy_with_json_and_allow(stack: Stack) -> None:
    response = requests.request("TRACE", stack.url(), headers=stack.auth, timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"error": {"code": "method_not_allowed", "message": "Method Not Allowed"}}


BAD_REQUEST = {"error": {"code": "bad_request", "message": "The request is malformed or its headers are too large."}}


def test_a_malformed_request_line_gets_json(stack: Stack) -> None:
    # Such a request has no URI; nginx must still answer with the JSON shape
    # (a named error location would make it answer 500).
    address = urlsplit(stack.url())
    assert address.hostname and address.port
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        raw.sendall(b"GARBAGE\r\n\r\n")
        answer = b"".join(iter(lambda: raw.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request"
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == BAD_REQUEST


@pytest.mark.parametrize(
    ("send", "status", "expected"),
    [
        pytest.param(
            lambda stack: requests.post(stack.url(), headers={**stack.auth, "X-Padding": "x" * 20_000}, timeout=10),
            400,
            BAD_REQUEST,
            id="headers-too-large",
        ),
        pytest.param(
            lambda stack: requests.get(stack.url(path="/api/" + "x" * 20_000), timeout=10),
            414,
            {"error": {"code": "uri_too_long", "message": "The request URI is too long."}},
            id="uri-too-long",
        ),
        pytest.param(
            lambda stack: requests.get(stack.https_url(path="/healthz").replace("https://", "http://", 1), timeout=10),
            400,
            {"error": {"code": "https_required", "message": "This port speaks HTTPS: use an https:// URL."}},
            id="plain-http-to-https-port",
        ),
        pytest.param(
            # Every path proxied to the API refuses a query string, not only
            # the streams (test_auth_through_proxy.py: tokens in the URL).
            lambda stack: requests.get(stack.url(path="/healthz?probe=1"), timeout=10),
            400,
            QUERY_NOT_ALLOWED,
            id="query-string-to-the-api",
        ),
    ],
)
def test_requests_nginx_refuses_get_json(
    stack: Stack, send: Callable[[Stack], requests.Response], status: int, expected: dict[str, Any]
) -> None:
    response = send(stack)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected


def raw_request(stack: Stack, request: bytes) -> tuple[bytes, bytes]:
    """Send bytes to the proxy as they are; (status line and headers, body)."""
    address = urlsplit(stack.url())
    assert address.hostname and address.port
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        raw.sendall(request)
        answer = b"".join(iter(lambda: raw.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def test_a_transfer_encoding_nginx_does_not_implement_gets_json(stack: Stack) -> None:
    head, body = raw_request(
        stack,
        b"POST /api/chat/message/stream HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 501 Not Implemented"
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {
        "error": {
            "code": "not_implemented",
            "message": "The request uses a transfer encoding this server does not implement.",
        }
    }


PRECONDITION_FAILED = {
    "error": {
        "code": "precondition_failed",
        "message": "The file does not meet the If-Match or If-Unmodified-Since condition.",
    }
}


@pytest.mark.parametrize(
    ("headers", "status", "content_type", "expected"),
    [
        pytest.param({"If-Match": '"not-its-etag"'}, 412, "application/json", PRECONDITION_FAILED, id="if-match"),
        pytest.param(
            {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
            412,
            "application/json",
            PRECONDITION_FAILED,
            id="if-unmodified-since",
        ),
        pytest.param(
            # Uncompressed: nginx does not serve ranges of a gzipped response.
            {"Range": "bytes=999999-", "Accept-Encoding": "identity"},
            416,
            # nginx gave the HTML file its charset before it checked the range.
            "application/json; charset=utf-8",
            {"error": {"code": "range_not_satisfiable", "message": "The requested range is outside the file."}},
            id="range-past-the-end",
        ),
    ],
)
def test_conditions_and_ranges_a_static_file_fails_get_json(
    stack: Stack, headers: dict[str, str], status: int, content_type: str, expected: dict[str, Any]
) -> None:
    response = requests.get(stack.url(path="/index.html"), headers=headers, timeout=10)
    assert (response.status_code, response.headers["content-type"]) == (status, content_type)
    assert response.json() == expected
    if status == 416:  # still says how long the file is
        assert response.headers["content-range"].startswith("bytes */")


def test_an_http_version_nginx_does_not_speak_gets_json(stack: Stack) -> None:
    head, body = raw_request(stack, b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 505 HTTP Version Not Supported"
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": {"code": "http_version_not_supported", "message": "Use HTTP/1.1 or HTTP/2."}}


def test_a_refused_method_on_a_static_file_is_json_typed_as_json(stack: Stack) -> None:
    response = requests.post(stack.url(path="/index.html"), timeout=10)
    assert (response.status_code, response.headers["content-type"]) == (405, "application/json")
    assert response.json() == {"error": {"code": "method_not_allowed", "message": "Method Not Allowed"}}


def test_a_trailing_slash_is_404_json_not_a_redirect_to_the_clients_host(stack: Stack) -> None:
    response = requests.post(
        stack.url(path="/api/chat/message/stream/"),
        json={"message": "hi"},
        headers={**stack.auth, "Host": "evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert (response.status_code, response.json()) == (404, {"error": {"code": "not_found", "message": "Not Found"}})
    assert "location" not in response.headers


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


def in_the_proxy(stack: Stack, *command: str, user: str) -> str:
    """The output of ``command`` run in the main proxy's container as ``user``."""
    (container,) = stack.containers("nginx")
    done = subprocess.run(["docker", "exec", "--user", user, container, *command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_page_file_nginx_may_not_read_gets_json(stack: Stack) -> None:
    # What a broken image would ship: a file under the page's root that
    # nginx's unprivileged user may not read (put there as root meanwhile).
    path = "/srv/www/unreadable.png"
    in_the_proxy(stack, "sh", "-c", f"echo broken > {path} && chmod 000 {path}", user="root")
    try:
        response = requests.get(stack.url(path="/unreadable.png"), timeout=10)
    finally:
        in_the_proxy(stack, "rm", "-f", path, user="root")
    assert (response.status_code, response.headers["content-type"]) == (403, "application/json")
    assert response.json() == {"error": {"code": "forbidden", "message": "Forbidden"}}


def test_a_failure_of_nginx_itself_gets_json(stack: Stack) -> None:
    # nginx's own failure, provoked: a request body larger than its memory
    # buffer (client_body_buffer_size, 16k) goes to a temporary file, in a
    # directory (nginx.conf: client_body_temp_path) that nginx's user, its
    # owner, makes unwritable meanwhile, as a full or read-only /tmp would.
    temp = "/tmp/client_body"
    mode = in_the_proxy(stack, "stat", "-c", "%a", temp, user="nginx").strip()
    in_the_proxy(stack, "chmod", "000", temp, user="nginx")
    try:
        response = requests.post(
            stack.url(), data=json.dumps({"message": "x" * 40_000}), headers={**stack.auth, **JSON}, timeout=10
        )
    finally:
        in_the_proxy(stack, "chmod", mode, temp, user="nginx")
    assert (response.status_code, response.headers["content-type"]) == (500, "application/json")
    assert response.json() == {
        "error": {"code": "internal_error", "message": "The proxy failed to answer. Retry shortly."}
    }
    # The control: with the directory back, the same body reaches the API (its 422).
    again = requests.post(
        stack.url(), data=json.dumps({"message": "x" * 40_000}), headers={**stack.auth, **JSON}, timeout=10
    )
    assert (again.status_code, again.json()["error"]["code"]) == (422, "validation_error")
