from collections.abc import Iterator

import pytest
from app.config import Settings, get_settings
from app.main import app
from fastapi.testclient import TestClient


@pytest.fixture
def settings() -> Settings:
    # A fast twin: the in-process tests check content, not pacing.
    return Settings(twin_reply_tokens=12, twin_token_delay_seconds=0, twin_test_hooks=True, max_message_chars=40)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as test_client:
        yield test_client
    app.dependency_overrides.clear()
