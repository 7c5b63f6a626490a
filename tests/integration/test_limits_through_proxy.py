"""Per-client limits and real client addresses, on the shipped configuration.

`proxy-edge` is the shipped proxy as it is: nobody is trusted, so a client's
X-Forwarded-For is ignored. `proxy-trusting` is the same proxy behind a
"load balancer" (it trusts the Docker networks the tests connect from), so a
test can act as any client by sending X-Forwarded-For. The main test proxy
lifts the limits (the suite opens many streams from one address) and is used
here only for what the API sees.
"""

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.integration.stack import QUERY_NOT_ALLOWED, STREAM_PATH, Stack

# snippets/location/stream_limits.conf as shipped.
MAX_STREAMS = 10
BURST = 20
STARTS_PER_SECOND = 5  # snippets/http/limits.conf

TOO_MANY_STREAMS = {
    "error": {"code": "too_many_streams", "message": "Too many open streams from this client. Close one and retry."}
}
TOO_MANY_STARTS = {
    "error": {"code": "too_many_stream_starts", "message": "Too many new streams from this client. Retry shortly."}
}
# A reply of 100 tokens, 100 ms apart: a stream stays open for 10 s.
LONG_REPLY = {"message": "/pace 100 100"}


def start_stream(stack: Stack, service: str, client: str | None = None) -> requests.Response:
    """Start a stream and return once its headers are in; the body is left unread."""
    headers = {**stack.auth, **({"X-Forwarded-For": client} if client else {})}
    return requests.post(stack.url(service), json=LONG_REPLY, headers=headers, stream=True, timeout=30)


