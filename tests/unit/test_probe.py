import json
from collections.abc import Callable

import pytest

from streamcheck import clients
from streamcheck.intermediaries import PRODUCT_FIXES
from streamcheck.probe import FIXES, main, report, text
from streamcheck.sse import Event
from streamcheck.timing import Arrival, Kind, Measurement, classify
from tests.unit.synthetic import flushed, made, stream


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


def test_the_json_report_lists_every_cause_in_order() -> None:
    m = gzip_burst()
    m.headers["server"] = "nginx"
    r = report("http://x/stream", m, classify(m))
    assert (r["verdict"], r["verdicts"], r["passed"]) == ("compressed", ["compressed", "buffered"], False)
    compressed, buffered = r["causes"]
    assert (compressed["verdict"], compressed["fix"]) == ("compressed", FIXES[Kind.COMPRESSED])
    assert compressed["products"] == {"nginx": PRODUCT_FIXES["nginx"][Kind.COMPRESSED]}
    assert buffered["products"] == {"nginx": PRODUCT_FIXES["nginx"][Kind.BUFFERED]}
    assert r["intermediaries"] == [{"name": "nginx", "evidence": "server: nginx"}]
    assert r["batching"]["batches"] == 1 and r["silence"] is None
    json.dumps(r)  # serializable as it is


def test_a_streaming_report_names_no_intermediary() -> None:
    m = stream(made(), headers={"server": "nginx"})
    r = report("http://x/stream", m, classify(m))
    assert (r["verdict"], r["verdicts"], r["passed"], r["intermediaries"]) == ("streaming", ["streaming"], True, [])
    assert r["causes"] == [
        {"verdict": "streaming", "reason": "48 events in 48 separate reads", "fix": "Nothing to fix.", "products": {}}
    ]


def test_the_text_report_lists_the_causes_and_the_product_fixes() -> None:
    m = gzip_burst()
    m.headers["server"] = "nginx"
    lines = text(report("http://x/stream", m, classify(m))).splitlines()
    assert "intermediary: nginx (server: nginx)" in lines
    start = lines.index("causes, in the order to fix them:")
    assert lines[start + 1].startswith("  1. compressed: the body was compressed (gzip)")
    assert lines[start + 3] == f"     nginx: {PRODUCT_FIXES['nginx'][Kind.COMPRESSED]}"
    assert lines[start + 4].startswith("  2. buffered: 10 events in only 1 burst")
    assert lines[-2].endswith("; also: buffered (fix in the order above)")


def test_the_text_report_of_a_coalesced_reply() -> None:
    m = stream(flushed(made(), 0.1), headers={"via": "1.1 Caddy"})
    lines = text(report("http://x/stream", m, classify(m))).splitlines()
    assert "batches: 24, every 100 ms, 2 events and about 180 bytes per read; pacing 50 ms; " in lines[-6]
    assert lines[-6].endswith("largest added delay 50 ms (limit 100 ms)")
    assert lines[-5:-2] == [
        "intermediary: Caddy (via: 1.1 Caddy)",
        f"fix for Caddy: {PRODUCT_FIXES['Caddy'][Kind.COALESCED]}",
        "note: coalesced within the limit: no token held more than 50 ms beyond the stream's pacing "
        "(--max-added-delay-ms 100); this passes",
    ]
    assert lines[-2].startswith("verdict: COALESCED (48 events in 24 reads about 100 ms apart")


def test_the_text_report_of_an_idle_cut() -> None:
    m = stream(made(20), closing=None, ended=2.0)
    lines = text(report("http://x/stream", m, classify(m))).splitlines()
    assert lines[-3] == (
        "silence before the end: 1000 ms (median gap 50 ms, longest 50 ms, heartbeats none seen; "
        "an idle cut is a silence over 500 ms)"
    )
    assert lines[-2].startswith("verdict: IDLE_TIMEOUT (the stream was cut after 1.0 s without data")


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> Callable[[Measurement], None]:
    """Make the probe's request return this measurement."""

    def use(m: Measurement) -> None:
        monkeypatch.setattr(clients, "with_requests", lambda *args, **kwargs: m)

    return use


@pytest.mark.parametrize(
    ("times", "args", "code"),
    [
        pytest.param(made(), [], 0, id="streaming"),
        pytest.param(flushed(made(), 0.1), [], 0, id="coalesced-within"),
        pytest.param(flushed(made(), 0.2), [], 1, id="coalesced-beyond"),
        pytest.param(flushed(made(), 0.2), ["--max-added-delay-ms", "150"], 0, id="coalesced-lenient"),
        pytest.param(flushed(made(), 0.1), ["--max-added-delay-ms", "0"], 1, id="coalesced-strict"),
        pytest.param([2.4] * 48, [], 1, id="buffered"),
    ],
)
def test_exit_status(
    measured: Callable[[Measurement], None],
    capsys: pytest.CaptureFixture[str],
    times: list[float],
    args: list[str],
    code: int,
) -> None:
    measured(stream(times))
    assert main(["http://x/stream", "--json", *args]) == code
    assert json.loads(capsys.readouterr().out)["passed"] is (code == 0)


def test_the_heartbeat_option_reaches_the_verdict(
    measured: Callable[[Measurement], None], capsys: pytest.CaptureFixture[str]
) -> None:
    measured(stream(made(20), closing=None, ended=11.0))
    assert main(["http://x/stream", "--json", "--heartbeat-seconds", "15"]) == 1
    r = json.loads(capsys.readouterr().out)
    assert (r["verdict"], r["silence"]["declared_heartbeat_seconds"]) == ("idle_timeout", 15.0)
    assert "shorter than the heartbeat interval (15 s)" in r["reason"]


@pytest.mark.parametrize(
    "args", [["--max-added-delay-ms", "-1"], ["--max-added-delay-ms", "nan"], ["--heartbeat-seconds", "x"]]
)
def test_bad_options_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["http://x/stream", *args])
    assert exited.value.code == 2


def test_a_refusal_prints_the_servers_error_and_how_to_get_a_token() -> None:
    body = b'{"error":{"code":"missing_token","message":"Send Authorization: Bearer <token>."}}'
    m = Measurement(status=401, body=body, total_seconds=0.01)
    r = report("http://localhost:8080/api/chat/message/stream", m, classify(m))
    assert r["error"] == {"code": "missing_token", "message": "Send Authorization: Bearer <token>."}
    lines = text(r).splitlines()
    assert "error: missing_token: Send Authorization: Bearer <token>." in lines
    assert any(line.startswith("hint: ") and "make token" in line for line in lines)
    assert lines[-1] == "verdict: ERROR (see the error above)"


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        ("ConnectionError: ... [Errno 111] Connection refused", "nothing answers at that address"),
        ("ConnectionError: ... NameResolutionError ... Name or service not known", "unknown host"),
        ("SSLError: ... [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "--cacert certs/tls.crt"),
    ],
)
def test_a_failed_request_is_one_plain_line(failure: str, says: str) -> None:
    m = Measurement(failure=failure)
    lines = text(report("https://chat.example.com/", m, classify(m))).splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and says in errors[0]
    assert not any("Errno" in line or "SSLError" in line for line in lines)
