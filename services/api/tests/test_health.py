"""GET /readyz, in-process: each of its answers, exactly (liveness: test_liveness.py)."""

import json
from collections.abc import Callable, Iterator

import pytest
from app.config import Settings, get_settings
from app.main import app
from fastapi.testclient import TestClient

URL = "/api/chat/message/stream"
READY = (200, {"status": "ready"})
SHUTTING_DOWN = (503, {"status": "shutting_down"})
AT_CAPACITY = (503, {"status": "at_capacity"})


def readiness(client: TestClient) -> tuple[int, object]:
    response = client.get("/readyz")
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


@pytest.fixture
def one_reply_client(settings: Settings, token: str) -> Iterator[TestClient]:
    """A process that generates at most one reply at once (CHAT_MAX_REPLIES=1)."""
    capped = settings.model_copy(update={"max_replies": 1})
    app.dependency_overrides[get_settings] = lambda: capped
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as test_client:
        yield test_client
    app.dependency_overrides.clear()


def test_ready_while_serving(client: TestClient) -> None:
    assert readiness(client) == READY


def test_not_ready_once_shutdown_begins(client: TestClient, begin_shutdown: Callable[[], None]) -> None:
    begin_shutdown()
    assert readiness(client) == SHUTTING_DOWN
    # Liveness is unaffected: a draining process is not restarted.
    assert client.get("/healthz").status_code == 200


def test_not_ready_at_capacity_and_ready_again_when_a_reply_ends(one_reply_client: TestClient) -> None:
    client = one_reply_client
    with client.stream("POST", URL, json={"message": "/pause 60"}) as response:
        lines = response.iter_lines()
        start = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        # The one reply this process may generate is under way.
        assert readiness(client) == AT_CAPACITY
        # What readiness says is what a new message gets at that moment.
        refused = client.post(URL, json={"message": "one more"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "too_many_streams")
        # Liveness is unaffected: a full process is busy, not dead.
        assert client.get("/healthz").status_code == 200

        assert client.post(f"/api/chat/message/{start['message_id']}/stop").status_code == 202
        assert "event: end" in list(lines)
    assert readiness(client) == READY
    assert client.post(URL, json={"message": "hi"}).status_code == 200


def test_shutting_down_outranks_at_capacity(one_reply_client: TestClient, begin_shutdown: Callable[[], None]) -> None:
    client = one_reply_client
    with client.stream("POST", URL, json={"message": "/pause 60"}) as response:
        lines = response.iter_lines()
        start = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        assert readiness(client) == AT_CAPACITY
        begin_shutdown()
        assert readiness(client) == SHUTTING_DOWN
        # The stream ends either way: stopped (end) or told to reconnect
        # elsewhere (server_shutdown), whichever comes first.
        client.post(f"/api/chat/message/{start['message_id']}/stop")
        assert {"event: end", "event: error"} & set(lines)
