"""Real HTTP clients that feed a :class:`~streamcheck.timing.Recorder`.

Both read the body with calls that return as soon as any bytes are there
(urllib3's ``read1``, ``os.read`` on curl's pipe), so each network read gets
its own timestamp, whether the body is chunked, close-delimited or gzipped.
"""

import json
import os
import ssl
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx2
import requests
import urllib3
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from streamcheck.sse import Event
from streamcheck.timing import Arrival, Measurement, Recorder

READ_SIZE = 65536
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}

OnArrival = Callable[[Arrival], bool | None]  # return True to stop reading
Client = Callable[..., Measurement]  # (url, payload, **options) -> Measurement


def _run(recorder: Recorder, chunks: Iterator[bytes], on_arrival: OnArrival | None) -> None:
    for arrival in recorder.consume(chunks):
        if on_arrival is not None and on_arrival(arrival):
            return


def with_requests(
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    on_arrival: OnArrival | None = None,
    session: requests.Session | None = None,
) -> Measurement:
    """POST ``payload`` as JSON and record the event stream (requests sends Accept-Encoding: gzip)."""
    http = session or requests.Session()
    recorder = Recorder()
    try:
        with http.post(
            url, json=payload, headers={**JSON_HEADERS, **(headers or {})}, stream=True, timeout=timeout
        ) as response:
            recorder.measurement.status = response.status_code
            recorder.measurement.headers = {k.lower(): v for k, v in response.headers.items()}
            raw = response.raw
            # requests leaves decoding to its own iter_content; read1 must be told.
            _run(recorder, iter(lambda: raw.read1(READ_SIZE, decode_content=True), b""), on_arrival)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        # A body cut mid-chunk raises here; what arrived before stays recorded.
        recorder.measurement.failure = f"{type(exc).__name__}: {exc}"
    return recorder.finish()


def with_httpx(
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    http2: bool = True,
    verify: bool | ssl.SSLContext = True,
) -> Measurement:
    """The same request with httpx2, over HTTP/2 when the server offers it.

    On ``http://`` URLs HTTP/2 means prior knowledge (h2c): no HTTP/1.1 is tried.
    ``measurement.headers[":protocol"]`` records the version used.
    """
    recorder = Recorder()
    m = recorder.measurement
    client = httpx2.Client(http1=not (http2 and url.startswith("http://")), http2=http2, verify=verify, timeout=timeout)
    try:
        with (
            client,
            client.stream("POST", url, json=dict(payload), headers={**JSON_HEADERS, **(headers or {})}) as response,
        ):
            m.status = response.status_code
            m.headers = {k.lower(): v for k, v in response.headers.items()}
            m.headers[":protocol"] = response.http_version
            _run(recorder, response.iter_bytes(), None)
    except httpx2.HTTPError as exc:
        m.failure = f"{type(exc).__name__}: {exc}"
    return recorder.finish()


def with_curl(
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    extra_args: tuple[str, ...] = (),
) -> Measurement:
    """The same request with ``curl --no-buffer``, as a person would test it."""
    with tempfile.NamedTemporaryFile("r", suffix=".headers") as head:
        command = [
            "curl",
            "--silent",
            "--show-error",
            "--no-buffer",
            "--max-time",
            str(timeout),
            "--dump-header",
            head.name,
            "--data-binary",
            "@-",
            *extra_args,
        ]
        for name, value in {**JSON_HEADERS, **(headers or {})}.items():
            command += ["--header", f"{name}: {value}"]
        command.append(url)
        recorder = Recorder()
        with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as curl:
            assert curl.stdin and curl.stdout and curl.stderr
            curl.stdin.write(json.dumps(payload).encode())
            curl.stdin.close()
            fd = curl.stdout.fileno()
            _run(recorder, iter(lambda: os.read(fd, READ_SIZE), b""), None)
            error = curl.stderr.read().decode(errors="replace").strip()
        measurement = recorder.finish()
        if curl.returncode != 0:
            measurement.failure = f"curl exit {curl.returncode}: {error}"
        status_line, *header_lines = head.read().strip().splitlines() or ["HTTP/1.1 000"]
        measurement.status = int(status_line.split()[1])
        measurement.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
            if value
        }
    return measurement


def with_websocket(
    url: str,
    payload: Mapping[str, Any],
    *,
    token: str | None = None,
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> Measurement:
    """The WebSocket fallback: one JSON frame per event, each timed as one read.

    The bearer token travels as the subprotocol ``bearer.<token>``.

    ``measurement.status`` is the close code (1000 for a normal end), and
    ``measurement.failure`` the close reason when it is not 1000.
    """
    recorder = Recorder()
    m = recorder.measurement
    protocols = [Subprotocol("chat.v1")] + ([Subprotocol(f"bearer.{token}")] if token else [])
    with connect(url, open_timeout=timeout, max_size=2**24, subprotocols=protocols, ssl=tls) as socket:
        socket.send(json.dumps(payload))
        try:
            while True:
                frame = socket.recv(timeout=timeout)
                seconds = recorder.now()
                if m.first_byte_seconds is None:
                    m.first_byte_seconds = seconds
                data = json.loads(frame)
                m.reads.append((seconds, len(frame)))
                event = Event(
                    data["event"], json.dumps(data["data"], ensure_ascii=False), data.get("id"), data.get("retry")
                )
                m.arrivals.append(Arrival(seconds, event))
        except ConnectionClosed as closed:
            m.status = closed.rcvd.code if closed.rcvd else 1006
            if m.status != 1000:
                m.failure = closed.rcvd.reason if closed.rcvd else "closed without a close frame"
    m.total_seconds = recorder.now()
    return m
