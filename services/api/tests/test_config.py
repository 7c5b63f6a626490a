import pytest
from app.config import Settings
from pydantic import ValidationError


def test_settings_read_the_chat_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_TWIN_REPLY_TOKENS", "7")
    monkeypatch.setenv("CHAT_HEARTBEAT_SECONDS", "2.5")
    settings = Settings()
    assert (settings.twin_reply_tokens, settings.heartbeat_seconds) == (7, 2.5)


def test_production_is_the_default_and_faults_are_off() -> None:
    settings = Settings()
    assert settings.environment == "production"
    assert settings.twin_test_hooks is False


@pytest.mark.parametrize(
    ("name", "value"),
    [("CHAT_MAX_MESSAGE_CHARS", "0"), ("CHAT_HEARTBEAT_SECONDS", "-1"), ("CHAT_ENVIRONMENT", "staging")],
)
def test_out_of_range_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
