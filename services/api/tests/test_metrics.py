"""The API's metrics, in-process (no multiprocess folder: values live here),
and summed across worker processes as gunicorn runs them.

Each in-process test reads how much a series moved while it ran, so the
tests do not depend on each other's streams.
"""

import asyncio
import json
import os
import runpy
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from app import metrics
from app.conversation import open_reply
from app.memory_store import MemoryReplyStore
from app.open_streams import OpenStream, OpenStreams
from app.streaming import StreamRequest, reply_events
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from scripted_sources import ScriptedSource
from shutdown_cut import cut_by_shutdown
from sse_body import parse
from store_contract import limits, until_done

URL = "/api/chat/message/stream"
WS_URL = "/api/chat/message/ws"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextmanager
def change(name: str, **labels: str) -> Iterator[Callable[[], float]]:
    """How much a sample moved inside the block (read it after the block)."""
    before = value(name, **labels)
    moved: list[float] = []
    yield lambda: moved[0]
    moved.append(value(name, **labels) - before)


def buckets(name: str, transport: str) -> dict[str, float]:
    """The cumulative bucket counts of one histogram child, by upper bound."""
    return {
        sample.labels["le"]: sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == f"{name}_bucket" and sample.labels["transport"] == transport
    }


def in_bucket(before: dict[str, float], after: dict[str, float], low: str, high: str) -> float:
    """Observations between the two bounds, (low, high], made between the two readings."""
    return (after[high] - before[high]) - (after[low] - before[low])


def test_every_series_exists_before_any_stream() -> None:
    # Bound at import: a panel or an alert never waits for a first event.
    text = metrics.render(None)[0].decode()
    for line in (
        'chat_time_to_first_token_seconds_count{transport="websocket"}',
        'chat_inter_token_latency_seconds_count{transport="sse"}',
        'chat_stream_duration_seconds_count{transport="sse"}',
        'chat_active_streams{transport="websocket"}',
        'chat_streams_ended_total{code="store_unavailable",outcome="error",transport="sse"}',
        'chat_streams_ended_total{code="",outcome="shutdown",transport="websocket"}',
        'chat_resumes_total{outcome="resumed",producer="other_process"}',
        'chat_resumes_total{outcome="unavailable",producer="none"}',
        'chat_upstream_requests_total{source="twin"}',
        'chat_upstream_cancels_total{reason="abandoned",source="twin"}',
        'chat_store_operation_duration_seconds_count{operation="write"}',
        'chat_store_errors_total{operation="read"}',
        "chat_running_generations",
    ):
        assert line in text


def test_a_paced_stream_lands_in_the_right_inter_token_buckets(client: TestClient) -> None:
    # 8 tokens 60 ms apart: 7 gaps, each a little over 60 ms, in (0.05, 0.075].
    before = buckets("chat_inter_token_latency_seconds", "sse")
    response = client.post(URL, json={"message": "/pace 60 8"})
    after = buckets("chat_inter_token_latency_seconds", "sse")
    assert [name for name, _ in parse(response.text)].count("token") == 8
    assert after["+Inf"] - before["+Inf"] == 7
    assert in_bucket(before, after, "0.05", "0.1") == 7  # none early, none very late
    assert in_bucket(before, after, "0.05", "0.075") >= 5  # a loaded machine may delay one or two


def test_time_to_first_token_counts_from_the_request_to_the_first_token_sent(client: TestClient) -> None:
    # The twin is silent 0.2 s, then sends at once: the first token goes out
    # a little after 0.2 s, so it lands in (0.2, 0.3].
    before = buckets("chat_time_to_first_token_seconds", "sse")
    response = client.post(URL, json={"message": "/pause 0.2"})
    after = buckets("chat_time_to_first_token_seconds", "sse")
    assert parse(response.text)[-1][0] == "end"
    assert after["+Inf"] - before["+Inf"] == 1
    assert in_bucket(before, after, "0.2", "0.3") == 1


def test_the_websocket_is_measured_under_its_own_transport(client: TestClient, token: str) -> None:
    with (
        change("chat_time_to_first_token_seconds_count", transport="websocket") as first_tokens,
        change("chat_streams_ended_total", transport="websocket", outcome="end", code="") as ended,
        change("chat_stream_duration_seconds_count", transport="websocket") as durations,
        client.websocket_connect(WS_URL, subprotocols=["chat.v1", f"bearer.{token}"]) as ws,
    ):
        ws.send_text(json.dumps({"message": "hi"}))
        while json.loads(ws.receive_text())["event"] != "end":
            pass
    assert (first_tokens(), ended(), durations()) == (1, 1, 1)
    assert value("chat_active_streams", transport="websocket") == 0


@pytest.mark.parametrize(
    ("message", "outcome", "code"),
    [
        pytest.param("hi", "end", "", id="end"),
        pytest.param("/fail", "error", "source_failed", id="error-by-code"),
    ],
)
def test_outcomes_are_counted(client: TestClient, message: str, outcome: str, code: str) -> None:
    with (
        change("chat_streams_ended_total", transport="sse", outcome=outcome, code=code) as ended,
        change("chat_stream_duration_seconds_count", transport="sse") as durations,
    ):
        client.post(URL, json={"message": message})
    assert (ended(), durations()) == (1, 1)
    assert value("chat_active_streams", transport="sse") == 0


