"""The OpenAI-compatible source through the API, in-process, with the real
``openai`` SDK talking HTTP to a fault-injecting server on a local port
(fault_upstream.py): each failure mode's exact events, the retries, the
history sent, and cancellation as the model server sees it.

Against a real model server (llama.cpp): tests/integration/test_model.py.
"""

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import pytest
from app import tracing
from app.config import Settings, get_settings
from app.main import app
from app.memory_store import MemoryReplyStore
from app.openai_source import OpenAISource, retry_after
from app.replies import (
    MODEL_BUSY,
    MODEL_ERROR,
    MODEL_INTERRUPTED,
    MODEL_MISCONFIGURED,
    MODEL_REJECTED,
    MODEL_STALLED,
    MODEL_TIMEOUT,
    MODEL_UNAVAILABLE,
    SHUTDOWN,
    Failure,
)
from fastapi.testclient import TestClient
from fault_upstream import KEY, REPLY, FaultUpstream
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr
from sse_body import parse
from store_contract import limits, until_done

URL = "/api/chat/message/stream"
FIRST_TOKEN_SECONDS = 1.0
STALL_SECONDS = 0.5
HEARTBEAT_SECONDS = 0.2
RETRIES = 2


@pytest.fixture
def upstream() -> Iterator[FaultUpstream]:
    with FaultUpstream() as server:
        yield server


def variant(settings: Settings, **overrides: Any) -> Settings:
    return Settings(**{**settings.model_dump(), **overrides})


@pytest.fixture
def settings(settings: Settings, upstream: FaultUpstream) -> Settings:
    """conftest's settings with the source under test (its client and token use them)."""
    return variant(
        settings,
        source="openai",
        openai_base_url=upstream.base_url,
        openai_model="fault",
        openai_api_key=SecretStr(KEY),
        openai_first_token_seconds=FIRST_TOKEN_SECONDS,
        openai_stall_seconds=STALL_SECONDS,
        openai_retries=RETRIES,
        openai_retry_backoff_seconds=0.01,
        openai_retry_max_wait_seconds=1.0,
        heartbeat_seconds=HEARTBEAT_SECONDS,
        resume_grace_seconds=0,
    )


def events(client: TestClient, message: str, **body: Any) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    response = client.post(URL, json={"message": message, **body})
    assert response.status_code == 200
    return parse(response.text), response.text


def failed_with(failure: Failure, tokens: int) -> list[tuple[str, Any]]:
    return [("start", ...), *[("token", ...)] * tokens, ("error", {"code": failure.code, "message": failure.message})]


def shape(stream: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any]]:
    """The events, with only the error's data kept (start and tokens vary)."""
    return [(name, data if name == "error" else ...) for name, data in stream]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed: nothing listens there


# ---- a reply, and the history sent with the next one ---------------------------------


def test_a_reply_streams_token_by_token_and_ends_with_usage(client: TestClient) -> None:
    stream, _ = events(client, "hello")
    assert [name for name, _ in stream] == ["start", *["token"] * len(REPLY), "end"]
    assert "".join(data["text"] for name, data in stream if name == "token") == "".join(REPLY)
    assert stream[-1][1] == {
        "finish_reason": "stop",
        "tokens": len(REPLY),
        "usage": {"prompt_tokens": 11, "completion_tokens": len(REPLY)},
    }


def test_the_model_call_is_a_client_span_with_the_models_usage(client: TestClient) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        events(client, "hello")
    finally:
        tracing.use(None)
        provider.shutdown()
    (stream,) = [s for s in exporter.get_finished_spans() if s.name == tracing.SPAN_NAME]
    (call,) = [s for s in exporter.get_finished_spans() if s.name == tracing.GENERATION_SPAN_NAME]
    assert stream.context is not None and call.parent is not None and call.parent.span_id == stream.context.span_id
    assert call.kind is SpanKind.CLIENT
    assert dict(call.attributes or {}) == {
        "chat.source": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "fault",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": len(REPLY),
        "chat.outcome": "end",
        "chat.tokens": len(REPLY),
    }


def test_a_reply_cut_by_the_models_token_limit_says_so(client: TestClient) -> None:
    stream, _ = events(client, "length")
    assert stream[-1][0] == "end" and stream[-1][1]["finish_reason"] == "length"


def test_each_message_goes_with_the_conversations_earlier_turns(
    client: TestClient, upstream: FaultUpstream, settings: Settings
) -> None:
    first, _ = events(client, "hello")
    conversation = first[0][1]["conversation_id"]
    second, _ = events(client, "echo", conversation_id=conversation)
    sent = json.loads("".join(data["text"] for name, data in second if name == "token"))
    assert sent == [
        {"role": "system", "content": settings.system_prompt},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "".join(REPLY)},
        {"role": "user", "content": "echo"},
    ]
    # A failed reply is not history: the next message goes without it.
    events(client, "drop 2", conversation_id=conversation)
    third, _ = events(client, "hello", conversation_id=conversation)
    contents = [message["content"] for message in upstream.streams[-1].messages]
    assert contents[1:] == ["hello", "".join(REPLY), "echo", sent_text(second), "hello"]
    assert third[-1][0] == "end"


