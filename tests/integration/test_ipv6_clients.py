"""IPv6 clients keep their own address at nginx, so each gets its own
per-client limits (compose.ipv6.yaml, an IPv6 compose network).

Without that file every IPv6 client of the published port reaches nginx
through Docker's userland proxy with the network gateway's IPv4 address, and
one IPv6 client holding 10 streams locks every other out (measured). With
it, an engine that writes ip6tables rules forwards IPv6 clients unchanged.

Two IPv6 clients a test can make on any Docker host: the host's own
addresses on two Docker bridges, the stack's network (A) and one the test
creates without masquerading (B), so B's address is not rewritten on its way
to nginx. Both connect to the published port at A's gateway address, which
the engine forwards (DNAT) to nginx. A client through the userland proxy
(::1) arrives with A's gateway address, so it shares A's bucket: the
negative control, the class of failure this file fixes.

Runs its own small stack (the shipped limits, one API replica, long replies).
"""

import ipaddress
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from app.config import Settings
from app.tokens import mint
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from tests.integration.host import free_port, run
from tests.integration.stack import ROOT, STREAM_PATH

MAX_STREAMS = 10  # services/nginx/snippets/location/stream_limits.conf
TOO_MANY_STREAMS = {
    "error": {"code": "too_many_streams", "message": "Too many open streams from this client. Close one and retry."}
}
ENGINE_HINT = (
    "IPv6 clients shared one bucket: does the engine write ip6tables rules? "
    "(the default since Docker 27; Docker 20.10: dockerd --experimental --ip6tables)"
)


@dataclass(frozen=True)
class Ipv6Stack:
    port: int
    a: str  # the host's address on the stack's network (its gateway)
    b: str  # the host's address on a second network, not masqueraded
    auth: dict[str, str]

    def url(self, host: str) -> str:
        return f"http://[{host}]:{self.port}{STREAM_PATH}"


class SourceAdapter(HTTPAdapter):
    """Connections from one local address."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def subnets() -> tuple[ipaddress.IPv6Network, ipaddress.IPv6Network]:
    """Two /64s of a random unique local /48 (RFC 4193), unlikely to meet another project's."""
    global_id = int.from_bytes(secrets.token_bytes(5))  # 40 random bits after fd00::/8
    prefix = ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 48))
    a, b, *_ = prefix.subnets(new_prefix=64)
    return a, b


@pytest.fixture(scope="module")
def v6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ipv6Stack]:
    a, b = subnets()
    tls = tmp_path_factory.mktemp("tls")
    run(str(ROOT / "scripts" / "dev-certificate.sh"), str(tls))
    secret = secrets.token_hex(32)
    project = f"chat-stream-ipv6-{os.getpid()}"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "IPV6_SUBNET": str(a),
        # Ports chosen here, not by the engine: with an IPv6 network, Docker
        # 20.10 picks a port of 0 for IPv4 and IPv6 apart, and its IPv6
        # proxy's dual-stack socket can hold the port the IPv4 one then gets
        # ("address already in use", seen once with a busy engine).
        "HTTP_PORT": str(free_port()),
        "HTTPS_PORT": str(free_port()),
        "TLS_CERT_DIR": str(tls),
        "CHAT_AUTH_SECRET": secret,
        "CHAT_VALKEY_PASSWORD": secrets.token_hex(32),
        "API_REPLICAS": "1",
        # Replies of 30 s: every stream stays open while the test counts.
        "CHAT_TWIN_REPLY_TOKENS": "600",
        "CHAT_TWIN_TOKEN_DELAY_SECONDS": "0.05",
    }
    compose = ["docker", "compose", "-f", "compose.yaml", "-f", "compose.ipv6.yaml"]
    other = f"{project}-other"
    try:
        run(*compose, "up", "--detach", "--build", "--wait", "nginx", env=env, timeout=1800)
        run("docker", "network", "create", "--ipv6", "--subnet", str(b),
            "--opt", "com.docker.network.bridge.enable_ip_masquerade=false", other)  # fmt: skip
        # A bridge with nothing attached has no carrier, and its address stays
        # tentative: attach a container of the stack that plays no part here.
        (valkey,) = run(*compose, "ps", "--quiet", "valkey", env=env).split()
        run("docker", "network", "connect", other, valkey)
        port = int(run(*compose, "port", "nginx", "8080", env=env).strip().rsplit(":", 1)[1])
        token = mint(Settings(auth_secret=SecretStr(secret), reply_store="memory"), "tester", ttl=3600)
        for address in (a[1], b[1]):
            wait_usable(str(address))
        yield Ipv6Stack(port, str(a[1]), str(b[1]), {"Authorization": f"Bearer {token}"})
    finally:
        subprocess.run([*compose, "down", "--volumes"], cwd=ROOT, env=env, capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", other], capture_output=True, check=False)


def wait_usable(address: str, timeout: float = 15) -> None:
    """A new bridge's IPv6 address is "tentative" for a second or two
    (duplicate address detection): nothing can bind it before."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind((address, 0))
            return
        except OSError:
            assert time.monotonic() < deadline, f"{address} is not usable after {timeout} s"
            time.sleep(0.2)


def start(v6: Ipv6Stack, host: str, source: str | None = None) -> requests.Response:
    session = requests.Session()
    if source is not None:
        session.mount("http://", SourceAdapter(source))
    return session.post(v6.url(host), json={"message": "hi"}, headers=v6.auth, stream=True, timeout=10)


@contextmanager
def holding(v6: Ipv6Stack, sources: Sequence[str]) -> Iterator[list[requests.Response]]:
    """One open stream per source (the stack's gateway address is the destination)."""
    with ExitStack() as streams:
        yield [streams.enter_context(start(v6, v6.a, source)) for source in sources]


def refused(response: requests.Response) -> bool:
    with response:
        return response.status_code == 429 and json.loads(response.content) == TOO_MANY_STREAMS


def test_two_ipv6_clients_each_get_their_own_ten_streams(v6: Ipv6Stack) -> None:
    with holding(v6, [v6.a] * MAX_STREAMS) as first:
        assert [s.status_code for s in first] == [200] * MAX_STREAMS
        assert refused(start(v6, v6.a, v6.a)), "the 11th stream of one client was not refused"
        with holding(v6, [v6.b] * MAX_STREAMS) as second:
            assert [s.status_code for s in second] == [200] * MAX_STREAMS, ENGINE_HINT
            assert refused(start(v6, v6.a, v6.b))


def test_negative_control_a_client_through_the_userland_proxy_shares_a_bucket(v6: Ipv6Stack) -> None:
    # ::1 is loopback: the engine leaves it to its userland proxy, which
    # connects to nginx from the gateway's address, the first client's.
    # Refused by the first client's limits: its open streams, or its start
    # rate (5 a second, bursts of 20), which this file's starts may have used
    # up. Either is the shared bucket.
    with holding(v6, [v6.a] * MAX_STREAMS), start(v6, "::1") as proxied:
        assert proxied.status_code == 429
        assert proxied.json()["error"]["code"] in {"too_many_streams", "too_many_stream_starts"}
    # Alone, it is served (once nginx has seen the first client's streams end).
    deadline = time.monotonic() + 10
    while (status := served(start(v6, "::1"))) == 429 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200


def served(response: requests.Response) -> int:
    with response:
        return response.status_code
