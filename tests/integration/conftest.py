"""One Compose stack for the whole session, reached only through the proxies.

The stack is ``compose.yaml`` plus ``tests/integration/compose.test.yaml``,
listed explicitly so a developer's compose.override.yaml never leaks in. It
runs under its own project name and on free host ports, so it does not
collide with a stack started by ``make up``, with its own development
certificate (scripts/dev-certificate.sh), which the HTTPS tests trust.
"""

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from app.config import Settings
from app.tokens import mint
from pydantic import SecretStr
from testcontainers.compose import DockerCompose

from tests.integration.figures import figures, pytest_terminal_summary  # noqa: F401  (found by pytest here)
from tests.integration.images import COMPOSE_FILES, PROFILES, ROOT
from tests.integration.stack import Stack


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tls = tmp_path_factory.mktemp("tls")
    subprocess.run([ROOT / "scripts" / "dev-certificate.sh", tls], check=True, capture_output=True)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COMPOSE_PROJECT_NAME", f"chat-stream-test-{os.getpid()}")
        env.setenv("PROMETHEUS_PORT", "0")
        env.setenv("TLS_CERT_DIR", str(tls))
        secret = secrets.token_hex(32)
        env.setenv("CHAT_AUTH_SECRET", secret)
        valkey_password = secrets.token_hex(32)
        env.setenv("CHAT_VALKEY_PASSWORD", valkey_password)
        # The model server's key (compose.test.yaml's model APIs send it).
        env.setenv("MODEL_API_KEY", secrets.token_hex(32))
        compose = DockerCompose(context=ROOT, compose_file_name=COMPOSE_FILES, profiles=PROFILES, build=True, wait=True)
        try:
            compose.start()
        except subprocess.CalledProcessError as exc:
            logs = _logs(compose)
            compose.stop()
            # pytest caches this failure for the session: the stack is not
            # rebuilt for every test that asks for it.
            pytest.fail(f"the stack did not start:\n{exc.stderr.decode(errors='replace')}\n{logs}")
        except BaseException:
            # Interrupted (the test timeout, Ctrl-C) while containers were
            # starting: take down what did start, or it outlives the run.
            compose.stop()
            raise
        try:
            token = mint(Settings(auth_secret=SecretStr(secret), reply_store="memory"), "tester", ttl=3 * 3600)
            yield Stack(compose, secret, token, tls / "tls.crt", valkey_password)
        finally:
            if request.session.testsfailed:
                print(f"\n----- compose logs (tests failed) -----\n{_logs(compose)}")
            compose.stop()


def _logs(compose: DockerCompose) -> str:
    try:
        stdout, stderr = compose.get_logs()
    except subprocess.CalledProcessError as exc:
        return f"(no logs: {exc})"
    return stdout + stderr
