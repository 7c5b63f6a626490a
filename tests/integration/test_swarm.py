"""The stack on Docker Swarm (`docker stack deploy` of the file
deploy/swarm/stack.py writes): a rolling update of the API
(`docker service update --force`) while replies stream loses no token.

Swarm replaces one task at a time, the new one first and healthy before the
old one gets SIGTERM (deploy/swarm/compose.swarm.yaml). Replies in flight
on the old task get `server_shutdown` and resume with Last-Event-ID on
another task, from Valkey.

The test starts a single-node swarm when the engine is not in one. It runs
in a pytest session of its own, after the compose stack's (`make
test-integration`): leaving a swarm drops the DNS names of every running
container on the engine (measured with Docker 20.10: nginx then answers 503
"api could not be resolved"). So it leaves the swarm it started only when no
other container runs, and otherwise says so and keeps it.
"""

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from app.config import Settings
from app.tokens import mint
from app.twin import reply_tokens
from pydantic import SecretStr

from streamcheck import resuming
from streamcheck.resuming import Followed
from tests.integration.figures import Figures
from tests.integration.host import free_port, run
from tests.integration.stack import ROOT, STREAM_PATH

TOKENS, DELAY_SECONDS = 100, 0.05  # each reply: 100 tokens, 50 ms apart (5 s)
EXPECTED = "".join(reply_tokens(TOKENS))
STREAMS_PER_SECOND = 4


@dataclass(frozen=True)
class Swarm:
    name: str
    url: str
    auth: dict[str, str]


def swarm_state() -> str:
    return run("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").strip()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(1)


def converged(name: str) -> bool:
    lines = run("docker", "stack", "services", name, "--format", "{{.Replicas}}").split()
    return bool(lines) and all(a == b for a, b in (line.split("/") for line in lines))


def serving(url: str, auth: dict[str, str]) -> bool:
    try:
        return requests.post(url, json={"message": "hi"}, headers=auth, timeout=10).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    # The images compose builds (cached layers: seconds after `make up` or the compose tests).
    run("docker", "compose", "-f", str(ROOT / "compose.yaml"), "build", "api", "nginx", "valkey", timeout=1800)
    tls = tmp_path_factory.mktemp("tls")
    run(str(ROOT / "scripts" / "dev-certificate.sh"), str(tls))
    secret = secrets.token_hex(32)
    token = mint(Settings(auth_secret=SecretStr(secret), reply_store="memory"), "tester", ttl=3600)
    joined = False
    if swarm_state() != "active":
        run("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")
        joined = True
    name = f"chat-stream-swarm-{os.getpid()}"
    port = free_port()
    env = {
        **os.environ,
        "CHAT_AUTH_SECRET": secret,
        "CHAT_VALKEY_PASSWORD": secrets.token_hex(32),
        "TLS_CERT_DIR": str(tls),
        "HTTP_PORT": str(port),
        "HTTPS_PORT": str(free_port()),
        "CHAT_TWIN_REPLY_TOKENS": str(TOKENS),
        "CHAT_TWIN_TOKEN_DELAY_SECONDS": str(DELAY_SECONDS),
        "CHAT_PRODUCER_LEASE_SECONDS": "1",
    }
    spec = json.loads(run(sys.executable, str(ROOT / "deploy" / "swarm" / "stack.py"), env=env))
    # As for the main test proxy: no per-client limits, since every stream of
    # this test comes from one address (compose.test.yaml's overlay file).
    spec["services"]["nginx"].setdefault("volumes", []).append(
        {
            "type": "bind",
            "source": str(ROOT / "tests" / "integration" / "nginx" / "stream_limits.conf"),
            "target": "/etc/nginx/snippets/location/stream_limits.conf",
            "read_only": True,
        }
    )
    stack_file = tmp_path_factory.mktemp("swarm") / "stack.json"
    stack_file.write_text(json.dumps(spec))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        run("docker", "stack", "deploy", "--resolve-image", "never", "--prune", "-c", str(stack_file), name)
        url = f"http://127.0.0.1:{port}{STREAM_PATH}"
        wait_for("every task running", lambda: converged(name))
        wait_for("a reply through the swarm's nginx", lambda: serving(url, auth))
        yield Swarm(name, url, auth)
    finally:
        subprocess.run(["docker", "stack", "rm", name], capture_output=True, check=False)
        # The stack's network goes last, once its tasks are gone.
        deadline = time.monotonic() + 60
        while name in subprocess.run(["docker", "network", "ls"], capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        if joined:
            others = subprocess.run(["docker", "ps", "--quiet"], capture_output=True, text=True).stdout.split()
            if others:
                print(f"\nthe swarm stays: {len(others)} other containers run (leave it: docker swarm leave --force)")
            else:
                subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, check=False)


def tasks(name: str) -> set[str]:
    out = run("docker", "service", "ps", f"{name}_api", "--filter", "desired-state=running", "--format", "{{.ID}}")
    return set(out.split())


def test_a_rolling_update_loses_no_token(swarm: Swarm, figures: Figures) -> None:
    before = tasks(swarm.name)
    payload = {"message": "hi"}
    futures: list[Future[Followed]] = []
    updating = threading.Event()
    updating.set()
    with ThreadPoolExecutor(max_workers=200) as pool:

        def start_streams() -> None:
            # New replies all through the update, so some are in flight on
            # each task when it is told to stop.
            while updating.is_set():
                futures.append(pool.submit(resuming.follow, swarm.url, payload, headers=swarm.auth))
                time.sleep(1 / STREAMS_PER_SECOND)

        starter = threading.Thread(target=start_streams)
        starter.start()
        time.sleep(2)
        started = time.perf_counter()
        try:
            run("docker", "service", "update", "--force", "--detach=false", "--quiet", f"{swarm.name}_api", timeout=300)
        finally:
            took = time.perf_counter() - started
            time.sleep(2)
            updating.clear()
            starter.join()
        results = [f.result() for f in futures]

    after = tasks(swarm.name)
    counted = resuming.tally(results, TOKENS)
    figures(f"swarm rolling update of {len(before)} tasks in {took:.1f} s, {counted}")
    assert not before & after, "the update replaced no task"
    assert not counted.failed, counted.failed[:5]
    assert all(r.text == EXPECTED for r in results)
    assert (counted.lost, counted.repeated) == (0, 0)
    # The update did cut replies in flight, and their rest came from another task.
    assert counted.elsewhere >= len(before), counted


def test_the_services_are_compose_yaml_with_the_swarm_overlay(swarm: Swarm) -> None:
    def spec(service: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(run("docker", "service", "inspect", f"{swarm.name}_{service}"))[0]["Spec"]
        return found

    api, nginx = spec("api"), spec("nginx")
    update = api["UpdateConfig"]
    assert (update["Order"], update["Parallelism"], update["FailureAction"]) == ("start-first", 1, "rollback")
    assert api["EndpointSpec"]["Mode"] == "dnsrr"
    # From compose.yaml, not restated: the stop grace that orders the drain.
    assert api["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 30 * 10**9
    assert {p["PublishMode"] for p in nginx["EndpointSpec"]["Ports"]} == {"host"}
