"""Build the application: settings, the reply store, error handlers, middleware, routers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import errors, tracing
from app.access_log import AccessLogMiddleware
from app.auth import Authenticator
from app.config import Settings, get_settings
from app.cors import JsonCorsMiddleware
from app.handoff import StreamHandoff
from app.liveness import LivenessMiddleware
from app.memory_store import MemoryReplyStore
from app.open_streams import OpenStreams
from app.openai_source import OpenAISource
from app.reply_store import ReplyLimits, ReplyStore
from app.request_id import RequestIdMiddleware
from app.routes import chat, chat_ws, health, metrics
from app.token_source import TokenSource
from app.twin import Twin


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Honours a test's override of get_settings.
    settings = app.dependency_overrides.get(get_settings, get_settings)()
    store = make_store(settings)
    await store.begin()
    app.state.replies = store
    app.state.source = make_source(settings)
    app.state.streams = OpenStreams(
        heartbeat=settings.heartbeat_seconds,
        send_timeout=settings.send_timeout_seconds,
        shutdown_send=settings.shutdown_send_seconds,
    )
    app.state.authenticator = Authenticator(settings)
    tracing.configure(settings)
    yield
    # After the server stopped accepting and its streams ended (server_shutdown):
    # replies in flight finish into a shared store, up to the drain deadline.
    await store.close(settings.drain_seconds)
    if isinstance(app.state.source, OpenAISource):
        await app.state.source.aclose()
    tracing.shutdown()


def make_source(settings: Settings) -> TokenSource:
    if settings.source == "openai":
        return OpenAISource(settings)
    return Twin(
        tokens=settings.twin_reply_tokens,
        delay_seconds=settings.twin_token_delay_seconds,
        test_hooks=settings.twin_test_hooks,
    )


def make_store(settings: Settings) -> ReplyStore:
    limits = ReplyLimits(
        resume_grace=settings.resume_grace_seconds,
        resume_ttl=settings.resume_ttl_seconds,
        max_replies=settings.max_replies,
        max_reply_bytes=settings.max_reply_bytes,
        max_reply_tokens=settings.max_reply_tokens,
        history_turns=settings.history_max_turns,
        history_chars=settings.history_max_chars,
    )
    if settings.reply_store == "memory":
        return MemoryReplyStore(limits, conversation_ttl=settings.conversation_ttl_seconds)
    from app.valkey_store import ValkeyReplyStore  # redis-py only where it is used

    assert settings.valkey_password is not None  # Settings refuses valkey without it
    return ValkeyReplyStore(
        limits,
        url=settings.valkey_url,
        password=settings.valkey_password.get_secret_value(),
        conversation_ttl=settings.conversation_ttl_seconds,
        producer_lease=settings.producer_lease_seconds,
        max_connections=settings.valkey_max_connections,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; with ``settings`` given (tests), they replace the environment's."""
    settings = settings or get_settings()
    development = settings.environment == "development"
    app = FastAPI(
        title="Chat streaming API",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs" if development else None,
        redoc_url=None,
        lifespan=lifespan,
        # A trailing slash gets 404 JSON, not a redirect built from the
        # client's Host header (which also loses the proxy's port).
        redirect_slashes=False,
    )
    errors.install(app)
    # Innermost: the JSON 500 for an exception no handler expects, inside
    # CORS and the request id so that it carries both (app.errors).
    app.add_middleware(errors.UnexpectedErrors)
    # A stream runs after the request handling returned (app.handoff),
    # outside the layer above, which holds nothing of it.
    app.add_middleware(StreamHandoff)
    # An explicit allowlist, no credentials (the API reads no cookies), and
    # only what a streaming client sends and reads.
    app.add_middleware(
        JsonCorsMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["POST"],
        allow_headers=["Content-Type", "Authorization", "Last-Event-ID"],
        expose_headers=["X-Request-ID", "X-Served-By"],
        max_age=600,
    )
    app.add_middleware(RequestIdMiddleware)
    # It times the whole request and reads the id set inside it.
    app.add_middleware(AccessLogMiddleware)
    # Outermost: liveness (GET /healthz) is answered before any of the above
    # runs, so none of their work delays it (app/liveness.py).
    app.add_middleware(LivenessMiddleware)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(chat.router)
    app.include_router(chat_ws.router)
    if settings is not get_settings():
        app.dependency_overrides[get_settings] = lambda: settings
    return app


app = create_app()
