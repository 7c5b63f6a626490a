"""The API stopping (a rolling restart) or dying under live streams.

Each test restores what it stopped before it ends, so the rest of the session
keeps its stack."""

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from streamcheck import clients
from streamcheck.timing import Arrival, Kind, classify
from tests.integration.figures import Figures
from tests.integration.stack import (
    PROXY_CONNECT_TIMEOUT_SECONDS,
    PROXY_DNS_VALID_SECONDS,
    PROXY_NEXT_UPSTREAM_TRIES,
    REPLY_TOKENS,
    STOP_GRACE_SECONDS,
    Stack,
)

LIVE_STREAMS = 50
# Tries at killing every replica within nginx's DNS cache (the retry bound's test).
BOUND_ATTEMPTS = 3
UNAVAILABLE = (
    503,
    {"error": {"code": "upstream_unavailable", "message": "The chat service is unavailable. Retry shortly."}},
)
TIMED_OUT = (504, {"error": {"code": "upstream_timeout", "message": "The chat service did not answer in time."}})


@pytest.fixture
def restores_api(stack: Stack) -> Iterator[None]:
    yield
    stack.compose_run("start", "api")
    stack.wait_until_serving()


@pytest.fixture
def more_replicas_than_tries(stack: Stack) -> Iterator[int]:
    """The API scaled past nginx's proxy_next_upstream_tries, so that a wait
    bounded by the tries differs from one that grows with the replicas.
    Afterwards as many replicas as before run again."""
    before = len(stack.containers())
    replicas = max(before, PROXY_NEXT_UPSTREAM_TRIES + 1)
    stack.compose_run("up", "--detach", "--wait", "--no-recreate", "--scale", f"api={replicas}", "api")
    yield replicas
    stack.compose_run("up", "--detach", "--wait", "--no-recreate", "--scale", f"api={before}", "api")
    stack.wait_until_serving()


def exit_codes(stack: Stack) -> list[int]:
    """Of every API replica."""
    states = [
        json.loads(line) for line in stack.compose_run("ps", "--all", "--format", "json", "api").stdout.splitlines()
    ]
    return [int(state["ExitCode"]) for state in states]


@pytest.mark.usefixtures("restores_api")
def test_stop_ends_every_live_stream_and_the_api_exits_by_itself(stack: Stack, figures: Figures) -> None:
    with ThreadPoolExecutor(max_workers=LIVE_STREAMS) as pool:
        streams = [
            pool.submit(clients.with_requests, stack.url(), {"message": "/pause 120"}, headers=stack.auth, timeout=60)
            for _ in range(LIVE_STREAMS)
        ]
        stack.wait_for_metric("chat_active_streams", LIVE_STREAMS, timeout=30)
        started = time.perf_counter()
        stack.compose_run("stop", "api")
        stop_seconds = time.perf_counter() - started
        results = [stream.result() for stream in streams]

    finals = [
        (m.events()[-1].event, json.loads(m.events()[-1].data).get("code"), m.events()[-1].retry) for m in results
    ]
    figures(f"{LIVE_STREAMS} live streams: API stopped in {stop_seconds:.2f} s; final events: {set(finals)}")
    assert finals == [("error", "server_shutdown", 1000)] * LIVE_STREAMS
    assert set(exit_codes(stack)) == {0}
    # It exited by itself, well before compose would send SIGKILL.
    assert stop_seconds < STOP_GRACE_SECONDS / 2, stop_seconds


@pytest.mark.usefixtures("restores_api")
def test_a_killed_api_cuts_the_stream_and_the_proxy_answers_json_until_it_is_back(stack: Stack) -> None:
    def kill_after_5(arrival: Arrival) -> None:
        if arrival.event.id is not None and arrival.event.id.endswith(":4"):
            stack.compose_run("kill", "api")

    m = clients.with_requests(stack.url(), {"message": "killed"}, headers=stack.auth, on_arrival=kill_after_5)
    assert classify(m).kind is Kind.CUT, classify(m)
    assert "end" not in [e.event for e in m.events()]

    # With every replica down the proxy answers JSON: the name "api" resolves
    # to nothing (503), or, while nginx still holds the dead addresses, each
    # try's connect times out (504; the next test times it).
    down = requests.post(stack.url(), json={"message": "anyone?"}, headers=stack.auth, timeout=30)
    assert (down.status_code, down.json()) in (UNAVAILABLE, TIMED_OUT), (down.status_code, down.text)

    stack.compose_run("start", "api")
    stack.wait_until_serving()
    assert classify(clients.with_requests(stack.url(), {"message": "back?"}, headers=stack.auth)).kind is Kind.STREAMING


