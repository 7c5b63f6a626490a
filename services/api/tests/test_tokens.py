"""`python -m app.tokens`, what `make token` runs: its output is the token and
nothing else, so `TOKEN=$(make token)` works."""

import pytest
from app import tokens
from app.auth import Authenticator, AuthError
from app.config import Settings
from pydantic import SecretStr


def run(monkeypatch: pytest.MonkeyPatch, settings: Settings, *args: str) -> None:
    monkeypatch.setattr(tokens, "get_settings", lambda: settings)
    monkeypatch.setattr("sys.argv", ["python -m app.tokens", *args])
    tokens.main()


def test_prints_one_line_a_token_the_api_accepts_for_the_subject_and_lifetime(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run(monkeypatch, settings, "--subject", "bob", "--ttl", "600")
    out, err = capsys.readouterr()
    token = out.removesuffix("\n")
    assert (out, err) == (f"{token}\n", "")
    assert "\n" not in token
    principal = Authenticator(settings).verify(token)
    assert principal.subject == "bob"
    assert principal.scopes == {settings.auth_scope}
    assert 590 < principal.seconds_left() <= 600


def test_a_token_signed_with_another_secret_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = settings.model_copy(update={"auth_secret": SecretStr("another-secret-0123456789abcdef0123456789")})
    run(monkeypatch, other, "--subject", "bob")
    with pytest.raises(AuthError) as refused:
        Authenticator(settings).verify(capsys.readouterr().out.strip())
    assert (refused.value.status_code, refused.value.code, refused.value.message) == (
        401,
        "invalid_token",
        "The token is not valid.",
    )


def test_with_an_identity_provider_it_mints_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    idp = Settings(auth_secret=None, auth_jwks_url="https://idp.example.com/jwks.json", reply_store="memory")
    with pytest.raises(SystemExit) as exited:
        run(monkeypatch, idp, "--subject", "bob")
    assert exited.value.code == "CHAT_AUTH_SECRET is not set: tokens come from the identity provider"
    assert capsys.readouterr().out == ""


def test_a_lifetime_that_is_not_a_number_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(monkeypatch, settings, "--ttl", "tomorrow")
    out, err = capsys.readouterr()
    assert (exited.value.code, out) == (2, "")
    assert err.endswith("python -m app.tokens: error: argument --ttl: invalid float value: 'tomorrow'\n")
