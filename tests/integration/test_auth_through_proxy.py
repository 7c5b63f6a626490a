"""Authentication and authorization of the streaming endpoints, through nginx:
exact statuses and bodies, before any stream byte; tokens never logged."""

import json
import time
from typing import Any

import jwt
import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.integration.stack import QUERY_NOT_ALLOWED, STREAM_PATH, WEBSOCKET_PATH, Stack

INVALID = {"error": {"code": "invalid_token", "message": "The token is not valid."}}
MISSING = {"error": {"code": "missing_token", "message": "Send Authorization: Bearer <token>."}}
NO_SCOPE = {"error": {"code": "insufficient_scope", "message": "The token lacks the chat:stream scope."}}
# A WebSocket handshake without a token (the token goes as a subprotocol).
MISSING_SUBPROTOCOL = {
    "error": {"code": "missing_token", "message": "Send the token as a subprotocol: bearer.<token>, beside chat.v1."}
}


def token_for(stack: Stack, **overrides: Any) -> str:
    """A token like the stack's, with some claims changed (same key, from its header)."""
    claims = jwt.decode(stack.token, options={"verify_signature": False})
    return jwt.encode({**claims, **overrides}, stack.secret, algorithm="HS256")


def post(stack: Stack, headers: dict[str, str], body: dict[str, Any] | None = None) -> requests.Response:
    return requests.post(stack.url(), json=body or {"message": "hi"}, headers=headers, timeout=10)


def refused_handshake(url: str, token: str | None = None) -> Response:
    """The answer to a WebSocket handshake the server refused (with
    ``token`` as its bearer subprotocol, or none)."""
    protocols = [Subprotocol("chat.v1"), *([Subprotocol(f"bearer.{token}")] if token else [])]
    with pytest.raises(InvalidStatus) as refused:
        connect(url, subprotocols=protocols)
    return refused.value.response


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        pytest.param("none", 401, MISSING, id="missing"),
        pytest.param("garbage", 401, INVALID, id="malformed"),
        pytest.param("wrong-key", 401, INVALID, id="wrong-key"),
        pytest.param("alg-none", 401, INVALID, id="alg-none"),
        pytest.param("expired", 401, {"error": {"code": "invalid_token", "message": "The token has expired."}},
                     id="expired"),
        pytest.param("no-scope", 403, NO_SCOPE, id="missing-scope"),
    ],
)  # fmt: skip
def test_bad_tokens_get_exact_errors(stack: Stack, kind: str, status: int, expected: dict[str, Any]) -> None:
    claims = jwt.decode(stack.token, options={"verify_signature": False})
    tokens = {
        "garbage": "not.a.jwt",
        "wrong-key": jwt.encode(claims, "another-secret-0123456789abcdef0123", algorithm="HS256"),
        "alg-none": jwt.encode(claims, "", algorithm="none"),
        "expired": token_for(stack, exp=int(time.time()) - 5),
        "no-scope": token_for(stack, scope="profile"),
    }
    headers = {} if kind == "none" else {"Authorization": f"Bearer {tokens[kind]}"}
    response = post(stack, headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"].startswith('Bearer realm="chat"')
    assert response.json() == expected


def test_another_subjects_conversation_is_not_found(stack: Stack) -> None:
    mine = {"message": "hi", "conversation_id": "conv_owned-by-tester"}
    assert post(stack, stack.auth, mine).status_code == 200
    other = {"Authorization": f"Bearer {token_for(stack, sub='mallory')}"}
    response = post(stack, other, mine)
    assert (response.status_code, response.json()) == (
        404,
        {"error": {"code": "conversation_not_found", "message": "No such conversation."}},
    )


def test_many_new_conversations_never_free_another_subjects_one(stack: Stack) -> None:
    """The takeover that a bounded owner map allowed: another subject opens
    enough new conversations to push the owner out, then claims it."""
    victim = {"message": "/pace 1 1", "conversation_id": f"conv_victim_{time.time_ns()}"}
    assert post(stack, stack.auth, victim).status_code == 200
    mallory = {"Authorization": f"Bearer {token_for(stack, sub='mallory')}"}
    statuses = {post(stack, mallory, {"message": "/pace 1 1"}).status_code for _ in range(31)}
    assert statuses <= {200, 503}
    response = post(stack, mallory, victim)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "conversation_not_found")


@pytest.mark.parametrize(
    ("kind", "status", "challenge", "expected"),
    [
        pytest.param("none", 401, 'Bearer realm="chat"', MISSING_SUBPROTOCOL, id="missing"),
        pytest.param("garbage", 401, 'Bearer realm="chat", error="invalid_token"', INVALID, id="malformed"),
        pytest.param("no-scope", 403, 'Bearer realm="chat", error="insufficient_scope", scope="chat:stream"',
                     NO_SCOPE, id="missing-scope"),
    ],
)  # fmt: skip
def test_a_websocket_refused_for_its_token_gets_the_json_error(
    stack: Stack, kind: str, status: int, challenge: str, expected: dict[str, Any]
) -> None:
    # Refused before the upgrade, with the HTTP API's status, challenge and body.
    token = {"none": None, "garbage": "not.a.jwt", "no-scope": token_for(stack, scope="profile")}[kind]
    response = refused_handshake(stack.ws_url(), token)
    assert (response.status_code, response.headers["content-type"]) == (status, "application/json")
    assert response.headers["www-authenticate"] == challenge
    assert response.body is not None and json.loads(response.body) == expected


