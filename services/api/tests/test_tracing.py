"""One span per stream, in-process, with the SDK's in-memory exporter."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from app import tracing
from app.config import Settings
from app.tokens import mint
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from scripted_sources import ScriptedSource
from shutdown_cut import cut_by_shutdown
from sse_body import parse

URL = "/api/chat/message/stream"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The stream's span: one per stream, whatever else the request traced."""
    (span,) = [s for s in exporter.get_finished_spans() if s.name == tracing.SPAN_NAME]
    return span


def generation_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == tracing.GENERATION_SPAN_NAME]
    return span


def event_names(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


def test_a_stream_is_one_span_child_of_the_incoming_traceparent(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    response = client.post(URL, json={"message": "hi"}, headers={"traceparent": TRACEPARENT, "X-Request-ID": "rid-1"})
    start = parse(response.text)[0][1]
    span = only_span(spans)  # 12 token events, one span
    assert (span.name, span.kind) == ("chat.stream", SpanKind.SERVER)
    assert span.parent is not None and span.context is not None
    assert (format(span.parent.span_id, "016x"), format(span.context.trace_id, "032x")) == (PARENT_ID, TRACE_ID)
    assert event_names(span) == ["first_token", "end"]
    assert dict(span.attributes or {}) == {
        "chat.transport": "sse",
        "chat.request_id": "rid-1",
        "chat.conversation_id": start["conversation_id"],
        "chat.message_id": start["message_id"],
        "chat.outcome": "end",
        "chat.tokens": 12,
    }
    assert span.start_time is not None and span.end_time is not None and span.start_time < span.end_time
    assert span.events[0].timestamp >= span.start_time


def test_without_traceparent_the_span_is_a_root(client: TestClient, spans: InMemorySpanExporter) -> None:
    client.post(URL, json={"message": "hi"})
    assert only_span(spans).parent is None


def test_a_resume_and_an_error_are_marked(client: TestClient, spans: InMemorySpanExporter) -> None:
    message_id = parse(client.post(URL, json={"message": "hi"}).text)[0][1]["message_id"]
    spans.clear()
    client.post(URL, json={"message": "hi"}, headers={"Last-Event-ID": f"{message_id}:5"})
    resumed = only_span(spans)
    assert event_names(resumed) == ["resume", "end"]  # no first token: the reply's came before
    assert resumed.events[0].attributes == {"chat.resumed_from": 6}
    spans.clear()
    client.post(URL, json={"message": "/fail"})
    failed = only_span(spans)
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "source_failed"


def test_the_generation_is_a_child_span_of_the_stream_that_asked_for_it(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    client.post(URL, json={"message": "hi"}, headers={"traceparent": TRACEPARENT})
    stream, generation = only_span(spans), generation_span(spans)
    assert stream.context is not None and generation.parent is not None
    assert (generation.parent.trace_id, generation.parent.span_id) == (stream.context.trace_id, stream.context.span_id)
    # The twin is in-process: an internal span, without GenAI's attributes
    # (a model source's is a client span: test_openai_source.py).
    assert generation.kind is SpanKind.INTERNAL
    assert dict(generation.attributes or {}) == {"chat.source": "twin", "chat.outcome": "end", "chat.tokens": 12}
    # A resume starts no generation, and a failed one is an error.
    message_id = parse(client.post(URL, json={"message": "hi"}).text)[0][1]["message_id"]
    spans.clear()
    client.post(URL, json={"message": "hi"}, headers={"Last-Event-ID": f"{message_id}:5"})
    assert [s.name for s in spans.get_finished_spans()] == [tracing.SPAN_NAME]
    spans.clear()
    client.post(URL, json={"message": "/fail"})
    failed = generation_span(spans)
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "source_failed"


def test_a_refused_stream_ends_its_span(client: TestClient, settings: Settings, spans: InMemorySpanExporter) -> None:
    conversation = parse(client.post(URL, json={"message": "hi"}).text)[0][1]["conversation_id"]
    spans.clear()
    bob = {"Authorization": f"Bearer {mint(settings, 'bob')}"}
    response = client.post(URL, json={"message": "hi", "conversation_id": conversation}, headers=bob)
    assert response.status_code == 404  # alice's conversation
    refused = only_span(spans)
    assert ((refused.attributes or {})["chat.outcome"], refused.status.status_code) == ("refused", StatusCode.ERROR)
    assert [s.name for s in spans.get_finished_spans()] == [tracing.SPAN_NAME]  # nothing was generated


def test_a_stop_is_marked(client: TestClient, spans: InMemorySpanExporter) -> None:
    with client.stream("POST", URL, json={"message": "/pace 50 200"}) as response:
        lines = response.iter_lines()
        start = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        next(line for line in lines if line.startswith("event: token"))
        client.post(f"/api/chat/message/{start['message_id']}/stop")
        list(lines)
    assert event_names(only_span(spans)) == ["first_token", "stop", "end"]
    assert (generation_span(spans).attributes or {})["chat.outcome"] == "stopped"


def test_a_shutdown_is_marked(spans: InMemorySpanExporter) -> None:
    sent = asyncio.run(cut_by_shutdown(ScriptedSource(["a"] * 50, delay=0.05)))
    assert sent[-1] == "server_shutdown"
    span = only_span(spans)
    assert event_names(span) == ["first_token", "shutdown", "end"]
    assert (span.attributes or {})["chat.outcome"] == "shutdown"


def test_tracing_is_off_and_the_sdk_not_imported_without_an_endpoint() -> None:
    assert tracing.start_stream(transport="sse", arrived_at=0, request_id=None, headers={}) is tracing.NO_SPAN
    tracing.configure(Settings(otel_exporter_otlp_endpoint=None))
    assert tracing.start_stream(transport="sse", arrived_at=0, request_id=None, headers={}) is tracing.NO_SPAN
    # A fresh interpreter: building the app imports nothing of the SDK.
    code = "import sys, app.main; print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    api = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=api, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_endpoint_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9/")
    settings = Settings()
    assert settings.otel_exporter_otlp_endpoint == "http://127.0.0.1:9/"
    tracing.configure(settings)
    try:
        assert tracing.start_stream(transport="sse", arrived_at=0, request_id=None, headers={}) is not tracing.NO_SPAN
    finally:
        tracing.shutdown()  # stops the exporter's thread; the span was never ended, so nothing is sent
