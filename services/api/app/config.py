"""Settings: the one place that reads the environment.

Every variable carries the ``CHAT_`` prefix (``CHAT_TWIN_TOKEN_DELAY_SECONDS``...).
Tests override :func:`get_settings` rather than the environment.
"""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changethis", "change-me", "changeme", "secret", "dev-secret"}
# Values that documentation and examples put where a model server's API key goes.
PLACEHOLDER_KEYS = PLACEHOLDER_SECRETS | {"sk-...", "sk-xxx", "your-api-key", "api-key", "none", "dummy", "test"}


def _placeholder_key(key: str) -> bool:
    key = key.strip().lower()
    body = key.removeprefix("sk-")
    return (
        key in PLACEHOLDER_KEYS
        or not body
        or "..." in key
        or key.startswith("<")  # <your key>
        or set(body) <= {"x", "*", "-"}  # sk-xxxx, ****
    )


class Settings(BaseSettings):
    # An empty variable means "the default" (compose passes unset ones as "").
    # A refused setting's error leaves out the input: it holds the secrets.
    model_config = SettingsConfigDict(
        env_prefix="CHAT_", extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    environment: Literal["development", "production"] = "production"

    # Bearer tokens (JWT). Either a shared HMAC secret (HS256; `make up`
    # writes a random development one to .env) or the JWKS URL of an identity
    # provider (RS256/ES256). No default: the API does not start without one.
    auth_secret: SecretStr | None = None
    auth_jwks_url: str | None = None
    auth_issuer: str = "chat-stream"
    auth_audience: str = "chat-stream-api"
    # The scope a token must carry to stream.
    auth_scope: str = "chat:stream"

    # Requests larger than this are refused with 422 before any stream byte.
    max_message_chars: int = Field(default=4000, ge=1, le=100_000)

    # SSE comment line sent while the token source is silent. It must stay
    # below every idle timeout in the chain (nginx proxy_read_timeout, a load
    # balancer's idle timeout); 15 s is the interval the SSE spec suggests.
    heartbeat_seconds: float = Field(default=15.0, ge=0)
    # A client that does not take one event within this time is dropped, so a
    # frozen reader cannot pin memory. 0 disables the limit.
    send_timeout_seconds: float = Field(default=30.0, ge=0)
    # Sent as the SSE `retry:` field: how long a client waits before it reconnects.
    client_retry_ms: int = Field(default=3000, ge=0)

    # Where replies live (app/reply_store.py). "valkey": shared by every
    # process and replica, so a reconnect reaches any of them and a restart
    # loses nothing (the default, and what compose runs). "memory": this
    # process only, lost on restart; for one process and in-process tests.
    reply_store: Literal["valkey", "memory"] = "valkey"
    valkey_url: str = "redis://valkey:6379/0"
    # No default: with the Valkey store the API does not start without it
    # (`make up` writes a random one to .env).
    valkey_password: SecretStr | None = None
    # Store connections per process (requests and batched writes); the
    # blocking reader and the stop channel have one each besides.
    valkey_max_connections: int = Field(default=16, ge=2)
    # A process renews a lease this often x3; when it lapses, the replies it
    # was generating end with reply_interrupted for their followers.
    producer_lease_seconds: float = Field(default=3.0, ge=0.3)
    # A conversation belongs to the subject that started it for this long
    # after its last message.
    conversation_ttl_seconds: float = Field(default=86_400.0, gt=0)
    # On SIGTERM, replies in flight keep generating into the shared store for
    # up to this long (a client reconnecting elsewhere gets the rest); past
    # it they end with server_shutdown. The streams' last event
    # (shutdown_send_seconds), this drain and the final flush (2 s) must
    # together stay below GUNICORN_GRACEFUL_TIMEOUT: 5 + 12 + 2 < 20 s.
    drain_seconds: float = Field(default=12.0, ge=0)
    # After SIGTERM, how long a stream may take to send its last event
    # (server_shutdown with retry:) before it is cut (app.open_streams).
    shutdown_send_seconds: float = Field(default=5.0, ge=0)

    # Resume (Last-Event-ID). A reply keeps generating this long after its
    # last client left, so a client that reconnects picks up where it was;
    # past it the token source is cancelled (an upstream model call stops).
    # 0 cancels at once when the client leaves: no resume of unfinished replies.
    resume_grace_seconds: float = Field(default=10.0, ge=0)
    # How long a finished reply stays available for resume.
    resume_ttl_seconds: float = Field(default=300.0, ge=0)
    # Replies a process generates at once (the memory store: keeps, finished
    # ones included); past it new messages get 503. Bytes per reply (its
    # text plus 80 bytes a token: what it takes in memory, app/replies.py)
    # and tokens per reply: past either the reply ends with reply_too_large.
    max_replies: int = Field(default=1000, ge=1)
    max_reply_bytes: int = Field(default=1_048_576, ge=1024)
    max_reply_tokens: int = Field(default=100_000, ge=1)

    # On SIGTERM, live streams get a final event telling the client to
    # reconnect after this many milliseconds. The drain must finish before
    # gunicorn's graceful_timeout, itself below compose's stop_grace_period.
    shutdown_retry_ms: int = Field(default=1000, ge=0)

    # The embedded "twin" token source: deterministic text with realistic pacing.
    twin_reply_tokens: int = Field(default=48, ge=1, le=100_000)
    twin_token_delay_seconds: float = Field(default=0.08, ge=0)
    # A WebSocket that has sent no request frame this long after its upgrade
    # is closed (1008 first_frame_timeout): it would otherwise hold a
    # connection and a slot of the proxy's per-client limit for as long as it
    # answers pings. The page sends its frame as soon as the socket opens.
    ws_first_frame_seconds: float = Field(default=10.0, gt=0)

    # Browser origins allowed to call the API from another origin (CORS) and
    # to open the WebSocket, e.g. ["https://app.example.com"]. The page served
    # by this stack's own proxy is same-origin and needs no entry. Never "*".
    cors_origins: list[str] = Field(default_factory=list)

    # Where gunicorn's workers share metrics (see app/metrics.py); the image sets it.
    prometheus_multiproc_dir: str | None = Field(default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR")

    # Where replies come from: "twin", the embedded deterministic twin (the
    # demo and the tests), or "openai", any OpenAI-compatible chat-completions
    # server (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM...; app/openai_source.py).
    source: Literal["twin", "openai"] = "twin"
    # The server's API root, with its version: https://api.openai.com/v1,
    # http://model:8080/v1 (compose's model profile), http://ollama:11434/v1...
    openai_base_url: str | None = None
    openai_model: str | None = None
    # Sent as the bearer key. No default; in production a placeholder is refused.
    openai_api_key: SecretStr | None = None
    # The first message of every request to the model.
    system_prompt: str = "You are the user's digital twin: friendly, brief, and honest about what you do not know."
    # Optional generation parameters, passed on when set (a seed and
    # temperature 0 make a model's output reproducible on most servers).
    openai_max_tokens: int | None = Field(default=None, ge=1)
    openai_temperature: float | None = Field(default=None, ge=0, le=2)
    openai_seed: int | None = None
    # No first token this long after a request is sent (a model still
    # loading, a queue): the reply ends with model_timeout. Per attempt.
    openai_first_token_seconds: float = Field(default=30.0, gt=0)
    # No new chunk this long once the reply has begun: model_stalled.
    openai_stall_seconds: float = Field(default=30.0, gt=0)
    # Opening the TCP (and TLS) connection; past it: model_unavailable.
    openai_connect_seconds: float = Field(default=5.0, gt=0)
    # Answers 429 or 5xx before the first token are retried this many times,
    # after openai_retry_backoff_seconds doubling each time, or the server's
    # Retry-After when it sends one; a Retry-After longer than
    # openai_retry_max_wait_seconds is not waited for (the error comes at once).
    openai_retries: int = Field(default=2, ge=0, le=10)
    openai_retry_backoff_seconds: float = Field(default=0.5, ge=0)
    openai_retry_max_wait_seconds: float = Field(default=10.0, ge=0)
    # Test only (allowed with CHAT_TWIN_TEST_HOOKS, refused in production): a
    # cancelled reply leaves its upstream request running, the bug the
    # cancellation tests must catch.
    openai_test_no_cancel: bool = False

    # Multi-turn: the conversation's latest turns (a user message and the
    # reply to it) go to the model with each new message, at most this many
    # turns and characters (the newest first; 0 turns: no history).
    history_max_turns: int = Field(default=20, ge=0, le=1000)
    history_max_chars: int = Field(default=16_000, ge=0)

    # Traces (app/tracing.py): off unless an OTLP/HTTP collector is named, by
    # OpenTelemetry's own variables (the SDK reads its others itself).
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_service_name: str = Field(default="chat-api", validation_alias="OTEL_SERVICE_NAME")

    # Test hooks (see app/twin.py): messages such as "/fail" or "/pause 5"
    # drive failure paths through the proxy. Refused in production: any
    # client could end, stall or flood replies with them.
    twin_test_hooks: bool = False

    @field_validator(
        "auth_secret",
        "auth_jwks_url",
        "valkey_password",
        "openai_base_url",
        "openai_model",
        "openai_api_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes an unset variable as an empty string.
        return None if value == "" else value

    @model_validator(mode="after")
    def _usable_auth(self) -> "Settings":
        if (self.auth_secret is None) == (self.auth_jwks_url is None):
            raise ValueError("set exactly one of CHAT_AUTH_SECRET and CHAT_AUTH_JWKS_URL")
        if self.auth_secret is not None and self.environment == "production":
            secret = self.auth_secret.get_secret_value()
            if len(secret) < 32 or secret.lower() in PLACEHOLDER_SECRETS:
                raise ValueError("CHAT_AUTH_SECRET must be at least 32 random characters in production")
        if self.reply_store == "valkey" and self.valkey_password is None:
            raise ValueError("CHAT_REPLY_STORE=valkey needs CHAT_VALKEY_PASSWORD (make up writes one to .env)")
        if self.source == "openai":
            if self.openai_base_url is None or self.openai_model is None or self.openai_api_key is None:
                needs = "CHAT_OPENAI_BASE_URL, CHAT_OPENAI_MODEL and CHAT_OPENAI_API_KEY"
                raise ValueError(f"CHAT_SOURCE=openai needs {needs}")
            if self.environment == "production" and _placeholder_key(self.openai_api_key.get_secret_value()):
                raise ValueError("CHAT_OPENAI_API_KEY is a placeholder; set the model server's real key in production")
        if self.environment == "production":
            for name, on in (
                ("CHAT_TWIN_TEST_HOOKS", self.twin_test_hooks),
                ("CHAT_OPENAI_TEST_NO_CANCEL", self.openai_test_no_cancel),
            ):
                if on:
                    raise ValueError(f"{name} is a test switch: refused when CHAT_ENVIRONMENT=production")
        if self.openai_test_no_cancel and not self.twin_test_hooks:
            raise ValueError("CHAT_OPENAI_TEST_NO_CANCEL is a test switch: it needs CHAT_TWIN_TEST_HOOKS")
        return self

    @field_validator("cors_origins")
    @classmethod
    def _explicit_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*" or not origin.startswith(("https://", "http://")) or origin.count("/") != 2:
                raise ValueError(f"not an explicit origin (scheme://host[:port]): {origin!r}")
        return origins


@lru_cache
def get_settings() -> Settings:
    return Settings()
