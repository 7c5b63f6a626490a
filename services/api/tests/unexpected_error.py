"""A route that fails as a bug would: it raises an exception no handler expects."""

from fastapi import FastAPI

PATH = "/api/test/unexpected-error"
DETAIL = "a detail the client must not see: /srv/app/secret.py"


def add_failing_route(app: FastAPI) -> None:
    @app.get(PATH)
    async def unexpected_error() -> None:
        raise RuntimeError(DETAIL)
