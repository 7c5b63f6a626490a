"""A real uvicorn server on a free local port, in a thread of the test
process, for what only uvicorn itself does (its WebSocket protocol, its log
lines). It leaves the process's logging configuration alone."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp


@contextmanager
def serving(app: ASGIApp, **config: Any) -> Iterator[int]:
    """Serve ``app`` until the block ends; yields the port."""
    settings = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None, **config)
    server = uvicorn.Server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
