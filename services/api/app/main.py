"""Build the application: settings, the reply store, error handlers, middleware, routers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import errors
from app.config import get_settings
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
    yield
    await app.state.replies.close()


def create_app() -> FastAPI:
    settings = get_settings()
    development = settings.environment == "development"
    app = FastAPI(
        title="Chat streaming API",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs" if development else None,
        redoc_url=None,
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(chat.router)
    app.include_router(chat_ws.router)
    return app


app = create_app()
