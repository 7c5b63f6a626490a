"""The worker's WebSocket protocol (app/worker.py), on a real uvicorn server."""

import logging
import time

import pytest
from app.worker import ChatUvicornWorker, ChatWebSocketProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn_server import REFUSE_OR_ECHO, serving
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol


def refuse_one(protocol: type[WebSocketsSansIOProtocol], caplog: pytest.LogCaptureFixture) -> list[str]:
    """The errors uvicorn logs when the app refuses one handshake."""
    with caplog.at_level(logging.INFO, logger="uvicorn.error"), serving(REFUSE_OR_ECHO, ws=protocol) as port:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{port}/ws")
        assert (refused.value.response.status_code, refused.value.response.body) == (401, b"refused")
        time.sleep(0.2)  # the app returns after the client has its answer
    return [r.getMessage() for r in caplog.records if r.name == "uvicorn.error" and r.levelno >= logging.ERROR]


def test_a_refused_handshake_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    assert refuse_one(ChatWebSocketProtocol, caplog) == []


def test_uvicorns_own_protocol_still_needs_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    # The negative control: once this fails, uvicorn marks the handshake
    # over by itself, and ChatWebSocketProtocol can go.
    assert refuse_one(WebSocketsSansIOProtocol, caplog) == ["ASGI callable returned without completing handshake."]


def test_an_accepted_session_works_as_before() -> None:
    with (
        serving(REFUSE_OR_ECHO, ws=ChatWebSocketProtocol) as port,
        connect(f"ws://127.0.0.1:{port}/ws", subprotocols=[Subprotocol("ok")]) as ws,
    ):
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"


def test_the_worker_uses_it() -> None:
    assert ChatUvicornWorker.CONFIG_KWARGS["ws"] is ChatWebSocketProtocol