def test_with_every_replica_killed_the_proxy_answers_within_its_tries(
    stack: Stack, more_replicas_than_tries: int, figures: Figures
) -> None:
    """proxy_next_upstream_tries bounds the tries, not the replicas: with
    every replica dead, nginx answers 504 after that many connect timeouts,
    where unbounded it would try each replica, one more timeout each.

    nginx tries dead addresses only while its resolver holds them
    (PROXY_DNS_VALID_SECONDS from the answer, per worker process); after that
    "api" resolves to nothing and the answer is a 503 that says nothing about
    the bound. So a request makes nginx resolve "api" afresh, every replica
    is killed at once, and the next request goes on the same connection (the
    same worker) right away. A kill too slow for the cache gets the 503: it
    is reported and tried again."""
    replicas = more_replicas_than_tries
    tries = min(replicas, PROXY_NEXT_UPSTREAM_TRIES)
    for attempt in range(1, BOUND_ATTEMPTS + 1):
        containers = stack.containers()
        # Until every worker's cached answer has expired (nginx dates them on
        # its whole-second clock: one lasts up to a second longer), so that
        # the request below resolves the name and the cache's age is known.
        time.sleep(PROXY_DNS_VALID_SECONDS + 1.5)
        with requests.Session() as connection:
            assert connection.get(stack.url(path="/healthz"), timeout=10).status_code == 200
            resolved = time.perf_counter()
            # docker itself, not compose: the kill returns once the replicas
            # and their addresses are gone, in tens of milliseconds.
            subprocess.run(["docker", "kill", *containers], check=True, capture_output=True)
            sent = time.perf_counter()
            down = connection.post(stack.url(), json={"message": "anyone?"}, headers=stack.auth, timeout=30)
            waited = time.perf_counter() - sent
        stack.compose_run("start", "api")
        stack.wait_until_serving()
        figures(
            f"attempt {attempt}: {replicas} replicas killed, the request sent {sent - resolved:.2f} s after nginx "
            f"resolved them (cached {PROXY_DNS_VALID_SECONDS:g} s): {down.status_code} after {waited:.2f} s"
        )
        if down.status_code != TIMED_OUT[0]:
            # The cache had expired: the JSON 503, which leaves the bound untested.
            assert (down.status_code, down.json()) == UNAVAILABLE, (down.status_code, down.text)
            continue
        assert down.json() == TIMED_OUT[1]
        # Each try took a connect timeout: as many as the bound, give or take
        # half a timeout (fewer or more tries would be a whole one off).
        expected = tries * PROXY_CONNECT_TIMEOUT_SECONDS
        assert abs(waited - expected) < PROXY_CONNECT_TIMEOUT_SECONDS / 2, (waited, expected, replicas)
        return
    pytest.fail(
        f"in {BOUND_ATTEMPTS} attempts no request reached nginx while it still held the killed replicas' "
        f"addresses (the figures give each attempt): the bound on its tries was not exercised"
    )


def test_a_proxy_restart_lets_streams_in_flight_finish(stack: Stack) -> None:
    """nginx stops gracefully (SIGQUIT, the image's STOPSIGNAL): a stream in
    flight goes on to its end. The control: SIGTERM, nginx's fast shutdown,
    cuts it (the Debian-based image did that on every restart)."""

    def stop_after_5(command: list[str]):  # type: ignore[no-untyped-def]
        def on_arrival(arrival: Arrival) -> None:
            if arrival.event.id is not None and arrival.event.id.endswith(":4"):
                stack.compose_run(*command)

        return on_arrival

    try:
        graceful = clients.with_requests(
            stack.url("proxy-edge"),
            {"message": "hi"},
            headers=stack.auth,
            on_arrival=stop_after_5(["restart", "proxy-edge"]),
        )
        stack.forget_ports("proxy-edge")  # a restarted container may get new host ports
        fast = clients.with_requests(
            stack.url("proxy-edge"),
            {"message": "hi"},
            headers=stack.auth,
            on_arrival=stop_after_5(["kill", "--signal", "SIGTERM", "proxy-edge"]),
        )
    finally:
        stack.compose_run("up", "--detach", "--wait", "--no-deps", "proxy-edge")
        stack.forget_ports("proxy-edge")
    assert graceful.closing_event == "end" and len(graceful.events("token")) == REPLY_TOKENS
    assert fast.closing_event is None and 5 <= len(fast.events("token")) < REPLY_TOKENS
