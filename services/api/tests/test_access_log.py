import logging
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from unexpected_error import PATH as FAILING_PATH

URL = "/api/chat/message/stream"


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "app.access"]


def test_a_stream_logs_one_line_with_its_outcome(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        response = client.post(URL, json={"message": "hi"}, headers={"X-Request-ID": "rid-123"})
    (line,) = lines(caplog)
    assert response.status_code == 200
    assert line.startswith("POST /api/chat/message/stream 200 ")
    assert line.endswith(" rid=rid-123 outcome=end tokens=12")
    (record,) = [r for r in caplog.records if r.name == "app.access"]
    assert record.access["request_id"] == "rid-123" and record.access["tokens"] == 12  # type: ignore[attr-defined]


def test_a_refusal_logs_its_error_code_and_never_the_query(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        client.post(URL + "?access_token=secret-in-url", json={"message": "hi"}, headers={"Authorization": ""})
    (line,) = lines(caplog)
    assert line.startswith("POST /api/chat/message/stream 401 ") and "error=missing_token" in line
    assert "secret-in-url" not in line


def test_a_failing_reply_logs_its_error(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        client.post(URL, json={"message": "/fail"})
    (line,) = lines(caplog)
    assert "outcome=error" in line and "error=source_failed" in line


def test_probes_that_succeed_are_not_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    assert lines(caplog) == []


def test_a_process_that_is_not_ready_says_so_in_the_log(
    client: TestClient, caplog: pytest.LogCaptureFixture, begin_shutdown: Callable[[], None]
) -> None:
    begin_shutdown()
    with caplog.at_level(logging.INFO, logger="app.access"):
        assert client.get("/readyz").status_code == 503
    (line,) = lines(caplog)
    assert line.startswith("GET /readyz 503 ")


def test_json_lines_carry_the_fields() -> None:
    import json

    from app.log_format import JsonFormatter

    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "POST / 200 1ms", None, None)
    record.access = {"status": 200, "request_id": "r1"}
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["status"], line["request_id"]) == ("info", "app.access", 200, "r1")


def test_an_unexpected_error_logs_its_500(failing_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        assert failing_client.get(FAILING_PATH).status_code == 500
    (line,) = lines(caplog)
    assert line.startswith(f"GET {FAILING_PATH} 500 ") and line.endswith(" error=internal_error")


def test_a_refused_websocket_logs_its_status_and_error(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="app.access"),
        pytest.raises(WebSocketDenialResponse),
        client.websocket_connect("/api/chat/message/ws", subprotocols=["chat.v1"]),
    ):
        pass
    (line,) = lines(caplog)
    assert line.startswith("WS /api/chat/message/ws 401 ") and line.endswith(" error=missing_token")
