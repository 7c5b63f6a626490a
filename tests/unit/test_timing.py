import pytest

from streamcheck.sse import Event
from streamcheck.timing import Arrival, Kind, Measurement, bursts, classify


def measurement(
    token_times: list[float],
    *,
    closing: str | None = "end",
    status: int = 200,
    headers: dict[str, str] | None = None,
    ended: float | None = None,
) -> Measurement:
    arrivals = [Arrival(0.01, Event("start", "{}"))]
    arrivals += [Arrival(t, Event("token", "{}")) for t in token_times]
    if closing:
        arrivals.append(Arrival(token_times[-1] if token_times else 0.02, Event(closing, "{}")))
    reads = [(a.seconds, 100) for a in arrivals]
    end = ended if ended is not None else (arrivals[-1].seconds if arrivals else 0.0)
    return Measurement(status=status, headers=headers or {}, arrivals=arrivals, reads=reads, total_seconds=end)


SPREAD = [0.1 * i for i in range(1, 21)]  # one event every 100 ms
BURST = [2.0 + 0.0001 * i for i in range(20)]  # all within 2 ms at the end


def test_bursts_group_reads_closer_than_the_gap() -> None:
    assert bursts([0.0, 0.001, 0.5, 0.502, 1.0]) == [[0.0, 0.001], [0.5, 0.502], [1.0]]


@pytest.mark.parametrize(
    ("m", "kind"),
    [
        pytest.param(measurement(SPREAD), Kind.STREAMING, id="spread"),
        pytest.param(measurement(BURST), Kind.BUFFERED, id="one-burst"),
        pytest.param(measurement(BURST[:10] + [3.0 + 0.0001 * i for i in range(10)]), Kind.BUFFERED, id="two-bursts"),
        pytest.param(measurement(BURST, headers={"content-encoding": "gzip"}), Kind.COMPRESSED, id="gzip-burst"),
        pytest.param(measurement(SPREAD, headers={"content-encoding": "gzip"}), Kind.STREAMING, id="gzip-flushed"),
        pytest.param(measurement(SPREAD, closing=None), Kind.CUT, id="no-closing-event"),
        pytest.param(
            measurement(SPREAD, closing=None, ended=SPREAD[-1] + 2.0), Kind.IDLE_TIMEOUT, id="cut-after-silence"
        ),
        pytest.param(measurement(SPREAD, closing="error"), Kind.ERROR, id="error-event"),
        pytest.param(measurement([], closing=None, status=503), Kind.ERROR, id="http-503"),
        pytest.param(measurement(SPREAD[:3]), Kind.INCONCLUSIVE, id="too-few-events"),
        # A long think, then one token every 50 ms: still streaming.
        pytest.param(measurement([9.0 + 0.05 * i for i in range(20)]), Kind.STREAMING, id="late-first-token"),
        # Five small events (500 bytes) a second from the start: passed on progressively, a few at a
        # time, so coalesced (it was "buffered"); a token held 800 ms fails all the same.
        pytest.param(measurement([float(i // 5) + 0.0001 * i for i in range(20)]), Kind.COALESCED, id="bursts-of-five"),
    ],
)
def test_classify(m: Measurement, kind: Kind) -> None:
    assert classify(m).kind is kind


def test_a_failed_request_is_an_error() -> None:
    m = Measurement(failure="ConnectionError: refused")
    verdict = classify(m)
    assert (verdict.kind, verdict.reason) == (Kind.ERROR, "ConnectionError: refused")


def test_bursts_of_five_fail_as_coalesced_beyond_the_limit() -> None:
    verdict = classify(measurement([float(i // 5) + 0.0001 * i for i in range(20)]))
    assert verdict.batching is not None and verdict.batching.added_delay == pytest.approx(0.8, abs=0.01)
    assert not verdict.passed
