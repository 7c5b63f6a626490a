"""A client that goes away frees its stream at once, and its reply's token
source after the resume grace; a thousand of them leak nothing."""

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from streamcheck import clients
from streamcheck.timing import Arrival
from tests.integration.stack import RESUME_GRACE_SECONDS, Stack

PAYLOAD = {"message": "leaving early"}


def leave_after(tokens: int):  # type: ignore[no-untyped-def]
    def on_arrival(arrival: Arrival) -> bool:
        return (
            arrival.event.event == "token"
            and arrival.event.id is not None
            and arrival.event.id.endswith(f":{tokens - 1}")
        )

    return on_arrival


def test_leaving_mid_stream_frees_the_stream_then_the_source(stack: Stack) -> None:
    stack.wait_for_metric("chat_running_generations", 0, timeout=30)
    m = clients.with_requests(stack.url(), PAYLOAD, headers=stack.auth, on_arrival=leave_after(3))
    assert len(m.events("token")) == 3
    left = time.perf_counter()

    stream_freed = stack.wait_for_metric("chat_active_streams", 0, timeout=5)
    assert stream_freed < 1.0, stream_freed
    # The reply keeps generating for the resume grace, then its source is cancelled.
    source_cancelled = stack.wait_for_metric("chat_running_generations", 0, timeout=RESUME_GRACE_SECONDS + 5)
    assert time.perf_counter() - left < RESUME_GRACE_SECONDS + 1.5
    print(f"\nstream freed after {stream_freed:.2f} s, source cancelled after {source_cancelled:.2f} s more")


def test_a_thousand_abandoned_streams_leak_nothing(stack: Stack) -> None:
    def open_then_abort(session: requests.Session) -> int:
        return len(
            clients.with_requests(
                stack.url(), PAYLOAD, headers=stack.auth, on_arrival=leave_after(1), session=session
            ).events("token")
        )

    def cycles(count: int) -> list[int]:
        with ThreadPoolExecutor(max_workers=20) as pool:
            sessions = [requests.Session() for _ in range(20)]
            return list(pool.map(lambda i: open_then_abort(sessions[i % 20]), range(count)))

    cycles(200)  # warm-up: caches, allocator arenas, the reply store filling
    stack.wait_for_metric("chat_running_generations", 0, timeout=RESUME_GRACE_SECONDS + 10)
    before = stack.worker_rss_kb()

    started = time.perf_counter()
    # Each saw its first token (a read may carry the second one too).
    assert all(tokens >= 1 for tokens in cycles(1000))
    elapsed = time.perf_counter() - started

    assert stack.wait_for_metric("chat_active_streams", 0, timeout=5) < 5
    stack.wait_for_metric("chat_running_generations", 0, timeout=RESUME_GRACE_SECONDS + 10)
    after = stack.worker_rss_kb()
    print(f"\n1000 open-then-abort cycles in {elapsed:.1f} s; worker RSS {before} KB -> {after} KB")
    assert after <= before * 1.10, (before, after)

    # Every reply and conversation key expires: resume TTL 5 s after the
    # abandoned reply ended, the owner 15 s after its message (compose.test.yaml).
    written = stack.reply_keys()
    started = time.perf_counter()
    while (left := stack.reply_keys()) > 0:
        assert time.perf_counter() - started < 30, f"{left} keys left"
        time.sleep(0.5)
    print(f"Valkey: {written} reply keys after the soak, 0 after {time.perf_counter() - started:.1f} s")
    assert written >= 1000  # each abandoned reply: an owner, a meta hash and a log