def test_a_stop_is_counted_as_an_outcome_and_an_upstream_cancel(client: TestClient) -> None:
    with (
        change("chat_streams_ended_total", transport="sse", outcome="stopped", code="") as stopped,
        change("chat_upstream_cancels_total", source="twin", reason="stopped") as cancels,
        change("chat_upstream_requests_total", source="twin") as requests,
        client.stream("POST", URL, json={"message": "/pace 50 200"}) as response,
    ):
        lines = response.iter_lines()
        start = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        next(line for line in lines if line.startswith("event: token"))
        assert client.post(f"/api/chat/message/{start['message_id']}/stop").status_code == 202
        assert "event: end" in list(lines)
    assert (stopped(), cancels(), requests()) == (1, 1, 1)


def sse_stream() -> OpenStream:
    return OpenStreams(heartbeat=0, send_timeout=0, shutdown_send=5).stream(sse=True)


def test_a_client_that_leaves_is_counted_as_disconnected_and_the_abandoned_source_as_a_cancel() -> None:
    source = ScriptedSource(["a"] * 50, delay=0.01)

    async def leave_after_two() -> None:
        replies = MemoryReplyStore(limits(resume_grace=0), conversation_ttl=60)
        reply = await replies.start(source, "hi", subject="s", conversation_id="c", message_id="m")
        request = StreamRequest(transport="sse", arrived_at=time.perf_counter())
        stream = reply_events(
            replies, reply, request, stream=sse_stream(), from_index=0, retry_ms=0, shutdown_retry_ms=0
        )
        await anext(stream)
        await anext(stream)
        await stream.aclose()  # what the server does when the client goes away
        await until_done(reply)

    with (
        change("chat_streams_ended_total", transport="sse", outcome="disconnected", code="") as disconnected,
        change("chat_upstream_cancels_total", source="scriptedsource", reason="abandoned") as abandoned,
    ):
        asyncio.run(leave_after_two())
    assert (disconnected(), abandoned()) == (1, 1)


def test_a_stream_cut_by_shutdown_and_its_cancelled_source_are_counted() -> None:
    source = ScriptedSource(["a"] * 50, delay=0.02)
    with (
        change("chat_streams_ended_total", transport="sse", outcome="shutdown", code="") as cut,
        change("chat_streams_ended_total", transport="sse", outcome="end", code="") as ended,
        change("chat_upstream_cancels_total", source="scriptedsource", reason="shutdown") as cancelled,
    ):
        sent = asyncio.run(cut_by_shutdown(source))
    assert (sent[0], sent[-1]) == ("start", "server_shutdown")
    assert 0 < sent.count("token") < 50  # cut mid-reply
    assert (cut(), ended(), cancelled()) == (1, 0, 1)


def test_a_token_that_expires_mid_stream_is_counted_as_its_own_outcome() -> None:
    async def outlived() -> list[str]:
        replies = MemoryReplyStore(limits(), conversation_ttl=60)
        source = ScriptedSource(["a"] * 50, delay=0.02)  # 1 s of reply
        reply = await replies.start(source, "hi", subject="s", conversation_id="c", message_id="m")
        request = StreamRequest(transport="sse", arrived_at=time.perf_counter())
        events = reply_events(
            replies, reply, request, stream=sse_stream(), from_index=0, retry_ms=0, shutdown_retry_ms=0, expires_in=0.1
        )
        sent = [event.data.get("code", event.name) async for event in events if event is not None]
        await replies.close(0)
        return sent

    with (
        change("chat_streams_ended_total", transport="sse", outcome="token_expired", code="") as expired,
        change("chat_streams_ended_total", transport="sse", outcome="end", code="") as ended,
    ):
        sent = asyncio.run(outlived())
    assert (sent[0], sent[-1]) == ("start", "token_expired")
    assert 0 < sent.count("token") < 50  # cut mid-reply
    assert (expired(), ended()) == (1, 0)


@pytest.mark.parametrize(
    "bound",
    [
        pytest.param({"max_reply_tokens": 3}, id="tokens"),
        pytest.param({"max_reply_bytes": 3}, id="bytes"),
    ],
)
def test_a_reply_past_its_size_bound_is_counted_as_a_too_large_cancel(bound: dict[str, int]) -> None:
    async def overflow() -> str | None:
        replies = MemoryReplyStore(limits(**bound), conversation_ttl=60)
        source = ScriptedSource(["a"] * 10)
        reply = await until_done(await replies.start(source, "hi", subject="s", conversation_id="c", message_id="m"))
        await replies.close(0)
        return reply.failure.code if reply.failure else None

    with change("chat_upstream_cancels_total", source="scriptedsource", reason="too_large") as too_large:
        assert asyncio.run(overflow()) == "reply_too_large"
    assert too_large() == 1


