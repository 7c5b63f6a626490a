"""Batched delivery: a reply passed on as it is made, a few events per write,
is `coalesced`, not `buffered`; it passes while no token is held longer than
the limit beyond the stream's own pacing."""

import pytest

from streamcheck.sse import Event
from streamcheck.timing import MAX_ADDED_DELAY_SECONDS, Arrival, Kind, Recorder, batches, batching, classify
from tests.unit.synthetic import flushed, made, stream

# An irregular source (64 ms per token on average) behind a hop that writes every
# 200 ms: 2 to 4 events per read, the first token 0.2 s late, the reply spread
# over the whole generation time. The old rule called it buffered.
IRREGULAR_GAPS = [0.04, 0.09, 0.05, 0.08, 0.06]


def irregular(tokens: int = 48) -> list[float]:
    times = [0.05]
    while len(times) < tokens:
        times.append(times[-1] + IRREGULAR_GAPS[len(times) % len(IRREGULAR_GAPS)])
    return times


def test_the_recorder_times_heartbeats() -> None:
    recorder = Recorder()
    recorder.read(b"event: start\ndata: {}\n\n: ping\n\n")
    recorder.read(b": ping\n\n")
    m = recorder.finish()
    assert (m.comments, len(m.comment_times)) == (2, 2)
    assert m.comment_times[0] == m.reads[0][0] and m.comment_times[1] == m.reads[1][0]


def test_a_flush_every_200_ms_is_measured() -> None:
    b = batching(stream(flushed(made(48, 0.05), 0.2)))
    assert b is not None
    assert (b.batches, b.events_per_read, b.bytes_per_read) == (12, 4.0, 360)
    assert b.interval == pytest.approx(0.2) and b.pacing == pytest.approx(0.05)
    # The first token of each batch waited three pacings more than it would have.
    assert b.added_delay == pytest.approx(0.15)


def test_the_brief_case_is_coalesced_not_buffered() -> None:
    m = stream(flushed(irregular(), 0.2))
    verdict = classify(m)
    assert verdict.kind is Kind.COALESCED, verdict.reason
    assert {b.events for b in batches(m)} == {2, 3, 4}
    assert verdict.batching is not None
    assert "200 ms apart" in verdict.reason and "beyond the stream's own pacing" in verdict.reason
    assert verdict.batching.added_delay == pytest.approx(0.133, abs=0.01)
    assert not verdict.passed  # beyond the default 100 ms
    assert classify(m, max_added_delay=0.15).passed  # within a more lenient limit


@pytest.mark.parametrize(
    ("every", "passed"),
    [
        pytest.param(0.1, True, id="flush-100ms"),  # Traefik's default flush interval: 50 ms added
        pytest.param(0.14, True, id="flush-140ms"),
        pytest.param(0.16, False, id="flush-160ms"),
        pytest.param(0.2, False, id="flush-200ms"),  # Nagle + a 200 ms delayed ACK
    ],
)
def test_coalesced_passes_within_the_limit(every: float, passed: bool) -> None:
    verdict = classify(stream(flushed(made(48, 0.05), every)))
    assert verdict.kind is Kind.COALESCED
    assert verdict.passed is passed and verdict.within_limit is passed
    assert verdict.streaming is False
    assert bool(verdict.notes) is passed  # "coalesced within the limit: ... this passes"


def test_haproxy_default_bursts_of_five() -> None:
    """HAProxy without `option http-no-delay`: the first token 206 ms late, then bursts of five."""
    times = [0.206 + 0.0001 * i for i in range(5)]
    times += [0.206 + 0.25 * (i // 5) + 0.0001 * (i % 5) for i in range(5, 48)]
    verdict = classify(stream(times))
    assert verdict.kind is Kind.COALESCED
    assert verdict.batching is not None and verdict.batching.added_delay == pytest.approx(0.2, abs=0.01)
    assert not verdict.passed


def paired(pairs: int, tokens: int = 48) -> list[float]:
    """A streamed reply whose first ``pairs`` even tokens came in one read with the next one."""
    times = made(tokens, 0.05)
    for j in range(pairs):
        times[2 * j] = times[2 * j + 1]
    return times


def test_the_80_percent_boundary_no_longer_flips_the_exit_status() -> None:
    """39 reads for 48 tokens is streaming, 38 was buffered (exit 1): now coalesced, and it passes."""
    above, below = classify(stream(paired(9))), classify(stream(paired(10)))
    assert (above.kind, above.bursts, above.passed) == (Kind.STREAMING, 39, True)
    assert (below.kind, below.bursts, below.passed) == (Kind.COALESCED, 38, True)


def test_a_long_think_then_batches_is_judged_on_the_batches() -> None:
    verdict = classify(stream(flushed(made(48, 0.05, first=9.0), 0.1)))
    assert (verdict.kind, verdict.passed) == (Kind.COALESCED, True)


@pytest.mark.parametrize(
    "times",
    [
        # nginx's 4 KB buffer on a long reply: a slice every 45 events (about 4 KB), progressive but
        # buffer-sized.
        pytest.param([0.05 * (45 * (i // 45 + 1)) for i in range(400)], id="4KB-slices"),
        # The whole reply held, then dumped in three large reads 20 ms apart: not "progressive".
        pytest.param([24.0 + 0.02 * (i // 160) for i in range(480)], id="dump-in-three-reads"),
    ],
)
def test_buffer_sized_batches_are_buffered_not_coalesced(times: list[float]) -> None:
    verdict = classify(stream(times))
    assert verdict.kind is Kind.BUFFERED, verdict.reason
    assert not verdict.passed


def test_a_single_stutter_does_not_make_a_stream_coalesced() -> None:
    times = made(48, 0.05)
    times[10] = times[11] = times[12] = times[13]  # four tokens held 150 ms once
    verdict = classify(stream(times))
    assert verdict.kind is Kind.STREAMING and verdict.passed


def test_the_default_limit() -> None:
    assert MAX_ADDED_DELAY_SECONDS == 0.1


def test_a_websocket_frame_per_event_is_streaming() -> None:
    m = stream(made(20, 0.05))
    m.status = 1000
    m.arrivals.append(Arrival(2.0, Event("end", "{}")))
    assert classify(m).kind is Kind.STREAMING
