"""Chat replies stream through nginx event by event, and the check that says
so also catches proxies that buffer (the negative controls)."""

import json
from typing import Any

import pytest
from app.twin import reply_tokens

from streamcheck import clients
from streamcheck.timing import Kind, Measurement, bursts, classify
from tests.integration.stack import REPLY_TOKENS, TOKEN_DELAY_SECONDS, Stack

# The twin's reply (the same function the API runs) and a request that is
# itself multi-byte: Arabic, a skin-tone emoji, an em dash.
EXPECTED_TEXT = "".join(reply_tokens(REPLY_TOKENS))
PAYLOAD = {"message": "مرحبا 👋🏽 — how does streaming work?"}
GENERATION_SECONDS = REPLY_TOKENS * TOKEN_DELAY_SECONDS


def reply_text(m: Measurement) -> str:
    return "".join(json.loads(event.data)["text"] for event in m.events("token"))


def with_curl_compressed(url: str, payload: dict[str, str], **options: Any) -> Measurement:
    return clients.with_curl(url, payload, extra_args=("--compressed",), **options)


@pytest.mark.parametrize(
    "client",
    [pytest.param(clients.with_requests, id="requests"), pytest.param(clients.with_curl, id="curl")],
)
def test_events_arrive_one_by_one_over_the_generation_time(stack: Stack, client: clients.Client) -> None:
    m = client(stack.url(), PAYLOAD, headers=stack.auth)

    verdict = classify(m)
    assert verdict.kind is Kind.STREAMING, verdict
    times = m.times("token")
    assert len(times) == REPLY_TOKENS
    # The first token arrives long before the last one is generated ...
    assert times[0] < times[-1] / 4, times
    # ... the arrivals spread over most of the generation window ...
    assert times[-1] - times[0] >= 0.6 * GENERATION_SECONDS, times
    # ... and (almost) every event comes in a network read of its own.
    assert len(bursts(times)) >= 0.9 * REPLY_TOKENS, times


def test_the_reply_is_complete_and_byte_exact(stack: Stack) -> None:
    m = clients.with_requests(stack.url(), PAYLOAD, headers=stack.auth)

    start, *tokens, end = m.events()
    assert (start.event, end.event) == ("start", "end")
    ids = json.loads(start.data)
    assert ids["conversation_id"].startswith("conv_") and ids["message_id"].startswith("msg_")
    assert [json.loads(t.data)["index"] for t in tokens] == list(range(REPLY_TOKENS))
    assert [t.id for t in tokens] == [f"{ids['message_id']}:{i}" for i in range(REPLY_TOKENS)]
    assert json.loads(end.data) == {"finish_reason": "stop", "tokens": REPLY_TOKENS}
    assert reply_text(m) == EXPECTED_TEXT
    # Multi-byte text travels as UTF-8, not as JSON \u escapes.
    for text in ("مرحبا", "你好", "👨‍👩‍👧‍👦"):
        assert text.encode() in m.body
    assert "\ufffd" not in m.body.decode("utf-8")


def test_a_conversation_id_is_kept(stack: Stack) -> None:
    m = clients.with_requests(stack.url(), {**PAYLOAD, "conversation_id": "conv_demo-1"}, headers=stack.auth)
    assert json.loads(m.events("start")[0].data)["conversation_id"] == "conv_demo-1"


@pytest.mark.parametrize(
    ("service", "client", "expected"),
    [
        pytest.param("proxy-buffering", clients.with_requests, Kind.BUFFERED, id="default-proxying-requests"),
        pytest.param("proxy-buffering", clients.with_curl, Kind.BUFFERED, id="default-proxying-curl"),
        pytest.param("proxy-gzip", clients.with_requests, Kind.COMPRESSED, id="gzip-requests"),
        pytest.param("proxy-gzip", with_curl_compressed, Kind.COMPRESSED, id="gzip-curl"),
    ],
)
def test_the_same_check_detects_a_proxy_that_buffers(
    stack: Stack, service: str, client: clients.Client, expected: Kind
) -> None:
    m = client(stack.url(service), PAYLOAD, headers=stack.auth)

    verdict = classify(m)
    assert verdict.kind is expected, verdict
    times = m.times("token")
    # Everything arrives, only late: the first event after most of the
    # generation time, all of them in a few bursts (a 4 KB proxy buffer).
    assert reply_text(m) == EXPECTED_TEXT
    assert times[0] >= 0.6 * GENERATION_SECONDS, times
    assert len(bursts(times)) <= 3, times
