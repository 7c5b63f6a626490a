"""The log filters (app/log_filters.py), on the lines uvicorn, websockets and
gunicorn really write, and their wiring in gunicorn.conf.py."""

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from app.log_filters import REDACTED, NoClosedSocketNoise, NoCredentials
from app.worker import ChatWebSocketProtocol
from uvicorn_server import REFUSE_OR_ECHO, serving
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect
from websockets.typing import Subprotocol

API = Path(__file__).resolve().parents[1]


@pytest.fixture
def ws_url() -> Iterator[str]:
    """A real uvicorn server with the API worker's WebSocket protocol."""
    with serving(REFUSE_OR_ECHO, ws=ChatWebSocketProtocol) as port:
        yield f"ws://127.0.0.1:{port}/ws"


def test_the_handshake_lines_keep_the_path_and_lose_credentials(ws_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # DEBUG: websockets also writes the request line and every header.
    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        with connect(f"{ws_url}?access_token=query-secret-1", subprotocols=[Subprotocol("ok")]):
            pass
        with pytest.raises(InvalidStatus):
            connect(f"{ws_url}?access_token=query-secret-2", subprotocols=[Subprotocol("bearer.header-secret")])
        time.sleep(0.2)  # the server thread writes its last lines after the client returns
    records = [r for r in caplog.records if r.name == "uvicorn.error"]
    unfiltered = "\n".join(r.getMessage() for r in records)
    # What the filter is for: uvicorn and websockets write all three.
    assert all(secret in unfiltered for secret in ("query-secret-1", "query-secret-2", "bearer.header-secret"))

    assert all(NoCredentials().filter(record) for record in records)  # no line is dropped
    shown = [r.getMessage() for r in records]
    assert not [line for line in shown if "secret" in line]
    assert any(line.endswith('"WebSocket /ws" [accepted]') for line in shown), shown
    assert any(line.endswith('"WebSocket /ws" 401') for line in shown), shown
    assert f"< sec-websocket-protocol: {REDACTED}" in shown


def test_the_frame_lines_keep_their_type_and_size_and_lose_their_text(
    ws_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sent = json.dumps({"message": "message-secret"})
    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        with connect(ws_url, subprotocols=[Subprotocol("ok")]) as websocket:
            websocket.send(sent)
            assert websocket.recv(timeout=5) == sent
        time.sleep(0.2)  # the server thread writes its last lines after the client returns
    records = [r for r in caplog.records if r.name == "uvicorn.error"]
    # What the filter is for: websockets writes the text it receives and sends.
    assert sum("message-secret" in r.getMessage() for r in records) == 2

    assert all(NoCredentials().filter(record) for record in records)
    shown = [r.getMessage() for r in records]
    assert not [line for line in shown if "secret" in line]
    frame = f"TEXT {REDACTED} [{len(sent)} bytes]"
    assert (f"< {frame}", f"> {frame}") == tuple(line for line in shown if line.endswith(frame)), shown
    assert "> CLOSE 1000 (OK) [2 bytes]" in shown  # a control frame stays whole


@pytest.mark.parametrize(
    ("msg", "args", "shown"),
    [
        pytest.param("< %s: %s", ("Authorization", "Bearer abc"), f"< Authorization: {REDACTED}", id="authorization"),
        pytest.param("< %s: %s", ("cookie", "s=abc"), f"< cookie: {REDACTED}", id="cookie"),
        pytest.param("< %s: %s", ("Host", "example.com"), "< Host: example.com", id="other-header"),
        pytest.param("< %s %s %s", ("GET", "/ws?t=abc", "HTTP/1.1"), "< GET /ws HTTP/1.1", id="request-line"),
        pytest.param("%s - %s", ("127.0.0.1:5", "not/a/path?x"), "127.0.0.1:5 - not/a/path?x", id="not-a-path"),
        pytest.param("%(path)s", ({"path": "/p?q"},), "/p?q", id="mapping-args"),
        pytest.param("no args", (), "no args", id="no-args"),
        pytest.param(
            "< %s",
            (Frame(Opcode.BINARY, b"secret", fin=False),),
            f"< BINARY {REDACTED} [6 bytes, continued]",
            id="binary-frame",
        ),
        pytest.param("> %s", (Frame(Opcode.PING, b"1234"),), "> PING '1234' [text, 4 bytes]", id="ping-frame"),
        pytest.param("< %s", ("not a frame",), "< not a frame", id="not-a-frame"),
    ],
)
def test_credentials_filter(msg: str, args: tuple[object, ...], shown: str) -> None:
    record = logging.LogRecord("uvicorn.error", logging.DEBUG, __file__, 1, msg, args, None)
    assert NoCredentials().filter(record)
    assert record.getMessage() == shown


def closing_socket_line(descriptor_gone: bool, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """The line gunicorn's listening socket writes when it is closed after
    its descriptor was (as the event loop's server does at a stop)."""
    from gunicorn.sock import TCPSocket  # type: ignore[import-untyped]  # gunicorn ships no type hints

    listener = object.__new__(TCPSocket)  # without binding a port
    listener.sock = socket.socket()
    listener.log = logging.getLogger("gunicorn.error")
    if descriptor_gone:
        os.close(listener.sock.fileno())
    with caplog.at_level(logging.INFO, logger="gunicorn.error"):
        listener.close()
    return next(r for r in caplog.records if r.name == "gunicorn.error")


def test_closing_an_already_closed_socket_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    record = closing_socket_line(True, caplog)
    assert record.getMessage() == "Error while closing socket [Errno 9] Bad file descriptor"
    assert not NoClosedSocketNoise().filter(record)


def test_other_lines_pass_the_socket_filter() -> None:
    for msg, args in [
        ("Error while closing socket %s", ("[Errno 5] Input/output error",)),
        ("Booting worker with pid: %s", (7,)),
    ]:
        record = logging.LogRecord("gunicorn.error", logging.INFO, __file__, 1, msg, args, None)
        assert NoClosedSocketNoise().filter(record)


# gunicorn's Logger configured from gunicorn.conf.py, and uvicorn's logger
# given its handlers as the uvicorn worker does (uvicorn_worker's
# UvicornWorker.__init__), in a process of its own: dictConfig replaces the
# logging setup of the process it runs in.
_WIRING = """
import logging, runpy
from gunicorn.config import Config
from gunicorn.glogging import Logger

settings = runpy.run_path("gunicorn.conf.py")
cfg = Config()
for name in ("logconfig_dict", "loglevel", "errorlog", "accesslog"):
    cfg.set(name, settings[name])
log = Logger(cfg)
uvicorn_log = logging.getLogger("uvicorn.error")
uvicorn_log.handlers = log.error_log.handlers
uvicorn_log.setLevel(log.error_log.level)
uvicorn_log.propagate = False

log.info("Booting worker with pid: %s", 7)
uvicorn_log.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/api/chat/message/ws?access_token=query-secret")
log.info("Error while closing socket %s", "[Errno 9] Bad file descriptor")
logging.getLogger("app.access").info("WS /api/chat/message/ws 101 3ms")
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_gunicorn_conf_sends_every_line_through_the_filters(log_format: str) -> None:
    env = {**os.environ, "CHAT_LOG_FORMAT": log_format, "CHAT_LOG_LEVEL": "info"}
    done = subprocess.run(
        [sys.executable, "-c", _WIRING], cwd=API, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.splitlines()
    if log_format == "json":  # one format for every line, gunicorn's and uvicorn's included
        lines = [json.loads(line)["message"] for line in lines]
    assert done.stdout == "" and "secret" not in done.stderr
    assert len(lines) == 3, lines
    assert lines[0].endswith("Booting worker with pid: 7")
    assert lines[1].endswith('127.0.0.1:5 - "WebSocket /api/chat/message/ws" [accepted]')
    assert lines[2].endswith("WS /api/chat/message/ws 101 3ms")
