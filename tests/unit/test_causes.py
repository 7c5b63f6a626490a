"""Several causes at once: the verdict keeps one headline kind (the names
callers check) and lists every cause the measurement supports, in the order
to fix them."""

import pytest

from streamcheck.timing import FIX_ORDER, Kind, classify
from tests.unit.synthetic import flushed, made, stream

GZIP = {"content-encoding": "gzip"}
AT_THE_END = [2.4 + 0.0001 * i for i in range(48)]  # the whole reply in one burst


@pytest.mark.parametrize(
    ("times", "headers", "kind", "kinds", "passed"),
    [
        pytest.param(AT_THE_END, GZIP, Kind.COMPRESSED, (Kind.COMPRESSED, Kind.BUFFERED), False, id="gzip-held"),
        pytest.param(AT_THE_END, {}, Kind.BUFFERED, (Kind.BUFFERED,), False, id="held"),
        pytest.param(
            flushed(made(), 0.2), GZIP, Kind.COALESCED, (Kind.COMPRESSED, Kind.COALESCED), False, id="gzip-batched"
        ),
        pytest.param(
            flushed(made(), 0.1), GZIP, Kind.COALESCED, (Kind.COMPRESSED, Kind.COALESCED), True, id="gzip-small-batches"
        ),
        pytest.param(made(), GZIP, Kind.STREAMING, (Kind.STREAMING,), True, id="gzip-flushed"),
    ],
)
def test_delivery_causes(
    times: list[float], headers: dict[str, str], kind: Kind, kinds: tuple[Kind, ...], passed: bool
) -> None:
    verdict = classify(stream(times, headers=headers))
    assert (verdict.kind, verdict.kinds, verdict.passed) == (kind, kinds, passed), verdict.reason


def test_a_compressed_held_reply_names_both() -> None:
    verdict = classify(stream(AT_THE_END, headers=GZIP))
    compressed, buffered = verdict.causes
    assert compressed.reason == "the body was compressed (gzip) by an intermediary"
    assert buffered.reason.startswith("48 events in only 1 burst, 100% of them in one")
    assert "whether the compressor alone held them shows once it is off" in buffered.reason
    assert verdict.reason == f"{buffered.reason}; {compressed.reason}"


def test_a_compressed_stream_that_flushed_gets_a_note() -> None:
    verdict = classify(stream(made(), headers=GZIP))
    assert verdict.notes and "compressed (gzip), yet every hop flushed each event" in verdict.notes[0]


def test_a_held_reply_then_an_idle_cut() -> None:
    """The buffer is fixed first: a hop that holds output holds the heartbeats too."""
    verdict = classify(stream(AT_THE_END, closing=None, ended=5.4))
    assert verdict.kind is Kind.IDLE_TIMEOUT
    assert verdict.kinds == (Kind.BUFFERED, Kind.IDLE_TIMEOUT)
    assert not verdict.passed


def test_a_batched_reply_then_a_cut() -> None:
    times = flushed(made(), 0.2)
    verdict = classify(stream(times, closing=None, ended=times[-1] + 0.01))
    assert (verdict.kind, verdict.kinds) == (Kind.CUT, (Kind.COALESCED, Kind.CUT))


def test_an_error_event_after_a_held_reply() -> None:
    verdict = classify(stream(AT_THE_END, closing="error"))
    assert (verdict.kind, verdict.kinds) == (Kind.ERROR, (Kind.ERROR, Kind.BUFFERED))


def test_a_short_cut_reply_is_judged_only_on_its_end() -> None:
    verdict = classify(stream([2.4, 2.4, 2.4], closing=None, ended=2.41))
    assert verdict.kinds == (Kind.CUT,)


def test_single_verdicts_list_themselves() -> None:
    assert classify(stream(made(3))).kinds == (Kind.INCONCLUSIVE,)
    assert classify(stream([], closing=None, status=503)).kinds == (Kind.ERROR,)


def test_fix_order() -> None:
    assert FIX_ORDER.index(Kind.COMPRESSED) < FIX_ORDER.index(Kind.BUFFERED) < FIX_ORDER.index(Kind.IDLE_TIMEOUT)
