"""A reader that stops reading while the source produces 10 MB costs the API
no more than the reply cap (CHAT_MAX_REPLY_BYTES, 1 MiB by default): the
reply ends there with an error event, whatever the reader does.

Measured here: the socket buffers along the path (nginx, docker-proxy, the
kernel) absorb more than 10 MB of a frozen reader's stream, so the API's own
send timeout (CHAT_SEND_TIMEOUT_SECONDS) is proven in-process instead
(services/api/tests/test_streaming.py)."""

import json
import socket
import time
from urllib.parse import urlsplit

from app.twin import FLOOD_BYTES

from streamcheck.sse import Event, Parser
from tests.integration.stack import SEND_TIMEOUT_SECONDS, Stack

REPLY_CAP = 1_048_576  # the default CHAT_MAX_REPLY_BYTES


def test_a_frozen_reader_costs_no_more_than_the_reply_cap(stack: Stack) -> None:
    stack.wait_for_metric("chat_active_streams", 0, timeout=10)
    before = stack.worker_rss_kb()

    url = urlsplit(stack.url())
    assert url.hostname is not None and url.port is not None
    body = b'{"message": "/flood"}'
    request = (
        f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: Bearer {stack.token}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.socket() as frozen:
        frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        frozen.connect((url.hostname, url.port))
        frozen.sendall(request)
        # Read nothing while the source tries to produce 10 MB.
        peak = before
        deadline = time.monotonic() + SEND_TIMEOUT_SECONDS + 2
        while time.monotonic() < deadline:
            peak = max(peak, stack.worker_rss_kb())
            time.sleep(0.2)
        received = _read_all(frozen)

    events = _events(received)
    text_bytes = sum(len(json.loads(e.data)["text"].encode()) for e in events if e.event == "token")
    growth_mb = (peak - before) / 1024
    print(
        f"\nfrozen reader, {FLOOD_BYTES // 2**20} MB source: worker RSS {before} KB -> peak {peak} KB "
        f"(+{growth_mb:.1f} MB); reply stopped at {text_bytes} bytes of text"
    )
    assert (events[-1].event, json.loads(events[-1].data)["code"]) == ("error", "reply_too_large")
    assert text_bytes <= REPLY_CAP
    assert growth_mb < 4 * REPLY_CAP / 2**20, growth_mb


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _events(response: bytes) -> list[Event]:
    head, _, chunked = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    body = bytearray()
    while chunked:
        size_line, _, rest = chunked.partition(b"\r\n")
        size = int(size_line, 16)
        body += rest[:size]
        chunked = rest[size + 2 :]
        if size == 0:
            break
    parser = Parser()
    return parser.feed(bytes(body)) + parser.close()
