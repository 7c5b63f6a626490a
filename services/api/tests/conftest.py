import os
import signal
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

# The app module builds its app at import, from the environment: give it a
# secret before it is imported.
TEST_SECRET = "unit-test-secret-0123456789abcdef0123456789"
os.environ.setdefault("CHAT_AUTH_SECRET", TEST_SECRET)
# In-process tests use the memory store; the Valkey store passes the same
# contract against a real Valkey (tests/integration/test_valkey_store.py).
os.environ.setdefault("CHAT_REPLY_STORE", "memory")

from app.config import Settings, get_settings  # noqa: E402
from app.main import app, create_app  # noqa: E402
from app.tokens import mint  # noqa: E402
from unexpected_error import add_failing_route  # noqa: E402


@pytest.fixture
def settings() -> Settings:
    # A fast twin: the in-process tests check content, not pacing. Its test
    # hooks are refused in production.
    return Settings(
        environment="development",
        auth_secret=SecretStr(TEST_SECRET),
        reply_store="memory",
        twin_reply_tokens=12,
        twin_token_delay_seconds=0,
        twin_test_hooks=True,
        max_message_chars=40,
    )


@pytest.fixture
def token(settings: Settings) -> str:
    return mint(settings, "alice")


@pytest.fixture
def client(settings: Settings, token: str) -> Iterator[TestClient]:
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as test_client:
        yield test_client
    app.dependency_overrides.clear()


@pytest.fixture
def begin_shutdown() -> Iterator[Callable[[], None]]:
    """Call it to do what a SIGTERM does to the uvicorn server serving the
    app (app.shutdown reads the flag through uvicorn's signal handler;
    tests/test_shutdown.py sends a real signal)."""
    server = uvicorn.Server(uvicorn.Config(app))
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        yield lambda: setattr(server, "should_exit", True)
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def failing_app(settings: Settings) -> FastAPI:
    """The app with routes that raise an exception no handler expects
    (unexpected_error.py)."""
    failing = create_app(settings)
    add_failing_route(failing)
    return failing


@pytest.fixture
def failing_client(failing_app: FastAPI) -> Iterator[TestClient]:
    """A client of ``failing_app``. It raises an exception that reaches the
    server, as uvicorn would log it: the app's 500 must not let one through."""
    with TestClient(failing_app) as test_client:
        yield test_client
