"""The Compose stack under test and what compose.test.yaml configures."""

from dataclasses import dataclass
from pathlib import Path

from testcontainers.compose import DockerCompose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["compose.yaml", "tests/integration/compose.test.yaml"]
STREAM_PATH = "/api/chat/message/stream"

# What compose.test.yaml configures the twin to say.
REPLY_TOKENS = 48
TOKEN_DELAY_SECONDS = 0.05


@dataclass(frozen=True)
class Stack:
    compose: DockerCompose

    def url(self, service: str = "nginx", path: str = STREAM_PATH) -> str:
        host = self.compose.get_service_host(service, 8080)
        port = self.compose.get_service_port(service, 8080)
        host = "127.0.0.1" if host in (None, "0.0.0.0") else host
        return f"http://{host}:{port}{path}"
