"""A stream that ends without its closing event: an idle timeout when the
silence before the end is longer than the stream's own rhythm allows, a cut
otherwise. The same close gets the same verdict whatever its exact length."""

import pytest

from streamcheck.timing import IDLE_MIN_SECONDS, Kind, classify, likely_timeout, silence
from tests.unit.synthetic import flushed, made, stream

FLOWING = made(20, 0.05)  # tokens every 50 ms, the last at 1.0 s


def cut_after(silent: float, times: list[float] = FLOWING, heartbeat_seconds: float | None = None) -> Kind:
    m = stream(times, closing=None, ended=times[-1] + silent)
    return classify(m, heartbeat_seconds=heartbeat_seconds).kind


@pytest.mark.parametrize("silent", [0.8, 0.9, 0.95, 0.99, 1.0, 1.05])
def test_a_proxy_closing_after_about_a_second_of_silence_is_always_an_idle_timeout(silent: float) -> None:
    # The old rule (an absolute 1.0 s) called the first four `cut` and the last two `idle_timeout`.
    assert cut_after(silent) is Kind.IDLE_TIMEOUT


@pytest.mark.parametrize("silent", [0.0, 0.03, 0.09])
def test_a_close_within_the_stream_pacing_is_a_cut(silent: float) -> None:
    assert cut_after(silent) is Kind.CUT


def test_a_slow_stream_is_judged_by_its_own_pacing() -> None:
    """One token a second: a close 1.5 s after the last one is within its rhythm (it was idle_timeout)."""
    slow = made(10, 1.0)
    assert cut_after(1.5, slow) is Kind.CUT
    assert cut_after(2.5, slow) is Kind.IDLE_TIMEOUT
    # With heartbeats every 1.2 s, a 1.5 s silence is one the stream should never show.
    assert cut_after(1.5, slow, heartbeat_seconds=1.2) is Kind.IDLE_TIMEOUT


def test_a_silence_the_path_already_let_through_is_not_its_timeout() -> None:
    """Heartbeats every second while the model thinks: the path tolerates 1 s of silence, so a close
    0.7 s after the last heartbeat is a cut; one 1.6 s after it means a heartbeat did not come."""
    heartbeats = [1.0, 2.0, 3.0, 4.0]
    for silent, kind in [(0.7, Kind.CUT), (1.6, Kind.IDLE_TIMEOUT)]:
        m = stream([], closing=None, heartbeats=heartbeats, ended=4.0 + silent)
        verdict = classify(m)
        assert verdict.kind is kind, verdict.reason
    assert "heartbeats came every 1.0 s, then none for 1.6 s" in verdict.reason
    assert verdict.silence is not None and verdict.silence.heartbeat == pytest.approx(1.0)


def test_without_pacing_the_floor_decides() -> None:
    """Only the start event, then a close (the integration test: nginx cuts at 2 s)."""
    assert classify(stream([], closing=None, ended=2.0)).kind is Kind.IDLE_TIMEOUT
    assert classify(stream([], closing=None, ended=IDLE_MIN_SECONDS - 0.1)).kind is Kind.CUT


def test_the_idle_reason_names_the_timeout_and_the_heartbeat_fix() -> None:
    m = stream(FLOWING, closing=None, ended=FLOWING[-1] + 10.0)
    reason = classify(m, heartbeat_seconds=15).reason
    assert "cut after 10.0 s without data" in reason
    assert "an idle or read timeout of about 10 s on the path (10 s is the default of Fastly's" in reason
    assert "shorter than the heartbeat interval (15 s)" in reason and "more often than every 10 s" in reason

    reason = classify(m, heartbeat_seconds=5).reason
    assert "no heartbeat arrived in 10.0 s although one is due every 5 s" in reason

    assert "heartbeats are off: turn them on, more often than every 10 s" in classify(m, heartbeat_seconds=0).reason
    assert "--heartbeat-seconds" in classify(m).reason


@pytest.mark.parametrize(
    ("seconds", "named"),
    [
        (0.9, "about 0.9 s on the path"),
        (59.7, "nginx's proxy_read_timeout"),
        (100.4, "Cloudflare's proxy read timeout"),
        (30.1, "CloudFront's origin response timeout"),
        (45.0, "about 45 s on the path"),
    ],
)
def test_likely_timeout(seconds: float, named: str) -> None:
    assert named in likely_timeout(seconds)


def test_a_cut_at_a_whole_response_limit_names_it() -> None:
    times = made(300, 0.05)[:290]  # 14.55 s of tokens, then the route timeout at 15 s
    verdict = classify(stream(times, closing=None, ended=15.0))
    assert verdict.kind is Kind.CUT
    assert "cut 15 s after the request (15 s is the default of Envoy's route timeout)" in verdict.reason


def test_the_silence_figures() -> None:
    s = silence(stream(FLOWING, closing=None, ended=2.0), heartbeat_seconds=15)
    assert s.seconds == pytest.approx(1.0)
    assert s.median_gap == pytest.approx(0.05) and s.longest_gap == pytest.approx(0.05)
    assert (s.heartbeat, s.declared_heartbeat) == (None, 15)
    assert s.threshold == IDLE_MIN_SECONDS and s.idle


def test_behind_a_hop_that_batches_the_idle_timeout_counts_from_when_the_source_fell_silent() -> None:
    """HAProxy's defaults gather 200 ms of tokens per write. A source that thinks 0.7 s (a silence the
    path lets through), streams ten tokens and then stalls, behind an 800 ms idle timeout: the last
    batch arrives 0.05 s after the source's last token, so the close comes 0.75 s after the last read,
    within the 0.795 s the path let through before the first token. The batching held data back by
    up to 0.15 s: the hop's silence before the close was longer than any it had let through."""
    source = made(10, 0.05, first=0.7)
    m = stream(flushed(source, 0.2), closing=None, ended=source[-1] + 0.8)
    verdict = classify(m)
    assert verdict.kind is Kind.IDLE_TIMEOUT, verdict.reason
    s = verdict.silence
    assert s is not None
    assert s.held_back == pytest.approx(0.15, abs=0.02)
    assert s.seconds < s.threshold < s.at_source  # read from the last read alone: a cut
    assert "(0.75 s seen here, 0.14 s before it held back by a hop's batching)" in verdict.reason


def test_a_hop_that_holds_the_reply_is_not_credited_with_a_delay() -> None:
    """The whole reply in one release: when the source fell silent is unknown, nothing is added."""
    source = made(10, 0.05)
    m = stream([source[-1] + 0.2] * len(source), closing=None, ended=source[-1] + 0.4)
    verdict = classify(m)
    assert verdict.silence is not None and verdict.silence.held_back == 0.0
    assert verdict.kind is Kind.CUT, verdict.reason
