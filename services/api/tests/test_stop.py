"""POST /api/chat/message/{message_id}/stop, in-process (memory store).

Across replicas: tests/integration/test_replicas.py."""

import json

from app.config import Settings
from app.tokens import mint
from fastapi.testclient import TestClient

URL = "/api/chat/message/stream"
NOT_FOUND = {"error": {"code": "message_not_found", "message": "No such message."}}


def stop_url(message_id: str) -> str:
    return f"/api/chat/message/{message_id}/stop"


def test_stop_ends_the_reply_with_finish_reason_stopped(client: TestClient, settings: Settings) -> None:
    with client.stream("POST", URL, json={"message": "/pace 50 200"}) as response:
        lines = response.iter_lines()
        start = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        message_id = start["message_id"]
        next(line for line in lines if line.startswith("event: token"))  # under way

        mallory = {"Authorization": f"Bearer {mint(settings, 'mallory')}"}
        assert (client.post(stop_url(message_id), headers=mallory).status_code, "another subject") == (
            404,
            "another subject",
        )
        stopped = client.post(stop_url(message_id))
        assert (stopped.status_code, stopped.json()) == (202, {"message_id": message_id, "status": "stopping"})
        rest = list(lines)
    closing = json.loads([line for line in rest if line.startswith("data:")][-1][5:])
    assert "event: end" in rest and closing["finish_reason"] == "stopped" and 0 < closing["tokens"] < 200
    again = client.post(stop_url(message_id))
    assert (again.status_code, again.json()) == (200, {"message_id": message_id, "status": "finished"})


def test_unknown_ids_of_any_shape_get_the_same_404(client: TestClient) -> None:
    for message_id in ("msg_00000000000000000000000000000000", "not-an-id", "x" * 300):
        response = client.post(stop_url(message_id))
        assert (response.status_code, response.json()) == (404, NOT_FOUND)


def test_stop_needs_a_token(client: TestClient) -> None:
    response = client.post(stop_url("msg_00000000000000000000000000000000"), headers={"Authorization": ""})
    assert response.status_code == 401
