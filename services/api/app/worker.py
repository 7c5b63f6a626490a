"""The gunicorn worker: uvicorn's, with WebSocket limits this API needs.

``uvicorn_worker.UvicornWorker`` passes only a few of uvicorn's settings from
gunicorn; the WebSocket ones are set here.
Ref: https://www.uvicorn.org/settings/#implementation
"""

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker


class ChatUvicornWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no type hints
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        # A chat message is small: refuse larger frames (close 1009) before
        # they are buffered. Default: 16 MiB.
        "ws_max_size": 64 * 1024,
        # Pings keep idle connections open through proxies and find dead
        # peers. Default: 20 s each.
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        # app.access_log writes one line per request, with its request id,
        # duration and a stream's outcome, instead of uvicorn's.
        "access_log": False,
    }
