"""Build the application: settings, error handlers, middleware, routers."""

from fastapi import FastAPI

from app import errors
from app.config import get_settings
from app.request_id import RequestIdMiddleware
from app.routes import chat, health


def create_app() -> FastAPI:
    settings = get_settings()
    development = settings.environment == "development"
    app = FastAPI(
        title="Chat streaming API",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs" if development else None,
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(chat.router)
    return app


app = create_app()
