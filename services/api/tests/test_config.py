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


def test_the_twin_is_the_default_source() -> None:
    assert Settings().source == "twin"


def use_a_model(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("CHAT_SOURCE", "openai")
    monkeypatch.setenv("CHAT_OPENAI_BASE_URL", "http://model:8080/v1")
    monkeypatch.setenv("CHAT_OPENAI_MODEL", "smollm2")
    monkeypatch.setenv("CHAT_OPENAI_API_KEY", key)


@pytest.mark.parametrize("name", ["CHAT_OPENAI_BASE_URL", "CHAT_OPENAI_MODEL", "CHAT_OPENAI_API_KEY"])
def test_the_model_source_needs_a_server_a_model_and_a_key(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    use_a_model(monkeypatch, "a-real-looking-key-0123456789")
    assert Settings().openai_api_key is not None
    monkeypatch.setenv(name, "")  # compose's "unset"
    with pytest.raises(ValidationError, match="CHAT_SOURCE=openai needs"):
        Settings()


@pytest.mark.parametrize("key", ["changeme", "sk-...", "sk-xxxxxxxx", "your-api-key", "sk-", " ", "<your key>"])
def test_production_refuses_a_placeholder_model_key(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    use_a_model(monkeypatch, key)
    with pytest.raises(ValidationError, match="CHAT_OPENAI_API_KEY is a placeholder") as refused:
        Settings()
    assert key.strip() == "" or key not in str(refused.value).replace("input_value", "")
    monkeypatch.setenv("CHAT_ENVIRONMENT", "development")
    assert Settings().openai_api_key is not None


def test_the_model_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    use_a_model(monkeypatch, "sk-live-0123456789abcdef")
    settings = Settings()
    assert "sk-live" not in repr(settings) and "sk-live" not in str(settings.model_dump())


def test_disabling_cancellation_is_a_test_switch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_ENVIRONMENT", "development")
    monkeypatch.setenv("CHAT_OPENAI_TEST_NO_CANCEL", "true")
    with pytest.raises(ValidationError, match="CHAT_OPENAI_TEST_NO_CANCEL is a test switch"):
        Settings()
    monkeypatch.setenv("CHAT_TWIN_TEST_HOOKS", "true")
    assert Settings().openai_test_no_cancel


@pytest.mark.parametrize("environment", ["", "production"])  # "": compose's unset, so the default
@pytest.mark.parametrize(
    ("switches", "refused"),
    [
        pytest.param(["CHAT_TWIN_TEST_HOOKS"], "CHAT_TWIN_TEST_HOOKS", id="test-hooks"),
        pytest.param(["CHAT_OPENAI_TEST_NO_CANCEL"], "CHAT_OPENAI_TEST_NO_CANCEL", id="no-cancel"),
        pytest.param(["CHAT_TWIN_TEST_HOOKS", "CHAT_OPENAI_TEST_NO_CANCEL"], "CHAT_TWIN_TEST_HOOKS", id="both"),
    ],
)
def test_production_refuses_the_test_switches(
    monkeypatch: pytest.MonkeyPatch, environment: str, switches: list[str], refused: str
) -> None:
    monkeypatch.setenv("CHAT_ENVIRONMENT", environment)
    for name in switches:
        monkeypatch.setenv(name, "true")
    with pytest.raises(ValidationError, match=f"{refused} is a test switch: refused when CHAT_ENVIRONMENT=production"):
        Settings()
    # What the test stacks run (tests/integration/compose.test.yaml).
    monkeypatch.setenv("CHAT_ENVIRONMENT", "development")
    monkeypatch.setenv("CHAT_TWIN_TEST_HOOKS", "true")
    settings = Settings()
    assert settings.twin_test_hooks
    assert settings.openai_test_no_cancel == ("CHAT_OPENAI_TEST_NO_CANCEL" in switches)
