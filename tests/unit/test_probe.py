from streamcheck.probe import FIXES, report, text
from streamcheck.sse import Event
from streamcheck.timing import Arrival, Kind, Measurement, classify


def gzip_burst() -> Measurement:
    arrivals = [Arrival(2.0, Event("start", "{}"))]
    arrivals += [Arrival(2.0 + 0.0001 * i, Event("token", "{}", id=f"m:{i}")) for i in range(10)]
    arrivals.append(Arrival(2.001, Event("end", "{}")))
    return Measurement(
        status=200,
        headers={"content-encoding": "gzip", "content-type": "text/event-stream", "date": "today"},
        first_byte_seconds=2.0,
        reads=[(2.0, 900)],
        arrivals=arrivals,
        total_seconds=2.001,
    )


def test_every_verdict_has_a_fix() -> None:
    assert set(FIXES) == set(Kind)


def test_report_keeps_the_headers_that_matter_and_the_figures() -> None:
    m = gzip_burst()
    r = report("http://x/stream", m, classify(m))
    assert r["headers"] == {"content-type": "text/event-stream", "content-encoding": "gzip"}
    assert (r["verdict"], r["tokens"], r["bursts"]) == ("compressed", 10, 1)
    assert r["first_token_seconds"] == 2.0 and r["gap_max_seconds"] < 0.001
    assert r["fix"] == FIXES[Kind.COMPRESSED]


def test_text_report_ends_with_verdict_and_fix() -> None:
    m = gzip_burst()
    lines = text(report("http://x/stream", m, classify(m))).splitlines()
    assert lines[0] == "probe  http://x/stream"
    assert lines[-2].startswith("verdict: COMPRESSED")
    assert lines[-1].startswith("fix: An intermediary compresses")