def start_stream_past(stack: Stack, service: str, waiting_out: set[str], timeout: float = 10) -> requests.Response:
    """Start a stream, again while it is refused (429) with a code in
    ``waiting_out``: what an earlier test left on this client's counts on a
    shared proxy, its streams (freed within a token) or its starts (refilled
    at 5 a second). Tries are a refill apart: a start the stream limit
    refuses has taken a start credit (nginx counts starts first). Returns
    the first other answer; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        response = start_stream(stack, service)
        if response.status_code != 429 or response.json()["error"]["code"] not in waiting_out:
            return response
        response.close()
        assert time.monotonic() < deadline, f"still refused ({response.json()}) after {timeout} s"
        time.sleep(1 / STARTS_PER_SECOND)


@contextmanager
def open_streams(stack: Stack, service: str, clients: Sequence[str | None]) -> Iterator[list[requests.Response]]:
    with ExitStack() as held:
        responses = [held.enter_context(start_stream(stack, service, client)) for client in clients]
        yield responses


def assert_refused(response: requests.Response, body: Mapping[str, object]) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "1"
    assert response.json() == body


def test_the_stream_after_the_limit_is_refused_until_one_ends(stack: Stack) -> None:
    client = "198.51.100.10"
    with open_streams(stack, "proxy-trusting", [client] * MAX_STREAMS) as streams:
        assert [s.status_code for s in streams] == [200] * MAX_STREAMS

        with start_stream(stack, "proxy-trusting", client) as refused:
            assert_refused(refused, TOO_MANY_STREAMS)
        # Another client is not affected.
        with start_stream(stack, "proxy-trusting", "198.51.100.11") as other:
            assert other.status_code == 200

        streams[0].close()
        # nginx frees the slot when its next write to the closed connection
        # fails: within one token (100 ms); a few tries allow for that.
        statuses = []
        for _ in range(20):
            with start_stream(stack, "proxy-trusting", client) as again:
                statuses.append(again.status_code)
                if again.status_code == 200:
                    break
        assert statuses[-1] == 200, statuses


def test_the_websocket_shares_the_stream_limit(stack: Stack) -> None:
    client = "198.51.100.12"
    with open_streams(stack, "proxy-trusting", [client] * MAX_STREAMS):
        url = stack.url("proxy-trusting", "/api/chat/message/ws").replace("http://", "ws://", 1)
        with pytest.raises(InvalidStatus) as refused:
            connect(url, subprotocols=stack.ws_protocols(), additional_headers={"X-Forwarded-For": client})
    response = refused.value.response
    assert response.status_code == 429
    assert response.body is not None
    assert response.body.rstrip(b"\n").decode() == (
        '{"error":{"code":"too_many_streams","message":"Too many open streams from this client. Close one and retry."}}'
    )


def test_stream_starts_are_rate_limited(stack: Stack) -> None:
    # Requests the API refuses quickly (400) still count as starts: 40 in a
    # row leave the burst of 20 (plus refills at 5 a second) far behind.
    headers = {**stack.auth, "Content-Type": "application/json", "X-Forwarded-For": "198.51.100.20"}
    responses = [
        requests.post(stack.url("proxy-trusting"), data=b"{not json", headers=headers, timeout=10) for _ in range(40)
    ]

    statuses = [r.status_code for r in responses]
    assert statuses[: BURST + 1] == [400] * (BURST + 1), statuses
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) >= 10, statuses
    assert set(statuses) == {400, 429}, statuses
    for response in refused:
        assert_refused(response, TOO_MANY_STARTS)
    print(f"\nstream starts: {statuses.count(400)} served, {len(refused)} refused")


def test_a_spoofed_x_forwarded_for_does_not_make_a_new_client(stack: Stack) -> None:
    # Against the shipped configuration every stream has another forged
    # address; the limit still counts them as one client, the real peer.
    forged = [f"203.0.113.{i}" for i in range(MAX_STREAMS + 1)]
    with open_streams(stack, "proxy-edge", forged[:MAX_STREAMS]) as streams:
        assert [s.status_code for s in streams] == [200] * MAX_STREAMS
        with start_stream(stack, "proxy-edge", forged[-1]) as refused:
            assert_refused(refused, TOO_MANY_STREAMS)

    logs, _ = stack.compose.get_logs("proxy-edge")
    assert "203.0.113." not in logs


def test_a_token_in_the_url_of_an_11th_stream_is_refused_before_the_limit_logs_it(stack: Stack) -> None:
    # nginx logs a limit's refusal (at warn) with the request line as sent,
    # query string included. A query string on the API's paths is refused
    # before the limits run, with its own 400, and never logged.
    in_url = "token-in-the-url-of-the-11th-stream"
    with ExitStack() as held:
        streams = [
            held.enter_context(start_stream_past(stack, "proxy-edge", {"too_many_streams", "too_many_stream_starts"}))
            for _ in range(MAX_STREAMS)
        ]
        assert [s.status_code for s in streams] == [200] * MAX_STREAMS
        refused = requests.post(
            stack.url("proxy-edge", f"{STREAM_PATH}?access_token={in_url}"),
            json=LONG_REPLY,
            headers=stack.auth,
            timeout=30,
        )
        # The control: without a query string the same request meets the
        # stream limit (once a start credit is back, if the ten took the last).
        with start_stream_past(stack, "proxy-edge", {"too_many_stream_starts"}) as limited:
            assert_refused(limited, TOO_MANY_STREAMS)
    assert (refused.status_code, refused.headers["content-type"]) == (400, "application/json")
    assert refused.json() == QUERY_NOT_ALLOWED

    stdout, stderr = stack.compose.get_logs("proxy-edge")
    assert "limiting connections" in stdout + stderr  # nginx does log these refusals
    assert in_url not in stdout + stderr


def api_sees(stack: Stack, service: str, forwarded_for: str) -> str:
    """The client address the API logged for one request through ``service``."""
    response = requests.post(
        stack.url(service),
        data=b"{not json",
        headers={**stack.auth, "Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
        timeout=10,
    )
    request_id = response.headers["X-Request-ID"]  # made by nginx, passed to the API
    logs, _ = stack.compose.get_logs("api")
    # The API's access line (app/access_log.py): `POST /api/... 400 3ms client=<address> rid=<id> ...`
    [line] = [line for line in logs.splitlines() if f" rid={request_id}" in line]
    return line.split(" client=", 1)[1].split()[0]


def test_the_api_never_takes_a_spoofed_address_for_the_client(stack: Stack) -> None:
    seen = api_sees(stack, "nginx", "203.0.113.99")

    assert seen != "203.0.113.99"
    assert seen.startswith(("172.", "192.168.", "10.")), seen  # the Docker gateway: the real peer


def test_the_api_sees_the_client_a_trusted_proxy_names(stack: Stack) -> None:
    # The control for the test above: through a proxy that trusts the
    # sender, the same header does name the client.
    assert api_sees(stack, "proxy-trusting", "198.51.100.99") == "198.51.100.99"
