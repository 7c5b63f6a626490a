import pytest
from app.twin import reply_tokens
from fastapi.testclient import TestClient
from sse_body import parse

URL = "/api/chat/message/stream"


def test_stream_returns_the_whole_reply(client: TestClient) -> None:
    response = client.post(URL, json={"message": "hi", "conversation_id": "conv_x"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache, no-transform"
    assert response.headers["x-accel-buffering"] == "no"
    assert "connection" not in response.headers
    events = parse(response.text)
    assert events[0] == ("start", {"conversation_id": "conv_x", "message_id": events[0][1]["message_id"]})
    assert "".join(str(data["text"]) for name, data in events if name == "token") == "".join(reply_tokens(12))
    assert events[-1] == ("end", {"finish_reason": "stop", "tokens": 12})


def test_the_length_limit_comes_from_settings(client: TestClient) -> None:
    # conftest sets max_message_chars=40
    assert client.post(URL, json={"message": "x" * 40}).status_code == 200
    response = client.post(URL, json={"message": "x" * 41})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"loc": ["body", "message"], "type": "string_too_long", "msg": "String should have at most 40 characters"}
    ]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        pytest.param(b"{not json", "application/json", 400, "invalid_json", id="malformed"),
        pytest.param(b"[" * 10_000, "application/json", 400, "invalid_json", id="nested-10000-deep"),
        pytest.param(b'{"message": "\xff"}', "application/json", 400, "invalid_json", id="not-utf-8"),
        pytest.param(b'{"message": "hi"}', "text/plain", 415, "unsupported_media_type", id="text-plain"),
        pytest.param(b'{"message": "hi"}', "application/json; charset=utf-8", 200, None, id="json-with-charset"),
        pytest.param(b'{"message": 42}', "application/json", 422, "validation_error", id="wrong-type"),
        pytest.param(b"[]", "application/json", 422, "validation_error", id="not-an-object"),
    ],
)
def test_content_checks(client: TestClient, content: bytes, content_type: str, status: int, code: str | None) -> None:
    response = client.post(URL, content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    if code is not None:
        assert response.json()["error"]["code"] == code


def test_validation_errors_do_not_echo_the_input(client: TestClient) -> None:
    response = client.post(URL, json={"message": "secret " * 10})
    assert response.status_code == 422
    assert "secret" not in response.text


def test_a_source_failure_becomes_an_error_event(client: TestClient) -> None:
    events = parse(client.post(URL, json={"message": "/fail"}).text)
    assert [name for name, _ in events] == ["start", "token", "token", "token", "error"]


def test_openapi_declares_the_stream_as_event_stream(client: TestClient) -> None:
    operation = client.get("/api/openapi.json").json()["paths"][URL]["post"]
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    schema = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert [shape["properties"]["event"]["const"] for shape in schema["oneOf"]] == ["start", "token", "end", "error"]
    # The statuses the proxy adds (413, 429) are documented with the API's own.
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "413", "415", "422", "429", "503"}
    # Every error is JSON, whatever the stream's media type.
    for status, response in operation["responses"].items():
        if status != "200":
            assert list(response["content"]) == ["application/json"], status


def test_openapi_declares_the_bearer_scheme(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT with sub, exp, iss, aud and the chat:stream scope.",
    }
    assert document["paths"][URL]["post"]["security"] == [{"bearer": []}]
    assert document["paths"]["/api/chat/message/{message_id}/stop"]["post"]["security"] == [{"bearer": []}]


def test_a_trailing_slash_is_404_json_not_a_redirect(client: TestClient) -> None:
    response = client.post(URL + "/", json={"message": "hi"}, follow_redirects=False)
    assert (response.status_code, response.json()) == (404, {"error": {"code": "not_found", "message": "Not Found"}})
