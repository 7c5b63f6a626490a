import pytest
from app.config import Settings
from pydantic import ValidationError


def test_settings_read_the_chat_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_TWIN_REPLY_TOKENS", "7")
    monkeypatch.setenv("CHAT_HEARTBEAT_SECONDS", "2.5")
    settings = Settings()
    assert (settings.twin_reply_tokens, settings.heartbeat_seconds) == (7, 2.5)


def test_the_websocket_first_frame_deadline_defaults_to_10_s(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().ws_first_frame_seconds == 10
    monkeypatch.setenv("CHAT_WS_FIRST_FRAME_SECONDS", "2.5")
    assert Settings().ws_first_frame_seconds == 2.5


def test_production_is_the_default_and_faults_are_off() -> None:
    settings = Settings()
    assert settings.environment == "production"
    assert settings.twin_test_hooks is False


@pytest.mark.parametrize("secret", ["changethis", "short-but-not-placeholder", "CHANGEME"])
def test_production_refuses_a_short_or_placeholder_secret(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("CHAT_AUTH_SECRET", secret)
    with pytest.raises(ValidationError, match="at least 32 random characters"):
        Settings()
    monkeypatch.setenv("CHAT_ENVIRONMENT", "development")
    assert Settings().auth_secret is not None


def test_a_key_source_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAT_AUTH_SECRET")
    with pytest.raises(ValidationError, match="exactly one of CHAT_AUTH_SECRET and CHAT_AUTH_JWKS_URL"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHAT_MAX_MESSAGE_CHARS", "0"),
        ("CHAT_HEARTBEAT_SECONDS", "-1"),
        ("CHAT_ENVIRONMENT", "staging"),
        ("CHAT_WS_FIRST_FRAME_SECONDS", "0"),  # a WebSocket always has a deadline for its request
    ],
)
def test_out_of_range_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose passes every unset setting as "" (compose.yaml: ${VAR:-}).
    for name in ("CHAT_HEARTBEAT_SECONDS", "CHAT_CORS_ORIGINS", "CHAT_REPLY_STORE", "CHAT_ENVIRONMENT"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("CHAT_VALKEY_PASSWORD", "pw")
    settings = Settings()
    assert (settings.heartbeat_seconds, settings.cors_origins, settings.reply_store, settings.environment) == (
        15.0,
        [],
        "valkey",
        "production",
    )


def test_the_valkey_store_needs_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_REPLY_STORE", "valkey")
    monkeypatch.delenv("CHAT_VALKEY_PASSWORD", raising=False)
    with pytest.raises(ValidationError, match="CHAT_REPLY_STORE=valkey needs CHAT_VALKEY_PASSWORD"):
        Settings()
