"""OpenTelemetry traces: one span per reply stream, off by default.

On only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (Settings): then each
worker exports over OTLP/HTTP, in batches, from a background thread. The SDK
reads its other standard variables itself (``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_RESOURCE_ATTRIBUTES``...).
Off, nothing of the SDK is imported and a stream's span is :data:`NO_SPAN`,
whose methods do nothing: the API starts and streams at the same cost.

Deliberate choices (do not "fix" them without reading why):

1. One span per stream, ``chat.stream``, not FastAPI's auto-instrumentation,
   which adds a span per ASGI send: one per token event, thousands a second.
   The span starts at the request's arrival and ends after the last event;
   its events mark what happened in between (``resume``, ``first_token``,
   ``stop``, ``shutdown``, ``end``). Token events add nothing to it.
2. The parent comes from the request's ``traceparent`` through the
   propagator API, so the configured propagators (W3C by default) apply.
3. The span is never made current: a stream is an async generator that
   yields across tasks, where attaching a context and detaching it later
   fails. The provider is not made global either: it is this app's.
4. The generation of a new reply (the token source, for the model source
   the call to the model server) is a child span, ``chat.generate``, of the
   stream that asked for it. It runs in a task of its own and may outlive
   that stream (a client that resumes elsewhere), so it is ended by the
   generation, with how the generation ended.
"""

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from app.config import Settings
from app.replies import Usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SPAN_NAME = "chat.stream"
GENERATION_SPAN_NAME = "chat.generate"


class GenerationSpan(Protocol):
    def end(self, outcome: str, code: str, tokens: int, usage: Usage | None) -> None: ...


class StreamSpan(Protocol):
    def event(self, name: str, attributes: Mapping[str, str | int] | None = None) -> None: ...

    def annotate(self, attributes: Mapping[str, str | int]) -> None: ...

    def generation(self, source: str, model: str | None) -> GenerationSpan: ...

    def end(self, outcome: str, code: str, tokens: int) -> None: ...


class _NoSpan:
    def event(self, name: str, attributes: Mapping[str, str | int] | None = None) -> None:
        pass

    def annotate(self, attributes: Mapping[str, str | int]) -> None:
        pass

    def generation(self, source: str, model: str | None) -> GenerationSpan:
        return self

    def end(self, outcome: str, code: str, tokens: int, usage: Usage | None = None) -> None:
        pass


NO_SPAN: StreamSpan = _NoSpan()

_provider: "TracerProvider | None" = None
_tracer: Any = None  # opentelemetry.trace.Tracer, when tracing is on


def configure(settings: Settings) -> None:
    """Start exporting when an OTLP endpoint is configured (once per worker)."""
    if not settings.otel_exporter_otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    # The exporter reads the endpoint (and headers...) from the environment
    # itself, and adds /v1/traces to OTEL_EXPORTER_OTLP_ENDPOINT.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)


def use(provider: "TracerProvider | None") -> None:
    """Trace with ``provider`` (tests: one with an in-memory exporter), or stop (None)."""
    global _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer("chat-stream") if provider is not None else None


def shutdown() -> None:
    """Flush the spans still queued (at the worker's exit)."""
    if _provider is not None:
        _provider.shutdown()
        use(None)


def _end_with(span: Any, code: str) -> None:
    if code:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", code)
        span.set_status(Status(StatusCode.ERROR, code))


class _Generation:
    def __init__(self, span: Any) -> None:
        self._span = span

    def end(self, outcome: str, code: str, tokens: int, usage: Usage | None) -> None:
        self._span.set_attribute("chat.outcome", outcome)
        self._span.set_attribute("chat.tokens", tokens)
        if usage is not None:
            # OpenTelemetry's GenAI names for what the model server reported.
            self._span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            self._span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        _end_with(self._span, code)
        self._span.end()


class _Span:
    def __init__(self, span: Any) -> None:
        self._span = span

    def event(self, name: str, attributes: Mapping[str, str | int] | None = None) -> None:
        self._span.add_event(name, attributes or {})

    def annotate(self, attributes: Mapping[str, str | int]) -> None:
        self._span.set_attributes(dict(attributes))

    def generation(self, source: str, model: str | None) -> GenerationSpan:
        from opentelemetry.trace import SpanKind, set_span_in_context

        attributes: dict[str, str | int] = {"chat.source": source}
        kind = SpanKind.INTERNAL
        if model is not None:
            # A call to a model server: a client span with GenAI's attributes.
            attributes |= {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
            kind = SpanKind.CLIENT
        span = _tracer.start_span(
            GENERATION_SPAN_NAME, context=set_span_in_context(self._span), kind=kind, attributes=attributes
        )
        return _Generation(span)

    def end(self, outcome: str, code: str, tokens: int) -> None:
        self._span.set_attribute("chat.outcome", outcome)
        self._span.set_attribute("chat.tokens", tokens)
        _end_with(self._span, code)
        if outcome in ("stopped", "shutdown"):
            self._span.add_event("stop" if outcome == "stopped" else "shutdown")
        self._span.add_event("end", {"chat.outcome": outcome, "chat.tokens": tokens})
        self._span.end()


def start_stream(
    *,
    transport: str,
    arrived_at: float,
    request_id: str | None,
    headers: Mapping[str, str],
    attributes: Mapping[str, str | int] | None = None,
) -> StreamSpan:
    """The span of one stream, started at ``arrived_at`` (a ``perf_counter()``
    reading), child of the request's ``traceparent`` if it has one."""
    if _tracer is None:
        return NO_SPAN
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    started_ns = time.time_ns() - int((time.perf_counter() - arrived_at) * 1e9)
    known: dict[str, str | int] = {"chat.transport": transport, **(attributes or {})}
    if request_id is not None:
        known["chat.request_id"] = request_id
    span = _tracer.start_span(
        SPAN_NAME, context=extract(headers), kind=SpanKind.SERVER, attributes=known, start_time=started_ns
    )
    return _Span(span)
