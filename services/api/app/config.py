"""Settings: the one place that reads the environment.

Every variable carries the ``CHAT_`` prefix (``CHAT_TWIN_TOKEN_DELAY_SECONDS``...).
Tests override :func:`get_settings` rather than the environment.
"""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changethis", "change-me", "changeme", "secret", "dev-secret"}


class Settings(BaseSettings):
    # An empty variable means "the default" (compose passes unset ones as "").
    model_config = SettingsConfigDict(env_prefix="CHAT_", extra="ignore", env_ignore_empty=True)

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
    # (server_shutdown with retry:) before sse-starlette cancels it.
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

    # Traces (app/tracing.py): off unless an OTLP/HTTP collector is named, by
    # OpenTelemetry's own variables (the SDK reads its others itself).
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_service_name: str = Field(default="chat-api", validation_alias="OTEL_SERVICE_NAME")

    # Test hooks (see app/twin.py): messages such as "/fail" or "/pause 5"
    # drive failure paths through the proxy. Never enable them in production.
    twin_test_hooks: bool = False

    @field_validator("auth_secret", "auth_jwks_url", "valkey_password", mode="before")
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
