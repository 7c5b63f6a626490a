from collections.abc import Callable

from fastapi.testclient import TestClient


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_while_serving(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_fails_once_shutdown_begins(client: TestClient, begin_shutdown: Callable[[], None]) -> None:
    begin_shutdown()
    assert client.get("/readyz").status_code == 503
    # Liveness is unaffected: a draining process is not restarted.
    assert client.get("/healthz").status_code == 200