def sent_text(stream: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(data["text"] for name, data in stream if name == "token")


# ---- failure modes: each an error event with its own code --------------------------


@pytest.mark.parametrize(
    ("message", "failure", "tokens"),
    [
        pytest.param("slow 3", MODEL_TIMEOUT, 0, id="no-first-token-in-time"),
        pytest.param("stall 2 3", MODEL_STALLED, 2, id="stall-between-tokens"),
        pytest.param("drop 2", MODEL_INTERRUPTED, 2, id="connection-cut-mid-stream"),
        pytest.param("cut 2", MODEL_INTERRUPTED, 2, id="clean-close-without-finish"),
        pytest.param("fail 9", MODEL_ERROR, 0, id="500-after-retries"),
        pytest.param("busy 9", MODEL_BUSY, 0, id="429-after-retries"),
    ],
)
def test_a_failure_is_an_error_event_with_its_own_code(
    client: TestClient, upstream: FaultUpstream, message: str, failure: Failure, tokens: int
) -> None:
    stream, body = events(client, message)
    assert shape(stream) == failed_with(failure, tokens)
    assert "127.0.0.1" not in body and KEY not in body
    # A failed reply leaves no request open on the model server (a stall, a
    # slow first token: closed by the deadline).
    assert all(model.done.wait(timeout=2) for model in upstream.streams)


@pytest.mark.parametrize(("message", "code"), [("fail 9", "fail"), ("busy 9", "busy")])
def test_429_and_5xx_are_retried_a_bounded_number_of_times(
    client: TestClient, upstream: FaultUpstream, message: str, code: str
) -> None:
    events(client, message)
    assert upstream.attempts[code] == 1 + RETRIES


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        pytest.param(403, MODEL_MISCONFIGURED, id="403-a-key-without-access"),
        pytest.param(400, MODEL_REJECTED, id="400-a-prompt-too-long"),
        pytest.param(404, MODEL_REJECTED, id="404-no-such-model"),
        pytest.param(422, MODEL_REJECTED, id="422-a-parameter-refused"),
    ],
)
def test_another_4xx_is_not_retried_and_has_its_own_code(
    client: TestClient, upstream: FaultUpstream, status: int, failure: Failure
) -> None:
    stream, body = events(client, f"status {status}")
    assert shape(stream) == failed_with(failure, 0)
    assert upstream.attempts["status"] == 1, "the same request would be refused again"
    assert "fault injected" not in body  # the server's error body stays out


def test_the_backoff_doubles_between_retries(settings: Settings, upstream: FaultUpstream, token: str) -> None:
    # Three retries: two cannot tell doubling from a backoff that grows by its
    # first value (0.25 s, 0.5 s either way); the third wait can (1 s, not
    # 0.75 s). The bound on a wait is above the longest, so none is cut short.
    backoff, retries = 0.25, 3
    longest = backoff * 2 ** (retries - 1)
    doubling = variant(
        settings,
        openai_retries=retries,
        openai_retry_backoff_seconds=backoff,
        openai_retry_max_wait_seconds=2 * longest,
    )
    with client_for(doubling, token) as client:
        stream, _ = events(client, f"fail {retries}")  # three 500s (no Retry-After), then the reply
    assert stream[-1][0] == "end" and upstream.attempts["fail"] == 1 + retries
    arrived = upstream.attempted_at["fail"]
    gaps = [later - earlier for earlier, later in pairwise(arrived)]
    # Each gap between attempts holds at least its wait: a linear backoff
    # fails the third (0.75 s), a constant one the second. A slow machine only
    # lengthens gaps, so the bound above is loose: the last gap stays under
    # twice its wait, which a backoff growing threefold (2.25 s) exceeds.
    assert all(gap >= backoff * 2**index for index, gap in enumerate(gaps)), gaps
    assert gaps[-1] < 2 * longest, gaps


def test_a_429_that_clears_within_the_retries_is_a_normal_reply(client: TestClient, upstream: FaultUpstream) -> None:
    stream, _ = events(client, f"busy {RETRIES}")
    assert stream[-1][0] == "end" and upstream.attempts["busy"] == 1 + RETRIES


def test_retry_after_is_honoured(client: TestClient, upstream: FaultUpstream) -> None:
    began = time.monotonic()
    stream, _ = events(client, "busy 1 1")
    assert stream[-1][0] == "end" and time.monotonic() - began >= 1.0


def test_a_retry_after_past_the_bound_is_not_waited_for(client: TestClient, upstream: FaultUpstream) -> None:
    began = time.monotonic()
    stream, _ = events(client, "busy 1 3600")
    assert shape(stream) == failed_with(MODEL_BUSY, 0)
    assert upstream.attempts["busy"] == 1 and time.monotonic() - began < 1.0


def test_heartbeats_keep_the_connection_busy_while_the_model_is_silent(client: TestClient) -> None:
    _, body = events(client, "slow 3")
    pings = body.count(": ping")
    assert pings >= FIRST_TOKEN_SECONDS / HEARTBEAT_SECONDS - 2, body


