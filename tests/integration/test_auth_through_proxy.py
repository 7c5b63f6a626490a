"""Authentication and authorization of the streaming endpoints, through nginx:
exact statuses and bodies, before any stream byte; tokens never logged."""

import time
from typing import Any

import jwt
import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.integration.stack import Stack

INVALID = {"error": {"code": "invalid_token", "message": "The token is not valid."}}
MISSING = {"error": {"code": "missing_token", "message": "Send Authorization: Bearer <token>."}}


def token_for(stack: Stack, **overrides: Any) -> str:
    """A token like the stack's, with some claims changed (same key, from its header)."""
    claims = jwt.decode(stack.token, options={"verify_signature": False})
    return jwt.encode({**claims, **overrides}, stack.secret, algorithm="HS256")


def post(stack: Stack, headers: dict[str, str], body: dict[str, Any] | None = None) -> requests.Response:
    return requests.post(stack.url(), json=body or {"message": "hi"}, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        pytest.param("none", 401, MISSING, id="missing"),
        pytest.param("garbage", 401, INVALID, id="malformed"),
        pytest.param("wrong-key", 401, INVALID, id="wrong-key"),
        pytest.param("alg-none", 401, INVALID, id="alg-none"),
        pytest.param("expired", 401, {"error": {"code": "invalid_token", "message": "The token has expired."}},
                     id="expired"),
        pytest.param("no-scope", 403,
                     {"error": {"code": "insufficient_scope", "message": "The token lacks the chat:stream scope."}},
                     id="missing-scope"),
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


def test_a_websocket_without_a_token_is_refused(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.ws_url(), subprotocols=[Subprotocol("chat.v1")])
    assert refused.value.response.status_code == 403


def test_public_endpoints_stay_public(stack: Stack) -> None:
    assert requests.get(stack.url(path="/healthz"), timeout=10).status_code == 200
    assert requests.get(stack.url(path="/"), timeout=10).status_code == 200


def test_tokens_never_reach_the_logs(stack: Stack) -> None:
    post(stack, stack.auth)
    # A client that puts its token in the URL: the logs keep the path only.
    in_url = token_for(stack, jti="in-the-query-string")
    requests.post(stack.url(path=f"/api/chat/message/stream?access_token={in_url}"), json={"message": "hi"}, timeout=10)
    stdout, stderr = stack.compose.get_logs("nginx", "api")
    for token in (stack.token, in_url):
        assert token.rsplit(".", 1)[1] not in stdout + stderr
    assert "access_token=" not in stdout + stderr


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
