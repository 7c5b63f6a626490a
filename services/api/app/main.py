"""Build the application: settings, the reply store, error handlers, middleware, routers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app import errors
from app.auth import Authenticator
from app.config import Settings, get_settings
from app.replies import ReplyStore
from app.request_id import RequestIdMiddleware
from app.routes import chat, chat_ws, health, metrics


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Honours a test's override of get_settings.
    settings = app.dependency_overrides.get(get_settings, get_settings)()
    app.state.replies = ReplyStore(
        resume_grace=settings.resume_grace_seconds,
        resume_ttl=settings.resume_ttl_seconds,
        max_replies=settings.max_replies,
        max_reply_bytes=settings.max_reply_bytes,
    )
    app.state.authenticator = Authenticator(settings)
    yield
    await app.state.replies.close()


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
    )
    errors.install(app)
    # An explicit allowlist, no credentials (the API reads no cookies), and
    # only what a streaming client sends and reads.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["POST"],
        allow_headers=["Content-Type", "Authorization", "Last-Event-ID"],
        expose_headers=["X-Request-ID"],
        max_age=600,
    )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(chat.router)
    app.include_router(chat_ws.router)
    if settings is not get_settings():
        app.dependency_overrides[get_settings] = lambda: settings
    return app


app = create_app()
