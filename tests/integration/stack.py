"""The Compose stack under test, what compose.test.yaml configures, and the
shipped settings the tests hold it to."""

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests
import yaml
from app.config import Settings
from testcontainers.compose import DockerCompose
from websockets.typing import Subprotocol

from tests.durations import seconds
from tests.integration.images import COMPOSE_FILES
from tests.integration.images import ROOT as ROOT  # re-exported: the tests find files from it

STREAM_PATH = "/api/chat/message/stream"
WEBSOCKET_PATH = "/api/chat/message/ws"

# nginx's answer to a query string on the API's paths (snippets/server/json_errors.conf),
# which the tests of tokens in URLs, of bad input and of the limits expect.
QUERY_NOT_ALLOWED = {
    "error": {
        "code": "query_not_allowed",
        "message": "The API takes no query string. "
        "Send credentials in the Authorization header (a WebSocket: as its subprotocol).",
    }
}


class _ComposeLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """YAML with Compose's merge tags (!override, !reset) read as plain values
    (YAML's own merge keys, ``<<:``, SafeLoader resolves as Compose does)."""


for _tag in ("!override", "!reset"):
    _ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: (
            loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else loader.construct_object(node)
        ),
    )

# What compose.test.yaml configures the twin and the API to do, read from it
# (one place for each value).
_API = yaml.load((ROOT / COMPOSE_FILES[1]).read_text(), Loader=_ComposeLoader)["services"]["api"]["environment"]
REPLY_TOKENS = int(_API["CHAT_TWIN_REPLY_TOKENS"])
TOKEN_DELAY_SECONDS = float(_API["CHAT_TWIN_TOKEN_DELAY_SECONDS"])
HEARTBEAT_SECONDS = float(_API["CHAT_HEARTBEAT_SECONDS"])
RESUME_GRACE_SECONDS = float(_API["CHAT_RESUME_GRACE_SECONDS"])
SEND_TIMEOUT_SECONDS = float(_API["CHAT_SEND_TIMEOUT_SECONDS"])
WS_FIRST_FRAME_SECONDS = float(_API["CHAT_WS_FIRST_FRAME_SECONDS"])
PRODUCER_LEASE_SECONDS = float(_API["CHAT_PRODUCER_LEASE_SECONDS"])
# Replies a process generates at once; compose.test.yaml keeps the default.
MAX_REPLIES = int(_API.get("CHAT_MAX_REPLIES") or Settings.model_fields["max_replies"].default)


def _nginx_directive(name: str, snippet: str) -> str:
    """The value of a directive set once in one of the proxy's snippets."""
    text = (ROOT / "services" / "nginx" / "snippets" / snippet).read_text()
    values: list[str] = re.findall(rf"^{name}\s+([^;]+);", text, re.MULTILINE)
    (value,) = values
    return value


# What compose.yaml and the proxy's snippets set, read from them, for the
# tests that hold the stack to it.
_SHIPPED = yaml.load((ROOT / COMPOSE_FILES[0]).read_text(), Loader=_ComposeLoader)["services"]
STOP_GRACE_SECONDS = seconds(_SHIPPED["api"]["stop_grace_period"])
PROXY_CONNECT_TIMEOUT_SECONDS = seconds(_nginx_directive("proxy_connect_timeout", "location/proxy_headers.conf"))
PROXY_NEXT_UPSTREAM_TRIES = int(_nginx_directive("proxy_next_upstream_tries", "location/proxy_headers.conf"))
# How long nginx keeps the addresses "api" resolved to (its resolver's valid=).
PROXY_DNS_VALID_SECONDS = seconds(re.findall(r"\bvalid=(\S+)", _nginx_directive("resolver", "http/api.conf"))[0])

# Reads the worker's memory and the metrics from inside the API container:
# /metrics is not routed by the proxy.
_PROBE = """
import os, sys, urllib.request
if sys.argv[1] == "rss":
    for pid in filter(str.isdigit, os.listdir("/proc")):
        stat = open(f"/proc/{pid}/stat").read()
        if stat.rsplit(")", 1)[1].split()[1] == "1":  # a child of gunicorn's arbiter
            print(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")))
else:
    print(urllib.request.urlopen("http://127.0.0.1:8000/metrics", timeout=5).read().decode())
"""


