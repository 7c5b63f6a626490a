"""Routes that fail as a bug would: they raise an exception no handler
expects, before their response starts or after a stream's first chunk."""

from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

PATH = "/api/test/unexpected-error"
STREAM_PATH = "/api/test/unexpected-error-mid-stream"
DETAIL = "a detail the client must not see: /srv/app/secret.py"


def add_failing_route(app: FastAPI) -> None:
    @app.get(PATH)
    async def unexpected_error() -> None:
        raise RuntimeError(DETAIL)

    @app.get(STREAM_PATH)
    async def unexpected_error_mid_stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk\n"
            raise RuntimeError(DETAIL)

        return StreamingResponse(chunks(), media_type="text/plain")