def test_an_unreachable_server(settings: Settings, token: str) -> None:
    with client_for(variant(settings, openai_base_url=f"http://127.0.0.1:{free_port()}/v1"), token) as client:
        stream, body = events(client, "hello")
    assert shape(stream) == failed_with(MODEL_UNAVAILABLE, 0)
    assert "127.0.0.1" not in body


def test_a_wrong_key_is_a_misconfiguration_and_is_never_shown_or_logged(
    settings: Settings, upstream: FaultUpstream, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-key-0123456789abcdef"
    with (
        caplog.at_level(logging.DEBUG),
        client_for(variant(settings, openai_api_key=SecretStr(wrong)), token) as client,
    ):
        stream, body = events(client, "hello")
    assert shape(stream) == failed_with(MODEL_MISCONFIGURED, 0)
    assert upstream.attempts == {}, "a 401 is not retried"
    for text in (body, caplog.text):
        assert wrong not in text and "wrong" not in text and "Incorrect API key" not in text
    assert "model_misconfigured" in caplog.text  # the log says what happened


@contextmanager
def client_for(settings: Settings, token: str) -> Iterator[TestClient]:
    """A client of the app with these settings (conftest's client has the module's)."""
    app.dependency_overrides[get_settings] = lambda: settings
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
            yield client
    finally:
        app.dependency_overrides.clear()


# ---- cancellation, as the model server sees it --------------------------------------


def stream_then(client: TestClient, action: str, message: str = "long 300 20") -> float:
    """Start a long reply, take three tokens, then stop it or leave; the time
    the reply was let go (monotonic)."""
    with client.stream("POST", URL, json={"message": message}) as response:
        lines = response.iter_lines()
        start = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        for _ in range(3):
            next(line for line in lines if line.startswith("event: token"))
        if action == "stop":
            assert client.post(f"/api/chat/message/{start['message_id']}/stop").status_code == 202
            let_go = time.monotonic()
            assert "event: end" in list(lines)
            return let_go
    return time.monotonic()  # left: the response is closed


@pytest.mark.parametrize("action", ["stop", "abandon"])
def test_the_model_server_sees_its_client_leave_at_once(
    client: TestClient, upstream: FaultUpstream, action: str
) -> None:
    let_go = stream_then(client, action)
    model = upstream.streams[-1]
    assert model.done.wait(timeout=2), "the upstream request is still open"
    assert model.ended == "disconnected" and model.chunks < 300
    assert model.ended_at - let_go < 0.5


@pytest.mark.parametrize("action", ["stop", "abandon"])
def test_negative_control_without_cancellation_the_model_keeps_generating(
    settings: Settings, upstream: FaultUpstream, token: str, action: str
) -> None:
    # 3 s of reply: what is left after the check (the app's shutdown waits for it).
    with client_for(variant(settings, openai_test_no_cancel=True), token) as client:
        stream_then(client, action, "long 150 20")
        model = upstream.streams[-1]
        assert not model.done.wait(timeout=1.0), "the check would not catch a source that ignores cancellation"
        assert model.chunks > 3


def shut_down_mid_reply(settings: Settings, upstream: FaultUpstream, message: str) -> bool:
    """A reply generating, then the store's close with the drain's deadline
    past (the memory store does not drain); whether the upstream request was
    still open once the store had closed. The source is closed last, as the
    app's lifespan does."""

    async def run() -> bool:
        source = OpenAISource(settings)
        store = MemoryReplyStore(limits(), conversation_ttl=60)
        reply = await store.start(source, message, subject="s", conversation_id="c", message_id="m")
        while len(reply.tokens) < 3:
            await asyncio.sleep(0.01)
        await store.close(0)
        await until_done(reply)
        assert reply.failure == SHUTDOWN
        await asyncio.sleep(0.2)  # the fault server's side of the close
        still_open = not upstream.streams[-1].done.is_set()
        await source.aclose()
        return still_open

    return asyncio.run(run())


def test_shutdown_past_the_drain_closes_the_upstream_request(settings: Settings, upstream: FaultUpstream) -> None:
    assert not shut_down_mid_reply(settings, upstream, "long 300 20")
    model = upstream.streams[-1]
    assert model.done.wait(timeout=2) and model.ended == "disconnected" and model.chunks < 300


def test_negative_control_without_cancellation_the_shutdown_waits_for_the_model(
    settings: Settings, upstream: FaultUpstream
) -> None:
    assert shut_down_mid_reply(variant(settings, openai_test_no_cancel=True), upstream, "long 50 20")
    model = upstream.streams[-1]
    assert model.ended == "complete" and model.chunks == 50


# ---- Retry-After ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param({"retry-after": "3"}, 3.0, id="seconds"),
        pytest.param({"retry-after-ms": "250", "retry-after": "9"}, 0.25, id="milliseconds-first"),
        pytest.param({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 4.0, id="http-date"),
        pytest.param({"retry-after": "soon"}, None, id="garbage"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers, now=6.0) == seconds
