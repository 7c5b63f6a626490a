"""Settings: the one place that reads the environment.

Every variable carries the ``CHAT_`` prefix (``CHAT_TWIN_TOKEN_DELAY_SECONDS``...).
Tests override :func:`get_settings` rather than the environment.
"""

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHAT_", extra="ignore")

    environment: Literal["development", "production"] = "production"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

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

    # The embedded "twin" token source: deterministic text with realistic pacing.
    twin_reply_tokens: int = Field(default=48, ge=1, le=100_000)
    twin_token_delay_seconds: float = Field(default=0.08, ge=0)
    # Test hook: a message that starts with "/fail" makes the twin raise after
    # a few tokens, so the error path can be driven through the proxy. Keep it
    # off in production.
    twin_fault_injection: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