def test_public_endpoints_stay_public(stack: Stack) -> None:
    assert requests.get(stack.url(path="/healthz"), timeout=10).status_code == 200
    assert requests.get(stack.url(path="/"), timeout=10).status_code == 200


def test_tokens_never_reach_the_logs(stack: Stack) -> None:
    post(stack, stack.auth)
    # A client that puts its token in the URL: nginx refuses a query string
    # on the API's paths before anything can log it (its error log writes
    # the request line as sent), and the access logs keep the path only.
    in_url = {case: token_for(stack, jti=f"in-the-url-{case}") for case in ("sse", "ws", "page")}
    sse = requests.post(stack.url(path=f"{STREAM_PATH}?access_token={in_url['sse']}"), json={"message": "hi"},
                        timeout=10)  # fmt: skip
    assert (sse.status_code, sse.headers["content-type"], sse.json()) == (400, "application/json", QUERY_NOT_ALLOWED)
    handshake = refused_handshake(f"{stack.ws_url()}?access_token={in_url['ws']}")
    assert (handshake.status_code, handshake.headers["content-type"]) == (400, "application/json")
    assert handshake.body is not None and json.loads(handshake.body) == QUERY_NOT_ALLOWED
    # The page's paths take a query string (?decoder=): a missing file is a
    # plain 404, which nginx does not log as an error.
    page = requests.get(stack.url(path=f"/missing.js?access_token={in_url['page']}"), timeout=10)
    assert (page.status_code, page.json()) == (404, {"error": {"code": "not_found", "message": "Not Found"}})

    stdout, stderr = stack.compose.get_logs("nginx", "api")
    for token in (stack.token, *in_url.values()):
        assert token.rsplit(".", 1)[1] not in stdout + stderr
    assert "access_token=" not in stdout + stderr


# Run inside an API replica: a WebSocket straight to the API, as the
# Kubernetes Gateway API and ingress overlays reach it (no nginx of this
# project to refuse the query string), accepted then refused.
_STRAIGHT_TO_THE_API = """
import sys
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

url, token, request_id = sys.argv[1:]
with connect(url, subprotocols=["chat.v1", "bearer." + token]):
    pass
try:
    connect(url, subprotocols=["chat.v1"], additional_headers={"X-Request-ID": request_id})
except InvalidStatus as refused:
    print(refused.response.status_code)
"""


def api_logs_once(stack: Stack, line: str, timeout: float = 10) -> str:
    """The API's logs, once they hold ``line``; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        stdout, stderr = stack.compose.get_logs("api")
        if line in stdout + stderr:
            return stdout + stderr
        assert time.monotonic() < deadline, f"{line!r} not in the API's log after {timeout} s"
        time.sleep(0.2)


def test_a_token_in_a_websocket_url_stays_out_of_the_apis_log_without_nginx(stack: Stack) -> None:
    # uvicorn logs every handshake with its query string; the API's log
    # filter (app/log_filters.py) keeps the path only.
    in_url = token_for(stack, jti="in-the-url-straight-to-the-api")
    url = f"ws://127.0.0.1:8000{WEBSOCKET_PATH}?access_token={in_url}"
    request_id = f"refused-handshake-{time.time_ns()}"
    assert stack.python_in(stack.containers()[0], _STRAIGHT_TO_THE_API, url, stack.token, request_id) == "401\n"
    # The refused handshake's own access line (app/access_log.py, found by
    # its request id) is written as its app returns, just before uvicorn
    # would log the error below: once the line is in, so would the error be.
    logs = api_logs_once(stack, f" rid={request_id}")
    [line] = [line for line in logs.splitlines() if f" rid={request_id}" in line]
    assert f"WS {WEBSOCKET_PATH} 401 " in line, line

    assert in_url.rsplit(".", 1)[1] not in logs and "access_token=" not in logs
    assert f'"WebSocket {WEBSOCKET_PATH}" [accepted]' in logs
    assert f'"WebSocket {WEBSOCKET_PATH}" 401' in logs
    # A refused handshake is no error (app/worker.py).
    assert "without completing handshake" not in logs


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"sub": ""}, id="empty-sub"),
        pytest.param({"exp": str(int(time.time()) + 3600)}, id="exp-numeric-string"),
        pytest.param({"scope": ["profile chat:stream"]}, id="scope-list-with-spaces"),
        pytest.param({"scope": "profile\tchat:stream"}, id="scope-tab-separated"),
    ],
)
def test_claims_of_the_wrong_type_make_an_invalid_token(stack: Stack, overrides: dict[str, Any]) -> None:
    # Each of these was served: RFC 7519 / RFC 8693 do not allow them.
    response = post(stack, {"Authorization": f"Bearer {token_for(stack, **overrides)}"})
    assert (response.status_code, response.json()) == (401, INVALID)
    assert response.headers["www-authenticate"] == 'Bearer realm="chat", error="invalid_token"'


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"{not json", "application/json", id="malformed-json"),  # was 400
        pytest.param(b'{"message": "hi"}', "text/plain", id="text-plain"),  # was 415
        pytest.param(b'{"message": 42}', "application/json", id="wrong-type"),
    ],
)
def test_without_a_token_the_answer_is_401_whatever_the_body(stack: Stack, body: bytes, content_type: str) -> None:
    response = requests.post(stack.url(), data=body, headers={"Content-Type": content_type}, timeout=10)
    assert (response.status_code, response.json()) == (401, MISSING)
    assert response.headers["www-authenticate"] == 'Bearer realm="chat"'