@dataclass(frozen=True)
class Stack:
    compose: DockerCompose
    secret: str  # CHAT_AUTH_SECRET of this stack
    token: str  # a bearer token with the chat:stream scope, subject "tester"
    tls_certificate: Path  # the self-signed certificate the proxies serve on 8443
    valkey_password: str  # CHAT_VALKEY_PASSWORD of this stack
    # Published proxy addresses, looked up once: each lookup runs `docker compose ps`.
    _origins: dict[tuple[str, int], str] = field(default_factory=dict)

    def url(self, service: str = "nginx", path: str = STREAM_PATH) -> str:
        return self._origin(service, 8080, "http") + path

    def url_on(self, service: str, port: int, path: str = STREAM_PATH) -> str:
        """A service's published container port (the intermediaries' several listeners)."""
        return self._origin(service, port, "http") + path

    def https_url(self, service: str = "nginx", path: str = STREAM_PATH) -> str:
        """The same over HTTPS (HTTP/2); verify with ``tls_certificate``."""
        return self._origin(service, 8443, "https") + path

    def prometheus_url(self, path: str = "") -> str:
        """Prometheus (profile "observe"), published on loopback."""
        return self._origin("prometheus", 9090, "http") + path

    def forget_ports(self, service: str) -> None:
        """After a restart of ``service``: Docker may publish it on new host ports."""
        for key in [key for key in self._origins if key[0] == service]:
            del self._origins[key]

    def _origin(self, service: str, port: int, scheme: str) -> str:
        if (service, port) not in self._origins:
            host = self.compose.get_service_host(service, port)
            published = self.compose.get_service_port(service, port)
            host = "127.0.0.1" if host in (None, "0.0.0.0") else host
            self._origins[service, port] = f"{scheme}://{host}:{published}"
        return self._origins[service, port]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def page_url(self, service: str = "nginx", path: str = "/") -> str:
        """The chat page, with the token in the fragment (never sent to a server)."""
        return f"{self.url(service, path)}#token={self.token}"

    def ws_protocols(self) -> list[Subprotocol]:
        return [Subprotocol("chat.v1"), Subprotocol(f"bearer.{self.token}")]

    def ws_url(self, service: str = "nginx") -> str:
        return self.url(service, WEBSOCKET_PATH).replace("http://", "ws://", 1)

    def compose_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self.compose.compose_command_property, *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=check)

    def valkey_address(self) -> str:
        """host:port of the stack's Valkey, published on loopback by compose.test.yaml."""
        return f"127.0.0.1:{self.compose.get_service_port('valkey', 6379)}"

    def reply_keys(self) -> int:
        """Keys of replies and conversations in the API's database (leases of
        live processes, ``chat:proc:*``, are not counted)."""
        client = redis.Redis.from_url(f"redis://{self.valkey_address()}/0", password=self.valkey_password)
        try:
            return sum(1 for key in client.scan_iter("chat:*", count=1000) if not key.startswith(b"chat:proc:"))
        finally:
            client.close()

    def containers(self, service: str = "api") -> list[str]:
        """The ids of a service's running containers (by default the API's replicas)."""
        return self.compose_run("ps", "--quiet", service).stdout.split()

    def container_of(self, served_by: str) -> str:
        """The API replica whose host name (its container id) starts X-Served-By."""
        (container,) = [c for c in self.containers() if served_by.startswith(c[:12])]
        return container

    def python_in(self, container: str, script: str, *args: str) -> str:
        """The standard output of a Python script run inside ``container``
        (an API replica has the API's packages: websockets, redis...)."""
        command = ["docker", "exec", container, "python3", "-c", script, *args]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def _probe(self, what: str) -> list[str]:
        """The probe's output from every running API replica."""
        return [self.python_in(container, _PROBE, what) for container in self.containers()]

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric, or the sum over its labels, over every replica."""
        values = [
            float(line.rsplit(" ", 1)[1])
            for output in self._probe("metrics")
            for line in output.splitlines()
            if line.startswith(name) and not line.startswith("#")
        ]
        return sum(values)

    def worker_rss_kb(self) -> int:
        """The API workers' resident memory, summed over every replica."""
        return sum(int(line) for output in self._probe("rss") for line in output.split())

    def wait_for_metric(self, name: str, value: float, timeout: float) -> float:
        """Seconds until the metric reads ``value``; fails after ``timeout``."""
        start = time.perf_counter()
        while (current := self.metric(name)) != value:
            assert time.perf_counter() - start < timeout, f"{name} = {current}, not {value}, after {timeout} s"
            time.sleep(0.05)
        return time.perf_counter() - start

    def wait_until_serving(self, timeout: float = 60, proxy: str = "nginx") -> None:
        """After a restart of the API: until a request through the proxy gets a 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url(proxy, "/healthz"), timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise AssertionError(f"the API did not serve again within {timeout} s")
