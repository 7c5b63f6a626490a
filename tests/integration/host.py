"""Commands and ports on the test host, for the tests that run a stack of
their own next to the session's (test_swarm.py, test_ipv6_clients.py)."""

import socket
import subprocess

from tests.integration.stack import ROOT


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    """Run a command in the project's directory; its output, or a failed assertion with its error."""
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr or done.stdout}"
    return done.stdout


def free_port() -> int:
    """A port free on both IPv4 and IPv6 (a dual-stack socket holds both)."""
    with socket.socket(socket.AF_INET6) as probe:
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind(("::", 0))
        port: int = probe.getsockname()[1]
    return port
