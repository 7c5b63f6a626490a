"""Prometheus metrics, correct across gunicorn workers and replicas.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the image sets it), each worker writes
its values to files there and ``/metrics`` adds up the live workers
(gunicorn.conf.py clears the folder at start and drops a dead worker's files).
Without it (unit tests), values live in this process. Every replica serves its
own sums; Prometheus finds the replicas by DNS (services/prometheus/) and
queries add them up.
Ref: https://prometheus.github.io/client_python/multiprocess/

Names. OpenTelemetry's GenAI conventions name ``gen_ai.server.time_to_first_token``
and ``gen_ai.server.time_per_output_token``, but define them at the model
server, for successful responses, the second as one average per request. What
is measured here is what a user sees, at the edge of the chat API: from the
request's arrival to the first token event sent, and every gap between two
token events sent, whatever the stream's outcome (vLLM's
``inter_token_latency_seconds`` is per gap too). Under the GenAI names they
would mislead, and collide with a model server's own metrics in one
Prometheus; so they carry the ``chat_`` prefix and their help says which
GenAI metric each corresponds to.

Cost. A token event costs one ``perf_counter()`` and one histogram
``observe()`` (two mmap writes); every labelled child is bound here, once, so
a stream never looks a label up. Binding them also makes each series exist,
at 0, from the worker's start: no panel or alert waits for a first event.
"""

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

TRANSPORTS: Final = ("sse", "websocket")

# A few ms (a reply already in memory, a resume) to tens of seconds (a model
# queueing or thinking). Tight around 50-300 ms, where a streamed reply lives.
TTFT_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 40.0,
)  # fmt: skip
# Gaps between token events: sub-ms (a burst, a resume's backlog) to tens of
# seconds (a stalled upstream); fine steps where models pace tokens (10-100 ms).
INTER_TOKEN_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
    0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0,
)  # fmt: skip
STREAM_DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
STORE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

TIME_TO_FIRST_TOKEN = Histogram(
    "chat_time_to_first_token_seconds",
    "From a new message's arrival to its first token event sent (GenAI: gen_ai.server.time_to_first_token).",
    ["transport"],
    buckets=TTFT_BUCKETS,
)
INTER_TOKEN_LATENCY = Histogram(
    "chat_inter_token_latency_seconds",
    "Gap between two token events sent to one client (GenAI: gen_ai.server.time_per_output_token).",
    ["transport"],
    buckets=INTER_TOKEN_BUCKETS,
)
STREAM_DURATION = Histogram(
    "chat_stream_duration_seconds",
    "From the request's arrival to the stream's last event.",
    ["transport"],
    buckets=STREAM_DURATION_BUCKETS,
)
ACTIVE_STREAMS = Gauge(
    "chat_active_streams", "Open reply streams, by transport.", ["transport"], multiprocess_mode="livesum"
)
STREAMS_ENDED = Counter(
    "chat_streams_ended",
    "Reply streams by how they ended; code: the error event's code when outcome is error.",
    ["transport", "outcome", "code"],
)
RESUMES = Counter(
    "chat_resumes",
    "Requests with Last-Event-ID: resumed or unavailable; producer: whether this process generates the reply.",
    ["outcome", "producer"],
)
RUNNING_GENERATIONS = Gauge(
    "chat_running_generations", "Replies whose token source is running.", multiprocess_mode="livesum"
)
UPSTREAM_REQUESTS = Counter("chat_upstream_requests", "Calls to the token source (the model), by source.", ["source"])
UPSTREAM_CANCELS = Counter(
    "chat_upstream_cancels", "Token source calls closed before their end, by source and reason.", ["source", "reason"]
)
# The shared store's cost: one observation per request sent to Valkey (a
# pipeline of many commands is one). Its count is the round trips.
STORE_DURATION = Histogram(
    "chat_store_operation_duration_seconds",
    "Requests to the reply store, by operation (read includes its blocking wait, up to 0.2 s).",
    ["operation"],
    buckets=STORE_BUCKETS,
)
STORE_ERRORS = Counter("chat_store_errors", "Reply store requests that failed, by operation.", ["operation"])

