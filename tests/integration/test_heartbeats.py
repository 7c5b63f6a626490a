"""A silent stream (a model thinking) survives a proxy's idle timeout only
because of heartbeats: the proxies here give up after 2 s of silence."""

from streamcheck import clients
from streamcheck.timing import Kind, classify
from tests.integration.stack import HEARTBEAT_SECONDS, Stack

SILENCE_SECONDS = 5  # more than twice the proxy's 2 s read timeout
PAYLOAD = {"message": f"/pause {SILENCE_SECONDS}"}


def test_heartbeats_carry_a_silent_stream_past_the_proxy_timeout(stack: Stack) -> None:
    m = clients.with_requests(stack.url("proxy-short-timeout"), PAYLOAD, headers=stack.auth)

    assert classify(m).kind is Kind.STREAMING, classify(m)
    assert m.times("token")[0] >= SILENCE_SECONDS
    assert m.comments >= SILENCE_SECONDS / HEARTBEAT_SECONDS - 1


def test_without_heartbeats_the_same_silence_cuts_the_stream(stack: Stack) -> None:
    m = clients.with_requests(stack.url("proxy-no-heartbeat"), PAYLOAD, headers=stack.auth)

    assert classify(m).kind is Kind.IDLE_TIMEOUT, classify(m)
    assert [e.event for e in m.events()] == ["start"]
    assert m.comments == 0
    # Cut by the proxy's 2 s read timeout, long before the first token.
    assert 1.5 <= m.total_seconds < SILENCE_SECONDS, m.total_seconds
