"""Bearer tokens on the streaming endpoints: every bad kind of token, the scope,
conversation ownership, and a token that expires mid-stream."""

import json
import math
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from app.config import Settings
from app.tokens import mint
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

URL = "/api/chat/message/stream"
CHALLENGE = 'Bearer realm="chat", error="invalid_token"'


def claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "alice", "iss": settings.auth_issuer, "aud": settings.auth_audience,
            "scope": "chat:stream", "iat": now, "exp": now + 60}  # fmt: skip
    return {**base, **overrides}


def secret(settings: Settings) -> str:
    assert settings.auth_secret is not None
    return settings.auth_secret.get_secret_value()


def bad_tokens(settings: Settings) -> dict[str, str]:
    return {
        "expired": jwt.encode(claims(settings, exp=int(time.time()) - 10), secret(settings), algorithm="HS256"),
        "wrong-key": jwt.encode(claims(settings), "another-secret-0123456789abcdef0123", algorithm="HS256"),
        "alg-none": jwt.encode(claims(settings), "", algorithm="none"),
        "wrong-audience": jwt.encode(claims(settings, aud="someone-else"), secret(settings), algorithm="HS256"),
        "wrong-issuer": jwt.encode(claims(settings, iss="someone-else"), secret(settings), algorithm="HS256"),
        "no-exp": jwt.encode({k: v for k, v in claims(settings).items() if k != "exp"}, secret(settings)),
        "malformed": "not.a.jwt",
        # Claims of the wrong type (RFC 7519, RFC 8693): each was accepted.
        **{
            kind: jwt.encode(claims(settings, **overrides), secret(settings), algorithm="HS256")
            for kind, overrides in malformed_claims().items()
        },
    }


def malformed_claims() -> dict[str, dict[str, Any]]:
    soon = int(time.time()) + 60
    return {
        "empty-sub": {"sub": ""},
        "exp-numeric-string": {"exp": str(soon)},
        "nbf-numeric-string": {"nbf": str(soon - 120)},
        "iat-numeric-string": {"iat": str(soon - 60)},
        "nbf-boolean": {"nbf": True},
        "scope-list": {"scope": ["chat:stream"]},
        "scope-list-with-spaces": {"scope": ["profile chat:stream"]},
        "scope-tab-separated": {"scope": "profile\tchat:stream"},
        "scope-double-space": {"scope": "profile  chat:stream"},
        "scope-leading-space": {"scope": " chat:stream"},
        "scope-non-ascii": {"scope": "chat:stream \u00e9"},
    }