def test_resumes_are_counted_by_outcome(client: TestClient) -> None:
    message_id = parse(client.post(URL, json={"message": "hi"}).text)[0][1]["message_id"]
    with (
        change("chat_resumes_total", outcome="resumed", producer="this_process") as resumed,
        change("chat_resumes_total", outcome="unavailable", producer="none") as unavailable,
        change("chat_streams_ended_total", transport="sse", outcome="resume_unavailable", code="") as ended,
        change("chat_time_to_first_token_seconds_count", transport="sse") as first_tokens,
    ):
        resumed_events = parse(
            client.post(URL, json={"message": "hi"}, headers={"Last-Event-ID": f"{message_id}:5"}).text
        )
        client.post(URL, json={"message": "hi"}, headers={"Last-Event-ID": f"{message_id}:99"})
        client.post(URL, json={"message": "hi"}, headers={"Last-Event-ID": "not-an-id"})
    assert [name for name, _ in resumed_events].count("token") == 6
    assert (resumed(), unavailable(), ended()) == (1, 2, 2)
    assert first_tokens() == 0  # a resume's first token is no reply's first token


def test_a_resume_of_a_reply_made_by_another_process_is_counted_as_such() -> None:
    async def resume_a_mirror() -> None:
        replies = MemoryReplyStore(limits(), conversation_ttl=60)
        message_id = f"msg_{'1' * 32}"
        source = ScriptedSource(["a", "b"])
        reply = await replies.start(source, "hi", subject="s", conversation_id="c", message_id=message_id)
        await until_done(reply)
        reply.producer = "another-replica-1-abcdef"  # as a mirror loaded from the shared store
        found = await open_reply(
            replies, source, subject="s", message="hi", conversation_id=None, last_event_id=f"{message_id}:0"
        )
        assert found == (reply, 1)

    with change("chat_resumes_total", outcome="resumed", producer="other_process") as elsewhere:
        asyncio.run(resume_a_mirror())
    assert elsewhere() == 1


def test_store_operations_are_timed_and_their_failures_counted() -> None:
    async def operations() -> None:
        with metrics.store_operation("load"):
            await asyncio.sleep(0.01)
        with pytest.raises(ConnectionError), metrics.store_operation("load"):
            raise ConnectionError("store down")
        task = asyncio.create_task(asyncio.sleep(10))

        async def cancelled() -> None:
            with metrics.store_operation("load"):
                await task

        waiter = asyncio.create_task(cancelled())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    with (
        change("chat_store_operation_duration_seconds_count", operation="load") as timed,
        change("chat_store_operation_duration_seconds_bucket", operation="load", le="0.005") as fast,
        change("chat_store_errors_total", operation="load") as errors,
    ):
        asyncio.run(operations())
    # Three timed; the 10 ms one is not among the fast; a cancellation is no store error.
    assert (timed(), errors()) == (3, 1)
    assert fast() == 2


# One gunicorn worker, as far as the metrics go: it ends a stream and holds
# another open until the test closes its stdin.
_WORKER = """
import sys
from app import metrics

sse = metrics.BY_TRANSPORT["sse"]
sse.ended_as("end").inc()
sse.duration.observe(0.5)
sse.active.inc()
print("ready", flush=True)
sys.stdin.read()
"""
API = Path(__file__).resolve().parents[1]


def rendered(multiprocess_dir: Path, name: str, **labels: str) -> float:
    """One sample of what /metrics serves from the workers' shared folder."""
    text = metrics.render(str(multiprocess_dir))[0].decode()
    (found,) = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    return found


def test_workers_sharing_a_folder_are_summed_and_an_exited_one_stops_counting_as_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gunicorn.conf.py's hooks, read with the folder in the environment as the image sets it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    hooks = runpy.run_path(str(API / "gunicorn.conf.py"))
    hooks["on_starting"](None)
    # prometheus-client picks its file-backed values at import: the folder is
    # in each worker's environment before it starts.
    worker_env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER],
                    cwd=API,
                    env=worker_env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            for _ in range(2)
        ]
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n", worker.communicate()[1]
        ended = {"transport": "sse", "outcome": "end", "code": ""}
        assert rendered(tmp_path, "chat_streams_ended_total", **ended) == 2
        assert rendered(tmp_path, "chat_stream_duration_seconds_count", transport="sse") == 2
        assert rendered(tmp_path, "chat_active_streams", transport="sse") == 2

        gone = workers[0]
        gone.communicate(timeout=10)  # closes its stdin: it exits
        # Until the arbiter marks it dead, its open stream still counts.
        assert rendered(tmp_path, "chat_active_streams", transport="sse") == 2
        hooks["child_exit"](None, SimpleNamespace(pid=gone.pid))
        assert rendered(tmp_path, "chat_active_streams", transport="sse") == 1
        # What it counted stays: a counter never goes back.
        assert rendered(tmp_path, "chat_streams_ended_total", **ended) == 2
        assert rendered(tmp_path, "chat_stream_duration_seconds_count", transport="sse") == 2
        workers[1].communicate(timeout=10)
