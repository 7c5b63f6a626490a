"""Several API replicas behind nginx, replies in Valkey: a rolling restart
loses no token, a reconnect is served by another process, a killed producer's
followers are told, a Valkey outage is survived, Stop works across replicas.

Each test leaves every replica running, so the session's stack stays whole.
"""

import json
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from app.twin import reply_tokens

from streamcheck import resuming
from streamcheck.resuming import Followed
from tests.integration.figures import Figures
from tests.integration.stack import PRODUCER_LEASE_SECONDS, Stack

TOKENS, DELAY_MS = 100, 50  # each reply: 100 tokens, 50 ms apart (5 s)
PACED = {"message": f"/pace {DELAY_MS} {TOKENS}"}
EXPECTED = "".join(reply_tokens(TOKENS))
LEASE = PRODUCER_LEASE_SECONDS
STREAMS = 50


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def wait_healthy(container: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while docker("inspect", "--format", "{{.State.Health.Status}}", container).strip() != "healthy":
        assert time.monotonic() < deadline, f"{container} not healthy after {timeout} s"
        time.sleep(0.25)


def rolling_restart(stack: Stack, url: str, service: str) -> list[Followed]:
    """For each replica in turn: 50 streams in flight, then `docker restart` it
    (SIGTERM, drain, start) and wait until it is healthy again."""
    results: list[Followed] = []
    for container in stack.containers(service):
        with ThreadPoolExecutor(max_workers=STREAMS) as pool:
            futures = [pool.submit(resuming.follow, url, PACED, headers=stack.auth) for _ in range(STREAMS)]
            time.sleep(1.0)  # every stream is under way
            docker("restart", "--time", "30", container)
            results += [f.result() for f in futures]
        wait_healthy(container)
    return results


@pytest.fixture
def every_replica_running(stack: Stack) -> Iterator[None]:
    yield
    stack.compose_run("start", "api", "valkey")
    for container in stack.containers():
        wait_healthy(container)
    stack.wait_until_serving()


def test_new_streams_spread_over_every_replica(stack: Stack) -> None:
    served_by = {
        requests.post(stack.url(), json={"message": "/pace 1 1"}, headers=stack.auth, timeout=10).headers["X-Served-By"]
        for _ in range(30)
    }
    assert len(served_by) == len(stack.containers()) >= 2, served_by


@pytest.mark.usefixtures("every_replica_running")
def test_nginx_follows_a_scale_up_and_down_without_a_restart(stack: Stack) -> None:
    def serving(attempts: int = 40) -> set[str]:
        return {
            requests.post(stack.url(), json={"message": "/pace 1 1"}, headers=stack.auth, timeout=10)
            .headers["X-Served-By"]
            .split("-")[0]
            for _ in range(attempts)
        }

    before = stack.containers()
    stack.compose_run("up", "--detach", "--wait", "--no-recreate", "--scale", "api=3", "api")
    try:
        deadline = time.monotonic() + 15  # nginx caches the name for 2 s
        while len(found := serving()) < 3:
            assert time.monotonic() < deadline, found
        assert found == {c[:12] for c in stack.containers()}
    finally:
        stack.compose_run("up", "--detach", "--wait", "--no-recreate", "--scale", f"api={len(before)}", "api")
    # The removed replica gets no more streams, and no request fails meanwhile.
    deadline = time.monotonic() + 15
    while (found := serving(20)) != {c[:12] for c in stack.containers()}:
        assert time.monotonic() < deadline, found


@pytest.mark.usefixtures("every_replica_running")
def test_a_rolling_restart_loses_no_token_and_resumes_on_another_process(stack: Stack, figures: Figures) -> None:
    started = time.perf_counter()
    results = rolling_restart(stack, stack.url(), "api")
    took = time.perf_counter() - started

    counted = resuming.tally(results, TOKENS)
    figures(f"rolling restart of {len(stack.containers())} replicas in {took:.1f} s, {counted}")
    assert not counted.failed, counted.failed[:5]
    assert all(r.text == EXPECTED for r in results)
    assert (counted.lost, counted.repeated) == (0, 0)
    # The restarts did hit replies in flight, and their rest came from another process.
    assert counted.elsewhere >= len(stack.containers()), counted


def test_negative_control_with_replies_in_memory_the_same_restart_loses_replies(stack: Stack, figures: Figures) -> None:
    url = stack.url("proxy-memory")
    results = rolling_restart(stack, url, "api-memory")
    failed = [r for r in results if r.closing_code != "end"]
    lost = sum(TOKENS - len(r.tokens) for r in results)
    figures(f"memory store, same restart: {len(failed)} of {len(results)} replies failed, {lost} tokens lost")
    assert failed and lost > 0
    assert {r.closing_code for r in failed} == {"resume_unavailable"}


@pytest.mark.usefixtures("every_replica_running")
def test_followers_of_a_killed_replica_get_reply_interrupted_within_the_lease(stack: Stack, figures: Figures) -> None:
    first = requests.post(stack.url(), json=PACED, headers=stack.auth, stream=True, timeout=10)
    producer = first.headers["X-Served-By"]
    lines = first.iter_lines()
    start = json.loads(next(line for line in lines if line.startswith(b"data:"))[5:])
    # A follower on another replica: resume until the proxy picks another one.
    for _ in range(40):
        follower = requests.post(
            stack.url(),
            json=PACED,
            headers={**stack.auth, "Last-Event-ID": f"{start['message_id']}:0"},
            stream=True,
            timeout=10,
        )
        if follower.headers["X-Served-By"] != producer:
            break
        follower.close()
    assert follower.headers["X-Served-By"] != producer
    docker("kill", "--signal", "KILL", stack.container_of(producer))
    killed = time.perf_counter()
    events = [line for line in follower.iter_lines() if line.startswith((b"event:", b"data:"))]
    told = time.perf_counter() - killed
    first.close()
    figures(f"producer killed: its follower on another replica was told after {told:.2f} s (lease {LEASE} s)")
    assert events[-2:] == [
        b"event: error",
        b'data: {"code":"reply_interrupted","message":"The server generating the reply stopped.'
        b' Send the message again."}',
    ]
    assert told < LEASE + 1.0 + 0.5  # the lease, one check interval, and the proxy's hop


@pytest.mark.usefixtures("every_replica_running")
def test_a_valkey_outage_ends_streams_with_an_error_refuses_new_ones_then_heals(stack: Stack, figures: Figures) -> None:
    # Read from every replica's /metrics, which needs no Valkey: so the outage can be counted.
    creates = 'chat_store_errors_total{operation="create"}'
    errors_before, creates_before = stack.metric("chat_store_errors_total"), stack.metric(creates)
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(resuming.follow, stack.url(), PACED, headers=stack.auth, max_connections=1)
        time.sleep(1.0)
        stack.compose_run("stop", "valkey")
        stopped = time.perf_counter()
        cut = in_flight.result()
    figures(f"Valkey stopped: the stream in flight ended after {time.perf_counter() - stopped:.2f} s")
    assert cut.closing_code == "store_unavailable"
    refused = requests.post(stack.url(), json={"message": "hello?"}, headers=stack.auth, timeout=10)
    assert (refused.status_code, refused.json()) == (
        503,
        {"error": {"code": "store_unavailable", "message": "The reply store is unavailable. Retry shortly."}},
    )
    # The refused message is one failed create; the cut stream, at least one
    # failed request of another kind (its writes, the lease, the follower's read).
    errors, created = stack.metric("chat_store_errors_total") - errors_before, stack.metric(creates) - creates_before
    figures(f"store errors counted during the outage: {errors:.0f}, {created:.0f} of them creates")
    assert created >= 1
    assert errors - created >= 1
    stack.compose_run("start", "valkey")
    (valkey,) = stack.containers("valkey")
    wait_healthy(valkey)
    healed, attempts = time.perf_counter(), 1
    while (back := resuming.follow(stack.url(), PACED, headers=stack.auth, max_connections=1)).closing_code != "end":
        assert time.perf_counter() - healed < 15, back.statuses
        attempts += 1
    figures(f"Valkey healthy again: the first new message after it streamed on attempt {attempts}, no API restart")
    assert back.text == EXPECTED


def post_from_inside(container: str, path: str, token: str) -> tuple[int, str]:
    """POST to one API replica directly, from inside its container."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "r = urllib.request.Request('http://127.0.0.1:8000' + sys.argv[1], method='POST',"
        " headers={'Authorization': 'Bearer ' + sys.argv[2]})\n"
        "try:\n    resp = urllib.request.urlopen(r, timeout=5); print(resp.status); print(resp.read().decode())\n"
        "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n"
    )
    status, body = docker("exec", container, "python3", "-c", script, path, token).split("\n", 1)
    return int(status), body.strip()


def test_stop_from_another_replica_ends_every_follower_with_stopped(stack: Stack) -> None:
    long_reply = {"message": "/pace 100 300"}  # 30 s: each check below costs a `docker exec`
    first = requests.post(stack.url(), json=long_reply, headers=stack.auth, stream=True, timeout=10)
    producer = first.headers["X-Served-By"]
    lines = first.iter_lines()
    message_id = json.loads(next(line for line in lines if line.startswith(b"data:"))[5:])["message_id"]
    (other,) = [c for c in stack.containers() if not producer.startswith(c[:12])][:1]
    path = f"/api/chat/message/{urllib.parse.quote(message_id)}/stop"

    # Another subject, and an unknown id, get the same 404.
    from app.config import Settings
    from app.tokens import mint
    from pydantic import SecretStr

    mallory = mint(Settings(auth_secret=SecretStr(stack.secret), reply_store="memory"), "mallory", ttl=600)
    not_found = (404, '{"error":{"code":"message_not_found","message":"No such message."}}')
    assert post_from_inside(other, path, mallory) == not_found
    assert post_from_inside(other, "/api/chat/message/msg_00000000000000000000000000000000/stop", stack.token) == (
        not_found
    )

    assert post_from_inside(other, path, stack.token) == (202, f'{{"message_id":"{message_id}","status":"stopping"}}')
    events = [line for line in lines if line.startswith((b"event:", b"data:"))]
    closing = json.loads(events[-1][5:])
    assert events[-2] == b"event: end" and closing["finish_reason"] == "stopped"
    assert 0 < closing["tokens"] < 300
    assert post_from_inside(other, path, stack.token) == (200, f'{{"message_id":"{message_id}","status":"finished"}}')