def post(client: TestClient, authorization: str | None, body: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    client.headers.pop("Authorization", None)
    return client.post(URL, json=body or {"message": "hi"}, headers=headers)


def test_no_token_is_401_with_a_challenge(client: TestClient) -> None:
    response = post(client, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="chat"'
    assert response.json() == {"error": {"code": "missing_token", "message": "Send Authorization: Bearer <token>."}}


@pytest.mark.parametrize(
    "kind",
    ["expired", "wrong-key", "alg-none", "wrong-audience", "wrong-issuer", "no-exp", "malformed", *malformed_claims()],
)
def test_a_bad_token_is_401(client: TestClient, settings: Settings, kind: str) -> None:
    response = post(client, f"Bearer {bad_tokens(settings)[kind]}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    message = "The token has expired." if kind == "expired" else "The token is not valid."
    assert response.json() == {"error": {"code": "invalid_token", "message": message}}


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(lambda now: {"scope": "profile chat:stream email"}, id="several-scopes"),
        pytest.param(lambda now: {"exp": now + 60.5, "iat": now}, id="fractional-numeric-dates"),
        pytest.param(lambda now: {"nbf": int(now) - 5}, id="nbf"),
    ],
)
def test_well_formed_claims_are_accepted(
    client: TestClient, settings: Settings, overrides: Callable[[float], dict[str, Any]]
) -> None:
    token = jwt.encode(claims(settings, **overrides(time.time())), secret(settings), algorithm="HS256")
    assert post(client, f"Bearer {token}").status_code == 200


@pytest.mark.parametrize("scope", ["", "profile"])
def test_a_token_without_the_scope_is_403_however_it_says_so(
    client: TestClient, settings: Settings, scope: str
) -> None:
    token = jwt.encode(claims(settings, scope=scope), secret(settings), algorithm="HS256")
    assert post(client, f"Bearer {token}").json()["error"]["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b"{not json", "application/json", id="malformed-json"),  # was 400
        pytest.param(b"[" * 10_000, "application/json", id="nested-10000-deep"),  # was 400
        pytest.param(b'{"message": "hi"}', "text/plain", id="text-plain"),  # was 415
        pytest.param(b'{"message": "hi"}', None, id="no-content-type"),  # was 415
        pytest.param(b'{"message": 42}', "application/json", id="wrong-type"),
        pytest.param(b"", "application/json", id="empty"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer not.a.jwt"], ids=["no-token", "invalid-token"])
def test_authentication_comes_before_the_body(
    client: TestClient, authorization: str | None, content: bytes, content_type: str | None
) -> None:
    client.headers.pop("Authorization", None)
    headers = {"Content-Type": content_type} if content_type else {}
    if authorization:
        headers["Authorization"] = authorization
    response = client.post(URL, content=content, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == ("invalid_token" if authorization else "missing_token")
    assert response.headers["www-authenticate"].startswith('Bearer realm="chat"')


def test_with_a_valid_token_the_body_is_checked_as_before(client: TestClient) -> None:
    assert client.post(URL, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post(URL, content=b'{"message": "hi"}', headers={"Content-Type": "text/plain"}).status_code == 415


def test_stop_authenticates_first_too(client: TestClient) -> None:
    client.headers.pop("Authorization", None)
    response = client.post("/api/chat/message/not-an-id/stop")
    assert (response.status_code, response.json()["error"]["code"]) == (401, "missing_token")


def test_a_token_without_the_scope_is_403(client: TestClient, settings: Settings) -> None:
    response = post(client, f"Bearer {mint(settings, 'alice', scope='profile')}")
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="chat", error="insufficient_scope", scope="chat:stream"'
    )
    assert response.json()["error"]["code"] == "insufficient_scope"


def test_another_subjects_conversation_is_404(client: TestClient, settings: Settings) -> None:
    assert (
        post(client, f"Bearer {mint(settings, 'alice')}", {"message": "hi", "conversation_id": "c1"}).status_code == 200
    )
    response = post(client, f"Bearer {mint(settings, 'mallory')}", {"message": "hi", "conversation_id": "c1"})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "conversation_not_found", "message": "No such conversation."}}


def test_another_subjects_reply_cannot_be_resumed(client: TestClient, settings: Settings) -> None:
    first = post(client, f"Bearer {mint(settings, 'alice')}")
    token_id = next(line[4:] for line in first.text.splitlines() if line.startswith("id: "))
    client.headers["Authorization"] = f"Bearer {mint(settings, 'mallory')}"
    resumed = client.post(URL, json={"message": "hi"}, headers={"Last-Event-ID": token_id})
    assert "resume_unavailable" in resumed.text
    assert "event: token" not in resumed.text


def test_a_token_that_expires_mid_stream_ends_it(client: TestClient, settings: Settings) -> None:
    # exp is whole seconds: a 1 s lifetime minted just before a second boundary
    # has expired before it is checked. This one expires at the second after
    # next: 1 to 2 s from now, well inside the 4 s reply and well after the check.
    expires = math.floor(time.time()) + 2
    short = jwt.encode(claims(settings, exp=expires), secret(settings), algorithm="HS256")
    response = post(client, f"Bearer {short}", {"message": "/pace 200 20"})  # 4 s of tokens
    assert response.status_code == 200
    data = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1]["code"] == "token_expired"
    assert len([item for item in data if "index" in item]) < 20  # cut short, not a complete reply


INVALID = {"code": "invalid_token", "message": "The token is not valid."}
MISSING_SUBPROTOCOL = {
    "code": "missing_token",
    "message": "Send the token as a subprotocol: bearer.<token>, beside chat.v1.",
}


@pytest.mark.parametrize(
    ("kind", "status", "challenge", "error"),
    [
        pytest.param(None, 401, 'Bearer realm="chat"', MISSING_SUBPROTOCOL, id="missing"),
        pytest.param("wrong-key", 401, CHALLENGE, INVALID, id="wrong-key"),
        pytest.param("scope-list-with-spaces", 401, CHALLENGE, INVALID, id="scope-list-with-spaces"),
        pytest.param("empty-sub", 401, CHALLENGE, INVALID, id="empty-sub"),
        pytest.param("expired", 401, CHALLENGE, {"code": "invalid_token", "message": "The token has expired."},
                     id="expired"),
        pytest.param("no-scope", 403, 'Bearer realm="chat", error="insufficient_scope", scope="chat:stream"',
                     {"code": "insufficient_scope", "message": "The token lacks the chat:stream scope."},
                     id="no-scope"),
    ],
)  # fmt: skip
def test_a_websocket_without_a_valid_token_gets_the_http_apis_error(
    client: TestClient, settings: Settings, kind: str | None, status: int, challenge: str, error: dict[str, str]
) -> None:
    # The handshake is refused before the upgrade with the JSON the HTTP API
    # answers (ASGI's WebSocket denial response).
    tokens = {**bad_tokens(settings), "no-scope": mint(settings, "alice", scope="profile")}
    protocols = ["chat.v1"] if kind is None else ["chat.v1", f"bearer.{tokens[kind]}"]
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect(URL.replace("stream", "ws"), subprotocols=protocols),
    ):
        pass
    response = refused.value
    assert (response.status_code, response.headers["content-type"]) == (status, "application/json")
    assert response.headers["www-authenticate"] == challenge
    assert response.json() == {"error": error}