# Label values. Outcomes of a stream (an error's code comes from app.replies
# or the stream itself); reasons a generation is cancelled; store operations.
OUTCOMES: Final = ("end", "stopped", "length", "disconnected", "shutdown", "token_expired", "resume_unavailable")
ERROR_CODES: Final = (
    "source_failed",
    "reply_too_large",
    "reply_abandoned",
    "server_shutdown",
    "reply_interrupted",
    "store_unavailable",
    "store_full",
    # A model server's failures (app.openai_source).
    "model_unavailable",
    "model_misconfigured",
    "model_rejected",
    "model_busy",
    "model_error",
    "model_timeout",
    "model_stalled",
    "model_interrupted",
)
CANCEL_REASONS: Final = ("abandoned", "stopped", "shutdown", "too_large", "store")
SOURCES: Final = ("twin", "openai")
STORE_OPERATIONS: Final = ("create", "load", "write", "read", "lease", "stop")
THIS_PROCESS, OTHER_PROCESS, NO_REPLY = "this_process", "other_process", "none"


@dataclass(frozen=True)
class TransportMetrics:
    """The children one transport's streams use, bound once."""

    transport: str
    time_to_first_token: Histogram
    inter_token_latency: Histogram
    duration: Histogram
    active: Gauge
    ended: dict[tuple[str, str], Counter]  # (outcome, code) -> child

    def ended_as(self, outcome: str, code: str = "") -> Counter:
        child = self.ended.get((outcome, code))
        if child is None:  # a code not listed above: rare, and still counted
            child = self.ended[outcome, code] = STREAMS_ENDED.labels(self.transport, outcome, code)
        return child


def _bind(transport: str) -> TransportMetrics:
    ended = {(outcome, ""): STREAMS_ENDED.labels(transport, outcome, "") for outcome in OUTCOMES}
    ended.update({("error", code): STREAMS_ENDED.labels(transport, "error", code) for code in ERROR_CODES})
    return TransportMetrics(
        transport=transport,
        time_to_first_token=TIME_TO_FIRST_TOKEN.labels(transport),
        inter_token_latency=INTER_TOKEN_LATENCY.labels(transport),
        duration=STREAM_DURATION.labels(transport),
        active=ACTIVE_STREAMS.labels(transport),
        ended=ended,
    )


BY_TRANSPORT: Final = {transport: _bind(transport) for transport in TRANSPORTS}
RESUMED: Final = {producer: RESUMES.labels("resumed", producer) for producer in (THIS_PROCESS, OTHER_PROCESS)}
RESUME_UNAVAILABLE: Final = RESUMES.labels("unavailable", NO_REPLY)
for _source in SOURCES:
    UPSTREAM_REQUESTS.labels(_source)
    for _reason in CANCEL_REASONS:
        UPSTREAM_CANCELS.labels(_source, _reason)
_STORE: Final = {op: (STORE_DURATION.labels(op), STORE_ERRORS.labels(op)) for op in STORE_OPERATIONS}


@contextmanager
def store_operation(operation: str) -> Iterator[None]:
    """Time one request to the store; count it as an error if it raises
    (a cancellation is no error of the store's)."""
    duration, errors = _STORE[operation]
    started = time.perf_counter()
    try:
        yield
    except asyncio.CancelledError:
        raise
    except BaseException:
        errors.inc()
        raise
    finally:
        duration.observe(time.perf_counter() - started)


def store_error(operation: str) -> None:
    """A failure the store answered inside a request that itself succeeded
    (a pipeline's command refused, such as OOM)."""
    _STORE[operation][1].inc()


def render(multiprocess_dir: str | None) -> tuple[bytes, str]:
    if multiprocess_dir is None:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
