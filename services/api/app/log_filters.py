"""Logging filters on the handler every log line leaves through (gunicorn.conf.py).

:class:`NoCredentials` keeps credentials and chat text out of lines the app
does not write.
uvicorn logs every WebSocket handshake at INFO as ``"WebSocket <path>?<query>"
[accepted]`` (or its refusal's status), query string included, and a client
may put its token there. nginx refuses a query string on the API's paths
before it is logged, but where the API is reached without this project's
nginx (the Kubernetes Gateway API and ingress overlays) only this filter
stands between that URL and the log. At DEBUG (``CHAT_LOG_LEVEL=debug``) the
``websockets`` library, which uvicorn gives the same logger, also writes the
handshake's request line and every header, ``Sec-WebSocket-Protocol:
chat.v1, bearer.<token>`` included: their values are redacted. It writes
every frame as well (``< TEXT '{"message": ...}' [52 bytes]``), users'
messages and the replies to them: a data frame's line keeps its type and
size, not its payload. Control frames (close, ping, pong) stay whole: their
codes and reasons are the protocol's, and what DEBUG is for.

:class:`NoClosedSocketNoise` drops gunicorn's "Error while closing socket
[Errno 9] Bad file descriptor", which every worker writes when the API stops:
uvicorn's shutdown closes its event loop's server, which closes the listening
socket's descriptor, then closes gunicorn's socket object, whose own close
finds the descriptor gone. An expected event is not an error, and a line that
says "Error" at every deploy teaches people to skip the ones that matter.
"""

import errno
import logging
import os

from websockets.frames import DATA_OPCODES, Frame

# Request headers whose values are credentials.
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "sec-websocket-protocol"}
# websockets' DEBUG lines for one header of the handshake: "< name: value" (the
# request) and "> name: value" (the response).
_HEADER_LINES = {"< %s: %s", "> %s: %s"}
# Its DEBUG lines for one frame received ("<") or sent (">").
_FRAME_LINES = {"< %s", "> %s"}
REDACTED = "[redacted]"


def _without_query(value: object) -> object:
    """A request target without its query string: uvicorn percent-encodes
    the path, so its first "?" starts the query."""
    if isinstance(value, str) and value.startswith("/"):
        return value.split("?", 1)[0]
    return value


def _without_payload(frame: Frame) -> str:
    more = "" if frame.fin else ", continued"
    return f"{frame.opcode.name} {REDACTED} [{len(frame.data)} bytes{more}]"


class NoCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.args, tuple) or not record.args:
            return True
        if record.msg in _HEADER_LINES and len(record.args) == 2:
            name = record.args[0]
            if str(name).lower() in _SECRET_HEADERS:
                record.args = (name, REDACTED)
            return True
        if record.msg in _FRAME_LINES and len(record.args) == 1 and isinstance(record.args[0], Frame):
            frame = record.args[0]
            if frame.opcode in DATA_OPCODES:
                record.args = (_without_payload(frame),)
            return True
        record.args = tuple(_without_query(arg) for arg in record.args)
        return True


_CLOSING_SOCKET = "Error while closing socket %s"
_BAD_DESCRIPTOR = str(OSError(errno.EBADF, os.strerror(errno.EBADF)))


class NoClosedSocketNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == _CLOSING_SOCKET and record.args == (_BAD_DESCRIPTOR,))
