"""Build every image the integration session starts, before the tests run.

`make test-integration` runs this first (``python -m tests.integration.images``).
On a machine with no layer cache the first build takes minutes (the model
server's llama.cpp compile alone about 3.5 on two cores); inside the session's
stack fixture that time would count against the first test's timeout
(pyproject.toml: 300 s) and every test would error. Built here, the fixture's
``docker compose up --build`` finds every layer cached.

Which compose files and profiles make the test stack is said here, once:
stack.py and conftest.py import them.
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["compose.yaml", "tests/integration/compose.test.yaml"]
# Prometheus and the exporters come up with the stack (test_observability.py),
# and so does the real model server with its APIs and proxies (test_model.py);
# Grafana does not (no Debian package: CI cannot always run it).
PROFILES = ["observe", "model"]


def build() -> None:
    command = ["docker", "compose"]
    for name in COMPOSE_FILES:
        command += ["--file", name]
    for profile in PROFILES:
        command += ["--profile", profile]
    started = time.monotonic()
    subprocess.run([*command, "build"], cwd=ROOT, check=True)
    print(f"test stack images built in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    build()
